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

"""``audit-notifier routes`` as an operator runs it (subprocesses on real files), and
its table checked against the filter's own classifier for every shipped route."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from audit_notifier import policy, preflight, route_table, routes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SMALL_MAP = """\
service:
  name: demo
  type_uri: service/storage/image
  publisher: image
  cadf_event_type: "audit.{event}"
routes:
  - {method: GET, path: /v2/images, event: image.list, action: read/list,
     target: {type_uri: service/storage/image}}
  - {method: DELETE, path: "/v2/images/{image_id}", event: image.delete, action: delete,
     usage: image.delete, target: {type_uri: service/storage/image, id: path.image_id}}
  - {method: PUT, path: "/v2/images/{image_id}/file", event: image.upload, action: update,
     usage: image.upload, observe: upload,
     target: {type_uri: service/storage/image/file, id: [response.id, path.image_id]}}
"""
DEFAULT_POLICY = os.path.join(policy.SHIPPED_DIR, 'default.yaml')
# Reads off, both formats, unmatched calls audited.
SETTINGS = ('[audit_notifier]\naudit_reads = false\nformats = cadf,glance\n'
            'unmatched_requests = audit\n')


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'audit_notifier.cli', 'routes', *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def lines(*args):
    proc = cli(*args)
    assert (proc.returncode, proc.stderr) == (0, ''), proc.stderr[-2000:]
    return proc.stdout.splitlines()


@pytest.fixture
def small_map(tmp_path):
    path = tmp_path / 'small.yaml'
    path.write_text(SMALL_MAP)
    return str(path)


@pytest.fixture
def settings_conf(tmp_path):
    path = tmp_path / 'glance-api.conf'
    path.write_text(SETTINGS)
    return str(path)


def test_table_of_a_map_with_the_default_settings(small_map):
    assert lines('--route-map', small_map) == [
        'route map: 3 routes from %s' % small_map,
        'formats cadf; audit_reads true, audit_lists true, unmatched_requests ignore',
        'audit policy: %s' % DEFAULT_POLICY,
        '',
        'METHOD  PATH                        KIND   ACTION     EVENT         TARGET        '
        '              TARGET FROM                   GET BEFORE  USAGE         OBSERVE  SENDS'
        '  LEVEL',
        'GET     /v2/images                  list   read/list  image.list    service/storage'
        '/image       -                             -           -             -        cadf '
        '  metadata',
        'DELETE  /v2/images/{image_id}       write  delete     image.delete  service/storage'
        '/image       id=path.image_id              -           image.delete  -        cadf '
        '  request',
        'PUT     /v2/images/{image_id}/file  write  update     image.upload  service/storage'
        '/image/file  id=response.id|path.image_id  -           image.upload  upload   cadf '
        '  request',
    ]


def test_table_follows_the_conf_file(small_map, settings_conf):
    """Reads off, the Glance format on: the delete fetches its image first."""
    table = lines('--route-map', small_map, '--config-file', settings_conf)
    assert table[1] == ('formats cadf,glance; audit_reads false, audit_lists true, '
                        'unmatched_requests audit')
    assert [row.split() for row in table[5:]] == [
        ['GET', '/v2/images', 'list', 'read/list', 'image.list', 'service/storage/image',
         '-', '-', '-', '-', 'cadf', 'metadata'],
        ['DELETE', '/v2/images/{image_id}', 'write', 'delete', 'image.delete',
         'service/storage/image', 'id=path.image_id', '/v2/images/{image_id}', 'image.delete',
         '-', 'cadf,glance', 'request'],
        ['PUT', '/v2/images/{image_id}/file', 'write', 'update', 'image.upload',
         'service/storage/image/file', 'id=response.id|path.image_id', '-', 'image.upload',
         'upload', 'cadf,glance', 'request'],
    ]


def test_match_explains_a_glance_update():
    assert lines('--match', 'PATCH /v2/images/<id>') == [
        'request: PATCH /v2/images/<id>',
        'route: PATCH /v2/images/{image_id}',
        'params: image_id=<id>',
        'kind: write, action: update, event: image.update',
        'target: service/storage/image from id=path.image_id(<id>)',
        # level request, record_lookups on: the old values of the changes attachment
        'fetched before the call: GET /v2/images/<id>',
        'audit policy level: request',
        'audited: yes',
        'cadf: audit.image.update (INFO; ERROR for a 4xx or 5xx)',
        'glance: usage rule image.update, not sent (formats = cadf)',
    ]


def test_match_of_a_path_no_route_matches():
    assert lines('--match', 'GET /v2/imagez') == [
        'request: GET /v2/imagez',
        'route: none of the map matches',
        'audited: no (no route matches, unmatched_requests = ignore)',
    ]


def test_match_of_an_unmatched_path_audited_as_such(settings_conf):
    assert lines('--config-file', settings_conf, '--match',
                 'POST http://glance:9292/v2/imagez?x=1') == [
        'request: POST /v2/imagez',
        'route: none of the map matches',
        'audited: yes, as an unmatched call',
        'cadf: audit.image.request (action create, target service/storage/image: the '
        'service itself)',
    ]


def test_match_of_a_read_with_audit_reads_off(settings_conf):
    assert lines('--config-file', settings_conf, '--match', 'GET /v2/images/abc') == [
        'request: GET /v2/images/abc',
        'route: GET /v2/images/{image_id}',
        'params: image_id=abc',
        'kind: read, action: read, event: image.read',
        'target: service/storage/image from id=path.image_id(abc)',
        'fetched before the call: nothing',
        'audit policy level: metadata',
        'audited: no',
        'cadf: audit.image.read not sent (a read, audit_reads = false)',
        'glance: nothing (no usage rule)',
    ]
    # A download is a read too, but its Glance-format image.send still goes out.
    download = lines('--config-file', settings_conf, '--match', 'GET /v2/images/abc/file')
    assert download[-5:] == [
        'observed: download bytes',
        'audit policy level: metadata',
        'audited: yes',
        'cadf: audit.image.download not sent (a read, audit_reads = false)',
        'glance: usage rule image.send (the notifications Glance sends for this call)',
    ]


def test_match_shows_the_record_fetched_before_a_delete(settings_conf):
    assert lines('--config-file', settings_conf, '--match', 'DELETE /v2/images/i-1')[5] == \
        'fetched before the call: GET /v2/images/i-1'
    by_name = lines('--route-map', 'magnum', '--match', 'DELETE /v1/clusters/k8s')
    assert by_name == [
        'request: DELETE /v1/clusters/k8s',
        'route: DELETE /v1/clusters/{cluster_ident}',
        'params: cluster_ident=k8s',
        'kind: write (async), action: delete, event: magnum.cluster.delete',
        'target: service/magnum/cluster from id=record.uuid|path.cluster_ident(k8s) '
        'data=cluster_data',
        'fetched before the call: GET /v1/clusters/k8s',
        'audit policy level: request',
        'audited: yes',
        'cadf: magnum.cluster.delete (INFO; ERROR for a 4xx or 5xx; a 2xx is outcome '
        'pending: the work goes on)',
        'glance: nothing (no usage rule)',
    ]
    uuid = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'
    assert lines('--route-map', 'magnum', '--match', 'DELETE /v1/clusters/' + uuid)[5] == \
        'fetched before the call: nothing'


def test_json_of_a_match_and_of_the_table(small_map):
    found = json.loads(''.join(lines('--match', 'GET /v2/images/x/file', '--json')))
    assert found == {
        'request': 'GET /v2/images/x/file', 'route': 'GET /v2/images/{image_id}/file',
        'params': {'image_id': 'x'}, 'kind': 'read', 'action': 'read',
        'event': 'image.download', 'target': 'service/storage/image/file',
        'target_from': 'id=path.image_id(x)', 'fetch': [], 'observe': 'download',
        'audited': True, 'level': ['metadata'],
        'cadf': 'audit.image.download (INFO; ERROR for a 4xx or 5xx)',
        'glance': 'usage rule image.send, not sent (formats = cadf)'}
    table = json.loads(''.join(lines('--route-map', small_map, '--json')))
    assert table['settings'] == {
        'route_map': [small_map], 'formats': ['cadf'], 'audit_reads': True,
        'audit_lists': True, 'unmatched_requests': 'ignore', 'record_lookups': True,
        'disabled_events': [], 'audit_policy': DEFAULT_POLICY}
    assert table['routes'][2] == {
        'method': 'PUT', 'path': '/v2/images/{image_id}/file', 'kind': 'write',
        'action': 'update', 'event': 'image.upload', 'target': 'service/storage/image/file',
        'target_from': 'id=response.id|path.image_id', 'fetch': None, 'usage': 'image.upload',
        'observe': 'upload', 'sends': ['cadf'], 'level': ['request']}


def test_an_override_file_replaces_a_route(small_map, tmp_path):
    override = tmp_path / 'override.yaml'
    override.write_text('routes:\n  - {method: GET, path: /v2/images, event: image.index, '
                        'action: read/list, kind: write,\n'
                        '     target: {type_uri: service/storage/image}}\n')
    table = lines('--route-map', small_map, '--route-map-override', str(override))
    assert table[0] == 'route map: 3 routes from %s, %s' % (small_map, override)
    assert [row.split()[:5] for row in table[5:]] == [
        ['DELETE', '/v2/images/{image_id}', 'write', 'delete', 'image.delete'],
        ['PUT', '/v2/images/{image_id}/file', 'write', 'update', 'image.upload'],
        ['GET', '/v2/images', 'write', 'read/list', 'image.index']]


def test_configuration_errors_and_bad_requests():
    proc = cli('--route-map', 'nope')
    assert (proc.returncode, proc.stdout) == (1, '')
    assert proc.stderr == ("audit-notifier routes: error: audit_notifier: option route_map: "
                           "no shipped map named 'nope'; use one of glance, magnum or the path "
                           "of a YAML map file\n")
    proc = cli('--match', '/v2/images')
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == (
        'audit-notifier routes: error: argument --match: expected "METHOD PATH", e.g. '
        '"PATCH /v2/images/<id>", with METHOD one of DELETE, GET, HEAD, OPTIONS, PATCH, '
        'POST, PUT')


# -- the table says what the filter does ------------------------------------------------------

def _example_path(route) -> str:
    return '/'.join('p-%d' % i if seg.startswith('{') else seg
                    for i, seg in enumerate(route.path.split('/')))


@pytest.mark.parametrize('route_map', ['glance', 'magnum'])
@pytest.mark.parametrize('keys', [
    {},
    {'audit_reads': 'false', 'audit_lists': 'false'},
    {'formats': 'glance'},
    {'formats': 'cadf,glance', 'audit_reads': 'false'},
])
def test_every_rows_sends_agrees_with_the_classifier(route_map, keys):
    pipeline = preflight.offline_pipeline(preflight.load_conf([]),
                                          dict(keys, route_map=route_map))
    assert list(pipeline.route_map.sources) == [os.path.join(routes.SHIPPED_DIR,
                                                             route_map + '.yaml')]
    for route in pipeline.route_map.routes:
        row = route_table.describe(pipeline, route)
        environ = {'REQUEST_METHOD': route.method, 'PATH_INFO': _example_path(route)}
        audited = pipeline.classifier.classify(environ) is not None
        assert bool(row['sends']) == audited, (route.method, route.path, row['sends'])
        found = route_table.explain(pipeline, route_table.RecordingApp(), route.method,
                                    _example_path(route))
        assert found['route'] == '%s %s' % (route.method, route.path)
        assert found['audited'] == audited


def test_match_says_when_a_bay_write_is_pending():
    out = lines('--route-map', 'magnum', '--match', 'POST /v1/bays')
    assert out[-2] == ('cadf: magnum.bay.create (INFO; ERROR for a 4xx or 5xx; a 2xx is '
                       'outcome pending when response.status matches *_IN_PROGRESS)')
    out = lines('--route-map', 'magnum', '--match', 'POST /v1/clusters')
    assert 'target: service/magnum/cluster from id=response.uuid data=cluster_data' in out
