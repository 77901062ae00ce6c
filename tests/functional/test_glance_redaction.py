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

"""Secrets a client sends, as the REAL Glance 33 quotes them back, never reach an
event or the journal; its long error texts are capped (issue 8, items 11-13)."""

from __future__ import annotations

import json
import os

import pytest

try:
    from . import scenario
except ImportError:
    import scenario

from tests.support import cadf as cadf_support

pytestmark = pytest.mark.glance

MARK = '...[truncated]'
SECRET = 'hunter2-s3cr3t'


@pytest.fixture(scope='module')
def redaction_run(audit_pipelines):
    pipeline = audit_pipelines('redaction', formats='cadf,glance', driver='test',
                               publisher_id='image.audit-redaction')
    r = pipeline.request('POST', '/v2/images', body={
        'name': 'redaction', 'disk_format': 'raw', 'container_format': 'bare'})
    assert r.status == 201, r.text
    image_id = r.json['id']
    calls = {
        # a property named like a secret, with a dict value: Glance's 400 quotes it twice
        'secret_property': pipeline.request(
            'PATCH', '/v2/images/' + image_id, content_type=scenario.JSON_PATCH,
            body=[{'op': 'add', 'path': '/password', 'value': {'password': SECRET}}]),
        # a credential URL as a bad disk_format: a long schema error follows it
        'credential_url': pipeline.request(
            'PATCH', '/v2/images/' + image_id, content_type=scenario.JSON_PATCH,
            body=[{'op': 'replace', 'path': '/disk_format',
                   'value': 'http://glance:%s@example.org/x' % SECRET}]),
        # names the raw-string matching let through, on a real listing
        'listing': pipeline.request(
            'GET', '/v2/images?limit=1&pass%%77ord=%s&%%74oken=%s&AWSAccessKeyId=%s'
                   '&temp_url_sig=%s' % ((SECRET,) * 4)),
    }
    pipeline.flush()
    ours = pipeline.ours()
    return pipeline, image_id, calls, ours


def _events(ours, event_type):
    return [e for e in ours if e['event_type'] == event_type]


def test_glance_400_quoting_a_secret_property(redaction_run):
    pipeline, image_id, calls, ours = redaction_run
    assert calls['secret_property'].status == 400
    assert "{'password': '%s'}" % SECRET in calls['secret_property'].text   # Glance quotes it
    failures = [e['payload'] for e in _events(ours, 'image.update') if e['priority'] == 'WARN']
    assert failures[0] == (
        "PATCH /v2/images/%s failed: 400 Bad Request: Provided object does not match "
        "schema 'image': {'password': '***'} is not of type 'string' Failed validating "
        "'type' in schema['additionalProperties']: {'type': 'string'} On "
        "instance['password']: {'password': '***'}" % image_id)


def test_glance_400_with_a_credential_url_is_capped(redaction_run):
    pipeline, image_id, calls, ours = redaction_run
    assert calls['credential_url'].status == 400
    failures = [e['payload'] for e in _events(ours, 'image.update') if e['priority'] == 'WARN']
    prefix = 'PATCH /v2/images/%s failed: 400 Bad Request: ' % image_id
    explanation = (
        "Provided object does not match schema 'image': 'http://***@example.org/x' is not "
        "one of [None, 'ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', "
        "'iso', 'ploop'] Failed validating 'enum' in schema['properties']['disk_format']:")
    assert len(explanation) == 256 - len(MARK)
    assert failures[1] == prefix + explanation + MARK


def test_escaped_names_are_redacted_in_the_request_path(redaction_run):
    pipeline, image_id, calls, ours = redaction_run
    assert calls['listing'].status == 200
    [listing] = _events(ours, 'audit.image.list')
    assert listing['payload']['requestPath'] == (
        '/v2/images?limit=1&pass%77ord=***&%74oken=***&AWSAccessKeyId=***&temp_url_sig=***')
    cadf_support.assert_valid(listing['payload'])


def test_the_secret_is_nowhere(redaction_run):
    pipeline, image_id, calls, ours = redaction_run
    assert len(ours) >= 4
    assert SECRET not in json.dumps(ours)
    directory = pipeline.mw.delivery.directory
    names = os.listdir(directory)
    assert any(n.endswith('.journal') for n in names)
    for name in names:
        with open(os.path.join(directory, name), 'rb') as f:
            assert SECRET.encode() not in f.read(), name
