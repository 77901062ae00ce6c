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

"""The request path's hand-off to delivery, and the sender's life in each process.

:meth:`Delivery.submit` runs on the request path: it turns a phase of an API call
into a journal record (:mod:`.record`) and appends it (:mod:`.journal`): about
2-4 us, one ``write`` to the page cache, no network, no event building.  It is
called before the response's first byte leaves the filter (status and headers
known) and again when the call finishes, so a process killed at any moment loses
no call that got a response.  One sender thread per delivery and process
(:mod:`.sender`) does the rest.

The sender starts in the process that serves requests (at its first audited call),
so servers that load the app and then fork (uWSGI, mod_wsgi, gunicorn, Glance's
launcher) get one in every worker; under eventlet monkey-patching ``threading``
gives a green thread.  A delivery that is no longer referenced (a test suite that
builds one filter per test) stops its sender: the thread holds the sender, never
the delivery.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
import weakref

from oslo_config import cfg

from audit_notifier import trail as trail_mod
from audit_notifier._config import ConfigError
from audit_notifier.delivery import external as external_mod
from audit_notifier.delivery import follow as follow_mod
from audit_notifier.delivery import os_thread, process_hooks, record
from audit_notifier.delivery import stats as stats_mod
from audit_notifier.delivery.deadletter import DeadLetters
from audit_notifier.delivery.journal import Journal
from audit_notifier.delivery.pacing import GATHER
from audit_notifier.delivery.sender import Sender
from audit_notifier.exchange import RESPONDED

delivery_opts = [
    cfg.StrOpt('delivery_mode', default='journal',
               choices=[('journal', 'append every audited call\'s facts to a per-process '
                                    'journal on disk before it answers: nothing is lost, '
                                    'even on SIGKILL (a few microseconds per call)'),
                        ('memory', 'keep them in memory only, for hosts without a writable '
                                   'disk: what is not sent is lost when the process dies')],
               help='Where an API call\'s facts wait for the sender.'),
    cfg.StrOpt('sender', default='thread',
               choices=[('thread', 'a thread in each API process builds and publishes the '
                                   'notifications of that process\'s journal'),
                        ('external', 'API processes only journal; one audit-notifier send '
                                     'process per host (same conf file and journal_dir) '
                                     'builds and publishes them, so that this work never '
                                     'runs in an API process (its CPU time, its GIL). Needs '
                                     'delivery_mode = journal and no record look-ups after '
                                     'the call (record_lookups = false, or formats = cadf '
                                     'without record attachments)')],
               help='Who sends what the API processes journal.'),
    cfg.StrOpt('journal_dir', default='/var/lib/audit_notifier/journal',
               deprecated_name='spool_dir',
               help='Directory of the journals (one per process, mode 0600), checkpoints, '
                    'dead letters and stats files; writable by the service user. Journals '
                    'left by processes that are gone are sent by the next process, oldest '
                    'first.'),
    cfg.IntOpt('journal_max_bytes', default=1024 * 1024 * 1024, min=64 * 1024,
               deprecated_name='spool_max_bytes',
               help='Largest size of one process\'s journal on disk (what waits for the '
                    'bus).'),
    cfg.StrOpt('journal_overflow', default='drop_oldest', deprecated_name='spool_overflow',
               choices=[('drop_oldest', 'delete the oldest waiting records'),
                        ('drop_newest', 'do not keep the new record'),
                        ('block', 'the API call waits up to journal_block_seconds for room, '
                                  'then the new record is dropped')],
               help='What happens when the journal is full (journal_max_bytes on disk, '
                    'queue_size in memory). Every drop is counted and logged.'),
    cfg.FloatOpt('journal_block_seconds', default=1.0, min=0.0, max=30.0,
                 deprecated_name='spool_block_seconds',
                 help='With journal_overflow = block: longest wait of an API call for room.'),
    cfg.BoolOpt('journal_fsync', default=False, deprecated_name='spool_fsync',
                help='fsync every journal append: survives a machine crash, not only a '
                     'process crash (a write to the page cache already survives SIGKILL), '
                     'at a disk flush per API call.'),
    cfg.IntOpt('queue_size', default=10000, min=1,
               help='Records kept in memory: all of them with delivery_mode = memory, and '
                    'those kept while the journal directory cannot be written.'),
    cfg.IntOpt('dead_letter_after', default=3, min=1, max=100,
               help='Attempts of a notification that fails with an error other than a bus '
                    'outage before it is moved to the dead letters.'),
    cfg.IntOpt('stats_interval', default=60, min=0,
               help='Seconds between delivery-counter log lines (only when something '
                    'changed); 0 disables them. The counters are also written every 5 s '
                    'to <journal_dir>/<process>.stats.json for audit-notifier stats.'),
    cfg.IntOpt('background_max_rate', default=0, min=0,
               help='Highest rate, in journal records per second, at which each process\'s '
                    'sender works through a backlog (after an outage, a dead process\'s '
                    'journal). 0: no cap. Whatever the cap, while requests arrive and records '
                    'wait the sender takes at most a quarter of a CPU and rests between '
                    'slices of work, and it never goes slower than 5 times the rate '
                    'records arrive, so a backlog always shrinks. With sender = external '
                    'the same applies to the send process, whose arrivals are all the API '
                    'processes\' journal appends.'),
    cfg.FloatOpt('gather_seconds', default=GATHER, min=0.0, max=10.0,
                 help='While API calls arrive, how long the sender may hold a built '
                      'notification back to publish it with those of the calls that '
                      'follow (up to 100 journal records in one publish and one journal '
                      'commit, with one wake-up of the sender: less CPU per call in the '
                      'API process, most at a few calls per second per process). The '
                      'records are in the journal meanwhile: nothing waits only in '
                      'memory. Notifications of calls whose events need a record '
                      'look-up are built at once. 0: each batch is published as soon as '
                      'it is built. With sender = external, the send process reads the '
                      'API processes\' journals at this interval while calls arrive.'),
    cfg.BoolOpt('process_hooks', default=True,
                help='Install the process-wide hooks: flush at exit and on SIGTERM (when '
                     'the server has no SIGTERM handler of its own), and quiet '
                     'oslo.messaging\'s per-message error lines from the sender thread. '
                     'Off: the service closes the delivery itself.'),
]


class _Process:
    """The current pid without a system call per request; refreshed after fork."""
    pid = os.getpid()


_process = _Process()
os.register_at_fork(after_in_child=lambda: setattr(_process, 'pid', os.getpid()))


def check_journal_dir(path: str) -> None:
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise ConfigError('audit_notifier: option journal_dir: cannot create %s (%s); set '
                          'journal_dir to a directory the service user can write'
                          % (path, exc.strerror))
    if not os.path.isdir(path) or not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError('audit_notifier: option journal_dir: %s is not a directory this '
                          'process can write; set journal_dir to a directory the service '
                          'user can write' % path)


def _run_named(run, os_name: str) -> None:
    """The delivery thread: named for the OS (never raises), then ``run`` (the
    sender's loop)."""
    os_thread.name_this_thread(os_name)
    run()


class Delivery:
    """Journal, sender and leaves of one filter or notifier."""

    def __init__(self, emitter, route_for, leaf_factory, settings, response_headers):
        self.emitter = emitter
        self.route_for = route_for
        self.leaf_factory = leaf_factory
        self.settings = settings
        self.mode = settings.delivery_mode
        self.directory = settings.journal_dir if self.mode == 'journal' else None
        # (assembly.check_external_sender refused it without the journal)
        self.external = settings.sender == 'external' and self.directory is not None
        if self.directory is not None:
            check_journal_dir(self.directory)
        # Checked (and a signing key read) at start-up; the chain itself is the sender's.
        self.trail_config = trail_mod.TrailConfig.from_settings(settings)
        self.headers = frozenset(h.lower() for h in response_headers)
        self.stats = stats_mod.Stats()
        self._pid = None
        self._start_lock = threading.Lock()
        self._calls = itertools.count(1)
        self._journal = None
        self._sender = None
        self._thread = None
        if settings.process_hooks:
            process_hooks.install()           # at load: the main thread, before any fork
        process_hooks.register(self)

    # -- request path ---------------------------------------------------------------------
    def submit(self, phase: str, exchange) -> None:
        if self._pid != _process.pid:
            self._start()
        if phase == RESPONDED and self.directory is None:
            return                               # memory: nothing to keep safe early
        first = exchange.call is None
        if first:
            exchange.call = next(self._calls)
        self._journal.append(record.of_phase(phase, exchange, first, self.headers,
                                             self.emitter.redactor))
        sender = self._sender
        # A gathering sender is woken only for a call whose record look-up must not
        # wait (emitter.looks_up: a few attribute reads).
        if sender.idle or (sender.gathering and self.emitter.looks_up(exchange.route)):
            sender.wake.set()

    def count_filter_error(self) -> None:
        """Request path: an API call the filter failed to classify or journal.  The
        sender is started if need be, so that its stats file shows the count even
        when no call of this process was ever journaled."""
        if self._pid != _process.pid:
            try:
                self._start()
            except Exception:  # the caller logged the call's error; count it  # nosec B110
                pass
        self.stats.add('filter_errors')

    def submit_built(self, notes: list) -> None:
        """Notifications built outside an API call (task executor, conductor)."""
        if self._pid != _process.pid:
            self._start()
        fields = json.loads(json.dumps([list(n) for n in notes], default=str))
        self._journal.append({'t': 'b', 'c': next(self._calls), 'n': fields})
        if self._sender.idle:
            self._sender.wake.set()

    def _follower(self, owner: str):
        """The import follower of a new sender (delivery/follow.py), or None: option
        follow_imports off, no Glance format, or no record look-ups."""
        settings = self.settings
        subrequests = getattr(self.emitter, 'subrequests', None)
        if not (settings.follow_imports and 'glance' in self.emitter.formats and
                subrequests is not None):
            return None
        return follow_mod.Follower(self.emitter, subrequests, self.directory, owner,
                                   self.stats, timeout=settings.follow_imports_timeout,
                                   limit=settings.follow_imports_max)

    # -- lifecycle ------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            _process.pid = os.getpid()
            if self._pid == _process.pid:
                return
            # A forked child: nothing of the parent's journal, thread or leaves is ours.
            settings = self.settings
            self.stats = stats_mod.Stats('the journal' if self.directory else 'memory')
            journal = Journal(self.directory, max_bytes=settings.journal_max_bytes,
                              max_records=settings.queue_size,
                              overflow=settings.journal_overflow,
                              block_seconds=settings.journal_block_seconds,
                              fsync=settings.journal_fsync, stats=self.stats,
                              external=self.external)
            # The thread's Python name, and its OS name (top -H, ps -L: os_thread.py).
            if self.external:
                sender = external_mod.JournalOnly(journal, self.stats,
                                                  stats_interval=settings.stats_interval)
                name, os_name = 'journal', os_thread.JOURNAL_WRITER
            else:
                sender = self._sender_thread(journal)
                name, os_name = 'sender', os_thread.SENDER
            thread = threading.Thread(target=_run_named, daemon=True,
                                      args=(sender.run, os_name),
                                      name=process_hooks.THREAD_PREFIX + name)
            self._journal, self._sender, self._thread = journal, sender, thread
            self._pid = os.getpid()
            thread.start()
            # A delivery nobody references any more stops its sender.  Not at exit:
            # there close_all() stops it and waits (a finalizer would only signal).
            weakref.finalize(self, sender.stop, process_hooks.SHUTDOWN_SECONDS).atexit = False

    def _sender_thread(self, journal) -> Sender:
        settings = self.settings
        return Sender(journal, self.emitter, self.route_for, self.leaf_factory(),
                      DeadLetters(self.directory, journal.owner, self.stats), self.stats,
                      dead_letter_after=settings.dead_letter_after,
                      stats_interval=settings.stats_interval,
                      trail=trail_mod.Chain(self.trail_config, journal.owner,
                                            self.directory, self.emitter.publisher_id)
                      if self.trail_config.enabled else None,
                      follower=self._follower(journal.owner),
                      max_rate=settings.background_max_rate,
                      gather_seconds=settings.gather_seconds)

    @property
    def started(self) -> bool:
        return self._pid == os.getpid()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every record submitted so far was handled: sent, or
        dead-lettered or dropped (both counted and logged).  False on timeout, or
        when the bus is down."""
        if not self.started:
            return True
        sender = self._sender
        if self.external:
            return sender.flush(timeout)
        with sender.done:
            sender.hurry += 1                   # a gathering sender publishes now
            try:
                handled = self._wait_handled(self._journal.appended, timeout)
            finally:
                sender.hurry -= 1
        return handled and not self.stats.bus_is_down

    def _wait_handled(self, target: int, timeout: float) -> bool:
        """flush(), holding ``sender.done``: wait until ``target`` records were
        handled; False on timeout or when the sender thread ended first."""
        sender, journal = self._sender, self._journal
        deadline = time.monotonic() + timeout
        while sender.processed + journal.dropped < target:
            if sender.stopping and not self._thread.is_alive():
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sender.wake.set()
            sender.done.wait(min(left, 0.5))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Send what is waiting (up to ``timeout`` s), stop the sender, release the
        journal (left on disk for the next process if anything is unsent).  With
        ``sender = external``: release the journal at once; the sender process
        sends the rest and removes it."""
        if not self.started or self._sender.stopping:
            return
        self._sender.stop(timeout)
        self._thread.join(timeout + 1.0)

    stop = close

    # -- reporting ------------------------------------------------------------------------
    @property
    def counters(self) -> dict:
        if self.started:
            self.stats.counters['journaled'] = self._journal.appended
        return self.stats.counters

    @property
    def leaves(self) -> dict:
        """The running sender's leaves ({format: leaf}); None before the first call."""
        return self._sender.leaves if self.started else None

    def snapshot(self) -> dict:
        if not self.started:
            return self.stats.snapshot(unsent=0, open_calls=0, journal_bytes=0,
                                       oldest_unsent_age=0.0)
        return self._sender.snapshot()
