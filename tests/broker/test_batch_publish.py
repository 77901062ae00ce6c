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

"""Batched publishing (AMQP transactions) against a REAL RabbitMQ.

* wire compatibility: the same envelopes sent by oslo.messaging's own
  ``messagingv2``/``messaging`` drivers and by the fast leaf (``OsloLeaf`` with
  ``rabbit_batch_publish``) arrive
  identically at a real oslo.messaging notification listener, and the raw AMQP
  messages (exchange, routing key, properties, body byte for byte but the random
  ``_unique_id``) are the same; the default queues and exchanges the two declare
  are interchangeable under oslo's queue options (durable, quorum, HA, auto
  delete) and kombu compression;
* order: a burst of 20,000 events through the filter's one sender arrives
  complete (20,000 distinct message_ids) and in order per resource;
* the bus down (a closed port): ``publish_many`` raises BusUnavailable at once;
  a dropped connection is replaced.
"""

from __future__ import annotations

import collections
import copy
import json
import time
import uuid

import kombu
import oslo_messaging
import pytest
import webob
from oslo_messaging.notify import messaging as oslo_notify_messaging

import broker_helpers as bh
from audit_notifier.delivery import leaves as leaves_mod
from audit_notifier.delivery import rabbit_batch
from audit_notifier.middleware import filter_factory

pytestmark = pytest.mark.broker

PUBLISHER = 'image.batch-test'
CLOSED_PORT_URL = 'rabbit://guest:guest@127.0.0.1:1/'
PRIORITIES = ('INFO', 'WARN', 'ERROR', 'AUDIT', 'DEBUG', 'CRITICAL', 'SAMPLE')
ORACLES = {'messagingv2': oslo_notify_messaging.MessagingV2Driver,
           'messaging': oslo_notify_messaging.MessagingDriver}
VERSIONS = {'messagingv2': 2.0, 'messaging': 1.0}


def _fast_leaf(conf, drivers, topics, url, retry):
    """The plain leaf with the optional batched RabbitMQ path on."""
    return leaves_mod.OsloLeaf(conf, drivers, topics, url, retry, batch=True)


def _envelopes(n: int, tag: str) -> list[dict]:
    out = []
    for i in range(n):
        out.append({
            'message_id': str(uuid.uuid4()),
            'publisher_id': PUBLISHER,
            'event_type': 'audit.image.%s' % ('read', 'update', 'delete')[i % 3],
            'priority': PRIORITIES[i % len(PRIORITIES)],
            'payload': {'typeURI': 'http://schemas.dmtf.org/cloud/audit/1.0/event',
                        'id': str(uuid.uuid4()), 'seq': i, 'tag': tag,
                        'name': 'ümlaut ☃ "quoted" \\ back\nslash',
                        'target': {'id': 'img-%d' % (i % 3), 'typeURI': 'service/storage/image'},
                        'nested': [1, 2.5, None, True, {'a': []}]},
            'timestamp': '2026-01-12 09:30:%02d.%06d' % (i % 60, i),
        })
    return out


class RawTap(bh.Tap):
    """bh.Tap that also keeps each message's AMQP properties and raw body bytes."""

    def _poll(self):
        while True:
            message = self._queue.get(no_ack=True)
            if message is None:
                return
            self._items.append(_raw(message))


def _raw(message) -> dict:
    """What travelled: exchange, routing key, properties, headers, raw body."""
    body = message.body if isinstance(message.body, bytes) else message.body.encode()
    headers = dict(message.headers or {})
    data = body                            # kombu has decompressed it (gzip: mtime differs)
    outer = json.loads(data)
    inner = json.loads(outer['oslo.message']) if 'oslo.message' in outer else outer
    props = {k: v for k, v in message.properties.items() if k != 'application_headers'}
    return {'exchange': message.delivery_info['exchange'],
            'routing_key': message.delivery_info['routing_key'],
            'content_type': message.content_type,
            'content_encoding': message.content_encoding,
            'properties': props, 'headers': headers, 'body': body, 'data': data,
            'outer': outer, 'message': inner, 'unique_id': inner.get('_unique_id')}


def _same_bytes(ours: dict, theirs: dict) -> None:
    """Equal but for oslo's random _unique_id (same length, so byte-for-byte)."""
    assert ours['unique_id'] and theirs['unique_id'] and \
        ours['unique_id'] != theirs['unique_id']
    assert ours['data'].replace(ours['unique_id'].encode(), theirs['unique_id'].encode()) \
        == theirs['data']
    for key in ('exchange', 'routing_key', 'content_type', 'content_encoding', 'properties',
                'headers'):
        assert ours[key] == theirs[key], key


def _oslo_transport(conf, url: str, rabbit: dict | None = None):
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    for name, value in (rabbit or {}).items():       # the group exists from here on
        conf.set_override(name, value, group='oslo_messaging_rabbit')
    return transport


# ---------------------------------------------------------------------------------------
# (a) wire compatibility
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('driver', ['messagingv2', 'messaging'])
def test_listener_and_wire_see_the_same_as_from_oslo_messaging(broker, driver, monkeypatch):
    direct = []                 # envelopes whose JSON the fast leaf wrote without kombu

    def envelope_json(msg):
        body = real_envelope_json(msg)
        direct.append(body is not None)
        return body
    real_envelope_json = rabbit_batch.envelope_json
    monkeypatch.setattr(rabbit_batch, 'envelope_json', envelope_json)
    exchange = broker.name('an_batch_wire_%s' % driver)
    topic = broker.name('an_batch_wire_%s' % driver)
    conf = bh.private_conf(exchange)
    envelopes = _envelopes(21, driver)
    n = len(envelopes)
    listener = bh.NotificationListener(broker.transport_url, bh.private_conf(exchange), [topic])
    tap = RawTap(broker.amqp_url, exchange, [topic])
    admin = bh.AmqpAdmin(broker.amqp_url)
    transport = _oslo_transport(conf, broker.transport_url)
    publisher = _fast_leaf(conf, [driver], [topic], broker.transport_url, 0)
    try:
        listener.start()
        tap.start()
        # 1. oslo.messaging's own notification driver, one message at a time
        oracle = ORACLES[driver](conf, topics=[topic], transport=transport)
        for envelope in copy.deepcopy(envelopes):
            oracle.notify({}, envelope, envelope['priority'], 0)
        theirs_raw = tap.wait_for(n, 30.0)
        listener.wait_for(n, 30.0)
        # 2. the same envelopes in one transaction (the sender's GIL yields called
        # before each: they change nothing on the wire)
        sent = copy.deepcopy(envelopes)
        betweens: list = []
        publisher.publish_many(sent, between=lambda: betweens.append(len(betweens)))
        assert publisher.batched
        assert len(betweens) == n
        # The connect's two probes: one for kombu's serializer, one written directly.
        # Then v2: every envelope's JSON written directly (compared byte for byte
        # below); v1 has no envelope: kombu's serializer.
        assert direct == [False, True] + [driver == 'messagingv2'] * n
        assert sent == envelopes, 'publish_many changed the caller\'s envelopes'
        raw = tap.wait_for(2 * n, 30.0)
        received = listener.wait_for(2 * n, 30.0)
    finally:
        publisher.close()
        transport.cleanup()
        listener.stop()
        tap.stop()
        admin.delete_queues(listener.queue_names())
        admin.delete_exchange(exchange)

    # The listener: every notification twice, identical in all it hands endpoints.
    assert len(raw) == len(received) == 2 * n
    by_id = collections.defaultdict(list)
    for item in received:
        by_id[item.message_id].append(item)
    assert set(by_id) == {e['message_id'] for e in envelopes}
    for envelope in envelopes:
        theirs, ours = by_id[envelope['message_id']]
        fields = ('priority', 'publisher_id', 'event_type', 'payload', 'message_id',
                  'timestamp', 'metadata', 'ctxt')
        assert {f: ours[f] for f in fields} == {f: theirs[f] for f in fields}
        assert ours['priority'] == envelope['priority'].lower()
        assert (ours['event_type'], ours['payload'], ours['timestamp']) == \
            (envelope['event_type'], envelope['payload'], envelope['timestamp'])

    # The wire: same exchange, routing keys, properties and bytes, in the same order.
    assert raw[:n] == theirs_raw
    for theirs, ours, envelope in zip(raw[:n], raw[n:], envelopes):
        _same_bytes(ours, theirs)
        assert ours['exchange'] == exchange
        assert ours['routing_key'] == '%s.%s' % (topic, envelope['priority'].lower())
        expected = dict(envelope, _unique_id=ours['unique_id'])
        assert ours['message'] == expected
        if driver == 'messagingv2':
            assert set(ours['outer']) == {'oslo.version', 'oslo.message'}
            assert ours['outer']['oslo.version'] == '2.0'
        else:
            assert 'oslo.version' not in ours['outer']
        assert ours['content_type'] == 'application/json'
        assert ours['content_encoding'] == 'utf-8'
        assert ours['properties']['delivery_mode'] == 2


VARIANTS = {
    'default': {},
    'durable': {'amqp_durable_queues': True},
    'auto_delete': {'amqp_auto_delete': True},
    'quorum': {'rabbit_quorum_queue': True, 'rabbit_quorum_delivery_limit': 3,
               'rabbit_quorum_max_memory_length': 1000},
    'ha': {'rabbit_ha_queues': True},
    'gzip': {'kombu_compression': 'gzip'},
}


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_declarations_and_messages_match_oslo_under_rabbit_options(broker, variant):
    """Either side may declare the exchange and default queue first: the other
    one's declaration (same durable/auto_delete/arguments) is accepted, and both
    messages read back raw are the same."""
    exchange = broker.name('an_batch_decl_%s' % variant)
    topic = broker.name('an_batch_decl_%s' % variant)
    conf = bh.private_conf(exchange)
    transport = _oslo_transport(conf, broker.transport_url, VARIANTS[variant])
    publisher = _fast_leaf(conf, ['messagingv2'], [topic, topic + '_b'],
                           broker.transport_url, 0)
    envelope = _envelopes(1, variant)[0]
    envelope['priority'] = 'INFO'
    queues = ['%s.info' % topic, '%s_b.info' % topic]
    admin = bh.AmqpAdmin(broker.amqp_url)

    def oslo_send(topic_name):       # raises (unlike the driver) on PRECONDITION_FAILED
        transport._send_notification(oslo_messaging.Target(topic=topic_name + '.info'), {},
                                     copy.deepcopy(envelope), version=2.0, retry=0)
    try:
        oslo_send(topic + '_b')                         # oslo declares the second queue
        publisher.publish_many([copy.deepcopy(envelope)])   # ours: first one, then second
        assert publisher.batched
        sender = publisher._fast
        assert (sender._write_publish is None) == (variant == 'gzip')
        oslo_send(topic)                                # oslo on the queue we declared
        got = {}
        with kombu.Connection(broker.amqp_url, connect_timeout=5) as conn:
            channel = conn.channel()
            for name in queues:
                got[name] = []
                for _ in range(3):
                    message = channel.basic_get(name, no_ack=True)
                    if message is None:
                        break
                    message = channel.message_to_python(message)
                    got[name].append(_raw(message))
            # What oslo declares, declared again: accepted (else PRECONDITION_FAILED).
            rabbit = transport._driver.conf.oslo_messaging_rabbit
            from oslo_messaging._drivers import impl_rabbit
            durable = rabbit.amqp_durable_queues or rabbit.rabbit_quorum_queue
            ex = kombu.Exchange(exchange, type='topic', durable=durable,
                                auto_delete=rabbit.amqp_auto_delete)
            args = impl_rabbit._get_queue_arguments(
                rabbit.rabbit_ha_queues, 0, rabbit.rabbit_quorum_queue,
                impl_rabbit.QuorumMemConfig(rabbit.rabbit_quorum_delivery_limit,
                                            rabbit.rabbit_quorum_max_memory_length,
                                            rabbit.rabbit_quorum_max_memory_bytes), False)
            for name in queues:
                kombu.Queue(name, exchange=ex, routing_key=name, durable=durable,
                            auto_delete=rabbit.amqp_auto_delete, queue_arguments=args,
                            channel=conn.channel()).declare()
    finally:
        publisher.close()
        transport.cleanup()
        admin.delete_queues(queues)
        admin.delete_exchange(exchange)
    first, second = got[queues[0]], got[queues[1]]
    assert len(first) == len(second) == 2, got
    _same_bytes(first[0], first[1])                 # ours, then oslo's
    _same_bytes(second[1], second[0])               # oslo's, then ours
    if variant == 'gzip':
        assert first[0]['headers'] == {'compression': 'application/x-gzip'}
    for item in first + second:
        assert item['message'] == dict(envelope, _unique_id=item['unique_id'])


# ---------------------------------------------------------------------------------------
# (b) a burst through the filter: complete, in order per resource
# ---------------------------------------------------------------------------------------
BURST = 20000
IMAGES = ['5b1a9a52-7c6e-4f0e-9d1a-%012d' % i for i in range(250)]
IDENTITY = {'HTTP_X_IDENTITY_STATUS': 'Confirmed', 'HTTP_X_USER_ID': 'u-batch',
            'HTTP_X_USER_NAME': 'batch-user', 'HTTP_X_PROJECT_ID': 'p-batch',
            'HTTP_X_ROLES': 'member,reader', 'REMOTE_ADDR': '10.1.2.3'}


def _image_app(environ, start_response):
    image_id = environ['PATH_INFO'].rsplit('/', 1)[-1]
    body = json.dumps({'id': image_id, 'name': 'img', 'status': 'active',
                       'owner': 'p-batch'}).encode()
    start_response('200 OK', [('Content-Type', 'application/json'),
                              ('Content-Length', str(len(body)))])
    return [body]


def test_burst_of_20000_through_one_sender_loses_nothing_and_keeps_order(broker, tmp_path,
                                                                         monkeypatch):
    exchange = broker.name('an_batch_burst')
    topic = broker.name('an_batch_burst')
    batch_sizes = collections.Counter()
    send = rabbit_batch.RabbitBatchSender.send

    def counting_send(self, envelopes, versions, *rest):
        batch_sizes[len(envelopes)] += 1
        return send(self, envelopes, versions, *rest)
    monkeypatch.setattr(rabbit_batch.RabbitBatchSender, 'send', counting_send)
    mw = filter_factory({}, oslo_config_config=bh.private_conf(exchange),
                        driver='messagingv2', transport_url=broker.transport_url,
                        formats='cadf', topics=topic, publisher_id=PUBLISHER, retry='0',
                        rabbit_batch_publish='true', stats_interval='0',
                        journal_dir=str(tmp_path / 'spool'))(_image_app)
    listener = bh.NotificationListener(broker.transport_url, bh.private_conf(exchange), [topic])
    admin = bh.AmqpAdmin(broker.amqp_url)
    template = webob.Request.blank('/v2/images/x').environ
    template.update(IDENTITY)

    def start_response(status, headers, exc_info=None):
        return lambda data: None
    try:
        listener.start()
        for i in range(BURST):
            environ = dict(template, PATH_INFO='/v2/images/%s' % IMAGES[i % len(IMAGES)])
            environ['openstack.request_id'] = 'req-%06d' % i
            body = mw(environ, start_response)
            for _ in body:
                pass
            getattr(body, 'close', lambda: None)()
        assert mw.delivery.flush(120.0), mw.delivery.snapshot()
        counters = dict(mw.delivery.counters)
        leaves = list(mw.delivery.leaves.values())
        batched = [p.batched for p in leaves if p._others is not None]
        received = listener.wait_for(BURST, 180.0)
        time.sleep(0.5)
        received = listener.items
    finally:
        mw.delivery.close(10.0)
        listener.stop()
        admin.delete_queues(listener.queue_names())
        admin.delete_exchange(exchange)

    assert (counters['built'], counters['sent'], counters['dropped'],
            counters['send_errors']) == (BURST, BURST, 0, 0), counters
    assert batched and all(batched), batched
    assert sum(n * k for n, k in batch_sizes.items()) == BURST     # each sent once
    assert max(batch_sizes) > 1, batch_sizes
    ids = [r.message_id for r in received]
    assert len(set(ids)) == BURST
    assert len(ids) == BURST, '%d duplicates' % (len(ids) - BURST)
    per_image = collections.defaultdict(list)
    for r in received:
        assert r['event_type'] == 'audit.image.read'
        per_image[r['payload']['target']['id']].append(
            int(r['payload']['initiator']['request_id'].split('-')[1]))
    assert set(per_image) == set(IMAGES)
    for image, seqs in per_image.items():
        assert seqs == sorted(seqs), 'out of order for %s' % image
        assert seqs == list(range(IMAGES.index(image), BURST, len(IMAGES)))


# ---------------------------------------------------------------------------------------
# (c) the bus down; a broken connection
# ---------------------------------------------------------------------------------------
def _closed_port_publisher(topic='an-batch-down', retry=0):
    conf = bh.private_conf('an_batch_down')
    return _fast_leaf(conf, ['messagingv2'], [topic], CLOSED_PORT_URL, retry)


def test_publish_many_fails_fast_when_the_bus_is_down():
    publisher = _closed_port_publisher()
    envelopes = _envelopes(100, 'down')
    try:
        for _ in range(3):
            with pytest.raises(leaves_mod.BusUnavailable):
                publisher.publish_many(copy.deepcopy(envelopes))
        assert publisher.batched
        assert publisher._fast._conn is None
    finally:
        publisher.close()


def test_retry_setting_is_honoured(monkeypatch):
    publisher = _closed_port_publisher(retry=2)
    connects = []
    pauses = []
    try:
        publisher._setup()
        sender = publisher._fast
        real_connect = sender._connect

        def connect():
            connects.append(time.monotonic())
            real_connect()
        monkeypatch.setattr(sender, '_connect', connect)
        monkeypatch.setattr(rabbit_batch.time, 'sleep', pauses.append)
        with pytest.raises(Exception):
            publisher.publish_many(_envelopes(2, 'retry'))
        assert len(connects) == 3
        # oslo's defaults: kombu_reconnect_delay 1 + rabbit_retry_interval 1 (+ backoff 2)
        assert pauses == [2.0, 4.0]
        del connects[:], pauses[:]
        sender.retry = 0
        with pytest.raises(Exception):
            publisher.publish_many(_envelopes(2, 'retry'))
        assert (len(connects), pauses) == (1, [])
    finally:
        publisher.close()


def test_a_dropped_connection_is_replaced_without_a_failure(broker):
    exchange = broker.name('an_batch_reconnect')
    topic = broker.name('an_batch_reconnect')
    conf = bh.private_conf(exchange)
    publisher = _fast_leaf(conf, ['messagingv2'], [topic], broker.transport_url, 0)
    tap = RawTap(broker.amqp_url, exchange, [topic])
    admin = bh.AmqpAdmin(broker.amqp_url)
    first, second = _envelopes(5, 'before'), _envelopes(5, 'after')
    try:
        tap.start()
        publisher.publish_many(first)
        old = publisher._fast._conn
        old.connection.sock.close()              # the connection breaks while idle
        publisher.publish_many(second)            # retried at once on a new connection
        assert publisher._fast._conn is not old
        got = tap.wait_for(10, 30.0)
    finally:
        publisher.close()
        tap.stop()
        admin.delete_queues(['%s.%s' % (topic, p.lower()) for p in PRIORITIES])
        admin.delete_exchange(exchange)
    assert [g['message']['message_id'] for g in got] == \
        [e['message_id'] for e in first + second]


def test_several_hosts_the_live_one_is_used(broker):
    exchange = broker.name('an_batch_hosts')
    topic = broker.name('an_batch_hosts')
    vhost = '' if broker.vhost == '/' else broker.vhost
    url = 'rabbit://guest:guest@127.0.0.1:1,guest:guest@127.0.0.1:5672/%s' % vhost
    publisher = _fast_leaf(bh.private_conf(exchange), ['messagingv2'], [topic],
                           url, 0)
    tap = RawTap(broker.amqp_url, exchange, [topic])
    admin = bh.AmqpAdmin(broker.amqp_url)
    envelopes = _envelopes(3, 'hosts')
    try:
        tap.start()
        for _ in range(3):            # whichever host the shuffle puts first
            publisher.publish_many(envelopes)
            publisher._fast._drop()
        assert publisher.batched and publisher._fast._hosts == 2
        got = tap.wait_for(9, 30.0)
    finally:
        publisher.close()
        tap.stop()
        admin.delete_queues(['%s.%s' % (topic, p.lower()) for p in PRIORITIES])
        admin.delete_exchange(exchange)
    assert [g['message']['message_id'] for g in got] == \
        [e['message_id'] for e in envelopes] * 3


def test_options_come_from_oslo_conf_and_the_url_query(tmp_path):
    import ssl
    conf = bh.private_conf('an_batch_opts')
    url = 'rabbit://u:p@broker.example.com:5671/vh?amqp_durable_queues=true'
    transport = _oslo_transport(conf, url, {'ssl': True, 'ssl_ca_file': '/etc/ca.pem',
                                            'ssl_version': 'TLSv1_2',
                                            'amqp_auto_delete': True,
                                            'kombu_failover_strategy': 'shuffle',
                                            'rabbit_login_method': 'PLAIN'})
    publisher = _fast_leaf(conf, ['messagingv2'], ['t'], url, 0)
    try:
        publisher._setup()
        sender = publisher._fast
        assert sender._url == 'amqp://u:p@broker.example.com:5671/vh'
        assert sender._ssl == {'ssl_version': ssl.PROTOCOL_TLSv1_2, 'ca_certs': '/etc/ca.pem',
                               'cert_reqs': ssl.CERT_REQUIRED,
                               'server_hostname': 'broker.example.com'}
        assert (sender.exchange.name, sender.exchange.type, sender.exchange.durable,
                sender.exchange.auto_delete) == ('an_batch_opts', 'topic', True, True)
        assert (sender._failover, sender._login_method) == ('shuffle', 'PLAIN')
    finally:
        publisher.close()
        transport.cleanup()


def test_other_transports_keep_the_per_message_oslo_path():
    from oslo_messaging.notify import _impl_test
    conf = bh.private_conf('an_batch_fake')
    publisher = _fast_leaf(conf, ['messagingv2', 'test'], ['t'], 'fake://', 0)
    envelopes = _envelopes(5, 'fake')
    mark = len(_impl_test.NOTIFICATIONS)
    try:
        publisher.publish_many(envelopes)
        assert not publisher.batched
        assert [n[1]['message_id'] for n in list(_impl_test.NOTIFICATIONS)[mark:]] == \
            [e['message_id'] for e in envelopes]
    finally:
        publisher.close()
