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


SUBCOMMANDS = [_add_demo]


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
