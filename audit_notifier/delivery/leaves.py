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

"""The one interface between the sender and the bus, and its leaves.

A leaf has one method that matters, ``publish_many(envelopes)``: it hands the
envelopes (complete oslo.messaging notifications, built by the sender) to the bus
in order and returns, or raises (``between``, when given, is called before each
envelope of a batched publish: the sender lets a request thread have the GIL
there).  :class:`BusUnavailable` means the bus could not take them (connection
refused or lost, timeout, broker gone): the sender keeps them and tries again
later.  Any other exception is a bug (ours or a dependency's) and
is treated as such: logged with its traceback, counted, dead-lettered.

* :class:`OsloLeaf`, the plain path: oslo.messaging's notification drivers for
  the configured driver names (messagingv2, messaging, log, routing, test, noop),
  one envelope at a time (``rabbit_batch_publish = false``, drivers and transports
  the fast leaf does not cover, or its private names missing).  When
  oslo.messaging lacks the private ``_send_notification`` (:mod:`.oslo_private`),
  its public driver is used and a failed send is learnt from the driver's error
  log record (:func:`.process_hooks.watch_send_failures`).
* the fast leaf (``rabbit_batch_publish = true``, the default; messaging/messagingv2
  over ``rabbit://``): :class:`~audit_notifier.delivery.rabbit_batch.RabbitBatchSender`,
  batches in AMQP transactions; it needs private names of oslo.messaging and
  py-amqp (:mod:`.oslo_private`), checked at start-up, else the plain path is used.

Transports and connections are made at first use, in the process that publishes
(never before a fork).
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Callable, Iterable

import oslo_messaging
from oslo_config import cfg
from stevedore import named

from audit_notifier.delivery import oslo_private, process_hooks

LOG = logging.getLogger(__name__)

NAMESPACE = 'oslo.messaging.notify.drivers'
_VERSIONS = {'messaging': 1.0, 'messagingv2': 2.0}


class BusUnavailable(Exception):
    """The bus did not take the notifications (a connection or transport problem)."""


def bus_errors() -> tuple:
    """Exception types that mean "the bus is unreachable", not "a bug"."""
    errors = [oslo_messaging.MessageDeliveryFailure, oslo_messaging.MessagingTimeout,
              ConnectionError, TimeoutError, socket.timeout, EOFError, OSError]
    try:
        import kombu.exceptions
        errors.append(kombu.exceptions.OperationalError)
    except ImportError:                                   # pragma: no cover
        pass
    try:
        import amqp.exceptions
        # Channel errors too (PRECONDITION_FAILED: a queue declared with other
        # arguments, ACCESS_REFUSED ...): the bus refuses, no record is at fault,
        # as oslo.messaging's own path reports them (MessageDeliveryFailure).
        errors += [amqp.exceptions.ConnectionError, amqp.exceptions.RecoverableConnectionError,
                   amqp.exceptions.ChannelError]
    except ImportError:                                   # pragma: no cover
        pass
    return tuple(errors)


_BUS_ERRORS = bus_errors()


class OsloLeaf:
    """Envelopes to one set of topics through oslo.messaging's notification drivers."""

    def __init__(self, conf: cfg.ConfigOpts, drivers: list[str], topics: list[str],
                 transport_url: str | None, retry: int, batch: bool = False):
        self.conf = conf
        self.drivers = drivers
        self.topics = topics
        self.transport_url = transport_url
        self.retry = retry
        self.batch = batch
        self._lock = threading.Lock()
        self._transport = None
        self._others = None
        self._fast = None
        self._versions = [_VERSIONS[d] for d in drivers if d in _VERSIONS]
        self._direct = not oslo_private.missing(oslo_private.PLAIN)
        self._catcher = None
        self._log_drivers: set = set()
        if batch and self._versions:
            problems = oslo_private.missing(oslo_private.FAST)   # at start-up
            if problems:
                _warn_once('audit_notifier: rabbit_batch_publish is on, but this '
                           'oslo.messaging or py-amqp lacks what it relies on (%s); '
                           'publishing through oslo.messaging\'s own path instead'
                           % '; '.join(problems)[:500])
                self.batch = False

    @property
    def needs_bus(self) -> bool:
        return any(d in _VERSIONS or d == 'routing' for d in self.drivers)

    @property
    def batched(self) -> bool:
        """True when messaging/messagingv2 publish in AMQP transactions (after setup)."""
        return self._fast is not None

    def _setup(self) -> None:
        with self._lock:
            if self._others is not None:
                return
            transport = None
            if self.needs_bus:
                transport = oslo_messaging.get_notification_transport(
                    self.conf, url=self.transport_url)
            fast = None
            if transport is not None and self._versions and self.batch:
                from audit_notifier.delivery.rabbit_batch import RabbitBatchSender
                fast = RabbitBatchSender.for_transport(transport, self.topics, self.retry)
            names = [d for d in self.drivers if d != 'noop' and
                     (d not in _VERSIONS or not (fast or self._direct))]
            manager = None
            if names:
                manager = named.NamedExtensionManager(
                    NAMESPACE, names=names, invoke_on_load=True, invoke_args=[self.conf],
                    invoke_kwds={'topics': self.topics, 'transport': transport})
            if not self._direct and any(d in _VERSIONS for d in names):
                self._catcher = process_hooks.watch_send_failures()
            self._transport = transport
            self._fast = fast
            self._others = [ext.obj for ext in manager.extensions] if manager else []
            # The log driver drops the context (found by its entry-point name).
            self._log_drivers = {id(ext.obj) for ext in manager.extensions
                                 if ext.name == 'log'} if manager else set()

    def publish_many(self, envelopes: Iterable[dict],
                     contexts: list[dict] | None = None,
                     between: Callable[[], None] | None = None) -> None:
        """Send envelopes in order; when this raises, none of them counts as sent
        (some may have reached the bus and may arrive twice, with their message_id).

        ``contexts`` (one dict per envelope, or None: ``{}`` each) is the
        oslo.messaging context sent with each one: the integrity trail's chain
        fields (:mod:`audit_notifier.trail`).  messaging/messagingv2 carry it as
        ``_context_<key>`` keys of the message; the ``log`` driver, which drops
        the context, writes those keys into the logged message.

        ``between`` (None: nothing) is called before each envelope of a batched
        publish (the fast leaf: :meth:`.Sender._yield_gil`); the plain path waits for
        each message's confirm, and lets go of the GIL then."""
        envelopes = list(envelopes)
        if not envelopes:
            return
        each = contexts if contexts is not None else [{}] * len(envelopes)
        if self._others is None:
            self._setup()
        try:
            if self._versions and (self._fast is not None or self._direct):
                if self._fast is not None:
                    self._fast.send(envelopes, self._versions, contexts, between)
                else:
                    for envelope, ctxt in zip(envelopes, each):
                        self._send_direct(envelope, ctxt)
            for envelope, ctxt in zip(envelopes, each):
                for driver in self._others:
                    self._notify(driver, envelope, ctxt)
        except _BUS_ERRORS as exc:
            raise BusUnavailable(' '.join(str(exc).split())[:300] or type(exc).__name__) \
                from exc

    def _send_direct(self, envelope: dict, ctxt: dict) -> None:
        priority = envelope['priority'].lower()
        for version in self._versions:
            for topic in self.topics:
                target = oslo_messaging.Target(topic='%s.%s' % (topic, priority))
                # A copy: oslo.messaging adds keys (_unique_id ...) to the dict it sends.
                self._transport._send_notification(target, dict(ctxt), dict(envelope),
                                                   version=version, retry=self.retry)

    def _notify(self, driver, envelope: dict, ctxt: dict) -> None:
        message = dict(envelope)
        if ctxt and id(driver) in self._log_drivers:
            # The log driver drops the context: keep the chain as messagingv2 does.
            message.update(('_context_%s' % key, value) for key, value in ctxt.items())
        catcher = self._catcher
        if catcher is None:
            driver.notify(dict(ctxt), message, envelope['priority'], self.retry)
            return
        local = catcher.local
        local.failed, local.watching = None, True
        try:
            driver.notify(dict(ctxt), message, envelope['priority'], self.retry)
        finally:
            local.watching = False
        if local.failed:
            raise BusUnavailable(local.failed)

    def close(self) -> None:
        transport, self._transport, self._others = self._transport, None, None
        fast, self._fast = self._fast, None
        if fast is not None:
            fast.close()
        if transport is not None:
            try:
                transport.cleanup()
            except Exception:
                LOG.debug('audit_notifier: transport cleanup failed', exc_info=True)


_warned: set = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        LOG.warning(message)
