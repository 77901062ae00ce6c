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

"""Self-tests of the in-process Magnum harness (magnum_app.py): the real
Magnum 23 API, the in-process conductor and Magnum's own CADF notifications.
No audit filter is involved here."""

import pytest

try:
    from . import magnum_app
except ImportError:
    import magnum_app

NOT_FOUND = '00000000-0000-4000-8000-000000000000'


def _own(mod):
    return [(m['event_type'], m['priority'], m['payload']['outcome'])
            for m in mod.magnum_own_notifications()]


def test_loads_fast_and_public_routes(magnum_env):
    # ~2.3 s on an idle 2-core box (imports excluded); generous for CI load
    assert magnum_env.timings['total'] < 15, magnum_env.timings
    r = magnum_env.request('GET', '/v1/', token=None)
    assert r.status == 200
    assert r.json['id'] == 'v1'
    r = magnum_env.request('GET', '/healthcheck', token=None)
    assert r.status == 200


@pytest.mark.parametrize('token', [None, 'bogus'])
def test_authtoken_rejects_without_valid_token(magnum_env, token):
    r = magnum_env.request('GET', '/v1/clustertemplates', token=token)
    assert r.status == 401


def test_microversion_header(magnum_env):
    r = magnum_env.request('GET', '/v1/clusters', microversion='1.7')
    assert r.status == 200
    # Magnum answers with its long service type
    assert r.headers['OpenStack-API-Version'] == \
        'container-infrastructure-management 1.7'
    r = magnum_env.request('GET', '/v1/clusters', microversion=None)
    assert r.headers['OpenStack-API-Version'] == \
        'container-infrastructure-management 1.1'


def test_clustertemplate_crud_no_notifications(magnum_env,
                                               magnum_notifications):
    r = magnum_env.create_cluster_template(name='ct-crud')
    assert r.status == 201, r.text
    ct = r.json
    assert ct['driver'] == 'fake_k8s'
    assert ct['cluster_distro'] == 'ubuntu'
    assert ct['project_id'] == 'p-demo'
    assert magnum_env.request(
        'GET', '/v1/clustertemplates/%s' % ct['uuid']).status == 200
    r = magnum_env.request(
        'PATCH', '/v1/clustertemplates/%s' % ct['uuid'],
        body=[{'op': 'replace', 'path': '/name', 'value': 'ct-crud-2'}])
    assert r.status == 200 and r.json['name'] == 'ct-crud-2'
    assert magnum_env.request(
        'DELETE', '/v1/clustertemplates/%s' % ct['uuid']).status == 204
    magnum_env.wait_idle()
    # Magnum sends no notifications for cluster templates
    assert magnum_notifications.magnum_own_notifications() == []


def test_image_validation_via_fake_glance(magnum_env):
    r = magnum_env.create_cluster_template(
        name='ct-nodistro', image_id=magnum_app.IMAGE_NO_DISTRO_ID)
    assert r.status == 400
    assert "doesn't contain os_distro" in r.text
    r = magnum_env.create_cluster_template(name='ct-noimage',
                                           image_id=NOT_FOUND)
    # ImageNotFound is a 400 in Magnum
    assert r.status == 400, r.text
    assert 'could not be found' in r.text
    assert ('GET', '/v2/images/%s' % NOT_FOUND, '', 'admin-token') in \
        magnum_env.glance_requests


def test_reader_is_forbidden(magnum_env, magnum_template,
                             magnum_notifications):
    r = magnum_env.create_cluster(magnum_template['uuid'], name='cl-reader',
                                  token='reader-token')
    assert r.status == 403
    magnum_env.wait_idle()
    assert magnum_notifications.magnum_own_notifications() == []


def test_cluster_lifecycle_notifications(magnum_env, magnum_template,
                                         magnum_notifications):
    r = magnum_env.create_cluster(magnum_template['uuid'], name='cl-life')
    assert r.status == 202, r.text
    uuid = r.json['uuid']
    assert list(r.json) == ['uuid']
    magnum_env.wait_idle()
    assert _own(magnum_notifications) == [
        ('magnum.cluster.create', 'INFO', 'pending')]
    note = magnum_notifications.magnum_own_notifications()[0]
    assert note['publisher_id'] == magnum_app.MAGNUM_PUBLISHER_ID
    payload = note['payload']
    assert payload['target']['id'] == uuid
    assert payload['target']['typeURI'] == 'service/magnum/cluster'
    assert payload['initiator']['user_id'] == 'u-admin'
    assert payload['initiator']['project_id'] == 'p-demo'

    magnum_env.wait_for_cluster(uuid, 'CREATE_COMPLETE')
    r = magnum_env.request('POST', '/v1/clusters/%s/actions/resize' % uuid,
                           body={'node_count': 2}, microversion='1.7')
    assert r.status == 202, r.text
    magnum_env.wait_for_cluster(uuid, 'UPDATE_COMPLETE')
    r = magnum_env.request(
        'PATCH', '/v1/clusters/%s' % uuid,
        body=[{'op': 'replace', 'path': '/node_count', 'value': 3}])
    assert r.status == 202, r.text
    r = magnum_env.wait_for_cluster(uuid, 'UPDATE_COMPLETE')
    assert r.json['node_count'] == 3
    assert magnum_env.request('DELETE', '/v1/clusters/%s' % uuid).status == 204
    magnum_env.wait_for_cluster(uuid, 'DELETED')
    assert _own(magnum_notifications) == [
        ('magnum.cluster.create', 'INFO', 'pending'),
        ('magnum.cluster.create', 'INFO', 'success'),
        ('magnum.cluster.update', 'INFO', 'pending'),
        ('magnum.cluster.update', 'INFO', 'success'),
        ('magnum.cluster.update', 'INFO', 'pending'),
        ('magnum.cluster.update', 'INFO', 'success'),
        ('magnum.cluster.delete', 'INFO', 'pending'),
        ('magnum.cluster.delete', 'INFO', 'success'),
    ]
    # success events come from the periodic job: admin context, no user
    success = magnum_notifications.magnum_own_notifications()[1]['payload']
    assert 'user_id' not in success['initiator']


def test_cluster_create_failure_in_conductor(magnum_env, magnum_template,
                                             magnum_notifications):
    r = magnum_env.create_cluster(magnum_template['uuid'], name='fail-one')
    assert r.status == 202
    uuid = r.json['uuid']
    magnum_env.wait_idle()
    assert _own(magnum_notifications) == [
        ('magnum.cluster.create', 'INFO', 'pending'),
        ('magnum.cluster.create', 'ERROR', 'failure')]
    r = magnum_env.request('GET', '/v1/clusters/%s' % uuid)
    assert r.json['status'] == 'CREATE_FAILED'
    assert magnum_env.request('DELETE', '/v1/clusters/%s' % uuid).status == 204
    magnum_env.wait_for_cluster(uuid, 'DELETED')


def test_not_found(magnum_env):
    r = magnum_env.request('GET', '/v1/clusters/%s' % NOT_FOUND)
    assert r.status == 404
    assert r.json['errors'][0]['status'] == 404
