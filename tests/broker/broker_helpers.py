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

"""Helpers for the tests against a REAL RabbitMQ (tests/broker/).

* :func:`private_conf`: a private ``oslo_config.cfg.ConfigOpts`` (never the global
  CONF) with oslo.messaging's transport options and a chosen ``control_exchange``,
  used for both sides (the filter and the listener) so they agree on the exchange.
* :class:`NotificationListener`: a real ``oslo_messaging.get_notification_listener``
  (threading executor, one worker so callbacks run in delivery order) whose
  endpoint records every notification in arrival order.
* :class:`Tap`: a raw kombu queue bound to the same exchange and topics.  It sees
  every message exactly as it travels (routing key = ``<topic>.<priority>``, the
  ``oslo.version``/``oslo.message`` envelope) in the order the broker routed them,
  which the oslo.messaging API does not expose.
* :class:`AmqpAdmin`: queue/exchange clean-up.

This is a helper module, not a test file.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid

import kombu
import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

#: every priority oslo.messaging knows; the listener subscribes to all of them so a
#: notification sent with an unexpected priority is still seen (and fails a test).
PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample')


def private_conf(control_exchange: str) -> cfg.ConfigOpts:
    """A private ConfigOpts with oslo.messaging's [DEFAULT] options registered."""
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        if group is None:
            conf.register_opts(opts)
    # One worker: endpoint callbacks run in the order messages are delivered.
    oslo_messaging.opts.set_defaults(conf, executor_thread_pool_size=1)
    conf([], project='audit_notifier_broker_tests', default_config_files=[])
    conf.set_override('control_exchange', control_exchange)
    return conf


class Received(dict):
    """One notification as the oslo.messaging listener delivered it."""

    @property
    def message_id(self):
        return self['metadata']['message_id']


class _Collector:
    """Notification endpoint: one method per priority, all recording."""

    def __init__(self, sink):
        for prio in PRIORITIES:
            setattr(self, prio, self._make(prio, sink))

    @staticmethod
    def _make(prio, sink):
        def endpoint(ctxt, publisher_id, event_type, payload, metadata):
            sink(Received(priority=prio, publisher_id=publisher_id, event_type=event_type,
                          payload=payload, message_id=metadata.get('message_id'),
                          timestamp=metadata.get('timestamp'), metadata=dict(metadata),
                          ctxt=ctxt))
        return endpoint


class _Waitable:
    _interval = 0.5

    def __init__(self):
        self._cond = threading.Condition()
        self._items: list = []

    def _add(self, item):
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    @property
    def items(self) -> list:
        with self._cond:
            return list(self._items)

    def wait_for(self, n: int, timeout: float = 10.0) -> list:
        """Wait until at least ``n`` items arrived; all items so far, in order."""
        return self.wait_until(lambda items: len(items) >= n, timeout,
                               'at least %d notifications' % n)

    def wait_until(self, predicate, timeout: float = 10.0, what: str = 'condition') -> list:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('waited %.0f s for %s; got %d: %s' % (
                        timeout, what, len(self._items), [_brief(i) for i in self._items]))
                self._cond.wait(min(left, self._interval))
                self._poll()
            return list(self._items)

    def _poll(self):
        """Subclasses that pull (the tap) fetch here."""


def _brief(item):
    if isinstance(item, dict):
        return (item.get('routing_key') or item.get('priority'), item.get('event_type'))
    return item


class NotificationListener(_Waitable):
    """A real oslo.messaging notification listener on ``topics`` (all priorities).

    Beware: with the rabbit driver the listener's queue is named ``<topic>.<priority>``
    and so is the queue the notifier itself declares on ITS exchange; a listener
    configured with another control_exchange therefore still receives everything
    (the shared queue is bound to both exchanges).  Receiving here does not prove the
    exchanges agree; the :class:`Tap`, bound by routing key to one exchange, does.
    """

    def __init__(self, url: str, conf: cfg.ConfigOpts, topics, exchange: str | None = None):
        super().__init__()
        self.url = url
        self.conf = conf
        self.topics = list(topics)
        self.exchange = exchange
        self.transport = None
        self.server = None

    def start(self) -> 'NotificationListener':
        self.transport = oslo_messaging.get_notification_transport(self.conf, url=self.url)
        targets = [oslo_messaging.Target(topic=t, exchange=self.exchange)
                   for t in self.topics]
        self.server = oslo_messaging.get_notification_listener(
            self.transport, targets, [_Collector(self._add)], executor='threading')
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server.wait()
            self.server = None
        if self.transport is not None:
            self.transport.cleanup()
            self.transport = None

    def queue_names(self) -> list[str]:
        """The queues oslo.messaging declares for these targets (and the notifier too)."""
        return ['%s.%s' % (t, p) for t in self.topics for p in PRIORITIES]

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Tap(_Waitable):
    """A raw, exclusive queue bound to ``<topic>.#`` of each topic on ``exchange``.

    The exchange is declared exactly as oslo.messaging's rabbit driver declares a
    notification exchange (topic, durable = amqp_durable_queues = False,
    auto_delete = False); a mismatch fails loudly with PRECONDITION_FAILED.
    Each item: routing_key, the decoded oslo.message dict, the raw body text.
    """

    _interval = 0.02     # nothing notifies: the tap is polled with basic.get

    def __init__(self, amqp_url: str, exchange: str, topics):
        super().__init__()
        self.amqp_url = amqp_url
        self.exchange_name = exchange
        self.topics = list(topics)
        self.queue_name = 'audit-notifier-tap-%s' % uuid.uuid4().hex[:12]
        self._conn = None
        self._queue = None

    def start(self) -> 'Tap':
        self._conn = kombu.Connection(self.amqp_url, connect_timeout=5)
        channel = self._conn.channel()
        exchange = kombu.Exchange(self.exchange_name, type='topic', durable=False,
                                  auto_delete=False)
        exchange(channel).declare()
        self._queue = kombu.Queue(self.queue_name, exchange=exchange,
                                  routing_key='%s.#' % self.topics[0], exclusive=True,
                                  auto_delete=True, channel=channel)
        self._queue.declare()
        for topic in self.topics[1:]:
            self._queue.bind_to(exchange=exchange, routing_key='%s.#' % topic)
        return self

    def _poll(self):
        while True:
            try:
                message = self._queue.get(no_ack=True)
            except self._conn.connection_errors + self._conn.channel_errors as exc:
                # an exclusive queue dies with its connection: what it held is lost
                raise AssertionError(
                    'the tap lost its connection to RabbitMQ after %d message(s) (%s: %s); '
                    'was the broker stopped or restarted during the test?'
                    % (len(self._items), type(exc).__name__, exc)) from exc
            if message is None:
                return
            raw = message.body.decode('utf-8') if isinstance(message.body, bytes) \
                else message.body
            outer = json.loads(raw)
            inner = json.loads(outer['oslo.message']) if 'oslo.message' in outer else outer
            self._items.append({'routing_key': message.delivery_info['routing_key'],
                                'exchange': message.delivery_info['exchange'],
                                'outer': outer, 'message': inner, 'raw': raw,
                                'event_type': inner.get('event_type')})

    def wait_until(self, predicate, timeout: float = 10.0, what: str = 'condition') -> list:
        with self._cond:
            self._poll()
        return super().wait_until(predicate, timeout, what)

    def stop(self) -> None:
        if self._conn is not None:
            try:
                self._queue.delete()
            except Exception:
                pass
            self._conn.release()
            self._conn = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


def fmt_of(event_type: str) -> str:
    """cadf or glance, from the event_type (CADF ones are audit.<event>)."""
    return 'cadf' if event_type.startswith('audit.') else 'glance'


def image_of(event_type: str, payload) -> str | None:
    """The image a notification is about: the filter's shard key, so the unit
    whose order the filter preserves (CADF target id, Glance id/image_id, or the
    id in a failure's text)."""
    if fmt_of(event_type) == 'cadf':
        return payload['target']['id']
    if isinstance(payload, dict):
        return payload.get('id') or payload.get('image_id')
    m = _UUID.search(str(payload))
    return m.group(0) if m else None


def record_envelopes(delivery) -> list:
    """Wrap publish_many of every leaf the delivery's sender creates: returns the list
    that collects a copy of every envelope handed to the bus successfully (in publish
    order).  Call before the first request."""
    sent: list = []
    lock = threading.Lock()
    factory = delivery.leaf_factory

    def recording_factory():
        leaves = factory()
        for leaf in leaves.values():
            def recording_many(envelopes, *rest, _publish_many=leaf.publish_many, **kw):
                before = copy.deepcopy(list(envelopes))
                _publish_many(before, *rest, **kw)   # a batch counts only when all went
                with lock:
                    sent.extend(copy.deepcopy(before))
            leaf.publish_many = recording_many
        return leaves
    delivery.leaf_factory = recording_factory
    return sent


class AmqpAdmin:
    """Deletes queues and exchanges a scenario created (never shared ones)."""

    def __init__(self, amqp_url: str):
        self.amqp_url = amqp_url

    def delete_queues(self, names) -> dict:
        left = {}
        with kombu.Connection(self.amqp_url, connect_timeout=5) as conn:
            for name in names:
                channel = conn.channel()
                try:
                    left[name] = channel.queue_delete(name)
                except conn.channel_errors:      # 404: never declared
                    pass
                finally:
                    try:
                        channel.close()
                    except Exception:
                        pass
        return left

    def delete_exchange(self, name: str) -> None:
        with kombu.Connection(self.amqp_url, connect_timeout=5) as conn:
            channel = conn.channel()
            try:
                channel.exchange_delete(name)
            except conn.channel_errors:
                pass
