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


# -- stats and replay: operator tools on a spool directory ----------------------------------

def _spool_arguments(parser) -> None:
    parser.add_argument('--config-file', action='append', default=[], metavar='PATH',
                        help='the service\'s conf file with its [audit_notifier] section '
                             '(e.g. /etc/glance/glance-api.conf); may be repeated')
    parser.add_argument('--spool-dir', metavar='DIR',
                        help='spool directory (default: spool_dir from the conf file)')


def _pipeline(args, **overrides):
    from oslo_config import cfg

    from audit_notifier.assembly import Pipeline
    conf = cfg.ConfigOpts()
    conf([], project='audit_notifier', default_config_files=args.config_file or [])
    overrides = {k: v for k, v in overrides.items() if v}
    if args.spool_dir:
        overrides['spool_dir'] = args.spool_dir
    return Pipeline(dict(overrides, oslo_config_config=conf))


def _add_stats(subparsers) -> None:
    parser = subparsers.add_parser(
        'stats', help='delivery counters of the processes using a spool directory',
        description='Print the delivery counters (queued, sent, spooled, replayed, dropped, '
                    'send errors, queue depth, unsent spooled notifications and the age of '
                    'the oldest one) that each process writes to its spool directory.')
    _spool_arguments(parser)
    parser.add_argument('--json', action='store_true', help='one JSON object per process')
    parser.set_defaults(func=_run_stats)


def _run_stats(args) -> int:
    import json

    from audit_notifier.delivery import tools
    spool_dir = _pipeline(args).settings.spool_dir
    rows = tools.read_stats(spool_dir)
    if args.json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return 0
    if not rows:
        print('no audit_notifier process has written stats to %s' % spool_dir)
        return 0
    columns = ('process', 'alive', 'queued', 'sent', 'spooled', 'replayed', 'dropped',
               'send_errors', 'queue_depth', 'spooled_unsent', 'oldest_unsent_age')
    print('  '.join(columns))
    for row in rows:
        print('  '.join(str(row.get(c, '')) for c in columns))
    return 0


def _add_replay(subparsers) -> None:
    parser = subparsers.add_parser(
        'replay', help='re-send the notifications spooled by processes that are gone',
        description='Send, oldest first, every notification left in a spool directory by '
                    'processes that are no longer running, through the drivers and topics '
                    'of the conf file (or the options below), and remove what was sent. '
                    'Stops at the first failure; running it again sends nothing twice.')
    _spool_arguments(parser)
    parser.add_argument('--driver', help='notification driver (default: from the conf file)')
    parser.add_argument('--transport-url', help='message bus URL (default: from the conf '
                                                'file)')
    parser.set_defaults(func=_run_replay)


def _run_replay(args) -> int:
    from audit_notifier.delivery import tools
    pipeline = _pipeline(args, driver=args.driver, transport_url=args.transport_url)
    spool_dir = pipeline.settings.spool_dir
    result = tools.replay(spool_dir, pipeline.dispatcher.publishers)
    for publisher in pipeline.dispatcher.publishers.values():
        publisher.cleanup()
    if result.error:
        print('audit-notifier replay: stopped after %d notification(s): %s'
              % (result.sent, result.error), file=sys.stderr)
        return 1
    print('re-sent %d notification(s) from %d spool segment(s) in %s'
          % (result.sent, result.segments, spool_dir))
    return 0


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
