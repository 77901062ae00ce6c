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

"""Client-controlled strings in events: capped with a marker, valid UTF-8, printable.

Through the real filter (oslo.messaging test driver); exact lengths and values.
"""

from __future__ import annotations

import json

import pytest
from oslo_serialization import jsonutils

from audit_notifier import sanitize
from audit_notifier.exchange import FACT_KEYS, request_facts
from audit_notifier.redaction import Redactor

MARK = '...[truncated]'
IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'
MIB = 1024 * 1024


def json_app(status='200 OK', body=b'{}', headers=()):
    def app(environ, start_response):
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(body)))] + list(headers))
        return [body]
    return app


def parseable(envelope):
    """What every consumer must manage: UTF-8 JSON, oslo's jsonutils round trip."""
    json.dumps(envelope, ensure_ascii=False).encode('utf-8')      # no lone surrogate
    assert jsonutils.loads(jsonutils.dumps(envelope)) == envelope
    text = jsonutils.dumps(envelope, ensure_ascii=False)
    assert '\x00' not in text and '\\u0000' not in text
    return envelope


def test_marker_is_documented_and_fixed():
    assert sanitize.MARK == MARK
    assert (sanitize.PATH_LIMIT, sanitize.QUERY_LIMIT, sanitize.FIELD_LIMIT,
            sanitize.AGENT_LIMIT, sanitize.ROLES_LIMIT, sanitize.ERROR_LIMIT) == \
        (2048, 2048, 256, 512, 2048, 256)


# -- caps ------------------------------------------------------------------------------------

def test_a_1_mib_query(make_filter, captured, wsgi, cadf_valid):
    mw = make_filter(json_app())
    query = 'limit=5&q=' + 'b' * MIB
    wsgi.run(mw, wsgi.environ('GET', '/v2/images', query=query))
    [event] = captured.all()
    path = event['payload']['requestPath']
    assert path == '/v2/images?' + query[:2048 - len(MARK)] + MARK
    assert len(path) == len('/v2/images?') + 2048
    cadf_valid(parseable(event)['payload'])


def test_the_query_is_cut_before_it_is_redacted_on_the_request_path(wsgi):
    seen = []

    class Spy(Redactor):
        def query(self, query):
            seen.append(len(query))
            return super().query(query)
    env = wsgi.environ('GET', '/v2/images', query='token=' + 'x' * MIB,
                       headers={'User-Agent': 'u' * MIB, 'X-User-Name': 'n' * MIB})
    facts = request_facts(env, Spy(['*token*']))
    assert seen == [sanitize.QUERY_LIMIT]
    assert facts[FACT_KEYS.index('QUERY_STRING')] == 'token=***' + MARK
    assert facts[FACT_KEYS.index('HTTP_USER_AGENT')] == 'u' * sanitize.JOURNAL_LIMIT + MARK
    assert facts[FACT_KEYS.index('HTTP_X_USER_NAME')] == 'n' * sanitize.JOURNAL_LIMIT + MARK


def test_a_query_cut_inside_a_secret_stays_redacted(make_filter, captured, wsgi):
    mw = make_filter(json_app())
    query = 'a=' + 'x' * 1000 + '&password=' + 's' * 2000
    wsgi.run(mw, wsgi.environ('GET', '/v2/images', query=query))
    [event] = captured.all()
    assert event['payload']['requestPath'] == \
        '/v2/images?a=' + 'x' * 1000 + '&password=***' + MARK
    assert 'sss' not in json.dumps(event)


def test_a_64_kib_path_id(make_filter, captured, wsgi, cadf_valid):
    mw = make_filter(json_app('404 Not Found', b'{"message": "no"}'), formats='cadf,glance',
                     usage_failures='true')
    image_id = 'a' * (64 * 1024)
    wsgi.run(mw, wsgi.environ('PATCH', '/v2/images/' + image_id))
    cadf = parseable(captured.one('audit.image.update'))['payload']
    assert cadf['target']['id'] == 'a' * (256 - len(MARK)) + MARK
    assert cadf['requestPath'] == ('/v2/images/' + image_id)[:2048 - len(MARK)] + MARK
    cadf_valid(cadf)
    update = parseable(captured.one('image.update'))
    assert update['payload'] == 'PATCH %s failed: 404 Not Found: no' % cadf['requestPath']


def test_a_256_kib_user_agent_and_forged_identity(make_filter, captured, wsgi, cadf_valid):
    mw = make_filter(json_app(headers=[('X-OpenStack-Request-ID', 'req-' + 'r' * 1000)]))
    headers = {'User-Agent': 'U' * (256 * 1024), 'X-User-Id': 'i' * 70000,
               'X-User-Name': 'n' * 300, 'X-Roles': 'admin,' + 'x' * 5000}
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/' + IMAGE, headers=headers))
    [event] = captured.all()
    initiator = parseable(event)['payload']['initiator']
    assert initiator['host']['agent'] == 'U' * (512 - len(MARK)) + MARK
    assert initiator['request_id'] == ('req-' + 'r' * 1000)[:256 - len(MARK)] + MARK
    claimed = initiator['claimed']              # no auth_token: claims, capped
    assert claimed['user_id'] == 'i' * (256 - len(MARK)) + MARK
    assert claimed['name'] == 'n' * (256 - len(MARK)) + MARK
    assert claimed['roles'] == ['admin', 'x' * (2048 - len('admin,') - len(MARK)) + MARK]
    cadf_valid(event['payload'])


def test_a_long_error_text_is_capped(make_filter, captured, wsgi):
    message = 'Invalid value: ' + 'v' * 5000
    mw = make_filter(json_app('400 Bad Request', json.dumps({'message': message}).encode()),
                     formats='glance', usage_failures='true')
    wsgi.run(mw, wsgi.environ('PATCH', '/v2/images/' + IMAGE))
    update = parseable(captured.one('image.update'))
    assert update['payload'] == 'PATCH /v2/images/%s failed: 400 Bad Request: %s' % (
        IMAGE, message[:256 - len(MARK)] + MARK)


# -- valid UTF-8, nothing unprintable -----------------------------------------------------

@pytest.mark.parametrize('raw_id, path, target_id', [
    # PEP 3333: PATH_INFO is the URL's bytes decoded as latin-1
    ('caf\xc3\xa9', '/v2/images/caf%C3%A9', 'caf\u00e9'),
    ('a\xff\xfeb', '/v2/images/a%FF%FEb', 'a\ufffd\ufffdb'),            # invalid UTF-8
    ('a\x00b\x1b[31m\x7f', '/v2/images/a%00b%1B%5B31m%7F', 'a\ufffdb\ufffd[31m\ufffd'),
    ('x?y=1#z %', '/v2/images/x%3Fy=1%23z%20%25', 'x?y=1#z %'),
    ('\udcff\ud800', '/v2/images/%ED%B3%BF%ED%A0%80', '\ufffd\ufffd'),  # lone surrogates
])
def test_hostile_path_bytes(make_filter, captured, wsgi, cadf_valid, raw_id, path, target_id):
    mw = make_filter(json_app())
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/' + raw_id))
    [event] = captured.all()
    payload = parseable(event)['payload']
    assert (payload['requestPath'], payload['target']['id']) == (path, target_id)
    cadf_valid(payload)


@pytest.mark.parametrize('query, shown', [
    ('a=\xff\x00 b', 'a=%FF%00%20b'),
    ('a=caf\xc3\xa9&b=%zz&c=%41', 'a=caf%C3%A9&b=%25zz&c=%41'),
    ('x[]=1&y="<>"', 'x%5B%5D=1&y=%22%3C%3E%22'),       # RFC 3986: not in a query
])
def test_hostile_query_bytes(make_filter, captured, wsgi, query, shown):
    mw = make_filter(json_app())
    wsgi.run(mw, wsgi.environ('GET', '/v2/images', query=query))
    [event] = captured.all()
    assert parseable(event)['payload']['requestPath'] == '/v2/images?' + shown


def test_hostile_header_values(make_filter, captured, wsgi, cadf_valid):
    mw = make_filter(json_app())
    headers = {'User-Agent': 'curl\x00/8\udcff\r\x1b', 'X-User-Name': 'Jos\xc3\xa9',
               'X-Project-Name': 'Jos\u00e9 \u0141', 'X-Image-Meta-Store': 'file\x00'}
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/' + IMAGE, headers=headers))
    [event] = captured.all()
    initiator = parseable(event)['payload']['initiator']
    assert initiator['host']['agent'] == 'curl\ufffd/8\ufffd\ufffd\ufffd'
    assert initiator['claimed']['name'] == 'Jos\u00e9'           # UTF-8 bytes, read as such
    assert initiator['claimed']['project_name'] == 'Jos\u00e9 \u0141'   # text, kept
    cadf_valid(event['payload'])


def test_error_text_with_escaped_surrogates_and_nul(make_filter, captured, wsgi):
    body = b'{"message": "bad \\ud800 value\\u0000 \\u001b[2J here"}'
    mw = make_filter(json_app('400 Bad Request', body), formats='glance')
    wsgi.run(mw, wsgi.environ('PATCH', '/v2/images/' + IMAGE))
    update = parseable(captured.one('image.update'))
    assert update['payload'] == ('PATCH /v2/images/%s failed: 400 Bad Request: '
                                 'bad \ufffd value\ufffd \ufffd[2J here' % IMAGE)


def test_the_journal_keeps_a_bounded_prefix_of_an_error_body(make_filter, captured, wsgi):
    """Redacting an error body runs on the request path: only its first
    ERROR_BODY_LIMIT bytes are redacted and kept; the explanation still comes out."""
    from audit_notifier.delivery import record
    from audit_notifier.exchange import Exchange
    message = 'Invalid value: password=hunter2 ' + 'v' * 60000
    body = json.dumps({'message': message}).encode()
    mw = make_filter(json_app('400 Bad Request', body), formats='glance')
    route = mw.route_map.by_key[('PATCH', '/v2/images/{image_id}')]
    exchange = Exchange(route, {'image_id': IMAGE}, [None] * len(FACT_KEYS))
    exchange.status, exchange.headers, exchange.body = '400 Bad Request', [], [body]
    kept = record.of_phase('finished', exchange, True, frozenset())['bd']
    assert kept == b'{"message": "Invalid value: password=*** ' + b'v' * (
        record.ERROR_BODY_LIMIT - len(b'{"message": "Invalid value: password=hunter2 '))
    wsgi.run(mw, wsgi.environ('PATCH', '/v2/images/' + IMAGE))
    update = parseable(captured.one('image.update'))
    explanation = 'Invalid value: password=*** ' + 'v' * 60000
    assert update['payload'] == 'PATCH /v2/images/%s failed: 400 Bad Request: %s' % (
        IMAGE, explanation[:256 - len(MARK)] + MARK)


@pytest.mark.parametrize('key, value', [
    ('HTTP_X_USER_NAME', 'alice'),
    ('HTTP_X_USER_NAME', 'a' * sanitize.FIELD_LIMIT),               # exactly the cap
    ('HTTP_X_USER_NAME', 'a' * (sanitize.FIELD_LIMIT + 1)),         # one past it
    ('HTTP_X_USER_NAME', 'alice' + MARK),                           # cut in the journal
    ('HTTP_X_USER_NAME', 'Jos\xc3\xa9'),                            # UTF-8 bytes as latin-1
    ('HTTP_X_USER_NAME', 'Jos\xe9'),                                # already text
    ('HTTP_X_USER_NAME', 'tab\there\x00nul'),                       # unprintable
    ('HTTP_X_USER_NAME', ''),
    ('HTTP_USER_AGENT', 'u' * sanitize.AGENT_LIMIT),                # its own cap
    ('HTTP_USER_AGENT', 'u' * (sanitize.AGENT_LIMIT + 1)),
    ('HTTP_X_ROLES', 'reader,' * 300),
])
def test_request_values_shortcut_gives_what_native_text_gives(key, value):
    """request_value returns short printable ASCII as it is without native_text's
    steps; every value gets exactly what native_text gives it."""
    limit = {'HTTP_USER_AGENT': sanitize.AGENT_LIMIT,
             'HTTP_X_ROLES': sanitize.ROLES_LIMIT}.get(key, sanitize.FIELD_LIMIT)
    assert sanitize.request_value(key, value) == sanitize.native_text(value, limit)


_ORDINARY = {'REQUEST_METHOD': 'GET', 'PATH_INFO': '/v2/images/x', 'QUERY_STRING': '',
             'HTTP_X_USER_NAME': 'alice', 'HTTP_X_ROLES': 'member,reader',
             'HTTP_USER_AGENT': 'python-glanceclient', 'REMOTE_ADDR': '192.0.2.10'}


@pytest.mark.parametrize('changed', [
    {},                                                             # all short ASCII
    {'HTTP_X_USER_NAME': 'a' * sanitize.FIELD_LIMIT},               # exactly the cap
    {'HTTP_X_USER_NAME': 'a' * (sanitize.FIELD_LIMIT + 1)},         # one past it
    {'HTTP_USER_AGENT': 'u' * (sanitize.AGENT_LIMIT + 1)},          # past its own cap
    {'HTTP_X_ROLES': 'reader,' * 300},                              # long, within its cap
    {'HTTP_X_USER_NAME': 'alice' + MARK},                           # cut in the journal
    {'HTTP_X_USER_NAME': 'al' + MARK[:5], 'HTTP_X_ROLES': MARK[5:]},  # MARK across two
    {'HTTP_X_USER_NAME': 'Jos\xc3\xa9'},                            # UTF-8 as latin-1
    {'HTTP_X_USER_NAME': 'tab\there'},                              # unprintable
    {'PATH_INFO': '/v2/images/\xc3\xa9' + 'p' * 3000},              # raw key: as it is
    {'QUERY_STRING': 'a=1\x00'},
    {'SERVER_PORT': 9292},                                          # not a str
    {'HTTP_X_USER_NAME': None},                                     # absent
])
def test_request_values_gives_what_request_value_gives_each(changed):
    """request_values checks all facts at once before any on its own: the dict is
    exactly what request_value makes of each value (raw keys untouched, absent
    ones left out), whichever way it went."""
    facts = dict(_ORDINARY, **changed)
    keys, values = list(facts), list(facts.values())
    raw = frozenset({'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING'})
    expected = {k: v if k in raw else sanitize.request_value(k, v)
                for k, v in facts.items() if v is not None}
    assert sanitize.request_values(keys, values, raw) == expected
