"""The request path's hand-over, the builder thread, and the shard publishers.

``submit`` (request path) costs one queue put: no lock held across I/O, no network,
no disk.  A builder thread turns each API-call phase into notifications and routes
each to a shard by a stable hash of its resource id; each shard publishes in order
and keeps what the bus does not take in its spool (:mod:`.shard`, :mod:`.spool`).

Threads start lazily in the process that serves requests, so servers that load the
app and then fork (uWSGI, mod_wsgi, gunicorn, Glance's launcher) get working
senders in every worker.  Under eventlet monkey-patching ``threading`` gives green
threads and a green-aware queue is used.  On interpreter exit (and on SIGTERM when
the server has not installed its own handler) what is queued goes to the bus or,
failing that, to the spool.

``delivery_mode = write_ahead`` builds the notifications on the request path and
appends them to the spool before the call returns: nothing is lost even on SIGKILL,
at the cost of building (and, with lookups, one in-process GET) plus a file append
per notification on the request path.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import signal
import threading
import time
import weakref
import zlib

from oslo_config import cfg

from audit_notifier._config import ConfigError
from audit_notifier.delivery import shard as shard_mod
from audit_notifier.delivery import spool as spool_mod
from audit_notifier.delivery import stats as stats_mod

LOG = logging.getLogger(__name__)

dispatcher_opts = [
    cfg.StrOpt('delivery_mode', default='queue',
               choices=[('queue', 'hand the facts to an in-memory queue; spool only when the '
                                  'bus is down or slow (a few microseconds per call)'),
                        ('write_ahead', 'append every notification to the spool before the '
                                        'call returns: no loss even on SIGKILL, costs event '
                                        'building and a file append on the request path')],
               help='How an API call hands its notifications over.'),
    cfg.IntOpt('queue_size', default=10000, min=1,
               help='API call phases waiting in memory for their notifications to be built. '
                    'When it is full (the process has no CPU left for its sender), a call '
                    'waits up to queue_full_wait seconds for room: bounded back-pressure '
                    'instead of a lost event.'),
    cfg.FloatOpt('queue_full_wait', default=2.0, min=0.0, max=30.0,
                 help='Longest wait of an API call for room in a full queue; only after it '
                      'is a call\'s event dropped (counted and logged).'),
    cfg.IntOpt('sender_threads', default=4, min=1, max=64,
               help='Publisher threads. Notifications about one resource always use the same '
                    'thread, so they reach the bus in the order they happened.'),
    cfg.StrOpt('spool_dir', default='/var/lib/audit_notifier/spool',
               help='Directory for notifications the bus cannot take right now (one spool '
                    'per process; left-over spools of dead processes are re-sent first).'),
    cfg.IntOpt('spool_max_bytes', default=1024 * 1024 * 1024, min=1024,
               help='Largest size of one process\'s spool.'),
    cfg.StrOpt('spool_overflow', default='drop_oldest',
               choices=[('drop_oldest', 'delete the oldest spooled notifications'),
                        ('drop_newest', 'do not keep the new notification'),
                        ('block', 'wait up to spool_block_seconds for room, then drop the '
                                  'new notification')],
               help='What happens when the spool reaches spool_max_bytes. Every drop is '
                    'counted and logged (at most once a minute).'),
    cfg.FloatOpt('spool_block_seconds', default=1.0, min=0.0, max=30.0,
                 help='With spool_overflow = block: longest wait for room.'),
    cfg.BoolOpt('spool_fsync', default=False,
                help='fsync every spool append: survives a machine crash, not just a process '
                     'crash (a file append already survives SIGKILL), at a disk flush per '
                     'notification.'),
    cfg.IntOpt('stats_interval', default=60, min=0,
               help='Seconds between delivery-counter log lines (only when something '
                    'changed); 0 disables them. The counters are also written every few '
                    'seconds to <spool_dir>/<process>.stats.json for audit-notifier stats.'),
]

class _Process:
    """The current pid without a system call per request; refreshed after fork."""
    pid = os.getpid()


_process = _Process()
os.register_at_fork(after_in_child=lambda: setattr(_process, 'pid', os.getpid()))

_STOP = object()
BUILT = 'built'        # a submit() phase whose payload is a list of ready Notifications
_live: 'weakref.WeakSet[Dispatcher]' = weakref.WeakSet()


def make_queue():
    """SimpleQueue normally; a green-aware Queue when eventlet patched threading."""
    try:
        from eventlet import patcher
        if patcher.is_monkey_patched('thread'):
            return queue.Queue()
    except ImportError:
        pass
    return queue.SimpleQueue()


def shard_of(key: str, shards: int) -> int:
    return zlib.crc32(key.encode('utf-8', 'replace')) % shards


def check_spool_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError('audit_notifier: option spool_dir: cannot create %s (%s); set '
                          'spool_dir to a directory the service user can write'
                          % (path, exc.strerror))
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError('audit_notifier: option spool_dir: %s is not writable by this '
                          'process; set spool_dir to a directory the service user can write'
                          % path)


class Dispatcher:
    """Hand-over from the request path to the publishers."""

    def __init__(self, emitter, publisher_factory, settings):
        self.emitter = emitter
        # Each shard publishes through its own transport: RabbitMQ keeps order only
        # within one connection, and a shared pool may hand a thread another one.
        self.publisher_factory = publisher_factory
        self.publishers = publisher_factory()
        self.mode = settings.delivery_mode
        self.queue_size = settings.queue_size
        self.queue_full_wait = settings.queue_full_wait
        self.shards = settings.sender_threads
        self.spool_dir = settings.spool_dir
        self.spool_max_bytes = settings.spool_max_bytes
        self.overflow = settings.spool_overflow
        self.block_seconds = settings.spool_block_seconds
        self.fsync = settings.spool_fsync
        self.stats_interval = settings.stats_interval
        check_spool_dir(self.spool_dir)
        self._pid = None
        self._start_lock = threading.Lock()
        # Orders every put before close()'s stop marker (uncontended: ~0.1 us).
        self._submit_lock = threading.Lock()
        self._closed = False
        self._stopped = threading.Event()
        self.stats = stats_mod.Stats()
        _live.add(self)
        _install_sigterm_handler()          # at load: the main thread, before any fork

    @property
    def counters(self) -> dict:
        return self.stats.counters

    def all_publishers(self) -> list:
        """Every Publisher in use: the spare set and each running shard's."""
        sets = [self.publishers]
        if self._pid == os.getpid():
            sets.extend(w.publishers for w in self._workers)
        return [p for s in sets for p in s.values()]

    # -- request path ---------------------------------------------------------------------
    def submit(self, phase: str, exchange) -> None:
        if self._pid != _process.pid:
            self._start()
        if self.mode == 'write_ahead':
            self._write_ahead(phase, exchange)
            return
        q = self._queue
        if q.qsize() >= self.queue_size and not self._wait_for_room(q):
            self.stats.add('dropped')
            self.stats.queue_full(self.queue_size)
            return
        with self._submit_lock:
            if not self._closed:
                self.stats.counters['queued'] += 1
                q.put((phase, exchange))
                return
        # Shutting down (a server answers calls while SIGTERM is handled): the
        # notifications go straight to the spool, which the next process re-sends.
        self._write_ahead(phase, exchange)

    def _wait_for_room(self, q) -> bool:
        until = time.monotonic() + self.queue_full_wait
        pause = 0.0005
        while time.monotonic() < until:
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
            if q.qsize() < self.queue_size:
                return True
        return False

    def _write_ahead(self, phase: str, exchange) -> None:
        self.stats.add('queued')
        for fmt, envelope, index in self._build(phase, exchange):
            worker = self._workers[index]
            if worker.spool.append(spool_mod.encode(fmt, envelope)):
                self.stats.add('spooled')
            else:
                worker._to_spool((fmt, envelope), drain=False)   # cap: overflow policy
            if not self._closed:
                worker.fifo.put(None)                  # wake the shard

    # -- lifecycle ------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            _process.pid = os.getpid()
            if self._pid == _process.pid:
                return
            # A forked child: nothing of the parent's threads, queues or locks is ours.
            self.stats = stats_mod.Stats()
            self._owner = spool_mod.Owner(self.spool_dir)
            cap = spool_mod.SpoolCap(self.spool_max_bytes)
            # Small enough that drop_oldest always has a whole old segment to drop.
            segment_bytes = max(16 * 1024, min(spool_mod.SEGMENT_BYTES,
                                               self.spool_max_bytes // (8 * self.shards)))
            adopted = spool_mod.claim_orphans(self._owner)
            per_shard: dict[int, list] = {}
            for index, paths in sorted(adopted.items()):
                per_shard.setdefault(index % self.shards, []).extend(paths)
            spill_at = max(100, self.queue_size // self.shards)
            self._workers = [
                shard_mod.ShardWorker(
                    i, self.publisher_factory(),
                    spool_mod.ShardSpool(self._owner, i, cap, self.fsync, per_shard.get(i),
                                         segment_bytes),
                    self.stats, self.overflow, self.block_seconds, spill_at)
                for i in range(self.shards)]
            self._queue = make_queue()
            self._closed = False
            self._stopped = threading.Event()
            self._pid = os.getpid()          # before the threads: they check it
            for worker in self._workers:
                worker.fifo = make_queue()
                worker.start()
            self._builder = threading.Thread(target=self._build_loop, daemon=True,
                                             name='audit-notifier-builder')
            self._builder.start()
            self._reporter = threading.Thread(target=self._report_loop, daemon=True,
                                              name='audit-notifier-stats')
            self._reporter.start()
            _install_sigterm_handler()
            quiet_sender_threads()
            if any(adopted.values()):
                LOG.info('audit_notifier: re-sending %d spool segment(s) left by earlier '
                         'processes', sum(len(p) for p in adopted.values()))
                for worker in self._workers:
                    worker.fifo.put(None)

    def submit_built(self, notes: list) -> None:
        """Queue notifications built outside an API call (task executor, conductor)."""
        self.submit(BUILT, notes)

    def _build(self, phase, exchange):
        try:
            if phase == BUILT:
                notes = [n for n in exchange if self.emitter.filter.enabled(n.event_type)]
            else:
                notes = self.emitter.notifications(phase, exchange)
        except Exception:
            self.stats.add('build_errors')
            LOG.exception('audit_notifier: building notifications (%s) failed', phase)
            return []
        out = []
        for note in notes:
            out.append((note.fmt, self.emitter.envelope(note),
                        shard_of(note.shard or '', self.shards)))
        self.stats.add('built', len(out))
        return out

    def _build_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                for worker in self._workers:
                    worker.fifo.put(shard_mod.STOP)
                return
            if type(item) is tuple and len(item) == 3 and item[0] is shard_mod.FLUSH:
                self._flush_shards(item[1], item[2])
                continue
            for fmt, envelope, index in self._build(*item):
                self._workers[index].fifo.put((fmt, envelope))

    def _flush_shards(self, done: threading.Event, deadline: float) -> None:
        events = []
        for worker in self._workers:
            ev = threading.Event()
            worker.fifo.put((shard_mod.FLUSH, ev, max(0.0, deadline - time.monotonic())))
            events.append(ev)
        for ev in events:
            ev.wait(max(0.0, deadline - time.monotonic()))
        self._last_flush_clean = all(ev.is_set() for ev in events) and \
            all(w.flushed_clean for w in self._workers)
        done.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far was published.

        True only if it all reached the bus; False on timeout or when some of it is
        still in the spool (the bus is down).
        """
        if self._pid != os.getpid():
            return True
        if self._closed:
            return all(w.spool.records <= 0 for w in self._workers)
        done = threading.Event()
        self._last_flush_clean = False
        self._queue.put((shard_mod.FLUSH, done, time.monotonic() + timeout))
        return done.wait(timeout + 1) and self._last_flush_clean

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, spool what cannot be sent, stop the threads."""
        if self._pid != os.getpid() or self._closed:
            return
        with self._submit_lock:
            self._closed = True
            self._queue.put(_STOP)
        self._stopped.set()
        self._builder.join(timeout)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.thread.join(max(0.1, deadline - time.monotonic()))
        unsent = sum(max(0, w.spool.records) for w in self._workers)
        if unsent:
            self._write_stats()           # left for audit-notifier stats; spool is adopted later
        else:
            _remove(os.path.join(self.spool_dir, self._owner.name + '.stats.json'))
        self._owner.release()

    stop = close

    # -- reporting ------------------------------------------------------------------------
    def snapshot(self) -> dict:
        if self._pid != os.getpid():
            return self.stats.snapshot(0, 0, None)
        depth = self._queue.qsize() + sum(w.fifo.qsize() for w in self._workers)
        unsent = sum(max(0, w.spool.records) for w in self._workers)
        oldest = None
        if unsent:
            stamps = [w.spool.oldest_timestamp() for w in self._workers if w.spool.records > 0]
            stamps = [s for s in stamps if s]
            oldest = min(stamps) if stamps else None
        return self.stats.snapshot(depth, unsent, oldest)

    def _write_stats(self) -> dict:
        snap = self.snapshot()
        try:
            stats_mod.write_file(os.path.join(self.spool_dir, self._owner.name + '.stats.json'),
                                 snap)
        except OSError:
            pass
        return snap

    def _report_loop(self) -> None:
        last_logged = None
        next_log = time.monotonic() + self.stats_interval
        stopped = self._stopped
        while self._pid == os.getpid() and not self._closed:
            if stopped.wait(5.0) or self._closed:
                return
            snap = self._write_stats()
            if self.stats_interval and time.monotonic() >= next_log:
                next_log = time.monotonic() + self.stats_interval
                key = tuple(snap[c] for c in stats_mod.COUNTERS) + (snap['spooled_unsent'],)
                if key != last_logged:
                    last_logged = key
                    LOG.info(stats_mod.format_line(snap))


class _SenderThreadFilter(logging.Filter):
    """Drops oslo.messaging's per-publish error lines logged by our sender threads:
    an outage is reported once by audit_notifier itself, not once per notification."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not threading.current_thread().name.startswith('audit-notifier-')


_QUIET_LOGGERS = ('oslo.messaging._drivers.impl_rabbit', 'oslo.messaging._drivers.amqpdriver',
                  'oslo.messaging._drivers.impl_kafka', 'oslo.messaging.transport',
                  'kombu', 'amqp')
_sender_filter = _SenderThreadFilter()


def quiet_sender_threads() -> None:
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if _sender_filter not in logger.filters:
            logger.addFilter(_sender_filter)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def close_all(timeout: float = 10.0) -> None:
    for dispatcher in list(_live):
        try:
            dispatcher.close(timeout)
        except Exception:
            LOG.exception('audit_notifier: shutting down delivery failed')


atexit.register(close_all)
_sigterm_installed = False


def _install_sigterm_handler() -> None:
    """Flush on SIGTERM, unless the server handles SIGTERM itself (then atexit does)."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    _sigterm_installed = True
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
    except (ValueError, OSError):
        return

    def on_sigterm(signum, frame):
        close_all(5.0)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
