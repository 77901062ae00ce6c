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

"""Process-wide side effects of audit_notifier, all here, all optional.

With ``process_hooks = true`` (the default), the first delivery that starts in a
process installs:

* an ``atexit`` function that stops every live delivery (sends what it can within
  ``SHUTDOWN_SECONDS``; in journal mode the rest stays on disk for the next process);
* a SIGTERM handler that does the same and then lets SIGTERM end the process as
  before, only when the process had no handler of its own (``SIG_DFL``) and only
  from the main thread (servers such as gunicorn or oslo.service install their own;
  their shutdown then reaches ``atexit``);
* a logging filter on oslo.messaging's driver loggers, kombu and amqp that drops
  their records emitted by audit_notifier's sender threads: a bus outage is reported
  once by audit_notifier, not once per notification by the drivers.

One more, not optional, installed only where it is needed: when oslo.messaging
lacks ``Transport._send_notification`` (:mod:`.oslo_private`), the plain leaf
sends through oslo's public ``messaging`` driver, which logs a failed send instead
of raising; :func:`watch_send_failures` puts a filter on that driver's logger
(``oslo_messaging.notify.messaging``) that takes such a record, in the sending
thread only, as the failure signal (and does not pass on its copy of the payload).

``process_hooks = false`` installs none of the three above: the service then calls
``close()`` on the filter's delivery (``middleware.delivery``) or
:func:`close_all` itself before it exits, or relies on the journal (nothing that
was journaled is lost; it is sent by the next process).
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import weakref

LOG = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 5.0
THREAD_PREFIX = 'audit-notifier-'
QUIET_LOGGERS = ('oslo.messaging._drivers.impl_rabbit', 'oslo.messaging._drivers.amqpdriver',
                 'oslo.messaging._drivers.impl_kafka', 'oslo.messaging.transport',
                 'kombu', 'amqp')

_live: 'weakref.WeakSet' = weakref.WeakSet()
_lock = threading.Lock()
_installed = False


def register(delivery) -> None:
    """Stop ``delivery`` at exit (weakly held: a dropped filter is not kept alive)."""
    _live.add(delivery)


def close_all(timeout: float = SHUTDOWN_SECONDS) -> None:
    for delivery in list(_live):
        try:
            delivery.close(timeout)
        except Exception:
            LOG.exception('audit_notifier: shutting down delivery failed')


class _SenderThreadFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not threading.current_thread().name.startswith(THREAD_PREFIX)


_sender_filter = _SenderThreadFilter()


def install() -> None:
    """Install the hooks once per process (idempotent; see the module docstring)."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    atexit.register(close_all)
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if _sender_filter not in logger.filters:
            logger.addFilter(_sender_filter)
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        pass


class SendFailures(logging.Filter):
    """While a leaf sends (``local.watching``), an ERROR record of oslo's messaging
    driver is noted in ``local.failed`` and dropped."""

    def __init__(self):
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        local = self.local
        if getattr(local, 'watching', False) and record.levelno >= logging.ERROR:
            local.failed = record.getMessage().split('.', 1)[0][:200]
            return False
        return True


SEND_FAILED_LOGGER = 'oslo_messaging.notify.messaging'
_send_failures: SendFailures | None = None


def watch_send_failures() -> SendFailures:
    """The filter on oslo's messaging driver logger (installed once per process)."""
    global _send_failures
    with _lock:
        if _send_failures is None:
            _send_failures = SendFailures()
            logging.getLogger(SEND_FAILED_LOGGER).addFilter(_send_failures)
            LOG.warning('audit_notifier: oslo.messaging lacks '
                        'Transport._send_notification; failed sends are recognised '
                        'from its driver\'s log records instead')
        return _send_failures


def _on_sigterm(signum, frame) -> None:
    close_all(SHUTDOWN_SECONDS)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
