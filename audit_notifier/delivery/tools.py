"""Operator tools on a spool directory: re-send it by hand, read the counters.

``replay`` sends the segments of processes that are gone (a live process re-sends
its own), oldest first per shard, through the configured drivers, and removes what
was sent; a segment sent in part keeps only its unsent records, so running it
again sends nothing twice.  ``stats`` reads the per-process stats files.
"""

from __future__ import annotations

import glob
import json
import os

from audit_notifier.delivery import spool as spool_mod


class ReplayResult:
    def __init__(self):
        self.sent = 0
        self.segments = 0
        self.error: str | None = None


def replay(spool_dir: str, publishers: dict) -> ReplayResult:
    """Send every orphaned record in ``spool_dir``; stop at the first failure.

    The segments are claimed first (renamed under this run's own name), so a
    service starting meanwhile does not send them too; what is left unsent becomes
    an orphan again when this run ends.
    """
    result = ReplayResult()
    owner = spool_mod.Owner(spool_dir)
    try:
        for _shard, paths in sorted(spool_mod.claim_orphans(owner).items()):
            for path in paths:
                if not _replay_segment(path, publishers, result):
                    return result
                result.segments += 1
    finally:
        owner.release()
    return result


def _replay_segment(path: str, publishers: dict, result: ReplayResult) -> bool:
    with open(path, 'rb') as f:
        lines = f.read().split(b'\n')
    complete = lines[:-1]                  # the part after the last newline is torn
    for index, line in enumerate(complete):
        try:
            record = json.loads(line)
            publishers[record['fmt']].publish(record['envelope'])
        except ValueError:
            continue                       # a corrupt record cannot be sent; skip it
        except Exception as exc:
            result.error = ' '.join(str(exc).split())[:300]
            _keep_unsent(path, complete[index:])
            return False
        result.sent += 1
    os.unlink(path)
    return True


def _keep_unsent(path: str, lines: list[bytes]) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(b''.join(line + b'\n' for line in lines))
    os.replace(tmp, path)


def read_stats(spool_dir: str) -> list[dict]:
    """One dict per process that wrote stats here, with ``alive`` and its backlog."""
    out = []
    for path in sorted(glob.glob(os.path.join(spool_dir, '*.stats.json'))):
        owner = os.path.basename(path)[:-len('.stats.json')]
        try:
            with open(path) as f:
                snap = json.load(f)
        except (OSError, ValueError):
            continue
        snap['process'] = owner
        snap['alive'] = spool_mod.owner_alive(spool_dir, owner)
        snap['spool_bytes'] = sum(os.path.getsize(p) for p in
                                  glob.glob(os.path.join(spool_dir, owner + '-s*.spool')))
        out.append(snap)
    return out
