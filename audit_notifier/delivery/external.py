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

"""``sender = external``, in an API process: journal only, send nothing.

The request threads append to the journal as always (:mod:`.handoff`); no sender
thread builds or publishes here: the ``audit-notifier send`` process
(:mod:`.service`) reads the journal while it is written and sends it.  What stays
is one thread, :class:`JournalOnly`, that wakes every 5 s to write this process's
counters (``<owner>.stats.json``: what was journaled, dropped, how much the
external sender has confirmed) and, every ``stats_interval``, a log line when
they changed.  It has the attributes :meth:`Delivery.submit` reads of a sender
(``idle``, ``gathering``: never set, so an append wakes nothing).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import stats as stats_mod

LOG = logging.getLogger(__name__)

STATS_EVERY = 5.0
SEND_LOCK = 'audit-notifier-send.lock'    # held by the running audit-notifier send


def sender_running(directory: str) -> bool:
    """Does an ``audit-notifier send`` process serve ``directory`` now?"""
    path = os.path.join(directory, SEND_LOCK)
    if not os.path.exists(path):
        return False
    fd = journal_mod.try_lock(path)
    if fd is None:
        return True
    os.close(fd)
    return False


class JournalOnly:
    """Runs in its own thread (:meth:`run`); the rest is called by others."""

    idle = False                 # read by Delivery.submit: never woken by an append
    gathering = False
    leaves: dict = {}

    def __init__(self, journal, stats, *, stats_interval: float = 60.0):
        self.journal = journal
        self.stats = stats
        self.wake = threading.Event()
        self.stopping = False
        self._reporter = stats_mod.Reporter(
            os.path.join(journal.directory, journal.owner + '.stats.json'), stats_interval)
        if not sender_running(journal.directory):
            LOG.warning('audit_notifier: sender = external but no audit-notifier send '
                        'process serves %s; notifications wait in the journal (up to '
                        'journal_max_bytes per process) until one runs', journal.directory)

    def run(self) -> None:
        while not self.stopping:
            try:
                self.report()
            except Exception:
                self.stats.limited(logging.ERROR, 'reporter', 'audit_notifier: writing the '
                                   'delivery counters failed; retried in %d s',
                                   STATS_EVERY, exc_info=True)
            self.wake.wait(STATS_EVERY)
        self.journal.close(keep=False)    # kept if it has records: the sender finishes it
        self.report()

    def unsent(self) -> int:
        """Records journaled here and not yet confirmed by the external sender."""
        journal = self.journal
        _position, confirmed = journal.confirmed()
        return max(0, journal.appended - journal.dropped - confirmed)

    def flush(self, timeout: float) -> bool:
        """Wait (polling the checkpoint) until the external sender has confirmed
        every record appended so far; False on timeout."""
        target = self.journal.last_position
        deadline = time.monotonic() + timeout
        pause = 0.005
        while self.journal.confirmed()[0] <= target:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)
        return True

    def stop(self, timeout: float) -> None:
        self.stopping = True
        self.wake.set()

    def snapshot(self) -> dict:
        self.stats.counters['journaled'] = self.journal.appended
        return self.stats.snapshot(unsent=self.unsent(), open_calls=0,
                                   journal_bytes=self.journal.disk_bytes,
                                   oldest_unsent_age=0.0, sender='external')

    def report(self) -> dict:
        return self._reporter(self.snapshot())
