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

"""Redaction: names decoded and normalised, one configurable list, applied to the
query (journal and requestPath), error texts, error bodies in the journal and the
user agent."""

from __future__ import annotations

import json

import pytest

from audit_notifier import ConfigError
from audit_notifier.delivery import record as record_mod
from audit_notifier.exchange import FACT_KEYS, FINISHED, Exchange, request_facts
from audit_notifier.redaction import DEFAULT, DEFAULT_NAMES, Redactor

IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'

# Names the raw-string matching let through (issue 8, item 11), as a client sends them.
ESCAPED_BEFORE = ['pass%77ord', '%74oken', 'pwd', 'pass', 'auth', 'AWSAccessKeyId',
                  'x_access_key', 'signature', 'temp_url_sig']
MORE_SECRET_NAMES = ['token', 'X-Auth-Token', 'access_token', 'password', 'os_password',
                     'passwd', 'pass+word', 'PASSWORD', 'client_secret', 'secret_key',
                     'key', 'api_key', 'api-key', 'private_key', 'X-Amz-Signature',
                     'X-Amz-Credential', 'X-Amz-Security-Token', 'sig', 'credentials',
                     'authorization', 'passphrase', 'auth%5Bpassword%5D']
INNOCENT_NAMES = ['limit', 'marker', 'sort_key', 'sort_dir', 'sort', 'name', 'visibility',
                  'member_status', 'owner', 'status', 'tag', 'os_hidden', 'checksum',
                  'os_hash_value', 'size_min', 'created_at', 'detail', 'keys', 'author',
                  'passive', 'design', 'keystone_id']


@pytest.mark.parametrize('name', ESCAPED_BEFORE + MORE_SECRET_NAMES)
def test_secret_names_are_redacted_as_sent(name):
    query = 'limit=5&%s=s3cr3t%%21&marker=abc' % name
    assert DEFAULT.query(query) == 'limit=5&%s=***&marker=abc' % name


@pytest.mark.parametrize('name', INNOCENT_NAMES)
def test_innocent_names_keep_their_values(name):
    query = '%s=value-1&limit=5' % name
    assert DEFAULT.query(query) == query


@pytest.mark.parametrize('query, expected', [
    ('', ''),
    ('detail', 'detail'),                              # no value at all
    ('token=', 'token=***'),
    ('token=a&token=b;pwd=c', 'token=***&token=***;pwd=***'),
    ('a=1&&token=x=y', 'a=1&&token=***'),
    # credentials in a URL value, plain or percent-encoded
    ('next=http://u:pw@host/x&limit=1', 'next=http://***@host/x&limit=1'),
    ('next=http%3A%2F%2Fu%3Apw%40host%2Fx', 'next=http%3A%2F%2F***%40host%2Fx'),
    ('mail=a%40b.org', 'mail=a%40b.org'),
])
def test_query_edge_cases(query, expected):
    assert DEFAULT.query(query) == expected


@pytest.mark.parametrize('text, expected', [
    ('rabbit://glance:s3cr3t@broker:5672/', 'rabbit://***@broker:5672/'),
    ('kafka://u:p@k1:9092,rabbit://a:b@h/', 'kafka://***@k1:9092,rabbit://***@h/'),
    ('swift+https://tenant%3Auser:pa:ss@swift.example.org/v1/c/o',
     'swift+https://***@swift.example.org/v1/c/o'),
    ('failed to fetch http://user:pw@host/x: 500', 'failed to fetch http://***@host/x: 500'),
    ('/v2/images?token=abc&limit=3', '/v2/images?token=***&limit=3'),
    ('Invalid visibility value: secret=hunter2', 'Invalid visibility value: secret=***'),
    # the value runs to the next space: a full stop after it goes with it
    ('Invalid sort key: pass%77ord=x. It must be', 'Invalid sort key: pass%77ord=*** It must be'),
    ("'password=hunter2' is not of type 'integer'", "'password=***' is not of type 'integer'"),
    ("{'password': 'hunter2', 'name': 'x'}", "{'password': '***', 'name': 'x'}"),
    ('{"api_key": "a\\"b", "x": "y", "token": 12345}',
     '{"api_key": "***", "x": "y", "token": ***}'),
    # a Python repr inside a JSON string (a whole error body)
    ('{"message": "bad {\'Temp-URL-Sig\': \'abc\'}"}',
     '{"message": "bad {\'Temp-URL-Sig\': \'***\'}"}'),
])
def test_free_text(text, expected):
    assert DEFAULT.text(text) == expected


@pytest.mark.parametrize('text', [
    'GET /v2/images/abc failed: 404 Not Found: No image found',
    'ssh://user@host/path',
    'mailto:someone@example.org',
    'limit=5&marker=abc',
    "{'name': 'x', 'disk_format': 'raw'}",
    'sort_key=name is not one of: a=b',
    '',
])
def test_innocent_text_is_left_alone(text):
    assert DEFAULT.text(text) == text


# -- the option ---------------------------------------------------------------------------

def test_the_list_is_an_option_and_replaces_the_default():
    mine = Redactor(['*cookie*', 'ticket'])
    assert mine.query('session_cookie=a&Ticket=b&token=c') == \
        'session_cookie=***&Ticket=***&token=c'
    # entries are normalised like names: *access_key* is *accesskey*
    assert Redactor(['*access_key*']).query('X-Access-Key=a&accesskeyid=b') == \
        'X-Access-Key=***&accesskeyid=***'


@pytest.mark.parametrize('names, problem', [
    (['*token*', '-_'], "entry '-_' has no letter, digit or wildcard"),
    ([], 'empty'),
])
def test_a_bad_list_is_one_config_error(names, problem):
    with pytest.raises(ConfigError) as err:
        Redactor(names)
    assert str(err.value).startswith('audit_notifier: option redact_names: %s; ' % problem)
    assert '\n' not in str(err.value)


def test_the_paste_option_reaches_journal_and_events(make_filter, captured, wsgi):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [b'{"images": []}']
    mw = make_filter(app, redact_names='*cookie*, pwd')
    env = wsgi.environ('GET', '/v2/images', query='my_cookie=c1&pwd=p1&token=t1')
    wsgi.run(mw, env)
    [event] = captured.all()
    assert event['payload']['requestPath'] == '/v2/images?my_cookie=***&pwd=***&token=t1'


def test_a_bad_paste_option_fails_at_start_up(make_filter):
    with pytest.raises(ConfigError) as err:
        make_filter(lambda e, s: [], redact_names='*token*,  ..  ')
    assert str(err.value) == (
        "audit_notifier: option redact_names: entry '..' has no letter, digit or wildcard; "
        'remove it, or name what to redact, e.g. *token*')


# -- the journal and the events ---------------------------------------------------------

def test_the_journal_never_holds_an_escaped_secret(wsgi):
    query = '&'.join('%s=s3cr3t-%d' % (name, i) for i, name in enumerate(ESCAPED_BEFORE))
    facts = request_facts(wsgi.environ('GET', '/v2/images', query=query))
    assert facts[FACT_KEYS.index('QUERY_STRING')] == '&'.join('%s=***' % n for n in ESCAPED_BEFORE)
    assert 's3cr3t' not in repr(facts)


def test_request_path_and_user_agent_are_redacted(make_filter, captured, wsgi, cadf_valid):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [b'{}']
    mw = make_filter(app)
    query = 'limit=2&' + '&'.join('%s=s3cr3t' % n for n in ESCAPED_BEFORE)
    env = wsgi.environ('GET', '/v2/images/%s' % IMAGE, query=query, headers={
        'User-Agent': 'mirror/1.0 (+https://bot:s3cr3t@example.org/) api_key=s3cr3t'})
    wsgi.run(mw, env)
    [event] = captured.all()
    payload = event['payload']
    assert payload['requestPath'] == '/v2/images/%s?limit=2&%s' % (
        IMAGE, '&'.join('%s=***' % n for n in ESCAPED_BEFORE))
    assert payload['initiator']['host']['agent'] == \
        'mirror/1.0 (+https://***@example.org/) api_key=***'
    assert 's3cr3t' not in json.dumps(event)
    cadf_valid(payload)


GLANCE_400 = json.dumps({
    'message': "Provided object does not match schema 'image': {'password': 'hunter2'} is "
               "not of type 'string'\n\nOn instance['password']:\n    {'password': "
               "'hunter2'}<br /><br />\n\n\n",
    'code': '400 Bad Request', 'title': 'Bad Request'}).encode()


def test_an_error_body_quoting_a_secret_is_redacted_in_journal_and_event(
        make_filter, captured, wsgi):
    def app(environ, start_response):
        start_response('400 Bad Request', [('Content-Type', 'application/json'),
                                           ('Content-Length', str(len(GLANCE_400)))])
        return [GLANCE_400]
    mw = make_filter(app, formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('PATCH', '/v2/images/%s' % IMAGE))
    update = captured.one('image.update')
    assert (update['priority'], update['payload']) == ('WARN', (
        "PATCH /v2/images/%s failed: 400 Bad Request: Provided object does not match "
        "schema 'image': {'password': '***'} is not of type 'string' On "
        "instance['password']: {'password': '***'}" % IMAGE))
    # the journal keeps the body for the sender, without the secret
    segments = [p for p in _journal_files(mw)]
    assert segments
    bodies = [r['bd'] for p in segments for _, _, r in record_mod.decode_frames(p)
              if r and 'bd' in r]
    assert bodies == [GLANCE_400.replace(b"'hunter2'", b"'***'")]


def test_success_bodies_keep_their_values(wsgi):
    """A created image's record is the payload Glance sends too: only credential
    URLs go, properties named like secrets stay (doc/source/admin/security.rst)."""
    body = b'{"id": "i1", "password": "kept", "u": "http://a:b@h/"}'
    exchange = Exchange(None, {}, [], 0.0)
    exchange.call, exchange.status, exchange.body = 1, '201 Created', [body]
    rec = record_mod.of_phase(FINISHED, exchange, False, frozenset(), DEFAULT)
    assert rec['bd'] == b'{"id": "i1", "password": "kept", "u": "http://***@h/"}'


def _journal_files(mw):
    import os
    directory = mw.delivery.directory
    for name in sorted(os.listdir(directory)):
        if name.endswith('.journal'):
            with open(os.path.join(directory, name), 'rb') as f:
                yield f.read()


def test_default_names_are_documented():
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, 'doc', 'source', 'admin', 'security.rst')
    with open(path, encoding='utf-8') as f:
        text = f.read()
    for name in DEFAULT_NAMES:
        assert '``%s``' % name in text, name
