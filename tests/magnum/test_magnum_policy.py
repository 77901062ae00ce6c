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

"""Audit policy levels and change records against the REAL Magnum 23 (issue 10).

Run in its own pytest process (``python -m pytest tests/magnum/test_magnum_policy.py``).
Cluster PATCH (node_count), resize and upgrade, template PATCH: the ``changes``
attachment with the old values (record_lookups on); certificate bodies and
secret-named labels never reach an event.
"""

from __future__ import annotations

import json

import pytest

try:
    from . import magnum_app
except ImportError:
    import magnum_app

from tests.support import cadf as cadf_support

pytestmark = pytest.mark.magnum

PUBLISHER = 'container-infra.policy-test'
RR_PUBLISHER = 'container-infra.policy-rr'
JSON_TYPE = 'mime:application/json'
CSR = ('-----BEGIN CERTIFICATE REQUEST-----\nMIICWjCCAUICAQAwFTETMBEGA1UEAwwKYXVkaXQt'
       'dGVzdDCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEBAL\n'
       '-----END CERTIFICATE REQUEST-----\n')


class Audited:
    def __init__(self, env, app, publisher):
        self.env, self.app, self.publisher = env, app, publisher
        self.mw = magnum_app.find_audit_middleware(app)

    def call(self, method, path, **kw):
        """(response, our CADF payload of this call)."""
        self.env.wait_idle()
        assert self.mw.delivery.flush(10)
        before = len(self.ours())
        response = self.env.request(method, path, app=self.app, **kw)
        self.env.wait_idle()
        assert self.mw.delivery.flush(10)
        new = self.ours()[before:]
        assert len(new) == 1, [n['event_type'] for n in new]
        cadf_support.assert_valid(new[0]['payload'])
        return response, new[0]['payload']

    def ours(self):
        return [m for m in magnum_app.all_notifications()
                if m['publisher_id'] == self.publisher]


@pytest.fixture(scope='module')
def audited(magnum_env, tmp_path_factory):
    app = magnum_env.load_app(name='policy', audit_filter={
        'route_map': 'magnum', 'driver': 'test', 'formats': 'cadf',
        'publisher_id': PUBLISHER,
        'journal_dir': str(tmp_path_factory.mktemp('policy-journal'))})
    a = Audited(magnum_env, app, PUBLISHER)
    yield a
    a.mw.delivery.close()


@pytest.fixture(scope='module')
def audited_rr(magnum_env, tmp_path_factory):
    policy = tmp_path_factory.mktemp('policy') / 'rr.yaml'
    policy.write_text('rules: [{level: request_response}]\n')
    app = magnum_env.load_app(name='policy-rr', audit_filter={
        'route_map': 'magnum', 'driver': 'test', 'formats': 'cadf',
        'publisher_id': RR_PUBLISHER, 'audit_policy': str(policy),
        'journal_dir': str(tmp_path_factory.mktemp('policy-rr-journal'))})
    a = Audited(magnum_env, app, RR_PUBLISHER)
    yield a
    a.mw.delivery.close()


def attachments(payload):
    return {a['name']: a['content'] for a in payload.get('attachments', [])}


def test_template_create_and_patch(audited):
    r, payload = audited.call('POST', '/v1/clustertemplates', body={
        'name': 'policy-ct', 'image_id': magnum_app.IMAGE_ID, 'coe': 'kubernetes',
        'server_type': 'vm', 'external_network_id': None,
        'labels': {'registry_password': 'hunter2', 'kube_tag': 'v1.30'}})
    assert r.status == 201, r.text
    request = attachments(payload)['request']
    assert request['name'] == 'policy-ct'
    assert request['labels'] == {'registry_password': '***', 'kube_tag': 'v1.30'}
    ct = r.json['uuid']
    r, payload = audited.call('PATCH', '/v1/clustertemplates/' + ct, body=[
        {'op': 'replace', 'path': '/name', 'value': 'policy-ct-2'},
        {'op': 'replace', 'path': '/labels/registry_password', 'value': 'hunter3'}])
    assert r.status == 200, r.text
    assert attachments(payload)['changes'] == [
        {'op': 'replace', 'path': '/name', 'value': 'policy-ct-2', 'old': 'policy-ct'},
        {'op': 'replace', 'path': '/labels/registry_password', 'value': '***',
         'old': '***'}]
    text = json.dumps(audited.ours())
    assert 'hunter2' not in text and 'hunter3' not in text


def test_cluster_patch_resize_and_upgrade(audited, magnum_template):
    env = audited.env
    r = env.create_cluster(magnum_template['uuid'], name='policy-cl', node_count=1)
    assert r.status == 202, r.text
    cluster = r.json['uuid']
    env.wait_idle()
    env.sync_cluster_status()
    r, payload = audited.call('PATCH', '/v1/clusters/' + cluster, body=[
        {'op': 'replace', 'path': '/node_count', 'value': 2}])
    assert r.status == 202, r.text
    assert attachments(payload)['changes'] == [
        {'op': 'replace', 'path': '/node_count', 'value': 2, 'old': 1}]
    assert payload['outcome'] == 'pending'
    env.wait_idle()
    env.sync_cluster_status()
    r, payload = audited.call('POST', '/v1/clusters/%s/actions/resize' % cluster,
                              body={'node_count': 3}, microversion='1.7')
    assert r.status == 202, r.text
    assert attachments(payload)['changes'] == [
        {'op': 'replace', 'path': '/node_count', 'value': 3, 'old': 2}]
    env.wait_idle()
    env.sync_cluster_status()
    r = env.create_cluster_template(name='policy-ct-next')
    assert r.status == 201, r.text
    target = r.json['uuid']
    r, payload = audited.call('POST', '/v1/clusters/%s/actions/upgrade' % cluster,
                              body={'cluster_template': target, 'max_batch_size': 1},
                              microversion='1.8')
    # Whatever Magnum answers, the event says what was asked and what it was
    # (max_batch_size is no field of the cluster: no old value).
    assert attachments(payload)['changes'] == [
        {'op': 'replace', 'path': '/cluster_template_id', 'value': target,
         'old': magnum_template['uuid']},
        {'op': 'replace', 'path': '/max_batch_size', 'value': 1}]


def test_certificate_bodies_never_reach_an_event(audited_rr, magnum_template):
    env = audited_rr.env
    r = env.create_cluster(magnum_template['uuid'], name='policy-cert-cl')
    assert r.status == 202, r.text
    cluster = r.json['uuid']
    env.wait_idle()
    env.sync_cluster_status()
    r, payload = audited_rr.call('POST', '/v1/certificates',
                                 body={'cluster_uuid': cluster, 'csr': CSR})
    found = attachments(payload)
    assert found['request'] == {'cluster_uuid': cluster, 'csr': '***'}
    r, payload = audited_rr.call('GET', '/v1/certificates/' + cluster)
    assert r.status == 200, r.text
    assert 'BEGIN CERTIFICATE' in r.text            # Magnum answered with the CA
    response = attachments(payload)['response']
    assert response['pem'] == '***' and response['cluster_uuid'] == cluster
    assert 'BEGIN' not in json.dumps(audited_rr.ours())
