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

"""``audit-notifier demo``, its sample image API, its separation from the filter,
and the shipped Glance paste file."""

from __future__ import annotations

import ast
import configparser
import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import webtest

from audit_notifier import cli, verify
from audit_notifier.demo import runner, sample_app

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ETC = os.path.join(ROOT, 'etc', 'audit_notifier')
UPLOAD = runner.UPLOAD_SIZE

# The demo's calls and, per call, the notifications it must produce, in order.
EXPECTED = [
    # 1. POST /v2/images -> 201
    ('image.create', 'INFO'), ('audit.image.create', 'INFO'),
    # 2. PUT /v2/images/{id}/file -> 204: Glance 33's own order, then the audit record
    ('image.update', 'INFO'), ('image.prepare', 'INFO'), ('image.upload', 'INFO'),
    ('image.activate', 'INFO'), ('image.update', 'INFO'), ('audit.image.upload', 'INFO'),
    # 3. GET /v2/images/{id}/file -> 200
    ('image.send', 'INFO'), ('audit.image.download', 'INFO'),
    # 4. PATCH /v2/images/{id} -> 200
    ('image.update', 'INFO'), ('audit.image.update', 'INFO'),
    # 5. DELETE /v2/images/{id} by another project -> 403
    ('image.delete', 'WARN'), ('audit.image.delete', 'ERROR'),
    # 6. DELETE /v2/images/{id} -> 204
    ('image.delete', 'INFO'), ('audit.image.delete', 'INFO'),
    # 7. GET /v2/images/{id} -> 404
    ('audit.image.read', 'ERROR'),
]
CALL_STATUSES = [201, 204, 200, 200, 403, 204, 404]
ALICE = sample_app.DEMO_TOKENS['demo-token-alice-5d41402abc4b2a76b9719d91']
BOB = sample_app.DEMO_TOKENS['demo-token-bob-7d793037a0760186574b0282']


def _assert_no_token(*texts):
    for text in texts:
        assert 'demo-token' not in text
        for token in sample_app.DEMO_TOKENS:
            assert token not in text


def _without_digests(envelopes, streams=2):
    """The notifications of the calls: the --json output ends with the integrity
    trail's final digest of each stream (one per format)."""
    assert [e['event_type'] for e in envelopes[-streams:]] == ['audit.digest'] * streams
    assert all(e['event_type'] != 'audit.digest' for e in envelopes[:-streams])
    return envelopes[:-streams]


def _check_envelopes(envelopes, cadf_valid):
    envelopes = _without_digests(envelopes)
    assert [(e['event_type'], e['priority']) for e in envelopes] == EXPECTED
    assert {e['publisher_id'] for e in envelopes} == {'image.demo'}
    image_id = envelopes[0]['payload']['id']
    assert re.match(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
                    image_id)
    cadf = [e for e in envelopes if e['event_type'].startswith('audit.')]
    assert len(cadf) == 7
    for envelope in cadf:
        payload = envelope['payload']
        assert payload['target']['id'] == image_id, envelope['event_type']
        cadf_valid(payload)
    # who did what: bob's forbidden delete is his, everything else alice's
    assert [e['payload']['initiator']['id'] for e in cadf] == \
        [ALICE['user_id']] * 4 + [BOB['user_id']] + [ALICE['user_id']] * 2
    assert [(e['payload']['outcome'], e['payload']['reason']['reasonCode']) for e in cadf] \
        == [('success', '201'), ('success', '204'), ('success', '200'), ('success', '200'),
            ('failure', '403'), ('success', '204'), ('failure', '404')]
    by_type = {}
    for envelope in envelopes:
        by_type.setdefault(envelope['event_type'], []).append(envelope['payload'])
    # Glance-format payloads are about the same image, with its life cycle.
    assert [p['status'] for p in by_type['image.update']] == ['saving', 'active', 'active']
    assert by_type['image.upload'][0]['size'] == UPLOAD
    assert by_type['image.upload'][0]['checksum'] == hashlib.md5(
        runner.demo_data(), usedforsecurity=False).hexdigest()
    assert by_type['image.activate'][0]['status'] == 'active'
    assert by_type['image.update'][2]['name'] == 'demo-cirros-0.6'
    send = by_type['image.send'][0]
    assert (send['image_id'], send['bytes_sent'], send['owner_id'],
            send['receiver_user_id'], send['receiver_tenant_id']) == \
        (image_id, UPLOAD, ALICE['project_id'], ALICE['user_id'], ALICE['project_id'])
    download = by_type['audit.image.download'][0]
    assert [m['result'] for m in download['measurements']] == [UPLOAD]
    forbidden, deleted = by_type['image.delete']
    assert isinstance(forbidden, str) and '403' in forbidden and image_id in forbidden
    assert deleted['id'] == image_id and deleted['deleted'] is True
    for payload in (by_type['image.create'] + by_type['image.update'] +
                    by_type['image.prepare'] + by_type['image.upload'] +
                    by_type['image.activate']):
        assert payload['id'] == image_id
    return image_id


# -- the demo, in-process and as a command ------------------------------------------

def test_demo_json_in_process(capsys, cadf_valid):
    assert cli.main(['demo', '--json']) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    envelopes = [json.loads(line) for line in lines]       # nothing but envelopes
    assert len(envelopes) == len(EXPECTED) + 2             # and the two final digests
    for envelope in envelopes:
        # the envelope, and the trail's chain fields as messagingv2 carries them
        assert set(envelope) == {'message_id', 'publisher_id', 'event_type', 'priority',
                                 'payload', 'timestamp', '_context_audit_stream',
                                 '_context_audit_seq', '_context_audit_prev'}
    _check_envelopes(envelopes, cadf_valid)
    # a trail audit-notifier verify accepts as it is, and rejects with one line
    # removed or edited
    assert verify.verify(lines).problems == 0
    assert verify.verify(lines[:3] + lines[4:]).problems == 1
    edited = lines[:3] + [lines[3].replace('"INFO"', '"WARN"')] + lines[4:]
    assert edited != lines
    assert verify.verify(edited).problems == 1
    assert err == ''
    _assert_no_token(out, err)


def test_demo_readable_in_process(capsys):
    assert cli.main(['demo']) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    calls = [line for line in lines if re.match(r'^\d+\. ', line)]
    assert [int(re.search(r'-> (\d{3}) ', line).group(1)) for line in calls] == CALL_STATUSES
    notes = [line.split()[:2] for line in lines if line.startswith('     ') and
             not line.startswith('       change ')]     # the PATCH's change record
    assert [tuple(reversed(n)) for n in notes] == EXPECTED
    # each call line comes right before its own notifications
    index = [i for i, line in enumerate(lines) if re.match(r'^\d+\. ', line)]
    counts = [2, 6, 2, 2, 2, 2, 1]
    for start, count in zip(index, counts):
        assert all(line.startswith('     ') for line in lines[start + 1:start + 1 + count])
    assert re.match(r'^7 calls, 17 notifications \(14 INFO, 1 WARN, 2 ERROR\): 10 Glance-format, '
                    r'7 CADF; send errors 0, dropped 0; ', lines[-1])
    assert err == ''
    _assert_no_token(out, err)


def test_demo_as_a_command(tmp_path, cadf_valid):
    """python -m audit_notifier.cli demo --json, from another directory."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.pop('PYTHONWARNINGS', None)
    proc = subprocess.run([sys.executable, '-m', 'audit_notifier.cli', 'demo', '--json'],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    envelopes = [json.loads(line) for line in proc.stdout.splitlines()]
    _check_envelopes(envelopes, cadf_valid)
    assert proc.stderr == ''            # no EventletDeprecationWarning, no access log
    _assert_no_token(proc.stdout, proc.stderr)


def _run_demo_command(tmp_path, *args, prelude=''):
    """``audit-notifier demo ARGS`` in a fresh interpreter, from another directory;
    ``prelude`` runs first (e.g. to make an import fail)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env.pop('PYTHONWARNINGS', None)
    code = prelude + '\nimport sys\nfrom audit_notifier import cli\n' \
        'sys.exit(cli.main(sys.argv[1:]))\n'
    return subprocess.run([sys.executable, '-c', code, 'demo', *args], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=300)


def test_set_changes_the_filter_options(capsys):
    assert cli.main(['demo', '--json', '--set', 'formats=cadf',
                     '--set', 'publisher_id=image.mine']) == 0
    envelopes = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    envelopes = _without_digests(envelopes, streams=1)
    assert [e['event_type'] for e in envelopes] == \
        [t for t, _ in EXPECTED if t.startswith('audit.')]
    assert {e['publisher_id'] for e in envelopes} == {'image.mine'}


@pytest.mark.parametrize('item, message', [
    ('driver=messagingv2', '--set driver=messagingv2: the demo sets driver itself'),
    ('journal_dir=/var/lib/glance/audit-journal',
     '--set journal_dir=/var/lib/glance/audit-journal: the demo sets journal_dir itself'),
    ('oslo_config_project=glance',
     '--set oslo_config_project=glance: the demo sets oslo_config_project itself'),
    ('formats', '--set formats: write KEY=VALUE'),
    ('=cadf', '--set =cadf: write KEY=VALUE'),
])
def test_set_refuses_what_the_demo_owns(capsys, item, message):
    assert cli.main(['demo', '--set', item]) == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert err.count('\n') == 1
    assert err.startswith('audit-notifier demo: error: ' + message)


def test_filter_config_errors_are_one_line(tmp_path):
    """A bad option is one line on stderr, once (the filter's own ERROR log line is
    not printed as well by Python's last-resort handler)."""
    proc = _run_demo_command(tmp_path, '--set', 'formats=cadf,xml')
    assert proc.returncode == 1
    assert proc.stdout == ''
    assert proc.stderr == (
        "audit-notifier demo: error: audit_notifier: option formats: invalid value "
        "'cadf,xml' in the paste ini (Valid values are [cadf, glance], but found 'xml'); "
        "expected a comma-separated list of cadf, glance\n")


# -- nothing of the demo in a service's pipeline -----------------------------------

def test_demo_needs_no_webob(tmp_path, cadf_valid):
    """pip install . && audit-notifier demo works where WebOb is not installed: the
    filter does not need it, so it is not a requirement (import webob fails here)."""
    proc = _run_demo_command(tmp_path, '--json', prelude="import sys\n"
                                                         "sys.modules['webob'] = None")
    assert proc.returncode == 0, proc.stderr
    _check_envelopes([json.loads(line) for line in proc.stdout.splitlines()], cadf_valid)
    assert proc.stderr == ''


def test_filter_imports_neither_the_demo_nor_webob(tmp_path):
    """A service loading the filter (and sending through it) imports nothing of the
    demo, and no WebOb."""
    code = textwrap.dedent('''
        import json, sys, tempfile
        from audit_notifier.middleware import filter_factory

        def app(environ, start_response):
            start_response('201 Created', [('Content-Type', 'application/json')])
            return [b'{"id": "5d3a0c4e-7c61-4d43-9a52-2f0b1b6a9d01"}']

        mw = filter_factory({}, driver='log', journal_dir=tempfile.mkdtemp())(app)
        environ = {'REQUEST_METHOD': 'POST', 'PATH_INFO': '/v2/images',
                   'SCRIPT_NAME': '', 'SERVER_NAME': 'x', 'SERVER_PORT': '80',
                   'wsgi.url_scheme': 'http', 'HTTP_X_IDENTITY_STATUS': 'Confirmed',
                   'HTTP_X_USER_ID': 'u', 'HTTP_X_PROJECT_ID': 'p'}
        body = b''.join(mw(environ, lambda status, headers, exc_info=None: None))
        assert mw.delivery.flush(30), 'not sent'
        mw.delivery.close()
        print(json.dumps(sorted(m for m in sys.modules
                                if m.split('.')[0] == 'webob' or
                                m.startswith('audit_notifier.demo'))))
    ''')
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run([sys.executable, '-c', code], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == []


def _imports_of(path):
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from ('%s.%s' % (node.module, alias.name) for alias in node.names)


def test_only_the_cli_imports_the_demo():
    package = os.path.join(ROOT, 'audit_notifier')
    importers = set()
    for folder, _, files in os.walk(package):
        for name in files:
            path = os.path.join(folder, name)
            if not name.endswith('.py') or path.startswith(os.path.join(package, 'demo')):
                continue
            if any(m == 'audit_notifier.demo' or m.startswith('audit_notifier.demo.')
                   for m in _imports_of(path)):
                importers.add(os.path.relpath(path, ROOT))
    assert importers == {os.path.join('audit_notifier', 'cli.py')}


def test_no_paste_factory_or_entry_point_offers_the_demo():
    # no paste factory in the demo package
    for module in (sample_app, runner):
        assert [n for n in dir(module) if n.endswith('_factory')] == [], module
    # no entry point, of any group, names it (setup.cfg and what is installed)
    parser = configparser.RawConfigParser()
    parser.read(os.path.join(ROOT, 'setup.cfg'))
    declared = ' '.join(parser.get('entry_points', group)
                        for group in parser.options('entry_points'))
    assert 'audit_notifier.demo' not in declared and 'audit_notifier.cli:main' in declared
    installed = [ep for dist in importlib.metadata.distributions()
                 for ep in dist.entry_points if ep.value.startswith('audit_notifier.demo')]
    assert installed == []
    # no shipped example (etc/ is installed as <prefix>/etc/audit_notifier) uses it
    for name in os.listdir(ETC):
        with open(os.path.join(ETC, name)) as f:
            text = f.read()
        assert 'audit_notifier.demo' not in text and 'demo-paste' not in text, name
    assert not os.path.exists(os.path.join(ROOT, 'audit_notifier', 'demo',
                                           'demo-paste.ini'))


def test_no_subcommand_prints_usage(capsys):
    assert cli.main([]) == 2
    assert 'demo' in capsys.readouterr().err


# -- glance-api-paste.ini --------------------------------------------------------------

# Glance 33.0.0's etc/glance-api-paste.ini, [composite:api]
GLANCE_33_PIPELINES = {
    'default': 'cors http_proxy_to_wsgi versionnegotiation osprofiler '
               'unauthenticated-context rootapp',
    'caching': 'cors http_proxy_to_wsgi versionnegotiation osprofiler '
               'unauthenticated-context cache rootapp',
    'cachemanagement': 'cors http_proxy_to_wsgi versionnegotiation osprofiler '
                       'unauthenticated-context cache cachemanage rootapp',
    'keystone': 'cors http_proxy_to_wsgi versionnegotiation osprofiler authtoken context '
                'rootapp',
    'keystone+caching': 'cors http_proxy_to_wsgi versionnegotiation osprofiler authtoken '
                        'context cache rootapp',
    'keystone+cachemanagement': 'cors http_proxy_to_wsgi versionnegotiation osprofiler '
                                'authtoken context cache cachemanage rootapp',
}


def _ini(path):
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    with open(path) as f:
        parser.read_file(f)
    return parser


def test_glance_paste_adds_audit_after_authtoken_only():
    ours = _ini(os.path.join(ETC, 'glance-api-paste.ini'))
    api = dict(ours.items('composite:api'))
    assert api.pop('paste.composite_factory') == 'glance.api:pipeline_factory'
    assert set(api) == set(GLANCE_33_PIPELINES)
    for flavor, pipeline in api.items():
        names = pipeline.split()
        if flavor.startswith('keystone'):
            assert names[names.index('authtoken') + 1] == 'audit'
        assert ' '.join(n for n in names if n != 'audit') == GLANCE_33_PIPELINES[flavor]
        assert ('audit' in names) == flavor.startswith('keystone')
    assert dict(ours.items('filter:audit')) == {
        'paste.filter_factory': 'audit_notifier.middleware:filter_factory'}


def test_glance_paste_is_glance_33_otherwise():
    """Every other section equals the api-paste.ini the glance 33 package installs."""
    installed = os.path.join(sys.prefix, 'etc', 'glance', 'glance-api-paste.ini')
    if not os.path.isfile(installed):
        from tests.support.rabbit import peer_missing
        peer_missing('glance is not installed in %s' % sys.prefix)
    theirs = _ini(installed)
    ours = _ini(os.path.join(ETC, 'glance-api-paste.ini'))
    assert set(ours.sections()) == set(theirs.sections()) | {'filter:audit'}
    for section in theirs.sections():
        if section == 'composite:api':
            continue
        assert dict(ours.items(section)) == dict(theirs.items(section)), section


# -- the sample image API ------------------------------------------------------------

ALICE_TOKEN = 'demo-token-alice-5d41402abc4b2a76b9719d91'
BOB_TOKEN = 'demo-token-bob-7d793037a0760186574b0282'
GLANCE_VIEW_KEYS = ['name', 'disk_format', 'container_format', 'visibility', 'size',
                    'virtual_size', 'status', 'checksum', 'protected', 'min_ram',
                    'min_disk', 'owner', 'os_hidden', 'os_hash_algo', 'os_hash_value', 'id',
                    'created_at', 'updated_at', 'tags', 'self', 'file', 'schema']


@pytest.fixture
def api():
    images = sample_app.SampleImageAPI(chunk_size=1000)
    app = webtest.TestApp(sample_app.DemoAuth(images), lint=False)
    app.images = images
    return app


def _h(token=ALICE_TOKEN, **extra):
    headers = {'X-Auth-Token': token, 'Accept': 'application/json'}
    headers.update(extra)
    return headers


def _create(api, **body):
    body = dict({'name': 'img', 'disk_format': 'raw', 'container_format': 'bare'}, **body)
    return api.post_json('/v2/images', body, headers=_h(), status=201)


def test_create_answers_like_glance(api):
    r = _create(api, hw_architecture='x86_64')
    image = r.json
    assert list(image) == ['hw_architecture'] + GLANCE_VIEW_KEYS
    assert r.headers['Location'] == 'http://localhost/v2/images/%s' % image['id']
    assert r.headers['Content-Type'] == 'application/json'
    assert re.match(r'^req-[0-9a-f-]{36}$', r.headers['x-openstack-request-id'])
    assert (image['status'], image['visibility'], image['owner'], image['size'],
            image['checksum'], image['os_hash_algo'], image['min_ram'], image['tags']) == \
        ('queued', 'shared', ALICE['project_id'], None, None, None, 0, [])
    assert image['self'] == '/v2/images/%s' % image['id']
    assert image['file'] == '/v2/images/%s/file' % image['id']
    assert re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$', image['created_at'])


@pytest.mark.parametrize('body, status, message', [
    ({'status': 'active'}, 403, "Attribute 'status' is read-only."),
    ({'self': '/x'}, 403, "Attribute 'self' is read-only."),
    ({'deleted': 'x'}, 403, "Attribute 'deleted' is reserved."),
    ({'os_glance_x': 'x'}, 403, "Attribute 'os_glance_x' is reserved."),
    ({'visibility': 'public'}, 403,
     'You are not authorized to complete publicize_image action.'),
    ({'visibility': 'everyone'}, 400, None),
])
def test_create_refusals(api, body, status, message):
    r = api.post_json('/v2/images', body, headers=_h(), status=status)
    assert set(r.json) == {'code', 'message', 'title'}
    if message:
        assert r.json['message'].startswith(message + '<br /><br />')


def test_invalid_json_is_400(api):
    r = api.post('/v2/images', b'{nope', headers=_h(**{'Content-Type': 'application/json'}),
                 status=400)
    assert r.json == {'code': '400 Bad Request', 'title': 'Bad Request',
                      'message': 'Malformed JSON in request body.<br /><br />\n\n\n'}


def test_patch_needs_the_json_patch_media_type(api):
    image_id = _create(api).json['id']
    ops = json.dumps([{'op': 'replace', 'path': '/name', 'value': 'x'}])
    r = api.patch('/v2/images/%s' % image_id, ops,
                  headers=_h(**{'Content-Type': 'application/json'}), status=415)
    # the exact body Glance 33 returns (tests/functional/data)
    assert r.json == {
        'message': 'The request media type application/json is not supported by this '
                   'server.\n<br /><br />\nImage PATCH expects Content-Type one of: '
                   'application/openstack-images-v2.0-json-patch, '
                   'application/openstack-images-v2.1-json-patch',
        'code': '415 Unsupported Media Type', 'title': 'Unsupported Media Type'}
    assert r.headers['Accept-Patch'] == ('application/openstack-images-v2.0-json-patch, '
                                         'application/openstack-images-v2.1-json-patch')
    for content_type, ops in (
            ('application/openstack-images-v2.1-json-patch',
             [{'op': 'replace', 'path': '/name', 'value': 'x'},
              {'op': 'add', 'path': '/os_distro', 'value': 'cirros'}]),
            ('application/openstack-images-v2.0-json-patch',
             [{'replace': '/name', 'value': 'y'}, {'remove': '/os_distro'}])):
        r = api.patch('/v2/images/%s' % image_id, json.dumps(ops),
                      headers=_h(**{'Content-Type': content_type}), status=200)
    assert r.json['name'] == 'y' and 'os_distro' not in r.json
    r = api.patch('/v2/images/%s' % image_id,
                  json.dumps([{'op': 'replace', 'path': '/status', 'value': 'active'}]),
                  headers=_h(**{'Content-Type': 'application/openstack-images-v2.1-json-patch'}),
                  status=403)
    assert r.json['message'].startswith("Attribute 'status' is read-only.")


class RecordingInput:
    """wsgi.input that records the size of every read."""

    def __init__(self, data):
        self._stream = io.BytesIO(data)
        self.reads = []

    def read(self, size=-1):
        self.reads.append(size)
        return self._stream.read(size)


class StartResponse:
    def __init__(self):
        self.calls = []

    def __call__(self, status, headers, exc_info=None):
        self.calls.append((status, headers))
        return lambda data: None


def _environ(method, path, token=ALICE_TOKEN, body=b'', **extra):
    environ = {'REQUEST_METHOD': method, 'PATH_INFO': path, 'SCRIPT_NAME': '',
               'QUERY_STRING': '', 'SERVER_NAME': 'localhost', 'SERVER_PORT': '80',
               'SERVER_PROTOCOL': 'HTTP/1.1', 'wsgi.url_scheme': 'http',
               'wsgi.input': io.BytesIO(body), 'wsgi.errors': sys.stderr,
               'wsgi.version': (1, 0), 'wsgi.multithread': False,
               'wsgi.multiprocess': False, 'wsgi.run_once': False,
               'HTTP_X_AUTH_TOKEN': token, 'HTTP_ACCEPT': 'application/json',
               'CONTENT_LENGTH': str(len(body))}
    environ.update(extra)
    return environ


def test_upload_reads_in_chunks_and_activates(api):
    image_id = _create(api).json['id']
    data = bytes(range(256)) * 20            # 5120 bytes, chunk_size 1000
    stream = RecordingInput(data)
    app = sample_app.DemoAuth(api.images)
    sr = StartResponse()
    body = b''.join(app(_environ('PUT', '/v2/images/%s/file' % image_id, body=data,
                                 CONTENT_TYPE='application/octet-stream',
                                 **{'wsgi.input': stream}), sr))
    assert sr.calls[0][0] == '204 No Content' and body == b''
    assert stream.reads == [1000, 1000, 1000, 1000, 1000, 120]
    image = api.get('/v2/images/%s' % image_id, headers=_h()).json
    assert (image['status'], image['size'], image['virtual_size'], image['checksum'],
            image['os_hash_algo'], image['os_hash_value']) == \
        ('active', len(data), len(data), hashlib.md5(data).hexdigest(), 'sha512',
         hashlib.sha512(data).hexdigest())
    # a second upload is a conflict, as in Glance
    api.put('/v2/images/%s/file' % image_id, data,
            headers=_h(**{'Content-Type': 'application/octet-stream'}), status=409)


def test_upload_refusals(api):
    image_id = _create(api).json['id']
    api.put('/v2/images/%s/file' % image_id, b'x',
            headers=_h(**{'Content-Type': 'application/json'}), status=415)
    bare_id = api.post_json('/v2/images', {'name': 'n'}, headers=_h(), status=201).json['id']
    r = api.put('/v2/images/%s/file' % bare_id, b'x',
                headers=_h(**{'Content-Type': 'application/octet-stream'}), status=400)
    assert 'must be set prior to saving data' in r.json['message']
    # a short body puts the image back to queued
    app = sample_app.DemoAuth(api.images)
    sr = StartResponse()
    b''.join(app(_environ('PUT', '/v2/images/%s/file' % image_id, body=b'abc',
                          CONTENT_TYPE='application/octet-stream', CONTENT_LENGTH='10'),
                 sr))
    assert sr.calls[0][0] == '400 Bad Request'
    assert api.get('/v2/images/%s' % image_id, headers=_h()).json['status'] == 'queued'


def test_download_is_a_lazy_generator(api):
    image_id = _create(api).json['id']
    data = os.urandom(2500)
    api.put('/v2/images/%s/file' % image_id, data,
            headers=_h(**{'Content-Type': 'application/octet-stream'}), status=204)
    app = sample_app.DemoAuth(api.images)
    sr = StartResponse()
    result = app(_environ('GET', '/v2/images/%s/file' % image_id), sr)
    assert sr.calls == []                     # nothing known until the first chunk
    chunks = list(result)
    status, headers = sr.calls[0]
    headers = dict(headers)
    assert status == '200 OK'
    assert headers['Content-Type'] == 'application/octet-stream'
    assert headers['Content-Length'] == '2500'
    assert headers['Content-MD5'] == hashlib.md5(data).hexdigest()
    assert headers['x-openstack-request-id'].startswith('req-')
    assert [len(c) for c in chunks] == [1000, 1000, 500] and b''.join(chunks) == data


def test_visibility_and_ownership(api):
    image_id = _create(api).json['id']
    path = '/v2/images/%s' % image_id
    # bob (another project) cannot see alice's image: 404, as Glance hides it
    r = api.get(path, headers=_h(BOB_TOKEN), status=404)
    assert r.json == {'code': '404 Not Found', 'title': 'Not Found',
                      'message': 'No image found with ID %s<br /><br />\n\n\n' % image_id}
    api.delete(path, headers=_h(BOB_TOKEN), status=404)
    api.patch(path, json.dumps([{'op': 'replace', 'path': '/visibility',
                                 'value': 'community'}]),
              headers=_h(**{'Content-Type': 'application/openstack-images-v2.1-json-patch'}))
    # a community image: bob sees it, but may not delete it
    assert api.get(path, headers=_h(BOB_TOKEN)).json['id'] == image_id
    r = api.delete(path, headers=_h(BOB_TOKEN), status=403)
    assert r.json['message'].startswith(
        'You are not authorized to complete delete_image action.')
    r = api.delete(path, headers=_h(), status=204)
    assert r.body == b''
    api.get(path, headers=_h(), status=404)


def test_unknown_paths_and_methods(api):
    image_id = _create(api).json['id']
    r = api.post('/v2/images/%s' % image_id, headers=_h(), status=405)
    assert r.headers['Allow'] == 'GET, PATCH, DELETE'
    api.get('/v2/nothing', headers=_h(), status=404)
    api.get('/v2/images/%s/nothing' % image_id, headers=_h(), status=404)
    listing = api.get('/v2/images', headers=_h()).json
    assert listing['first'] == '/v2/images' and listing['schema'] == '/v2/schemas/images'
    assert [i['id'] for i in listing['images']] == [image_id]


def test_tags_and_actions(api):
    image_id = _create(api).json['id']
    api.put('/v2/images/%s/tags/blue' % image_id, headers=_h(), status=204)
    assert api.get('/v2/images/%s' % image_id, headers=_h()).json['tags'] == ['blue']
    api.delete('/v2/images/%s/tags/blue' % image_id, headers=_h(), status=204)
    api.delete('/v2/images/%s/tags/blue' % image_id, headers=_h(), status=404)
    # deactivate is an admin action
    api.post('/v2/images/%s/actions/deactivate' % image_id, headers=_h(), status=403)


# -- the demo auth filter --------------------------------------------------------------

class Echo:
    """An app that records the environ it was given."""

    def __call__(self, environ, start_response):
        self.environ = dict(environ)
        start_response('200 OK', [('Content-Type', 'text/plain')])
        return [b'ok']


def test_auth_sets_identity_like_auth_token():
    echo = Echo()
    app = sample_app.DemoAuth(echo)
    # a client trying to pass itself off as admin of another project
    environ = _environ('GET', '/v2/images', HTTP_X_ROLES='admin', HTTP_X_PROJECT_ID='evil',
                       HTTP_X_TENANT_ID='evil', HTTP_X_IDENTITY_STATUS='Confirmed',
                       HTTP_X_SERVICE_ROLES='service')
    list(app(environ, StartResponse()))
    env = echo.environ
    assert env['HTTP_X_IDENTITY_STATUS'] == 'Confirmed'
    assert (env['HTTP_X_USER_ID'], env['HTTP_X_USER_NAME'], env['HTTP_X_PROJECT_ID'],
            env['HTTP_X_PROJECT_NAME'], env['HTTP_X_ROLES'], env['HTTP_X_TENANT_ID'],
            env['HTTP_X_USER_DOMAIN_ID'], env['HTTP_X_PROJECT_DOMAIN_ID'],
            env['HTTP_X_IS_ADMIN_PROJECT']) == \
        (ALICE['user_id'], 'alice', ALICE['project_id'], 'demo', 'member,reader',
         ALICE['project_id'], 'default', 'default', 'False')
    assert 'HTTP_X_SERVICE_ROLES' not in env
    assert env['HTTP_X_AUTH_TOKEN'] == ALICE_TOKEN          # left in place, as auth_token
    info = env['keystone.token_info']['token']
    assert info['user']['id'] == ALICE['user_id']
    assert [r['name'] for r in info['roles']] == ['member', 'reader']
    assert ALICE_TOKEN not in json.dumps(env['keystone.token_info'])


def test_unknown_tokens_go_on_invalid_and_get_401():
    """As auth_token with Glance's delay_auth_decision = true, then Glance's 401."""
    echo = Echo()
    app = sample_app.DemoAuth(echo)
    for token in ('bogus', None):
        environ = _environ('GET', '/v2/images', token=token, HTTP_X_USER_ID='faked',
                           HTTP_X_ROLES='admin')
        list(app(environ, StartResponse()))
        assert echo.environ['HTTP_X_IDENTITY_STATUS'] == 'Invalid'
        assert 'HTTP_X_USER_ID' not in echo.environ and 'HTTP_X_ROLES' not in echo.environ
        assert echo.environ['keystone.token_auth'].has_user_token is False
        assert 'keystone.token_info' not in echo.environ
    api = webtest.TestApp(sample_app.DemoAuth(sample_app.SampleImageAPI()), lint=False)
    r = api.get('/v2/images', headers=_h('bogus'), status=401)
    assert r.json == {'code': '401 Unauthorized', 'title': 'Unauthorized', 'message': (
        'This server could not verify that you are authorized to access the document you '
        'requested. Either you supplied the wrong credentials (e.g., bad password), or '
        'your browser does not understand how to supply the credentials required.'
        '<br /><br />\n\n\n')}
