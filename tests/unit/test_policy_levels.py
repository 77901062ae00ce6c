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

"""Audit policy levels (issue 10): the policy loader, level selection, the request tee,
change extraction, redaction of captured content and the CADF attachments."""

from __future__ import annotations

import io
import json

import pytest

from audit_notifier import changes, observe, policy, routes
from audit_notifier._config import ConfigError
from audit_notifier.delivery import record
from audit_notifier.events import glance as glance_events
from audit_notifier.exchange import Exchange
from audit_notifier.redaction import DEFAULT as REDACTOR, captured_body

IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'
PATCH_TYPE = 'application/openstack-images-v2.1-json-patch'


# -- the loader ---------------------------------------------------------------------------

def write(tmp_path, text, name='policy.yaml'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize('text, where, problem', [
    ('rules: [', None, 'is not valid YAML'),
    ('- level: none\n', 'document', 'not a mapping with only the key rules'),
    ('rules: []\nextra: 1\n', 'document', 'not a mapping with only the key rules'),
    ('rules: []\n', 'rules', 'missing, empty or not a list'),
    ('rules: {level: none}\n', 'rules', 'missing, empty or not a list'),
    ('rules: [metadata]\n', 'rule 0', 'not a mapping'),
    ('rules:\n  - {level: metadata}\n  - {level: request, verbs: [PATCH]}\n', 'rule 1',
     'unknown key verbs'),
    ('rules: [{kinds: [write]}]\n', 'rule 0.level', "missing or unknown level None"),
    ('rules: [{level: full}]\n', 'rule 0.level', "missing or unknown level 'full'"),
    ('rules: [{level: none, events: image.read}]\n', 'rule 0.events',
     'not a non-empty list of strings'),
    ('rules: [{level: none, roles: []}]\n', 'rule 0.roles', 'not a non-empty list of strings'),
    ('rules: [{level: none, users: [1]}]\n', 'rule 0.users', 'not a non-empty list of strings'),
    ('rules: [{level: none, kinds: [delete]}]\n', 'rule 0.kinds', "unknown kind 'delete'"),
])
def test_every_load_error_is_one_line_naming_file_rule_and_field(
        tmp_path, text, where, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        policy.load(path)
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith('audit_notifier: audit policy %s' % path)
    if where is not None:
        assert message.startswith('audit_notifier: audit policy %s, %s: %s; '
                                  % (path, where, problem)), message
    else:
        assert problem in message


def test_policy_option_errors_name_the_option(tmp_path):
    with pytest.raises(ConfigError) as err:
        policy.load('strict')
    assert str(err.value) == ("audit_notifier: option audit_policy: no shipped policy named "
                              "'strict'; use one of default, metadata or the path of a YAML "
                              "policy file")
    missing = str(tmp_path / 'nope.yaml')
    with pytest.raises(ConfigError) as err:
        policy.load(missing)
    assert str(err.value) == ('audit_notifier: option audit_policy: policy file %s does not '
                              'exist; fix the path, or use a shipped policy (default, '
                              'metadata)' % missing)


def test_capture_limit_above_its_maximum_fails_at_start_up(make_filter):
    with pytest.raises(ConfigError) as err:
        make_filter(lambda e, s: [], capture_limit=str(policy.MAX_CAPTURE_LIMIT + 1))
    assert 'capture_limit' in str(err.value) and '\n' not in str(err.value)


# -- level selection ------------------------------------------------------------------------

def glance_map():
    return routes.load('glance', usage_rules=glance_events.RULES)


def route(method, path):
    return glance_map().match(method, path)[0]


def test_shipped_default_is_metadata_for_reads_and_lists_request_for_writes():
    pol = policy.load('default')
    assert pol.level_for(route('GET', '/v2/images/x'), {}) == policy.METADATA
    assert pol.level_for(route('GET', '/v2/images'), {}) == policy.METADATA
    assert pol.level_for(route('GET', '/v2/images/x/file'), {}) == policy.METADATA
    assert pol.level_for(route('PATCH', '/v2/images/x'), {}) == policy.REQUEST
    assert pol.level_for(route('DELETE', '/v2/images/x'), {}) == policy.REQUEST
    assert policy.load('metadata').level_for(route('PATCH', '/v2/images/x'), {}) == \
        policy.METADATA


def test_first_match_wins_and_unmatched_calls_are_metadata(tmp_path):
    pol = policy.load(write(tmp_path, (
        'rules:\n'
        '  - {level: none, events: ["image.member.*"]}\n'
        '  - {level: request_response, methods: [patch]}\n'
        '  - {level: none, kinds: [write]}\n')))
    assert pol.level_for(route('PUT', '/v2/images/x/members/m'), {}) == policy.NONE
    assert pol.level_for(route('PATCH', '/v2/images/x'), {}) == policy.REQUEST_RESPONSE
    assert pol.level_for(route('DELETE', '/v2/images/x'), {}) == policy.NONE
    assert pol.level_for(route('GET', '/v2/images/x'), {}) == policy.METADATA


def test_caller_selectors_match_only_a_confirmed_identity(tmp_path, wsgi):
    pol = policy.load(write(tmp_path, (
        'rules:\n'
        '  - {level: request_response, roles: [auditor], kinds: [write]}\n'
        '  - {level: none, projects: [p-quiet]}\n'
        '  - {level: request, kinds: [write]}\n')))
    patch = route('PATCH', '/v2/images/x')
    read = route('GET', '/v2/images/x')
    assert pol.route_level(patch) is None            # chosen per call
    assert pol.levels(patch) == {policy.REQUEST_RESPONSE, policy.NONE, policy.REQUEST}
    assert pol.levels(read) == {policy.NONE, policy.METADATA}
    auditor = dict(wsgi.environ(headers={'X-Identity-Status': 'Confirmed',
                                         'X-Roles': 'member, auditor'}),
                   **wsgi.CONFIRMED)
    assert pol.level_for(patch, auditor) == policy.REQUEST_RESPONSE
    # The same headers, forged: auth_token did not run, nobody confirmed them.
    forged = wsgi.environ(headers={'X-Identity-Status': 'Confirmed',
                                   'X-Roles': 'auditor', 'X-Project-Id': 'p-quiet'})
    assert pol.level_for(patch, forged) == policy.REQUEST
    assert pol.level_for(read, forged) == policy.METADATA
    quiet = dict(wsgi.environ(headers={'X-Identity-Status': 'Confirmed',
                                       'X-Project-Id': 'p-quiet'}), **wsgi.CONFIRMED)
    quiet['HTTP_X_PROJECT_ID'] = 'p-quiet'
    assert pol.level_for(read, quiet) == policy.NONE
    assert pol.level_for(patch, quiet) == policy.NONE


# -- the filter, end to end (a fake Glance) -------------------------------------------------

class FakeGlance:
    """PATCH applies a JSON patch to one image; GET returns it; PUT /file reads the data."""

    def __init__(self, **image):
        self.image = dict({'id': IMAGE, 'name': 'cirros', 'visibility': 'private',
                           'status': 'active', 'tags': []}, **image)
        self.bodies = []

    def __call__(self, environ, start_response):
        method, path = environ['REQUEST_METHOD'], environ['PATH_INFO']
        if method == 'PUT' and path.endswith('/file'):
            data = b''.join(iter(lambda: environ['wsgi.input'].read(7), b''))
            self.bodies.append(data)
            start_response('204 No Content', [])
            return []
        if method == 'PATCH':
            data = environ['wsgi.input'].read()
            self.bodies.append(data)
            for op in json.loads(data):
                self.image[op['path'][1:]] = op.get('value')
        body = json.dumps(self.image).encode()
        start_response('200 OK', [('Content-Type', 'application/json'),
                                  ('Content-Length', str(len(body)))])
        return [body]


def patch_env(wsgi, ops, **kw):
    return wsgi.environ('PATCH', '/v2/images/' + IMAGE, body=json.dumps(ops).encode(),
                        headers=dict({'Content-Type': PATCH_TYPE}, **wsgi.IDENTITY),
                        **dict(wsgi.CONFIRMED, **kw))


def cadf_of(captured, event_type='audit.image.update'):
    return captured.one(event_type)['payload']


def test_request_level_patch_carries_the_changes_with_old_values(make_filter, captured, wsgi,
                                                                 cadf_valid):
    app = FakeGlance()
    mw = make_filter(app, record_lookups='true')
    ops = [{'op': 'replace', 'path': '/visibility', 'value': 'public'},
           {'op': 'replace', 'path': '/name', 'value': 'cirros-2'},
           {'op': 'add', 'path': '/os_distro', 'value': 'cirros'}]
    sent = json.dumps(ops).encode()
    wsgi.run(mw, patch_env(wsgi, ops))
    assert app.bodies == [sent]                    # the app read exactly what was sent
    payload = cadf_of(captured)
    assert payload['attachments'] == [{
        'typeURI': 'mime:application/json', 'name': 'changes', 'content': [
            {'op': 'replace', 'path': '/visibility', 'value': 'public', 'old': 'private'},
            {'op': 'replace', 'path': '/name', 'value': 'cirros-2', 'old': 'cirros'},
            {'op': 'add', 'path': '/os_distro', 'value': 'cirros'}]}]
    ev = cadf_valid(payload)
    assert ev.attachments[0].name == 'changes'


def test_without_record_lookups_the_changes_have_no_old_values(make_filter, captured, wsgi):
    app = FakeGlance()
    mw = make_filter(app)                          # record_lookups = false
    wsgi.run(mw, patch_env(wsgi, [{'op': 'replace', 'path': '/visibility',
                                   'value': 'public'}]))
    assert cadf_of(captured)['attachments'][0]['content'] == [
        {'op': 'replace', 'path': '/visibility', 'value': 'public'}]


def test_metadata_level_keeps_todays_event(make_filter, captured, wsgi):
    app = FakeGlance()
    mw = make_filter(app, audit_policy='metadata', record_lookups='true')
    wsgi.run(mw, patch_env(wsgi, [{'op': 'replace', 'path': '/visibility',
                                   'value': 'public'}]))
    payload = cadf_of(captured)
    assert 'attachments' not in payload
    assert app.image['visibility'] == 'public'


def test_level_none_sends_no_cadf_event_but_keeps_glance_usage(
        make_filter, captured, wsgi, tmp_path):
    app = FakeGlance()
    path = write(tmp_path, 'rules: [{level: none, events: [image.update]}]\n')
    mw = make_filter(app, audit_policy=path, formats='cadf,glance')
    wsgi.run(mw, patch_env(wsgi, [{'op': 'replace', 'path': '/name', 'value': 'n'}]))
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/' + IMAGE))
    assert captured.types() == ['image.update', 'audit.image.read']


@pytest.mark.parametrize('mode', ['journal', 'memory'])
def test_request_response_level_adds_the_redacted_response(make_filter, captured, wsgi,
                                                           tmp_path, cadf_valid, mode):
    app = FakeGlance(db_password='hunter2')
    path = write(tmp_path, 'rules: [{level: request_response}]\n')
    mw = make_filter(app, audit_policy=path, delivery_mode=mode)
    wsgi.run(mw, patch_env(wsgi, [{'op': 'replace', 'path': '/name', 'value': 'n'}]))
    payload = cadf_of(captured)
    names = [a['name'] for a in payload['attachments']]
    assert names == ['changes', 'response']
    response = payload['attachments'][1]['content']
    assert response['name'] == 'n' and response['db_password'] == '***'
    assert 'hunter2' not in json.dumps(captured.all())
    cadf_valid(payload)


@pytest.mark.parametrize('size', [3000, 70000])          # kept by reference, or not at all
@pytest.mark.parametrize('streamed', [False, True])      # a list body, or a generator
def test_a_response_larger_than_the_cap_is_marked_truncated(make_filter, captured, wsgi,
                                                            tmp_path, size, streamed):
    app = FakeGlance(description='x' * size)
    path = write(tmp_path, 'rules: [{level: request_response}]\n')

    def served(environ, start_response):
        body = app(environ, start_response)
        return iter(body) if streamed else body
    mw = make_filter(served, audit_policy=path, capture_limit='1024')
    _, got = wsgi.run(mw, wsgi.environ('GET', '/v2/images/' + IMAGE))
    assert json.loads(got) == app.image
    payload = cadf_of(captured, 'audit.image.read')
    size = len(json.dumps(app.image).encode())
    assert payload['attachments'] == [{'typeURI': 'mime:application/json',
                                       'name': 'response',
                                       'content': {'truncated': True, 'bytes': size}}]


def test_a_request_larger_than_the_cap_is_marked_truncated(make_filter, captured, wsgi):
    app = FakeGlance()
    mw = make_filter(app, capture_limit='64')
    ops = [{'op': 'replace', 'path': '/name', 'value': 'n' * 100}]
    sent = json.dumps(ops).encode()
    wsgi.run(mw, patch_env(wsgi, ops))
    assert app.bodies == [sent]
    assert cadf_of(captured)['attachments'] == [{
        'typeURI': 'mime:application/json', 'name': 'request',
        'content': {'truncated': True, 'bytes': len(sent)}}]


def test_image_data_is_never_captured(make_filter, captured, wsgi, tmp_path):
    """Even at request_response with a JSON content type, an upload is only counted."""
    app = FakeGlance()
    path = write(tmp_path, 'rules: [{level: request_response}]\n')
    mw = make_filter(app, audit_policy=path)
    data = b'{"not": "json, image data"}' * 100
    env = wsgi.environ('PUT', '/v2/images/%s/file' % IMAGE, body=data,
                       headers={'Content-Type': 'application/json'})
    wsgi.run(mw, env)
    assert app.bodies == [data]
    assert type(env['wsgi.input']).__name__ == 'InputProbe'
    payload = cadf_of(captured, 'audit.image.upload')
    assert 'attachments' not in payload
    assert payload['measurements'][0]['result'] == len(data)


# -- the tee --------------------------------------------------------------------------------

class Input:
    """A wsgi.input with read and readline only (no iteration)."""

    def __init__(self, data):
        self._io = io.BytesIO(data)

    def read(self, *args):
        return self._io.read(*args)

    def readline(self, *args):
        return self._io.readline(*args)


def capture_exchange(cap):
    exchange = Exchange(route('PATCH', '/v2/images/x'), {}, [])
    exchange.capture = cap
    exchange.captured = bytearray()
    return exchange


def test_the_tee_hands_the_app_the_same_bytes_and_holds_at_most_the_cap():
    data = b'[{"op": "replace",\n "path": "/name",\n "value": "%s"}]' % (b'v' * 200)
    exchange = capture_exchange(100)
    tee = observe.CaptureInput(Input(data), exchange)
    assert not hasattr(tee, '__iter__') and hasattr(tee, 'readline')
    got, held = [], []
    while True:
        chunk = tee.read(16) if len(got) % 2 else tee.readline()
        if not chunk:
            break
        got.append(chunk)
        held.append(len(exchange.captured) if exchange.captured is not None else 0)
    assert b''.join(got) == data
    assert max(held) <= 100
    assert exchange.captured is None                # past the cap: nothing kept
    assert exchange.captured_size == len(data)


def test_the_tee_keeps_a_body_within_the_cap():
    data = b'{"status": "accepted"}'
    exchange = capture_exchange(len(data))
    tee = observe.CaptureInput(io.BytesIO(data), exchange)
    assert b''.join(tee) == data                     # iteration, as the input offers it
    assert bytes(exchange.captured) == data


# -- change extraction ----------------------------------------------------------------------

class Params:
    def __init__(self, **params):
        self.params = params

    def param(self, name):
        return self.params.get(name)


RECORD = {'visibility': 'private', 'name': 'a/b', 'tags': ['x'], 'status': 'active',
          'node_count': 3, 'cluster_template_id': 't-1', 'labels': {'k': 'v'}}


@pytest.mark.parametrize('kind, body, params, expected', [
    ('json-patch', [{'op': 'replace', 'path': '/visibility', 'value': 'public'}], {},
     [{'op': 'replace', 'path': '/visibility', 'value': 'public', 'old': 'private'}]),
    ('json-patch', [{'op': 'remove', 'path': '/labels/k'}], {},
     [{'op': 'remove', 'path': '/labels/k', 'old': 'v'}]),
    ('json-patch', [{'op': 'add', 'path': '/new~1prop', 'value': 1}], {},
     [{'op': 'add', 'path': '/new~1prop', 'value': 1}]),
    ('json-patch', {'not': 'a patch'}, {}, None),
    ('fields', {'status': 'accepted'}, {},
     [{'op': 'replace', 'path': '/status', 'value': 'accepted', 'old': 'active'}]),
    ('fields', {'node_count': 5}, {},
     [{'op': 'replace', 'path': '/node_count', 'value': 5, 'old': 3}]),
    ('fields', {'cluster_template': 't-2'}, {},
     [{'op': 'replace', 'path': '/cluster_template_id', 'value': 't-2', 'old': 't-1'}]),
    ('tag-add', None, {'tag_value': 'y'},
     [{'op': 'add', 'path': '/tags', 'value': 'y', 'old': ['x']}]),
    ('tag-remove', None, {'tag_value': 'x'},
     [{'op': 'remove', 'path': '/tags', 'value': 'x', 'old': ['x']}]),
    ('deactivate', None, {},
     [{'op': 'replace', 'path': '/status', 'value': 'deactivated', 'old': 'active'}]),
    ('reactivate', None, {}, [{'op': 'replace', 'path': '/status', 'value': 'active',
                               'old': 'active'}]),
])
def test_change_extraction(kind, body, params, expected):
    assert changes.extract(kind, body, RECORD, Params(**params), REDACTOR) == expected
    # Without a record (record_lookups off): the same, with no old values.
    without = changes.extract(kind, body, None, Params(**params), REDACTOR)
    if expected is None:
        assert without is None
    else:
        assert without == [{k: v for k, v in c.items() if k != 'old'} for c in expected]


# -- redaction of captured content ----------------------------------------------------------

def test_request_path_redaction_of_a_patch_masks_only_secret_paths():
    body = json.dumps([{'op': 'add', 'path': '/db_password', 'value': 'hun}t"er2'},
                       {'op': 'replace', 'path': '/visibility', 'value': 'public'}]).encode()
    kept = captured_body(REDACTOR, body)
    assert b'hun' not in kept and b'er2' not in kept
    assert json.loads(kept) == [{'op': 'add', 'path': '/db_password', 'value': '***'},
                                {'op': 'replace', 'path': '/visibility', 'value': 'public'}]


def test_request_path_redaction_of_objects_certificates_and_nested_secrets():
    assert json.loads(captured_body(REDACTOR, json.dumps(
        {'cluster_uuid': 'c', 'csr': '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END'
         ' CERTIFICATE REQUEST-----\n', 'password': 'p'}).encode())) == \
        {'cluster_uuid': 'c', 'csr': '***', 'password': '***'}
    # A secret name holding an object, or a patch setting one: nothing is kept.
    assert captured_body(REDACTOR, b'{"credential": {"id": "x", "blob": "s"}}') is None
    assert captured_body(REDACTOR, b'[{"op": "add", "path": "/api_key", '
                                   b'"value": {"k": "s"}}]') is None


def test_sender_redaction_masks_secret_names_pem_and_old_values():
    doc = {'name': 'n', 'pem': 'x', 'nested': {'os_secret_token': 's', 'ok': [1, 'u']},
           'ca': '-----BEGIN CERTIFICATE-----\nMII'}
    assert REDACTOR.document(doc) == {
        'name': 'n', 'pem': '***', 'nested': {'os_secret_token': '***', 'ok': [1, 'u']},
        'ca': '***'}
    found = changes.extract('json-patch', [{'op': 'replace', 'path': '/admin_password',
                                            'value': 'new'}],
                            {'admin_password': 'old'}, Params(), REDACTOR)
    assert found == [{'op': 'replace', 'path': '/admin_password', 'value': '***',
                      'old': '***'}]


def test_a_secret_property_is_masked_in_the_event_and_the_journal(make_filter, captured,
                                                                  wsgi, tmp_path):
    app = FakeGlance(os_secret_key='old-secret')
    journal = tmp_path / 'journal'
    mw = make_filter(app, record_lookups='true', journal_dir=str(journal))
    wsgi.run(mw, patch_env(wsgi, [{'op': 'replace', 'path': '/os_secret_key',
                                   'value': 'new-secret'},
                                  {'op': 'replace', 'path': '/visibility',
                                   'value': 'public'}]))
    content = cadf_of(captured)['attachments'][0]['content']
    assert content == [
        {'op': 'replace', 'path': '/os_secret_key', 'value': '***', 'old': '***'},
        {'op': 'replace', 'path': '/visibility', 'value': 'public', 'old': 'private'}]
    # What this feature journals: the captured request and the record fetched before.
    # (The response body the image.update usage rule reads is journaled as before.)
    kept = {}
    for path in journal.rglob('*'):
        if path.is_file():
            for _, _, rec in record.decode_frames(path.read_bytes()):
                kept.update({k: rec[k] for k in ('rq', 'pre') if rec and k in rec})
    assert kept['pre']['visibility'] == 'private' and kept['pre']['os_secret_key'] == '***'
    assert json.loads(kept['rq'])[0] == {'op': 'replace', 'path': '/os_secret_key',
                                         'value': '***'}
    assert 'secret' not in repr(kept).replace('os_secret_key', '')


# -- the demo -------------------------------------------------------------------------------

def test_demo_prints_the_change_record_of_its_patch(capsys):
    from audit_notifier.demo import runner
    assert runner.run() == 0
    out = capsys.readouterr().out
    patch_step = out[out.index('4. alice renames it'):out.index('5. bob')]
    assert patch_step.splitlines()[-3:] == [
        "       change replace /name: 'demo-cirros' -> 'demo-cirros-0.6'",
        "       change add /os_distro: (none) -> 'cirros'",
        "       change replace /visibility: 'private' -> 'community'"]


def test_the_route_table_shows_each_level_and_level_none_is_visible(tmp_path, caplog):
    import logging
    from audit_notifier import route_table
    path = write(tmp_path, 'rules:\n  - {level: none, events: [image.read]}\n'
                           '  - {level: request_response, roles: [auditor]}\n')
    conf = tmp_path / 'glance-api.conf'
    conf.write_text('[audit_notifier]\naudit_policy = %s\n' % path)
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger='audit_notifier'):
        assert route_table.run([str(conf)], as_json=True, out=out) == 0
    table = json.loads(out.getvalue())
    assert table['settings']['audit_policy'] == path
    rows = {(r['method'], r['path']): r for r in table['routes']}
    assert rows[('GET', '/v2/images/{image_id}')]['level'] == ['none']
    assert 'cadf' not in rows[('GET', '/v2/images/{image_id}')]['sends']
    assert rows[('PATCH', '/v2/images/{image_id}')]['level'] == ['metadata',
                                                                 'request_response']
    assert rows[('PATCH', '/v2/images/{image_id}')]['fetch'] == \
        '/v2/images/{image_id} (old values)'
    assert any('level none' in r.getMessage() and 'GET /v2/images/{image_id}' in
               r.getMessage() for r in caplog.records)
    text = io.StringIO()
    assert route_table.run([str(conf)], match=('GET', '/v2/images/x'), out=text) == 0
    assert 'cadf: audit.image.read not sent (audit policy level none)' in text.getvalue()


def test_a_role_rule_applies_to_the_confirmed_caller_only(make_filter, captured, wsgi,
                                                          tmp_path):
    app = FakeGlance()
    path = write(tmp_path, 'rules:\n  - {level: request_response, roles: [auditor]}\n'
                           '  - {level: metadata}\n')
    mw = make_filter(app, audit_policy=path)
    ops = [{'op': 'replace', 'path': '/name', 'value': 'n'}]
    auditor = dict(wsgi.IDENTITY, **{'X-Roles': 'member,auditor'})
    confirmed = wsgi.environ('PATCH', '/v2/images/' + IMAGE, body=json.dumps(ops).encode(),
                             headers=dict(auditor, **{'Content-Type': PATCH_TYPE}),
                             **wsgi.CONFIRMED)
    forged = wsgi.environ('PATCH', '/v2/images/' + IMAGE, body=json.dumps(ops).encode(),
                          headers=dict(auditor, **{'Content-Type': PATCH_TYPE}))
    wsgi.run(mw, confirmed)
    wsgi.run(mw, forged)
    events = [e['payload'] for e in captured.all() if e['event_type'] == 'audit.image.update']
    assert [[a['name'] for a in p.get('attachments', [])] for p in events] == \
        [['changes', 'response'], []]
    statuses = [p['initiator']['identity_status'] for p in events]
    assert statuses == ['Confirmed', 'Unauthenticated']


def test_routes_without_content_and_hidden_members(make_filter, captured, wsgi, tmp_path):
    """Task input and image locations: never kept, at any level."""
    app = FakeGlance(direct_url='swift+https://store/container/obj')
    path = write(tmp_path, 'rules: [{level: request_response}]\n')
    mw = make_filter(app, audit_policy=path)
    task = {'type': 'import', 'input': {'import_from': 'http://example.org/secret.img'}}
    env = wsgi.environ('POST', '/v2/tasks', body=json.dumps(task).encode(),
                       headers={'Content-Type': 'application/json'})
    wsgi.run(mw, env)
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/' + IMAGE))
    events = {e['event_type']: e['payload'] for e in captured.all()}
    assert 'attachments' not in events['audit.task.create']
    assert events['audit.image.read']['attachments'][0]['content']['direct_url'] == '***'
    text = json.dumps(captured.all())
    assert 'secret.img' not in text and 'swift+https' not in text
    assert routes.load('glance', usage_rules=glance_events.RULES).match(
        'POST', '/v2/tasks')[0].content is False


def test_route_map_content_must_be_a_boolean(tmp_path):
    bad = write(tmp_path, 'routes:\n  - {method: GET, path: /x, event: a.b, action: read,\n'
                          '     content: "no", target: {type_uri: service/storage/image}}\n',
                name='map.yaml')
    with pytest.raises(ConfigError) as err:
        routes.load('glance', [bad], usage_rules=glance_events.RULES)
    assert str(err.value) == ("audit_notifier: route map %s, route 0 (GET /x).content: not a "
                              "boolean; use true or false" % bad)
