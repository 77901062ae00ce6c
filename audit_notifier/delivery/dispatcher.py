"""The in-process queue and the sender thread behind it.

The request path calls :meth:`Dispatcher.submit`: one ``SimpleQueue.put`` (no lock
held across I/O, no network).  The sender thread turns each queued exchange phase
into notifications and publishes them.  The thread starts lazily in the process
that serves requests, so a server that loads the app and then forks (uWSGI,
mod_wsgi, gunicorn, Glance's launcher) gets a working sender in every worker.
Under eventlet monkey-patching ``threading`` gives a green thread.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from typing import Callable

from oslo_config import cfg

LOG = logging.getLogger(__name__)

dispatcher_opts = [
    cfg.IntOpt('queue_size', default=10000, min=1,
               help='Largest number of API calls waiting in memory for their events to '
                    'be built and sent.'),
]

_STOP = object()
_live: 'weakref.WeakSet[Dispatcher]' = weakref.WeakSet()


class RateLimitedLog:
    """At most one log line per ``interval`` seconds for a recurring condition."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._last = 0.0
        self.suppressed = 0

    def __call__(self, level: int, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            if self.suppressed:
                msg += ' (%d similar messages suppressed)' % self.suppressed
            self.suppressed = 0
            self._last = now
            LOG.log(level, msg, *args)
        else:
            self.suppressed += 1


class Dispatcher:
    """Queue of exchange phases; a sender thread builds and publishes their events."""

    def __init__(self, emitter, publishers: dict, queue_size: int):
        self.emitter = emitter
        self.publishers = publishers
        self.queue_size = queue_size
        self.counters = {'queued': 0, 'sent': 0, 'dropped': 0, 'send_errors': 0,
                         'build_errors': 0}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pid = None
        self._thread = None
        self._start_lock = threading.Lock()
        self._warn = RateLimitedLog()
        _live.add(self)

    # -- request path ----------------------------------------------------------------
    def submit(self, phase: str, exchange) -> None:
        if self._pid != os.getpid():
            self._start()
        if self._queue.qsize() >= self.queue_size:
            self.counters['dropped'] += 1
            self._warn(logging.WARNING, 'audit_notifier: event queue full (%d); dropping '
                       'events', self.queue_size)
            return
        self.counters['queued'] += 1
        self._queue.put((phase, exchange))

    # -- sender ------------------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # After a fork the parent's thread and queue contents are not ours.
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._run, name='audit-notifier-sender',
                                            daemon=True)
            self._thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            self._deliver(*item)

    def _deliver(self, phase: str, exchange) -> None:
        try:
            notes = self.emitter.notifications(phase, exchange)
        except Exception:
            self.counters['build_errors'] += 1
            LOG.exception('audit_notifier: building the events of %s %s failed',
                          exchange.environ.get('REQUEST_METHOD'), exchange.route.path)
            return
        for note in notes:
            envelope = self.emitter.envelope(note)
            try:
                self.publishers[note.fmt].publish(envelope)
            except Exception as exc:
                self.counters['send_errors'] += 1
                self._warn(logging.WARNING, 'audit_notifier: cannot send notifications (%s)',
                           ' '.join(str(exc).split())[:200])
            else:
                self.counters['sent'] += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far has been handled."""
        if self._pid != os.getpid():
            return True
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        if self._pid != os.getpid() or self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._pid = None


@atexit.register
def _flush_all() -> None:
    for dispatcher in list(_live):
        try:
            dispatcher.flush(5.0)
        except Exception:
            pass
