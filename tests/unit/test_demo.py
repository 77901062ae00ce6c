"""``audit-notifier demo``, its sample image API and the shipped paste files."""

from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import re
import subprocess
import sys

import pytest
import webtest

from audit_notifier import cli
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
    ('image.delete', 'WARN'), ('audit.image.delete', 'WARN'),
    # 6. DELETE /v2/images/{id} -> 204
    ('image.delete', 'INFO'), ('audit.image.delete', 'INFO'),
    # 7. GET /v2/images/{id} -> 404
    ('audit.image.read', 'WARN'),
]
CALL_STATUSES = [201, 204, 200, 200, 403, 204, 404]
ALICE = sample_app.DEMO_TOKENS['demo-token-alice-5d41402abc4b2a76b9719d91']
BOB = sample_app.DEMO_TOKENS['demo-token-bob-7d793037a0760186574b0282']


def _assert_no_token(*texts):
    for text in texts:
        assert 'demo-token' not in text
        for token in sample_app.DEMO_TOKENS:
            assert token not in text


def _check_envelopes(envelopes, cadf_valid):
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
    assert len(envelopes) == len(EXPECTED)
    for envelope in envelopes:
        assert set(envelope) == {'message_id', 'publisher_id', 'event_type', 'priority',
                                 'payload', 'timestamp'}
    _check_envelopes(envelopes, cadf_valid)
    assert err == ''
    _assert_no_token(out, err)


def test_demo_readable_in_process(capsys):
    assert cli.main(['demo']) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    calls = [line for line in lines if re.match(r'^\d+\. ', line)]
    assert [int(re.search(r'-> (\d{3}) ', line).group(1)) for line in calls] == CALL_STATUSES
    notes = [line.split()[:2] for line in lines if line.startswith('     ')]
    assert [tuple(reversed(n)) for n in notes] == EXPECTED
    # each call line comes right before its own notifications
    index = [i for i, line in enumerate(lines) if re.match(r'^\d+\. ', line)]
    counts = [2, 6, 2, 2, 2, 2, 1]
    for start, count in zip(index, counts):
        assert all(line.startswith('     ') for line in lines[start + 1:start + 1 + count])
    assert re.match(r'^7 calls, 17 notifications \(14 INFO, 3 WARN\): 10 Glance-format, '
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


def test_missing_paste_is_one_clear_line(capsys, tmp_path):
    assert cli.main(['demo', '--paste', str(tmp_path / 'nope.ini')]) == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert err.count('\n') == 1
    assert err.startswith('audit-notifier demo: error: no paste file at ')


def test_paste_without_the_filter_is_refused(capsys, tmp_path):
    paste = tmp_path / 'noaudit.ini'
    paste.write_text('[pipeline:main]\npipeline = demoauth sampleapp\n'
                     '[filter:demoauth]\npaste.filter_factory = '
                     'audit_notifier.demo.sample_app:auth_filter_factory\n'
                     '[app:sampleapp]\npaste.app_factory = '
                     'audit_notifier.demo.sample_app:app_factory\n')
    assert cli.main(['demo', '--paste', str(paste)]) == 1
    out, err = capsys.readouterr()
    assert err.count('\n') == 1 and 'has no audit_notifier filter' in err


def test_filter_config_errors_are_one_line(capsys, tmp_path):
    with open(os.path.join(ETC, 'demo-paste.ini')) as f:
        text = f.read()
    paste = tmp_path / 'bad.ini'
    paste.write_text(text.replace('formats = cadf,glance', 'formats = cadf,xml'))
    assert cli.main(['demo', '--paste', str(paste)]) == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert err.count('\n') == 1
    assert err.startswith('audit-notifier demo: error: cannot load pipeline')
    assert 'formats' in err


def test_no_subcommand_prints_usage(capsys):
    assert cli.main([]) == 2
    assert 'demo' in capsys.readouterr().err


# -- where the paste file is found ---------------------------------------------------

def test_packaged_paste_copy_is_identical():
    with open(os.path.join(ETC, 'demo-paste.ini'), 'rb') as f:
        etc_copy = f.read()
    with open(os.path.join(ROOT, 'audit_notifier', 'demo', 'demo-paste.ini'), 'rb') as f:
        package_copy = f.read()
    assert package_copy == etc_copy


def test_paste_search_order():
    paths = runner.paste_candidates()
    assert paths[0] == os.path.join(ETC, 'demo-paste.ini')
    assert os.path.join(sys.prefix, 'etc', 'audit_notifier', 'demo-paste.ini') in paths
    assert paths[-1] == os.path.join(ROOT, 'audit_notifier', 'demo', 'demo-paste.ini')
    assert runner.find_paste() == (paths[0], 'main')
    assert runner.find_paste(paths[-1] + '#other') == (paths[-1], 'other')


def test_demo_paste_keys():
    parser = configparser.RawConfigParser()
    parser.read(os.path.join(ETC, 'demo-paste.ini'))
    assert parser.get('pipeline:main', 'pipeline').split() == ['demoauth', 'audit',
                                                               'sampleapp']
    audit = dict(parser.items('filter:audit'))
    assert audit['paste.filter_factory'] == 'audit_notifier.middleware:filter_factory'
    assert (audit['formats'], audit['driver'], audit['publisher_id']) == \
        ('cadf,glance', 'log', 'image.demo')


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
    app = sample_app.auth_filter_factory({})(echo)
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


def test_auth_rejects_unknown_tokens():
    echo = Echo()
    app = sample_app.auth_filter_factory({}, www_authenticate_uri='http://ks:5000')(echo)
    sr = StartResponse()
    body = b''.join(app(_environ('GET', '/v2/images', token='bogus'), sr))
    status, headers = sr.calls[0]
    assert status == '401 Unauthorized'
    assert dict(headers)['WWW-Authenticate'] == 'Keystone uri="http://ks:5000"'
    assert json.loads(body) == {'error': {
        'code': 401, 'title': 'Unauthorized',
        'message': 'The request you have made requires authentication.'}}
    assert not hasattr(echo, 'environ')
    # delay_auth_decision: passed on, marked Invalid; the image API answers 401
    delayed = sample_app.auth_filter_factory({}, delay_auth_decision='true')(echo)
    list(delayed(_environ('GET', '/v2/images', token='bogus',
                          HTTP_X_USER_ID='faked'), StartResponse()))
    assert echo.environ['HTTP_X_IDENTITY_STATUS'] == 'Invalid'
    assert 'HTTP_X_USER_ID' not in echo.environ
    api = webtest.TestApp(sample_app.auth_filter_factory({}, delay_auth_decision='true')(
        sample_app.SampleImageAPI()), lint=False)
    api.get('/v2/images', headers=_h('bogus'), status=401)
