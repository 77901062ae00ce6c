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

"""Delivery counters, rate-limited log lines, the outage rule, and the stats file.

Counters: ``journaled`` (records of API call phases kept), ``built`` and ``sent``
(notifications), ``dropped`` (records lost to an overflow policy or a shutdown in
memory mode), ``dead_letters``, ``send_errors`` (failed publishes: bus or not),
``build_errors``, ``journal_errors`` (disk problems), ``corrupt_records``,
``filter_errors`` (API calls the filter failed to classify or journal: a bug, logged
with its traceback; such a call is served but not audited);
gauges: ``unsent`` (records not sent yet), ``open_calls``,
``oldest_unsent_age``, ``bus_down``, ``outages``.  The sender logs them
periodically (when something changed) and writes ``<journal_dir>/<owner>.stats.json``
for ``audit-notifier stats``.

Every log line that can repeat is rate-limited per condition (:meth:`Stats.limited`):
one line per ``LIMIT_SECONDS`` and condition, with the count it stood for.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from audit_notifier.logs import LIMIT_SECONDS, LimitedLog

LOG = logging.getLogger('audit_notifier.delivery')

COUNTERS = ('journaled', 'built', 'sent', 'dropped', 'dead_letters', 'send_errors',
            'build_errors', 'journal_errors', 'corrupt_records', 'filter_errors')


class Stats:
    def __init__(self, waiting_in: str = 'the journal'):
        self.waiting_in = waiting_in           # where notifications wait in an outage
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.outages = 0
        self._down_since: float | None = None
        self._outage_errors = 0
        self._limited = LimitedLog(LOG, LIMIT_SECONDS)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    def limited(self, level: int, condition: str, msg: str, *args, count: int = 1,
                exc_info: bool = False) -> None:
        """Log ``msg`` at most once per LIMIT_SECONDS for ``condition``; the next line
        says how many occurrences (``count`` each) it stood for."""
        self._limited(level, condition, msg, *args, count=count, exc_info=exc_info)

    # -- outages: one warning when it starts, one line when it ends ------------------------
    def bus_down(self, exc: BaseException) -> None:
        with self._lock:
            self.counters['send_errors'] += 1
            self._outage_errors += 1
            if self._down_since is not None:
                return
            self._down_since = time.time()
            self.outages += 1
        LOG.warning('audit_notifier: the message bus is unreachable (%s); notifications wait '
                    'in %s until it is back', ' '.join(str(exc).split())[:200],
                    self.waiting_in)

    def bus_up(self) -> None:
        if self._down_since is None:
            return
        with self._lock:
            if self._down_since is None:
                return
            took = time.time() - self._down_since
            errors, self._outage_errors = self._outage_errors, 0
            self._down_since = None
        LOG.warning('audit_notifier: the message bus is back after %.1f s (%d failed '
                    'publishes); waiting notifications are being sent', took, errors)

    @property
    def bus_is_down(self) -> bool:
        return self._down_since is not None

    # -- reporting ------------------------------------------------------------------------
    def snapshot(self, **gauges) -> dict:
        with self._lock:
            snap = dict(self.counters)
        snap.update(gauges)
        snap.update(bus_down=self.bus_is_down, outages=self.outages, pid=os.getpid(),
                    time=round(time.time(), 3))
        return snap


def format_line(snap: dict) -> str:
    return ('audit_notifier stats: journaled=%(journaled)d sent=%(sent)d '
            'dropped=%(dropped)d dead_letters=%(dead_letters)d send_errors=%(send_errors)d '
            'build_errors=%(build_errors)d journal_errors=%(journal_errors)d '
            'filter_errors=%(filter_errors)d '
            'unsent=%(unsent)d oldest_unsent_age=%(oldest_unsent_age).1fs' % snap)


def write_file(path: str, snap: dict) -> None:
    tmp = path + '.tmp'
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as f:
        json.dump(snap, f, sort_keys=True)
    os.replace(tmp, path)


class Reporter:
    """Writes a process's counters to its stats file (``path``; None: none) and,
    every ``interval`` seconds (0: never), one log line when they changed.  Called
    by the thread that owns the counters' process role (sender or journal thread)."""

    def __init__(self, path: str | None, interval: float):
        self.path = path
        self.interval = interval
        self._next_log = time.monotonic() + interval
        self._last_logged = None

    def __call__(self, snap: dict) -> dict:
        if self.path is not None:
            try:
                write_file(self.path, snap)
            except OSError:
                pass
        if self.interval and time.monotonic() >= self._next_log:
            self._next_log = time.monotonic() + self.interval
            key = tuple(snap[c] for c in COUNTERS) + (snap['unsent'],)
            if key != self._last_logged:
                self._last_logged = key
                LOG.info(format_line(snap))
        return snap
