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

"""Dead letters: records and notifications that failed for a reason other than the bus.

A record the builder cannot use (corrupt, from an unknown route, or a builder bug)
and a notification the bus leaf rejects with an error that is not a connection
problem (a serialisation bug, a changed library) go here after a bounded number of
attempts, so they never block what follows and are never retried forever.

``<journal_dir>/<owner>.dead.jsonl``: one JSON object per line, ``time``, ``stage``
(``build`` or ``send``), ``error`` (one line), and ``record`` (the journal record)
or ``fmt`` + ``envelope`` (the notification).  Mode 0600; bytes are written as
text.  ``audit-notifier replay --dead-letters`` re-sends them after a fix and keeps
only what fails again.  Without a journal directory (``delivery_mode = memory``)
dead letters are logged and counted only.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time

SUFFIX = '.dead.jsonl'


def _text(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode('utf-8', 'replace')
    return str(value)


def encode(entry: dict) -> bytes:
    return (json.dumps(entry, default=_text, separators=(',', ':'), sort_keys=True)
            + '\n').encode('utf-8')


class DeadLetters:
    def __init__(self, directory: str | None, owner: str, stats):
        self.path = os.path.join(directory, owner + SUFFIX) if directory else None
        self.stats = stats
        self._lock = threading.Lock()

    def add(self, stage: str, error: str, *, record: dict | None = None,
            fmt: str | None = None, envelope: dict | None = None) -> None:
        entry = {'time': round(time.time(), 3), 'stage': stage, 'error': error[:1000]}
        if record is not None:
            entry['record'] = record
        if envelope is not None:
            entry.update(fmt=fmt, envelope=envelope)
        self.stats.add('dead_letters')
        what = (envelope or {}).get('event_type') or 'a journal record'
        if self.path is None:
            self.stats.limited(logging.ERROR, 'dead-letter-' + stage,
                               'audit_notifier: dead letter (%s, no journal directory to '
                               'keep it): %s: %s', stage, what, error)
            return
        try:
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, encode(entry))
                finally:
                    os.close(fd)
        except OSError as exc:
            problem = exc.strerror or str(exc)
        else:
            problem = None
        if problem is not None:     # logged outside the handler: oslo.log would repeat it
            self.stats.add('journal_errors')
            self.stats.limited(logging.ERROR, 'dead-letter-write',
                               'audit_notifier: cannot write the dead letter of %s to %s (%s); '
                               'error was: %s', what, self.path, problem, error)
            return
        self.stats.limited(logging.ERROR, 'dead-letter-' + stage,
                           'audit_notifier: %s moved to the dead letters in %s (%s failed: '
                           '%s); fix the cause, then run audit-notifier replay '
                           '--dead-letters', what, self.path, stage, error)


def files(directory: str) -> list[str]:
    return sorted(glob.glob(os.path.join(glob.escape(directory), '*' + SUFFIX)))


def count(directory: str) -> int:
    total = 0
    for path in files(directory):
        try:
            with open(path, 'rb') as f:
                total += sum(1 for line in f if line.strip())
        except OSError:
            pass
    return total


def read(path: str) -> tuple[list[dict], int]:
    """The entries of one dead-letter file, and how many lines were unreadable."""
    entries, bad = [], 0
    with open(path, 'rb') as f:
        for line in f:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(entry, dict):
                entries.append(entry)
            else:
                bad += 1
    return entries, bad


def rewrite(path: str, entries: list[dict]) -> None:
    """Keep only ``entries`` in ``path`` (removed when empty)."""
    if not entries:
        os.unlink(path)
        return
    tmp = path + '.tmp'
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'wb') as f:
        for entry in entries:
            f.write(encode(entry))
    os.replace(tmp, path)
