# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The ``audit-notifier`` command (console_scripts entry point ``audit_notifier.cli:main``).

Each subcommand registers itself with an ``_add_<name>`` function listed in
:data:`SUBCOMMANDS` and imports what it needs only when it runs, so ``--help`` and
the other subcommands stay fast.
"""

from __future__ import annotations

import argparse
import sys
import warnings


def _quiet_warnings() -> None:
    """Hide the deprecation noise oslo.messaging's import pulls in (eventlet).

    Set before anything imports oslo_messaging: the warnings fire at import time.
    """
    warnings.filterwarnings('ignore', message=r'\s*Eventlet is deprecated')
    warnings.filterwarnings('ignore', message=r'eventletutils module is deprecated')


# -- demo ------------------------------------------------------------------------------

def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        'demo', help='watch the audit filter at work on a local sample image API',
        description='Serve a sample image API (Glance v2 routes and answers) behind the '
                    'audit filter on 127.0.0.1, make a few real calls (create, upload, '
                    'download, update, a forbidden delete, delete, a read of the deleted '
                    'image) and print the notifications each call produced. No message '
                    'bus and no OpenStack service are needed: the filter uses '
                    'oslo.messaging\'s log driver.')
    parser.add_argument('--json', action='store_true',
                        help='print only the notifications, one oslo.messaging envelope '
                             '(JSON) per line')
    parser.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                        dest='settings',
                        help='an option of the audit filter, as a key of its paste '
                             'section (default formats=cadf,glance '
                             'publisher_id=image.demo); may be repeated, e.g. --set '
                             'formats=cadf --set audit_reads=false')
    parser.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from audit_notifier.demo import runner
    return runner.run(json_mode=args.json, settings=args.settings)


# -- stats and replay: operator tools on a journal directory --------------------------------

def _config_files(parser, help_text: str) -> None:
    """The repeatable ``--config-file`` option every subcommand that reads the
    service's configuration takes."""
    parser.add_argument('--config-file', action='append', default=[], metavar='PATH',
                        help=help_text)


def _journal_arguments(parser) -> None:
    _config_files(parser, 'the service\'s conf file with its [audit_notifier] section '
                          '(e.g. /etc/glance/glance-api.conf); may be repeated')
    parser.add_argument('--journal-dir', '--spool-dir', dest='journal_dir', metavar='DIR',
                        help='journal directory (default: journal_dir from the conf file)')


def _pipeline(args, **overrides):
    from oslo_config import cfg

    from audit_notifier.assembly import Pipeline
    conf = cfg.ConfigOpts()
    conf([], project='audit_notifier', default_config_files=args.config_file or [])
    overrides = {k: v for k, v in overrides.items() if v}
    if args.journal_dir:
        overrides['journal_dir'] = args.journal_dir
    overrides.setdefault('delivery_mode', 'journal')
    overrides.setdefault('process_hooks', 'false')
    return Pipeline(dict(overrides, oslo_config_config=conf))


def _add_stats(subparsers) -> None:
    parser = subparsers.add_parser(
        'stats', help='delivery counters of the processes using a journal directory',
        description='Print the delivery counters each process writes to its journal '
                    'directory every 5 s (journaled, sent, dropped, dead letters, send and '
                    'build errors, disk errors, unsent records, the age of the oldest '
                    'unsent one, whether the bus is down) and the dead letters waiting.')
    _journal_arguments(parser)
    parser.add_argument('--json', action='store_true', help='one JSON object per process')
    parser.add_argument('--prometheus', action='store_true',
                        help='Prometheus text format, for node_exporter\'s textfile '
                             'collector')
    parser.add_argument('--output', metavar='FILE',
                        help='with --prometheus: write FILE (e.g. <textfile '
                             'directory>/audit_notifier.prom) atomically instead of '
                             'printing')
    parser.set_defaults(func=_run_stats)


def _run_stats(args) -> int:
    import json

    from audit_notifier.delivery import deadletter, tools
    directory = _pipeline(args).delivery.directory
    rows = tools.read_stats(directory)
    dead = deadletter.count(directory)
    if args.prometheus:
        return _stats_prometheus(rows, dead, directory, args.output)
    if args.output:
        print('audit-notifier stats: error: --output needs --prometheus', file=sys.stderr)
        return 2
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        print(json.dumps({'dead_letters_waiting': dead}))
        return 0
    if not rows:
        print('no audit_notifier process has written stats to %s' % directory)
    else:
        columns = ('process', 'alive', 'journaled', 'sent', 'dropped', 'dead_letters',
                   'send_errors', 'build_errors', 'journal_errors', 'unsent',
                   'oldest_unsent_age', 'bus_down')
        print('  '.join(columns))
        for row in rows:
            print('  '.join(str(row.get(c, '')) for c in columns))
    print('dead letters waiting in %s: %d%s' % (
        directory, dead, ' (audit-notifier replay --dead-letters re-sends them)' if dead
        else ''))
    return 0


def _stats_prometheus(rows: list, dead: int, directory: str, output: str | None) -> int:
    import time

    from audit_notifier.delivery import prometheus
    text = prometheus.render(rows, dead, directory, time.time())
    if not output:
        sys.stdout.write(text)
        return 0
    try:
        prometheus.write_atomically(output, text)
    except OSError as exc:
        print('audit-notifier stats: error: cannot write %s: %s' % (output, exc.strerror or
                                                                    exc), file=sys.stderr)
        return 1
    return 0


def _add_replay(subparsers) -> None:
    parser = subparsers.add_parser(
        'replay', help='send what processes that are gone left in a journal directory',
        description='Send, oldest first, every notification left in a journal directory by '
                    'processes that are no longer running, through the drivers and topics '
                    'of the conf file (or the options below), and remove what was sent. '
                    'Running it again sends nothing twice. With --dead-letters, re-send the '
                    'dead letters instead (after fixing what made them fail).')
    _journal_arguments(parser)
    parser.add_argument('--driver', help='notification driver (default: from the conf file)')
    parser.add_argument('--transport-url', help='message bus URL (default: from the conf '
                                                'file)')
    parser.add_argument('--dead-letters', action='store_true',
                        help='re-send the dead letters; what fails again is kept')
    parser.add_argument('--timeout', type=float, default=30.0,
                        help='while the bus is unreachable, keep trying until this many '
                             'seconds after the run started, then stop (what is left stays '
                             'for the next run)')
    parser.set_defaults(func=_run_replay)


def _replay_pipeline(args):
    """The pipeline replay sends with, publishing where the service itself does."""
    from audit_notifier.delivery.private_queue import service_exchange
    pipeline = _pipeline(args, driver=args.driver, transport_url=args.transport_url)
    # This process never ran the service's oslo_messaging.set_transport_defaults:
    # without this, a conf file that does not set control_exchange means 'openstack'.
    pipeline.conf.set_default(
        'control_exchange', service_exchange(pipeline.conf, pipeline.route_map.service.name))
    return pipeline


def _run_replay(args) -> int:
    import logging

    from audit_notifier.delivery import tools
    # What the sender logs (and the log driver's notifications) go to stderr.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(levelname)s %(name)s %(message)s')
    pipeline = _replay_pipeline(args)
    directory = pipeline.delivery.directory
    if args.dead_letters:
        result = tools.replay_dead_letters(pipeline)
        print('re-sent %d dead letter notification(s) from %s; %d kept'
              % (result.sent, directory, result.left))
    else:
        result = tools.replay(pipeline, args.timeout)
        print('sent %d notification(s) from %d journal(s) of earlier processes in %s'
              % (result.sent, result.journals, directory))
    for reason in result.kept:
        print('audit-notifier replay: kept %s' % reason, file=sys.stderr)
    return 1 if result.left else 0


# -- send: the sender process of sender = external ----------------------------------------

def _add_send(subparsers) -> None:
    parser = subparsers.add_parser(
        'send', help='send what the API processes journal (sender = external)',
        description='Run the sender process of sender = external: read the journals the '
                    'API processes of this host write to the journal directory, build their '
                    'notifications and publish them, through the drivers and topics of the '
                    'conf file, until SIGTERM or SIGINT. Journals of processes that are gone '
                    'are sent too. One per journal directory; run it as a service beside the '
                    'API, with the API\'s conf file and user.')
    _journal_arguments(parser)
    parser.set_defaults(func=_run_send, driver=None, transport_url=None)


def _run_send(args) -> int:
    import logging

    from audit_notifier import _config
    from audit_notifier.delivery import service
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(levelname)s %(name)s %(message)s')
    try:
        pipeline = _replay_pipeline(args)
    except _config.ConfigError:
        return 1                     # the pipeline logged the one line that says why
    return service.serve(pipeline)


# -- tail: live notifications from the bus -----------------------------------------------

def _add_tail(subparsers) -> None:
    parser = subparsers.add_parser(
        'tail', help='show the notifications on the message bus as they are published',
        description='Show, as they are published, the notifications on the exchange and '
                    'topics the filter configured in the conf file publishes to '
                    '(RabbitMQ). A private queue (exclusive, auto-delete) gets a copy of '
                    'each one: nothing is taken from Ceilometer or any other consumer, and '
                    'the queue is gone when tail stops.')
    _config_files(parser, 'the service\'s conf file (e.g. /etc/glance/glance-api.conf): '
                          'transport_url, topics, control_exchange; may be repeated')
    parser.add_argument('--format', choices=('cadf', 'glance'), dest='fmt',
                        help='only CADF or only Glance-format notifications (and only the '
                             'topics of that format)')
    parser.add_argument('--user', metavar='USER',
                        help='only those by this user: CADF initiator id or name, or a '
                             'Glance payload\'s user_id / receiver_user_id')
    parser.add_argument('--resource', metavar='ID',
                        help='only those about this resource: CADF target id, or a Glance '
                             'payload\'s id / image_id')
    parser.add_argument('--json', action='store_true',
                        help='one oslo.messaging envelope (JSON) per line')
    parser.add_argument('--count', type=_positive_int, metavar='N',
                        help='stop after N notifications')
    parser.add_argument('--timeout', type=_positive_float, metavar='SECONDS',
                        help='stop after this many seconds (exit 1 if --count was not '
                             'reached)')
    parser.add_argument('--exchange', help='exchange to read (default: control_exchange of '
                                           'the conf file, else the service\'s: glance, '
                                           'magnum)')
    parser.add_argument('--topic', action='append', dest='topics', metavar='TOPIC',
                        help='topic to read instead of the filter\'s; may be repeated')
    parser.set_defaults(func=_run_tail)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be 1 or more')
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError('must be more than 0')
    return value


def _run_tail(args) -> int:
    from audit_notifier import tail
    selection = tail.Selection(fmt=args.fmt, user=args.user, resource=args.resource)
    return tail.run(args.config_file, selection, json_mode=args.json, count=args.count,
                    timeout=args.timeout, exchange=args.exchange, topics=args.topics)


# -- verify: is a captured trail complete? ------------------------------------------------

def _add_verify(subparsers) -> None:
    parser = subparsers.add_parser(
        'verify', help='check that a captured trail of notifications is complete and '
                       'unaltered (trail = true)',
        description='Read notifications as a consumer stored them (JSON lines: one '
                    'oslo.messaging message body or envelope with its context per line) '
                    'or, with --config-file, from a private queue on the bus, and report '
                    'per stream, one line each: gaps (lost notifications), duplicates, '
                    'reordering, altered or forged notifications, digests that do not '
                    'match the chain and bad signatures. Exit status 1 when any is found, '
                    '2 when the input or a key cannot be read.')
    parser.add_argument('path', nargs='?', metavar='FILE', default='-',
                        help='the captured trail; - (the default) reads standard input')
    parser.add_argument('--key-file', metavar='PATH',
                        help='the HMAC key (trail_hmac_key_file) that signed the digests')
    parser.add_argument('--public-key', metavar='PATH',
                        help='the Ed25519 public key (PEM) of trail_ed25519_key_file')
    parser.add_argument('--allow-resends', action='store_true',
                        help='identical copies of a notification (at-least-once '
                             'delivery) are noted, not counted as problems')
    parser.add_argument('--ignore-order', action='store_true',
                        help='notifications read out of order are noted, not counted as '
                             'problems (a consumer that stores several queues, one per '
                             'priority, interleaves them)')
    _config_files(parser, 'read from the bus the filter of this conf file publishes to '
                          '(a private queue, as tail does) instead of FILE; may be '
                          'repeated')
    parser.add_argument('--count', type=_positive_int, metavar='N',
                        help='with --config-file: stop after N notifications')
    parser.add_argument('--timeout', type=_positive_float, metavar='SECONDS',
                        help='with --config-file: stop after this many seconds')
    parser.set_defaults(func=_run_verify)


def _run_verify(args) -> int:
    from audit_notifier import verify
    return verify.run(args.path, key_file=args.key_file, public_key=args.public_key,
                      allow_resends=args.allow_resends, ignore_order=args.ignore_order,
                      config_files=args.config_file,
                      count=args.count, timeout=args.timeout)


# -- check and routes: is the filter set up right? ----------------------------------------

def _add_check(subparsers) -> None:
    parser = subparsers.add_parser(
        'check', help='preflight: will the audit filter work in this service as configured?',
        description='Read the service\'s conf files and paste file as the service does and '
                    'say, one line each (OK, WARN, ERROR), whether the audit filter is in '
                    'its pipelines right after authtoken, whether its options and route map '
                    'load, whether the service user can write journal_dir, whether the '
                    'message bus answers (credentials are never printed) and which drivers '
                    'and topics each format uses. Nothing is created or sent. Exit status 1 '
                    'on any ERROR.')
    _config_files(parser, 'the service\'s conf file (e.g. /etc/glance/glance-api.conf); '
                          'may be repeated')
    parser.add_argument('--paste', metavar='PATH',
                        help='its paste file (default: [paste_deploy] config_file or [api] '
                             'api_paste_config of the conf, else <conf>-paste.ini or '
                             'api-paste.ini next to the last conf file)')
    parser.add_argument('--pipeline', metavar='NAME',
                        help='check only what this app, pipeline or composite of the paste '
                             'file leads to (default: every pipeline of the file)')
    parser.add_argument('--user', metavar='USER',
                        help='the user the service runs as, for journal_dir (default: the '
                             'current user; only root can check as another user)')
    parser.add_argument('--timeout', type=_positive_float, default=5.0, metavar='SECONDS',
                        help='longest wait for each message broker (default 5)')
    parser.set_defaults(func=_run_check)


def _run_check(args) -> int:
    from audit_notifier import preflight
    return preflight.run(args.config_file, paste=args.paste, pipeline=args.pipeline,
                         user=args.user, timeout=args.timeout)


def _add_routes(subparsers) -> None:
    parser = subparsers.add_parser(
        'routes', help='the route map in effect, or which route a request hits',
        description='Print the route map the filter uses with this configuration as a '
                    'table: method, path, kind, CADF action, event, target type, where the '
                    'target id comes from, the record fetched before the call, the usage '
                    '(Glance-format) rule, byte counting, and the formats that send '
                    'something for it. With --match, explain one request instead: the '
                    'route it hits and the parameters it binds, whether it is audited and '
                    'what each format sends, as the filter\'s own classifier decides.')
    _config_files(parser, 'the service\'s conf file with its [audit_notifier] section; '
                          'may be repeated')
    parser.add_argument('--route-map', metavar='glance|magnum|PATH',
                        help='route map instead of route_map of the conf file')
    parser.add_argument('--route-map-override', action='append', default=[],
                        metavar='FILE', help='override file instead of route_map_overrides '
                                             'of the conf file; may be repeated')
    parser.add_argument('--match', type=_request, metavar='"METHOD PATH"',
                        help='explain this request, e.g. "PATCH /v2/images/<id>"')
    parser.add_argument('--json', action='store_true', help='one JSON document')
    parser.set_defaults(func=_run_routes)


def _request(text: str) -> tuple[str, str]:
    from audit_notifier import route_table
    try:
        return route_table.parse_request(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc))


def _run_routes(args) -> int:
    from audit_notifier import route_table
    return route_table.run(args.config_file, route_map=args.route_map,
                           overrides=args.route_map_override, match=args.match,
                           as_json=args.json)


SUBCOMMANDS = [_add_demo, _add_stats, _add_replay, _add_send, _add_tail, _add_verify, _add_check,
               _add_routes]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='audit-notifier',
        description='Tools for audit_notifier, the CADF and Glance-format audit '
                    'notification filter for OpenStack APIs.')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND')
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    _quiet_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, 'func', None) is None:
        parser.print_help(sys.stderr)
        return 2
    return args.func(args)


if __name__ == '__main__':
    sys.exit(main())
