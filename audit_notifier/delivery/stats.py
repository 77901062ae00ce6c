"""Delivery counters, the one-warning-per-outage rule, and the stats file.

Counters: queued (API call phases handed over), built, sent, spooled, replayed,
dropped, send_errors, build_errors; gauges: queue depth, spooled-and-unsent, and
the age of the oldest unsent notification.  They are logged periodically (only
when something changed) and written to ``<spool_dir>/<owner>.stats.json``, where
``audit-notifier stats`` reads them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

LOG = logging.getLogger('audit_notifier.delivery')

COUNTERS = ('queued', 'built', 'sent', 'spooled', 'replayed', 'dropped', 'send_errors',
            'build_errors')


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.outages = 0
        self._down_since: float | None = None
        self._outage_errors = 0
        self._last_overflow_log = float('-inf')
        self._overflow_suppressed = 0

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] += n

    # -- outages: one warning when it starts, one line when it ends ------------------------
    def bus_down(self, exc: BaseException) -> None:
        with self._lock:
            self.counters['send_errors'] += 1
            self._outage_errors += 1
            if self._down_since is not None:
                return
            self._down_since = time.time()
            self.outages += 1
        LOG.warning('audit_notifier: the message bus is unreachable (%s); notifications go '
                    'to the local spool until it is back', ' '.join(str(exc).split())[:200])

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
                    'publishes); spooled notifications are being re-sent', took, errors)

    @property
    def bus_is_down(self) -> bool:
        return self._down_since is not None

    def overflow(self, policy: str, dropped: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_overflow_log < 60:
                self._overflow_suppressed += dropped
                return
            suppressed, self._overflow_suppressed = self._overflow_suppressed, 0
            self._last_overflow_log = now
        LOG.error('audit_notifier: the spool is full (spool_max_bytes); overflow policy %s '
                  'dropped %d notification(s)%s', policy, dropped + suppressed,
                  ' in the last minute' if suppressed else '')

    def queue_full(self, size: int) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_overflow_log < 60:
                self._overflow_suppressed += 1
                return
            suppressed, self._overflow_suppressed = self._overflow_suppressed, 0
            self._last_overflow_log = now
        LOG.error('audit_notifier: %d API calls are waiting for their notifications to be '
                  'built (queue_size); dropped %d call(s)%s: the process is out of CPU for '
                  'its sender', size, 1 + suppressed,
                  ' in the last minute' if suppressed else '')

    # -- reporting ------------------------------------------------------------------------
    def snapshot(self, depth: int, unsent_spooled: int, oldest: float | None) -> dict:
        with self._lock:
            snap = dict(self.counters)
        snap.update(queue_depth=depth, spooled_unsent=unsent_spooled,
                    oldest_unsent_age=round(time.time() - oldest, 3) if oldest else 0.0,
                    bus_down=self.bus_is_down, outages=self.outages, pid=os.getpid(),
                    time=round(time.time(), 3))
        return snap


def format_line(snap: dict) -> str:
    return ('audit_notifier stats: queued=%(queued)d sent=%(sent)d spooled=%(spooled)d '
            'replayed=%(replayed)d dropped=%(dropped)d send_errors=%(send_errors)d '
            'queue_depth=%(queue_depth)d spooled_unsent=%(spooled_unsent)d '
            'oldest_unsent_age=%(oldest_unsent_age).1fs' % snap)


def write_file(path: str, snap: dict) -> None:
    tmp = path + '.tmp'
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), 'w') as f:
        json.dump(snap, f, sort_keys=True)
    os.replace(tmp, path)
