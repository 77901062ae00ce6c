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

"""Audit policy levels and change records against the REAL Glance 33 (issue 10).

Each level on real calls (none, metadata, request, request_response), the change
record of a JSON-patch PATCH (``visibility: private -> public``, with the old value
when record_lookups is on and without it when off), a member status change, tags and
the deactivate/reactivate actions.  Every CADF event is checked with pycadf.
"""

from __future__ import annotations

import json

import pytest

try:
    from . import scenario
except ImportError:
    import scenario

from tests.support import cadf as cadf_support

pytestmark = pytest.mark.glance

JSON_TYPE = 'mime:application/json'


@pytest.fixture(scope='module')
def policy_files(tmp_path_factory):
    base = tmp_path_factory.mktemp('policies')
    files = {
        'none': 'rules:\n  - {level: none, events: [image.update, image.read]}\n'
                '  - {level: metadata}\n',
        'rr': 'rules: [{level: request_response}]\n',
        'roles': 'rules:\n  - {level: none, roles: [admin], events: [image.read]}\n'
                 '  - {level: metadata}\n',
    }
    paths = {}
    for name, text in files.items():
        path = base / (name + '.yaml')
        path.write_text(text)
        paths[name] = str(path)
    return paths


@pytest.fixture(scope='module')
def pipelines(audit_pipelines, policy_files):
    common = {'formats': 'cadf,glance', 'driver': 'test'}
    return {
        'lookups': audit_pipelines('pol-lookups', publisher_id='image.pol-lookups',
                                   **common),
        'nolookups': audit_pipelines('pol-nolookups', publisher_id='image.pol-nolookups',
                                     record_lookups='false', **common),
        'metadata': audit_pipelines('pol-metadata', publisher_id='image.pol-metadata',
                                    audit_policy='metadata', **common),
        'none': audit_pipelines('pol-none', publisher_id='image.pol-none',
                                audit_policy=policy_files['none'], **common),
        'rr': audit_pipelines('pol-rr', publisher_id='image.pol-rr',
                              audit_policy=policy_files['rr'], **common),
        'roles': audit_pipelines('pol-roles', publisher_id='image.pol-roles',
                                 audit_policy=policy_files['roles'], **common),
    }


def new_image(pipeline, **extra):
    resp = pipeline.request('POST', '/v2/images', body=dict({
        'name': 'policy-image', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private'}, **extra))
    assert resp.status == 201, resp.text
    return resp.json['id']


def call(pipeline, method, path, **kw):
    """One call; returns (response, [our envelopes of this call])."""
    pipeline.flush()
    before = len(pipeline.ours())
    resp = pipeline.request(method, path, **kw)
    pipeline.flush()
    return resp, pipeline.ours()[before:]


def cadf_event(notes):
    found = [n for n in notes if n['event_type'].startswith('audit.')]
    assert len(found) == 1, [n['event_type'] for n in notes]
    cadf_support.assert_valid(found[0]['payload'])
    return found[0]['payload']


def attachments(payload):
    return {a['name']: a for a in payload.get('attachments', [])}


def patch(pipeline, image_id, ops, **kw):
    return call(pipeline, 'PATCH', '/v2/images/' + image_id, content_type=scenario.JSON_PATCH,
                body=ops, **kw)


def test_patch_visibility_private_to_public_with_the_old_value(pipelines):
    p = pipelines['lookups']
    image_id = new_image(p)
    resp, notes = patch(p, image_id, [
        {'op': 'replace', 'path': '/visibility', 'value': 'public'},
        {'op': 'replace', 'path': '/name', 'value': 'renamed'}])
    assert resp.status == 200 and resp.json['visibility'] == 'public'
    payload = cadf_event(notes)
    changes = attachments(payload)['changes']
    assert changes['typeURI'] == JSON_TYPE
    assert changes['content'] == [
        {'op': 'replace', 'path': '/visibility', 'value': 'public', 'old': 'private'},
        {'op': 'replace', 'path': '/name', 'value': 'renamed', 'old': 'policy-image'}]
    # The Glance-format usage notification is still Glance's own.
    assert [n['event_type'] for n in notes] == ['image.update', 'audit.image.update']


def test_patch_without_record_lookups_has_no_old_value(pipelines):
    p = pipelines['nolookups']
    image_id = new_image(p)
    _, notes = patch(p, image_id, [{'op': 'replace', 'path': '/visibility',
                                    'value': 'public'}])
    assert attachments(cadf_event(notes))['changes']['content'] == [
        {'op': 'replace', 'path': '/visibility', 'value': 'public'}]


def test_a_secret_named_property_is_masked_old_and_new(pipelines):
    p = pipelines['lookups']
    image_id = new_image(p, os_admin_password='first-secret')
    _, notes = patch(p, image_id, [
        {'op': 'replace', 'path': '/os_admin_password', 'value': 'second-secret'}])
    assert attachments(cadf_event(notes))['changes']['content'] == [
        {'op': 'replace', 'path': '/os_admin_password', 'value': '***', 'old': '***'}]
    cadf_text = json.dumps([n for n in notes if n['event_type'].startswith('audit.')])
    assert 'first-secret' not in cadf_text and 'second-secret' not in cadf_text


def test_tags_and_actions(pipelines):
    p = pipelines['lookups']
    image_id = new_image(p)
    img = '/v2/images/' + image_id
    resp, notes = call(p, 'PUT', img + '/tags/blue')
    assert resp.status == 204
    assert attachments(cadf_event(notes))['changes']['content'] == [
        {'op': 'add', 'path': '/tags', 'value': 'blue', 'old': []}]
    resp, notes = call(p, 'DELETE', img + '/tags/blue')
    assert resp.status == 204
    assert attachments(cadf_event(notes))['changes']['content'] == [
        {'op': 'remove', 'path': '/tags', 'value': 'blue', 'old': ['blue']}]
    # deactivate needs an active image: upload some data first
    assert p.request('PUT', img + '/file', body=b'x' * 1024,
                     content_type='application/octet-stream').status == 204
    resp, notes = call(p, 'POST', img + '/actions/deactivate')
    assert resp.status == 204
    assert attachments(cadf_event(notes))['changes']['content'] == [
        {'op': 'replace', 'path': '/status', 'value': 'deactivated', 'old': 'active'}]
    resp, notes = call(p, 'POST', img + '/actions/reactivate')
    assert resp.status == 204
    assert attachments(cadf_event(notes))['changes']['content'] == [
        {'op': 'replace', 'path': '/status', 'value': 'active', 'old': 'deactivated'}]


def test_member_status_change(pipelines):
    p = pipelines['lookups']
    image_id = new_image(p, visibility='shared')
    img = '/v2/images/' + image_id
    assert p.request('POST', img + '/members', body={'member': 'p-other'}).status == 200
    resp, notes = call(p, 'PUT', img + '/members/p-other', token='other-token',
                       body={'status': 'accepted'})
    assert resp.status == 200
    payload = cadf_event(notes)
    assert payload['target']['attachments'][0]['content'] == 'p-other'
    assert attachments(payload)['changes']['content'] == [
        {'op': 'replace', 'path': '/status', 'value': 'accepted', 'old': 'pending'}]


def test_create_at_request_level_carries_the_request(pipelines):
    p = pipelines['lookups']
    resp, notes = call(p, 'POST', '/v2/images', body={
        'name': 'req-image', 'disk_format': 'raw', 'container_format': 'bare'})
    assert resp.status == 201
    assert attachments(cadf_event(notes)) == {'request': {
        'typeURI': JSON_TYPE, 'name': 'request',
        'content': {'name': 'req-image', 'disk_format': 'raw', 'container_format': 'bare'}}}


def test_metadata_level_is_todays_event(pipelines):
    p = pipelines['metadata']
    image_id = new_image(p)
    _, notes = patch(p, image_id, [{'op': 'replace', 'path': '/visibility',
                                    'value': 'public'}])
    payload = cadf_event(notes)
    assert 'attachments' not in payload
    assert payload['action'] == 'update' and payload['target']['id'] == image_id


def test_level_none_sends_no_cadf_event_but_keeps_the_usage_notification(pipelines):
    p = pipelines['none']
    image_id = new_image(p)
    resp, notes = patch(p, image_id, [{'op': 'replace', 'path': '/name', 'value': 'quiet'}])
    assert resp.status == 200
    assert [n['event_type'] for n in notes] == ['image.update']
    assert notes[0]['payload']['name'] == 'quiet'
    _, notes = call(p, 'GET', '/v2/images/' + image_id)
    assert notes == []
    _, notes = call(p, 'GET', '/v2/images')            # not named by the policy: metadata
    assert [n['event_type'] for n in notes] == ['audit.image.list']


def test_request_response_level_carries_the_response(pipelines):
    p = pipelines['rr']
    image_id = new_image(p)
    resp, notes = patch(p, image_id, [{'op': 'replace', 'path': '/visibility',
                                       'value': 'public'}])
    found = attachments(cadf_event(notes))
    assert found['changes']['content'] == [
        {'op': 'replace', 'path': '/visibility', 'value': 'public', 'old': 'private'}]
    assert found['response']['content'] == resp.json
    # A read: the record the caller got; a download: never its data.
    resp, notes = call(p, 'GET', '/v2/images/' + image_id)
    assert attachments(cadf_event(notes))['response']['content'] == resp.json
    assert p.request('PUT', '/v2/images/%s/file' % image_id, body=b'y' * 2048,
                     content_type='application/octet-stream').status == 204
    resp, notes = call(p, 'GET', '/v2/images/%s/file' % image_id)
    assert resp.body == b'y' * 2048
    assert 'attachments' not in cadf_event(notes)


def test_a_role_rule_follows_the_token_auth_token_confirmed(pipelines):
    """Real auth_token: the admin's reads are at level none, the member's are not,
    and a member forging X-Roles: admin is still audited (auth_token replaces the
    header with the token's roles)."""
    p = pipelines['roles']
    image_id = new_image(p, visibility='public')
    path = '/v2/images/' + image_id
    resp, notes = call(p, 'GET', path)                          # admin-token
    assert resp.status == 200 and notes == []
    resp, notes = call(p, 'GET', path, token='member-token',
                       headers={'X-Roles': 'admin', 'X-Identity-Status': 'Confirmed'})
    assert resp.status == 200
    payload = cadf_event(notes)
    assert payload['initiator']['id'] == 'u-member'
    assert payload['initiator']['roles'] == ['member', 'reader']
