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

"""record_lookups = false and usage_failures = false against the REAL Glance 33.

Each option gets its own pipeline (same session Glance, its own publisher_id);
every call is compared with the notifications Glance itself sent for it.
"""

from __future__ import annotations

import pytest

try:
    from . import compare, scenario
except ImportError:
    import compare
    import scenario

from tests.support import cadf as cadf_support

pytestmark = pytest.mark.glance

INFO, WARN, ERROR = 'INFO', 'WARN', 'ERROR'
MIB = scenario.MIB
#: image fields only a record can tell (record_lookups = false: None)
RECORD_ONLY = {'name', 'created_at', 'min_disk', 'min_ram', 'protected', 'checksum',
               'owner', 'disk_format', 'container_format', 'size', 'virtual_size',
               'is_public', 'visibility', 'deleted_at'}


def _nones(payload):
    return {k for k, v in payload.items() if v is None}


@pytest.fixture(scope='module')
def no_lookups(audit_pipelines):
    pipeline = audit_pipelines('nolookup', formats='cadf,glance', driver='test',
                               publisher_id='image.audit-nolookup', record_lookups='false')
    d = scenario.Driver(pipeline)
    r = d.call('create', 'POST', '/v2/images', expect=201, body={
        'name': 'nolookup', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private', 'audit_probe': 'y'})
    iid = r.image_id = r.own[0]['payload']['id']
    img = '/v2/images/%s' % iid
    d.call('upload', 'PUT', img + '/file', expect=204, image_id=iid,
           body=scenario.glance_app.PatternStream(MIB, seed=4),
           content_type='application/octet-stream')
    d.call('download', 'GET', img + '/file', expect=200, image_id=iid)
    d.call('tag_add', 'PUT', img + '/tags/t1', expect=204, image_id=iid)
    d.call('deactivate', 'POST', img + '/actions/deactivate', expect=204, image_id=iid)
    d.call('reactivate', 'POST', img + '/actions/reactivate', expect=204, image_id=iid)
    d.call('share', 'PATCH', img, expect=200, image_id=iid,
           content_type=scenario.JSON_PATCH,
           body=[{'op': 'replace', 'path': '/visibility', 'value': 'shared'}])
    d.call('member_add', 'POST', img + '/members', expect=200, image_id=iid,
           body={'member': 'p-other'})
    d.call('member_delete', 'DELETE', img + '/members/p-other', expect=204, image_id=iid)
    d.call('delete', 'DELETE', img, expect=204, image_id=iid)
    return d.steps


#: (call, index of our notification) -> the payload keys that are None
NONE_WITHOUT_LOOKUPS = {
    # from the 201 body: what Glance itself has as None, nothing more
    ('create', 0): {'checksum', 'size', 'virtual_size', 'deleted_at'},
    # image.update(saving) + image.prepare: the id, the status the upload implies
    # and the moment it started
    ('upload', 0): RECORD_ONLY,
    ('upload', 1): RECORD_ONLY,
    # image.upload / image.activate / image.update(active): + the stored size
    ('upload', 2): (RECORD_ONLY - {'size'}) | {'updated_at'},
    ('upload', 3): (RECORD_ONLY - {'size'}) | {'updated_at'},
    ('upload', 4): (RECORD_ONLY - {'size'}) | {'updated_at'},
    ('download', 0): {'owner_id'},
    ('tag_add', 0): RECORD_ONLY | {'status', 'updated_at'},
    ('deactivate', 0): RECORD_ONLY | {'status', 'updated_at'},
    ('reactivate', 0): RECORD_ONLY | {'status', 'updated_at'},
    ('share', 0): {'deleted_at'},                    # from the 200 body
    ('member_add', 0): {'deleted_at'},               # from the 200 body
    ('member_delete', 0): {'status', 'created_at', 'updated_at'},
    ('delete', 0): RECORD_ONLY - {'deleted_at'},
}


def test_no_lookups_same_sequence_as_glance(no_lookups):
    assert list(no_lookups) == ['create', 'upload', 'download', 'tag_add', 'deactivate',
                                'reactivate', 'share', 'member_add', 'member_delete',
                                'delete']
    for name, step in no_lookups.items():
        assert step.own, name
        assert scenario.seq(step.usage) == scenario.seq(step.own), name
        assert len(step.cadf) == 1 and step.cadf[0]['priority'] == INFO
        cadf_support.assert_valid(step.cadf[0]['payload'])


def test_no_lookups_unknown_fields_are_none(no_lookups):
    seen = set()
    for name, step in no_lookups.items():
        for i, m in enumerate(step.usage):
            assert _nones(m['payload']) == NONE_WITHOUT_LOOKUPS[(name, i)], (
                name, i, m['event_type'])
            seen.add((name, i))
    assert seen == set(NONE_WITHOUT_LOOKUPS)


def test_no_lookups_known_fields_equal_glances(no_lookups):
    """Whatever is not None is what Glance sent (timestamps aside)."""
    skip = compare.CLOCK_FIELDS | {'properties', 'tags'}
    for name, step in no_lookups.items():
        for ours, own in zip(step.usage, step.own):
            for key, value in ours['payload'].items():
                if value is None or key in skip:
                    continue
                if key == 'destination_ip':
                    continue
                assert own['payload'][key] == value, (name, ours['event_type'], key)
    upload = no_lookups['upload'].usage
    assert [m['payload']['status'] for m in upload] == ['saving', 'saving', 'active',
                                                        'active', 'active']
    assert upload[2]['payload']['size'] == MIB
    send = no_lookups['download'].usage[0]['payload']
    assert (send['bytes_sent'], send['receiver_user_id']) == (MIB, 'u-admin')
    deleted = no_lookups['delete'].usage[0]['payload']
    assert (deleted['status'], deleted['deleted']) == ('deleted', True)
    # a record the filter never read: no invented properties or tags
    assert no_lookups['tag_add'].usage[0]['payload']['properties'] == {}
    assert no_lookups['tag_add'].usage[0]['payload']['tags'] == []


@pytest.fixture(scope='module')
def no_failures(audit_pipelines):
    pipeline = audit_pipelines('nofail', formats='cadf,glance', driver='test',
                               publisher_id='image.audit-nofail', usage_failures='false')
    d = scenario.Driver(pipeline)
    r = d.call('create', 'POST', '/v2/images', expect=201, body={
        'name': 'nofail', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private'})
    iid = r.image_id = r.own[0]['payload']['id']
    img = '/v2/images/%s' % iid
    d.call('patch_wrong_media_type', 'PATCH', img, expect=415, image_id=iid,
           content_type='application/json',
           body=[{'op': 'replace', 'path': '/name', 'value': 'x'}])
    d.call('forbidden_create_reader', 'POST', '/v2/images', expect=403,
           token='reader-token', body={'name': 'no', 'disk_format': 'raw',
                                       'container_format': 'bare'})
    d.call('invalid_json', 'POST', '/v2/images', expect=400, body=b'{"name": ',
           content_type='application/json')
    d.call('member_add_on_private', 'POST', img + '/members', expect=403, image_id=iid,
           body={'member': 'p-other'})
    d.call('delete_missing', 'DELETE', '/v2/images/%s' % scenario.uuid.uuid4(),
           expect=404)
    with pipeline.env.override('image_size_cap', scenario.SIZE_CAP):
        d.call('upload_over_size_cap', 'PUT', img + '/file', expect=413, image_id=iid,
               body=scenario.glance_app.PatternStream(2 * MIB, seed=5),
               content_type='application/octet-stream')
    d.call('delete', 'DELETE', img, expect=204, image_id=iid)
    return d.steps


def test_no_failures_is_exactly_glances_behaviour(no_failures):
    expected_own = {
        'create': [('image.create', INFO)],
        'patch_wrong_media_type': [],
        'forbidden_create_reader': [],
        'invalid_json': [],
        'member_add_on_private': [],
        'delete_missing': [],
        'upload_over_size_cap': [('image.update', INFO), ('image.prepare', INFO),
                                 ('image.upload', ERROR), ('image.update', INFO)],
        'delete': [('image.delete', INFO)],
    }
    assert {n: scenario.seq(s.own) for n, s in no_failures.items()} == expected_own
    for name, step in no_failures.items():
        assert scenario.seq(step.usage) == scenario.seq(step.own), name
        assert compare.diff(name, step.usage, step.own) == [], name


def test_no_failures_still_audits_every_call_in_cadf(no_failures):
    codes = {}
    for name, step in no_failures.items():
        (event,) = step.cadf
        cadf_support.assert_valid(event['payload'])
        codes[name] = (event['event_type'], event['priority'],
                       event['payload']['outcome'],
                       event['payload']['reason']['reasonCode'])
    assert codes == {
        'create': ('audit.image.create', INFO, 'success', '201'),
        'patch_wrong_media_type': ('audit.image.update', ERROR, 'failure', '415'),
        'forbidden_create_reader': ('audit.image.create', ERROR, 'failure', '403'),
        'invalid_json': ('audit.image.create', ERROR, 'failure', '400'),
        'member_add_on_private': ('audit.image.member.create', ERROR, 'failure', '403'),
        'delete_missing': ('audit.image.delete', ERROR, 'failure', '404'),
        'upload_over_size_cap': ('audit.image.upload', ERROR, 'failure', '413'),
        'delete': ('audit.image.delete', INFO, 'success', '204'),
    }


def test_failures_on_by_default_for_the_same_calls(audit_pipelines):
    """The counterpart: with the default (usage_failures = true) the same
    refused calls give WARN text notifications (documented differences)."""
    pipeline = audit_pipelines('failures-on', formats='glance', driver='test',
                               publisher_id='image.audit-failures-on')
    d = scenario.Driver(pipeline)
    step = d.call('member_add_on_private_image', 'POST',
                  '/v2/images/%s/members' % scenario.uuid.uuid4(), expect=404,
                  body={'member': 'p-other'})
    assert scenario.seq(step.ours) == [('image.member.create', WARN)]
    assert step.ours[0]['payload'].startswith('POST /v2/images/')
    assert ' failed: 404 Not Found' in step.ours[0]['payload']
    assert step.own == []


def test_import_by_a_non_admin(audit_pipelines):
    """The Tasks API is admin-only (policy tasks_api_access): for a member the
    filter cannot read the import task, yet task.create says what Glance's
    does (id, type, owner, status pending); only the times are its own."""
    pipeline = audit_pipelines('member-import', formats='glance', driver='test',
                               publisher_id='image.audit-member-import')
    d = scenario.Driver(pipeline)
    r = d.call('create', 'POST', '/v2/images', token='member-token', expect=201, body={
        'name': 'member-import', 'disk_format': 'raw', 'container_format': 'bare'})
    iid = r.own[0]['payload']['id']
    d.call('stage', 'PUT', '/v2/images/%s/stage' % iid, token='member-token', expect=204,
           image_id=iid, body=scenario.glance_app.PatternStream(MIB, seed=6),
           content_type='application/octet-stream')
    step = d.import_call('import', iid, token='member-token')
    assert scenario.seq(step.usage) == [('task.create', INFO), ('image.update', INFO)]
    # The follow reads the image's task list as the member (no Tasks API needed).
    assert [m['event_type'] for m in step.completion] == [
        'task.processing', 'image.prepare', 'image.upload', 'image.activate',
        'image.update', 'image.update', 'task.success', 'task.run']
    assert step.completion[-2]['payload']['id'] == step.own[0]['payload']['id']
    ours, own = step.usage[0]['payload'], step.own[0]['payload']
    assert own['owner'] == 'p-demo' and own['status'] == 'pending'
    clocks = {'created_at', 'updated_at', 'expires_at'}
    assert {k: v for k, v in ours.items() if k not in clocks} == \
        {k: v for k, v in own.items() if k not in clocks}
    for key in clocks:
        assert ours[key] and ours[key].endswith('Z')
    pipeline.request('DELETE', '/v2/images/%s' % iid, token='member-token')
