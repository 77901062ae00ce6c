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
    parser.add_argument('--paste', metavar='PATH[#NAME]',
                        help='paste file to load instead of the shipped demo-paste.ini '
                             '(pipeline NAME, default main)')
    parser.set_defaults(func=_run_demo)


def _run_demo(args) -> int:
    from audit_notifier.demo import runner
    return runner.run(json_mode=args.json, paste=args.paste)


# -- stats and replay: operator tools on a journal directory --------------------------------

def _journal_arguments(parser) -> None:
    parser.add_argument('--config-file', action='append', default=[], metavar='PATH',
                        help='the service\'s conf file with its [audit_notifier] section '
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
    parser.set_defaults(func=_run_stats)


def _run_stats(args) -> int:
    import json

    from audit_notifier.delivery import deadletter, tools
    directory = _pipeline(args).delivery.directory
    rows = tools.read_stats(directory)
    dead = deadletter.count(directory)
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


def _run_replay(args) -> int:
    import logging

    from audit_notifier.delivery import tools
    # What the sender logs (and the log driver's notifications) go to stderr.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(levelname)s %(name)s %(message)s')
    pipeline = _pipeline(args, driver=args.driver, transport_url=args.transport_url)
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


SUBCOMMANDS = [_add_demo, _add_stats, _add_replay]


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
