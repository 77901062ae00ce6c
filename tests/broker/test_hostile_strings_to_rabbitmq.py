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

"""Hostile request strings through a REAL RabbitMQ: the event a real oslo.messaging
listener receives is exactly the one the filter sent, capped and clean (issue 8,
items 11-13): invalid UTF-8, NUL, control characters and lone surrogates in the
path, query, headers and error body; a 64 KiB path id, a 256 KiB user agent and a
1 MiB query; secrets under names the raw-string matching missed."""

from __future__ import annotations

import io
import json
import sys

import pytest

import broker_helpers as bh
from audit_notifier.middleware import filter_factory
from tests.support import identity

pytestmark = pytest.mark.broker

PUBLISHER = 'image.broker-hostile'
MARK = '...[truncated]'
SECRET = 's3cr3t-hostile'
ERROR_BODY = b'{"message": "bad \\ud800 value\\u0000 {\'password\': \'' + SECRET.encode() + \
    b'\'}"}'


def _app(environ, start_response):
    start_response('400 Bad Request', [('Content-Type', 'application/json'),
                                       ('Content-Length', str(len(ERROR_BODY)))])
    return [ERROR_BODY]


def _environ():
    environ = {
        'REQUEST_METHOD': 'PATCH', 'SCRIPT_NAME': '',
        # PEP 3333: the URL's bytes decoded as latin-1 (invalid UTF-8, NUL, ESC)
        'PATH_INFO': '/v2/images/a\xff\x00\x1b' + 'b' * (64 * 1024),
        'QUERY_STRING': 'pass%77ord=' + SECRET + '&q=\xff\x00&pad=' + 'p' * (1024 * 1024),
        'HTTP_USER_AGENT': 'agent\udcff\x00' + 'u' * (256 * 1024),
        'HTTP_X_IDENTITY_STATUS': 'Confirmed', 'HTTP_X_USER_ID': 'u-hostile',
        'HTTP_X_PROJECT_ID': 'p-hostile', 'HTTP_X_ROLES': 'member',
        'REMOTE_ADDR': '10.9.8.7', 'SERVER_NAME': 'glance.example.org',
        'SERVER_PORT': '9292', 'SERVER_PROTOCOL': 'HTTP/1.1', 'wsgi.url_scheme': 'http',
        'wsgi.version': (1, 0), 'wsgi.input': io.BytesIO(b''), 'wsgi.errors': sys.stderr,
        'wsgi.multithread': True, 'wsgi.multiprocess': False, 'wsgi.run_once': False,
    }
    environ.update(identity.confirmed('u-hostile', 'p-hostile'))
    return environ


@pytest.fixture(scope='module')
def delivered(broker, tmp_path_factory):
    exchange = broker.name('audit_notifier_hostile')
    topics = [broker.name('audit'), broker.name('notifications')]
    listener = bh.NotificationListener(broker.transport_url, bh.private_conf(exchange), topics)
    admin = bh.AmqpAdmin(broker.amqp_url)
    mw = filter_factory({}, oslo_config_config=bh.private_conf(exchange),
                        driver='messagingv2', transport_url=broker.transport_url,
                        journal_dir=str(tmp_path_factory.mktemp('journal-hostile')),
                        formats='cadf,glance', cadf_topics=topics[0],
                        glance_topics=topics[1], publisher_id=PUBLISHER, retry='0')(_app)
    envelopes = bh.record_envelopes(mw.delivery)
    try:
        listener.start()
        statuses = []
        body = b''.join(mw(_environ(), lambda status, headers, exc=None: statuses.append(
            status)))
        assert mw.delivery.flush(20.0), 'the sender did not drain its queue'
        received = listener.wait_for(2, 30.0)
        counters = dict(mw.delivery.counters)
    finally:
        mw.delivery.stop()
        listener.stop()
        admin.delete_queues(listener.queue_names())
        admin.delete_exchange(exchange)
    return statuses, body, envelopes, received, counters


def test_the_app_answered_untouched(delivered):
    statuses, body, _, _, counters = delivered
    assert (statuses, body) == (['400 Bad Request'], ERROR_BODY)
    assert (counters['sent'], counters['send_errors'], counters['build_errors']) == (2, 0, 0)


def test_the_listener_gets_exactly_the_clean_events(delivered):
    _, _, envelopes, received, _ = delivered
    assert sorted(r['message_id'] for r in received) == sorted(e['message_id']
                                                               for e in envelopes)
    sent = {e['event_type']: e for e in envelopes}
    got = {r['event_type']: r for r in received}
    assert set(got) == {'audit.image.update', 'image.update'}
    for event_type, r in got.items():
        assert r['payload'] == sent[event_type]['payload']
    cadf = got['audit.image.update']['payload']
    path = '/v2/images/a%FF%00%1B' + 'b' * (2048 - len(MARK) - len('/v2/images/a%FF%00%1B'))
    assert cadf['requestPath'] == (
        path + MARK + '?pass%77ord=***&q=%FF%00&pad=' +
        'p' * (2048 - len(MARK) - len('pass%77ord=***&q=%FF%00&pad=')) + MARK)
    assert cadf['target']['id'] == 'a\ufffd\ufffd\ufffd' + 'b' * (256 - 4 - len(MARK)) + MARK
    assert cadf['initiator']['host']['agent'] == \
        'agent\ufffd\ufffd' + 'u' * (512 - 7 - len(MARK)) + MARK
    usage = got['image.update']['payload']
    assert usage == ("PATCH %s failed: 400 Bad Request: bad \ufffd value\ufffd "
                     "{'password': '***'}" % (path + MARK))
    assert SECRET not in json.dumps(list(got.values()))
