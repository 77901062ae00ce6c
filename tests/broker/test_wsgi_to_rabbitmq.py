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

"""The audit filter around a small WSGI app, publishing to a REAL RabbitMQ.

driver messagingv2, formats cadf,glance, cadf_topics audit, glance_topics
notifications.  The same calls (create, download, a 403 PATCH, a 500 DELETE) run
once with the ``test`` driver and once over the broker; what arrives at a real
oslo.messaging notification listener (and at a raw tap queue that shows the
routing keys) must be exactly what the filter sent.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
import re
import uuid

import pytest
import webob
from oslo_messaging.notify import _impl_test

import broker_helpers as bh
import fake_image_api as fake
from audit_notifier.middleware import filter_factory
from tests.support import identity

pytestmark = pytest.mark.broker

PUBLISHER = 'image.broker-test'
TOKEN = 'gAAAAAB-broker-secret-%s' % uuid.uuid4().hex
IDENTITY = {
    'HTTP_X_AUTH_TOKEN': TOKEN,
    'HTTP_X_IDENTITY_STATUS': 'Confirmed',
    'HTTP_X_USER_ID': 'u-broker',
    'HTTP_X_USER_NAME': 'broker-user',
    'HTTP_X_PROJECT_ID': fake.OWNER,
    'HTTP_X_ROLES': 'member,reader',
    'REMOTE_ADDR': '10.1.2.3',
    **identity.confirmed('u-broker', fake.OWNER),   # auth_token confirmed the headers
}
ENVELOPE_KEYS = {'message_id', 'publisher_id', 'event_type', 'priority', 'payload',
                 'timestamp'}
TIMESTAMP = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?')
NEW_ID = fake.NEW_IDS[0]

# per (format, image): (topic, routing-key priority, event_type, envelope priority),
# in the order the calls happened.  The filter keeps the order per resource (its
# shard key), not across resources.
EXPECTED = {
    ('glance', NEW_ID): [('notifications', 'info', 'image.create', 'INFO'),
                         ('notifications', 'warn', 'image.update', 'WARN'),
                         ('notifications', 'error', 'image.delete', 'ERROR')],
    ('glance', fake.ACTIVE_ID): [('notifications', 'info', 'image.send', 'INFO')],
    ('cadf', NEW_ID): [('audit', 'info', 'audit.image.create', 'INFO'),
                       ('audit', 'error', 'audit.image.update', 'ERROR'),   # refused_priority
                       ('audit', 'error', 'audit.image.delete', 'ERROR')],
    ('cadf', fake.ACTIVE_ID): [('audit', 'info', 'audit.image.download', 'INFO')],
}
N_EXPECTED = sum(len(v) for v in EXPECTED.values())


def _call(app, method, path, body=None):
    req = webob.Request.blank(path, method=method)
    req.environ.update(IDENTITY)
    if body is not None:
        data = json.dumps(body).encode()
        req.environ['wsgi.input'] = io.BytesIO(data)
        req.environ['CONTENT_LENGTH'] = str(len(data))
        req.environ['CONTENT_TYPE'] = 'application/json'
    status = []

    def start_response(line, headers, exc_info=None):
        status.append(line)
        return lambda data: None

    result = app(req.environ, start_response)
    try:
        data = b''.join(result)
    finally:
        getattr(result, 'close', lambda: None)()
    return int(status[0].split()[0]), data


def _run_calls(mw) -> list:
    out = [_call(mw, 'POST', '/v2/images', {'name': 'broker-a', 'disk_format': 'raw',
                                            'container_format': 'bare'}),
           _call(mw, 'GET', '/v2/images/%s/file' % fake.ACTIVE_ID),
           _call(mw, 'PATCH', '/v2/images/%s' % NEW_ID, [{'op': 'replace', 'path': '/name',
                                                          'value': 'x'}]),
           _call(mw, 'DELETE', '/v2/images/%s' % NEW_ID)]
    assert mw.delivery.flush(20.0), 'the sender did not drain its queue'
    return out


def _filter(driver, conf, broker, app, journal_dir):
    keys = {'oslo_config_config': conf, 'driver': driver, 'journal_dir': str(journal_dir),
            'transport_url': broker.transport_url, 'formats': 'cadf,glance',
            'cadf_topics': broker.name('audit'), 'glance_topics': broker.name('notifications'),
            'publisher_id': PUBLISHER, 'retry': '0'}
    return filter_factory({}, **keys)(app)


_fmt = bh.fmt_of


def _key(event_type, payload):
    return _fmt(event_type), bh.image_of(event_type, payload)


def _per_key(items, get):
    """{(format, image): [get(item), ...]} keeping the items' order."""
    out = {}
    for item in items:
        message = item.get('message', item)          # a tap item or a message
        out.setdefault(_key(message['event_type'], message['payload']), []).append(get(item))
    return out


def _normalized(event_type, priority, payload):
    if _fmt(event_type) == 'cadf':
        payload = {k: v for k, v in payload.items() if k not in ('id', 'eventTime')}
    return event_type, priority, payload


@pytest.fixture(scope='module')
def scenario(broker, tmp_path_factory):
    exchange = broker.name('audit_notifier_test')
    topics = [broker.name('audit'), broker.name('notifications')]

    # 1. the reference: oslo.messaging's test driver, same calls, no broker
    mark = len(_impl_test.NOTIFICATIONS)
    mw_test = _filter('test', bh.private_conf(exchange), broker, fake.FakeImageAPI(),
                      tmp_path_factory.mktemp('spool-test'))
    test_results = _run_calls(mw_test)
    mw_test.delivery.stop()
    reference = [copy.deepcopy(entry[1]) for entry in list(_impl_test.NOTIFICATIONS)[mark:]
                 if entry[1].get('publisher_id') == PUBLISHER]

    # 2. the same calls over RabbitMQ; the listener has its own conf, same exchange
    listener = bh.NotificationListener(broker.transport_url, bh.private_conf(exchange), topics)
    tap = bh.Tap(broker.amqp_url, exchange, topics)
    admin = bh.AmqpAdmin(broker.amqp_url)
    app = fake.FakeImageAPI()
    mw = _filter('messagingv2', bh.private_conf(exchange), broker, app,
                 tmp_path_factory.mktemp('spool'))
    envelopes = bh.record_envelopes(mw.delivery)
    try:
        listener.start()
        tap.start()
        results = _run_calls(mw)
        counters = dict(mw.delivery.counters)
        # every publish returned: exactly len(envelopes) messages are on their way
        tapped = tap.wait_for(len(envelopes), 30.0)
        received = listener.wait_for(len(envelopes), 30.0)
    finally:
        mw.delivery.stop()           # closes the leaves
        listener.stop()
        tap.stop()
        leftover = admin.delete_queues(listener.queue_names())
        admin.delete_exchange(exchange)
    return {'reference': reference, 'test_results': test_results, 'results': results,
            'envelopes': envelopes, 'tapped': tapped, 'received': received,
            'counters': counters, 'app_calls': app.calls, 'leftover': leftover,
            'topics': dict(zip(('cadf', 'glance'), topics)), 'exchange': exchange}


def test_calls_answered_as_the_app_answers(scenario):
    statuses = [status for status, _ in scenario['results']]
    assert statuses == [201, 200, 403, 500]
    assert [s for s, _ in scenario['test_results']] == statuses
    assert scenario['results'][1][1] == fake.DATA
    counters = scenario['counters']
    assert (counters['sent'], counters['send_errors'], counters['dropped'],
            counters['dead_letters'], counters['build_errors']) == (N_EXPECTED, 0, 0, 0, 0)
    assert len(scenario['envelopes']) == N_EXPECTED


def test_routing_keys_priorities_and_order(scenario, broker):
    """The raw tap shows exchange, routing key (<topic>.<priority>) and order."""
    got = _per_key(scenario['tapped'], lambda i: (i['routing_key'], i['event_type'],
                                                  i['message']['priority']))
    assert got == {key: [('%s.%s' % (broker.name(topic), prio), event_type, priority)
                         for topic, prio, event_type, priority in expected]
                   for key, expected in EXPECTED.items()}
    assert {i['exchange'] for i in scenario['tapped']} == {scenario['exchange']}
    assert len(scenario['tapped']) == N_EXPECTED


def test_listener_receives_exactly_what_the_filter_sent(scenario):
    received = scenario['received']
    envelopes = {e['message_id']: e for e in scenario['envelopes']}
    assert len(envelopes) == N_EXPECTED
    assert len(received) == N_EXPECTED, [(r['priority'], r['event_type']) for r in received]
    assert {r['message_id'] for r in received} == set(envelopes)
    for r in received:
        sent = envelopes[r['message_id']]
        assert r['publisher_id'] == PUBLISHER == sent['publisher_id']
        assert r['event_type'] == sent['event_type']
        assert r['priority'] == sent['priority'].lower()
        assert r['timestamp'] == sent['timestamp']
        assert r['payload'] == sent['payload']
        assert r['ctxt'] in ({}, {'client_timeout': None})

    # per image and priority queue the listener delivers in the filter's send order
    def order(items):
        return {(k, p): [m for m, prio in v if prio == p]
                for k, v in _per_key(items, lambda i: (
                    i['message_id'], i['priority'].lower())).items()
                for p in ('info', 'warn', 'error')}
    assert order(received) == order(scenario['envelopes'])
    assert [(r['priority'], r['event_type']) for r in received
            if _key(r['event_type'], r['payload']) == ('glance', NEW_ID)] == [
        ('info', 'image.create'), ('warn', 'image.update'), ('error', 'image.delete')]


def test_payloads_equal_the_test_drivers(scenario):
    """Over the broker, each notification is what the test driver got for the same
    call: event type, priority and payload (CADF id and eventTime aside)."""
    def normalized(messages):
        return _per_key(messages, lambda m: _normalized(m['event_type'], m['priority'],
                                                        m['payload']))
    reference = normalized(scenario['reference'])
    assert sum(len(v) for v in reference.values()) == N_EXPECTED
    assert normalized([i['message'] for i in scenario['tapped']]) == reference


def test_payload_fields(scenario):
    by_type = {i['event_type']: i['message']['payload'] for i in scenario['tapped']}
    create = by_type['image.create']
    assert (create['id'], create['name'], create['status'], create['owner'],
            create['is_public'], create['deleted']) == (NEW_ID, 'broker-a', 'queued',
                                                        fake.OWNER, False, False)
    assert by_type['image.send'] == {
        'bytes_sent': len(fake.DATA), 'image_id': fake.ACTIVE_ID, 'owner_id': fake.OWNER,
        'receiver_tenant_id': fake.OWNER, 'receiver_user_id': 'u-broker',
        'destination_ip': '10.1.2.3'}
    assert isinstance(by_type['image.update'], str) and '403' in by_type['image.update']
    assert isinstance(by_type['image.delete'], str) and '500' in by_type['image.delete']
    cadf = {et: p for et, p in by_type.items() if et.startswith('audit.')}
    assert {et: (p['outcome'], p['reason']['reasonCode'], p['target']['id'],
                 p['initiator']['id'], p['action']) for et, p in cadf.items()} == {
        'audit.image.create': ('success', '201', NEW_ID, 'u-broker', 'create'),
        'audit.image.download': ('success', '200', fake.ACTIVE_ID, 'u-broker', 'read'),
        'audit.image.update': ('failure', '403', NEW_ID, 'u-broker', 'update'),
        'audit.image.delete': ('failure', '500', NEW_ID, 'u-broker', 'delete')}
    assert cadf['audit.image.download']['measurements'][0]['result'] == len(fake.DATA)


def test_envelope_contract(scenario):
    ids = []
    for item in scenario['tapped']:
        assert item['outer']['oslo.version'] == '2.0'            # messagingv2 envelope
        message = item['message']
        # oslo.messaging adds _unique_id (its duplicate filter) and nothing else
        assert set(message) == ENVELOPE_KEYS | {'_unique_id'}, sorted(message)
        assert message['publisher_id'] == PUBLISHER
        assert TIMESTAMP.fullmatch(message['timestamp']), message['timestamp']
        datetime.datetime.fromisoformat(message['timestamp'])
        assert str(uuid.UUID(message['message_id'])) == message['message_id']
        ids.append(message['message_id'])
    assert len(set(ids)) == len(ids) == N_EXPECTED


def test_no_token_anywhere(scenario):
    assert TOKEN not in json.dumps(scenario['received'], default=str)
    for item in scenario['tapped']:
        assert TOKEN not in item['raw']
    assert TOKEN not in json.dumps(scenario['reference'])


def test_queues_cleaned_up(scenario):
    # the info/warn/error queues of both topics existed (the listener declared them)
    # and were empty when deleted: nothing was left unconsumed.
    for topic in scenario['topics'].values():
        for prio in ('info', 'warn', 'error'):
            assert scenario['leftover']['%s.%s' % (topic, prio)] == 0
