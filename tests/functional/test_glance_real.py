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

"""Issue 2 acceptance: audit_notifier after authtoken in the REAL Glance 33 app.

One session-scoped Glance (tests/functional/conftest.py); the whole life cycle
(scenario.py) runs once through a pipeline with ``formats = cadf,glance``,
``driver = test,log`` and ``publisher_id = image.audit-test``, and every call
records OUR notifications next to Glance's OWN (``image.localhost``) for that
same call.  The tests below only read that record, except the ones that need
another pipeline (record_lookups = false, usage_failures = false).
"""

from __future__ import annotations

import json
import os
import re
import uuid

import pytest

try:
    from . import compare, examples, glance_app, scenario
except ImportError:
    import compare
    import examples
    import glance_app
    import scenario

from tests.support import cadf as cadf_support
from tests.support import ceilometer

pytestmark = pytest.mark.glance

MIB = scenario.MIB
INFO, WARN, ERROR = 'INFO', 'WARN', 'ERROR'
REFUSED = 'ERROR'     # CADF event of a refused call: refused_priority's default
IMG = 'service/storage/image'
FILE = IMG + '/file'
TAG = IMG + '/tag'
MEMBER = IMG + '/member'
ISO = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
ENVELOPE_TIME = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$')
TOKENS = tuple(glance_app.TOKENS)
#: glance/notifier.py format_image_notification
IMAGE_KEYS = ('id', 'name', 'status', 'created_at', 'updated_at', 'min_disk', 'min_ram',
              'protected', 'checksum', 'owner', 'disk_format', 'container_format', 'size',
              'virtual_size', 'is_public', 'visibility', 'properties', 'tags', 'deleted',
              'deleted_at')

CREATE = [('image.create', INFO)]
UPDATE = [('image.update', INFO)]
UPLOAD = [('image.update', INFO), ('image.prepare', INFO), ('image.upload', INFO),
          ('image.activate', INFO), ('image.update', INFO)]
UPLOAD_FAILED = [('image.update', INFO), ('image.prepare', INFO), ('image.upload', ERROR),
                 ('image.update', INFO)]
SEND = [('image.send', INFO)]
IMPORT_OWN = [('task.create', INFO), ('task.processing', INFO), ('image.update', INFO),
              ('image.prepare', INFO), ('image.upload', INFO), ('image.activate', INFO),
              ('image.update', INFO), ('image.update', INFO), ('task.success', INFO),
              ('task.run', INFO)]


class Cadf:
    def __init__(self, event, priority, action, outcome, type_uri, target,
                 attachments=None, measurement=None):
        self.event, self.priority, self.action, self.outcome = event, priority, action, outcome
        self.type_uri, self.target = type_uri, target
        self.attachments = attachments
        self.measurement = measurement     # (metric name, expected result or callable)


#: step -> (HTTP status, our Glance-format sequence, Glance's own sequence, CADF)
EXPECTED = {
    'create_image': (201, CREATE, CREATE,
                     Cadf('audit.image.create', INFO, 'create', 'success', IMG, 'created')),
    'upload_20MiB': (204, UPLOAD, UPLOAD,
                     Cadf('audit.image.upload', INFO, 'update', 'success', FILE, 'image',
                          measurement=('bytes_received', scenario.UPLOAD_SIZE))),
    'download_full': (200, SEND, SEND,
                      Cadf('audit.image.download', INFO, 'read', 'success', FILE, 'image',
                           measurement=('bytes_sent', scenario.UPLOAD_SIZE))),
    'download_range_0_99': (206, SEND, SEND,
                            Cadf('audit.image.download', INFO, 'read', 'success', FILE,
                                 'image', measurement=('bytes_sent', 100))),
    'download_interrupted': (200, [('image.send', ERROR)], [],
                             Cadf('audit.image.download', ERROR, 'read', 'failure', FILE,
                                  'image', measurement=('bytes_sent', 'body'))),
    'patch_json_patch': (200, UPDATE, UPDATE,
                         Cadf('audit.image.update', INFO, 'update', 'success', IMG, 'image')),
    'patch_wrong_media_type': (415, [('image.update', WARN)], [],
                               Cadf('audit.image.update', REFUSED, 'update', 'failure', IMG,
                                    'image')),
    'tag_add': (204, UPDATE, UPDATE,
                Cadf('audit.image.tag.create', INFO, 'create', 'success', TAG, 'image',
                     attachments={'tag': 'audit-tag'})),
    'tag_delete': (204, UPDATE, UPDATE,
                   Cadf('audit.image.tag.delete', INFO, 'delete', 'success', TAG, 'image',
                        attachments={'tag': 'audit-tag'})),
    'deactivate': (204, UPDATE, UPDATE,
                   Cadf('audit.image.deactivate', INFO, 'update/deactivate', 'success', IMG,
                        'image')),
    'reactivate': (204, UPDATE, UPDATE,
                   Cadf('audit.image.reactivate', INFO, 'update/reactivate', 'success', IMG,
                        'image')),
    'patch_visibility_shared': (200, UPDATE, UPDATE,
                                Cadf('audit.image.update', INFO, 'update', 'success', IMG,
                                     'image')),
    'member_add': (200, [('image.member.create', INFO)], [('image.member.create', INFO)],
                   Cadf('audit.image.member.create', INFO, 'create', 'success', MEMBER,
                        'image', attachments={'member_id': 'p-other'})),
    'member_update_accept': (200, [('image.member.update', INFO)],
                             [('image.member.update', INFO)],
                             Cadf('audit.image.member.update', INFO, 'update', 'success',
                                  MEMBER, 'image', attachments={'member_id': 'p-other'})),
    'member_delete': (204, [('image.member.delete', INFO)], [('image.member.delete', INFO)],
                      Cadf('audit.image.member.delete', INFO, 'delete', 'success', MEMBER,
                           'image', attachments={'member_id': 'p-other'})),
    'forbidden_create_reader': (403, [('image.create', WARN)], [],
                                Cadf('audit.image.create', REFUSED, 'create', 'failure', IMG,
                                     'observer')),
    'invalid_json': (400, [('image.create', WARN)], [],
                     Cadf('audit.image.create', REFUSED, 'create', 'failure', IMG, 'observer')),
    'not_found': (404, [], [],
                  Cadf('audit.image.read', REFUSED, 'read', 'failure', IMG, 'image')),
    'delete_image': (204, [('image.delete', INFO)], [('image.delete', INFO)],
                     Cadf('audit.image.delete', INFO, 'delete', 'success', IMG, 'image')),
    'create_image2': (201, CREATE, CREATE,
                      Cadf('audit.image.create', INFO, 'create', 'success', IMG, 'created')),
    'stage_1MiB': (204, [('image.update', INFO)] * 2, [('image.update', INFO)] * 2,
                   Cadf('audit.image.stage', INFO, 'update/stage', 'success', FILE, 'image',
                        measurement=('bytes_received', scenario.STAGE_SIZE))),
    'import_glance_direct': (202, [('task.create', INFO), ('image.update', INFO)], IMPORT_OWN,
                             Cadf('audit.image.import', INFO, 'update/import', 'pending', IMG,
                                  'image')),
    'create_image3': (201, CREATE, CREATE,
                      Cadf('audit.image.create', INFO, 'create', 'success', IMG, 'created')),
    'upload_over_size_cap': (413, UPLOAD_FAILED, UPLOAD_FAILED,
                             Cadf('audit.image.upload', REFUSED, 'update', 'failure', FILE,
                                  'image', measurement=(
                                      'bytes_received',
                                      lambda n: scenario.SIZE_CAP < n <= 2 * MIB))),
    'delete_image3': (204, [('image.delete', INFO)], [('image.delete', INFO)],
                      Cadf('audit.image.delete', INFO, 'delete', 'success', IMG, 'image')),
}


@pytest.fixture(scope='module')
def lc(audit_lifecycle):
    return audit_lifecycle


def test_every_acceptance_call_ran(lc):
    assert list(lc.steps) == list(EXPECTED)


# --------------------------------------------------------------------------
# 1. Glance format, side by side with Glance's own notifications
# --------------------------------------------------------------------------

@pytest.mark.parametrize('name', list(EXPECTED))
def test_usage_sequence_next_to_glance(lc, name):
    status, ours, own, _ = EXPECTED[name]
    step = lc.steps[name]
    assert step.status == status
    assert scenario.seq(step.usage) == ours
    assert scenario.seq(step.own) == own
    for m in step.usage:
        assert m['publisher_id'] == 'image.audit-test'
        assert ENVELOPE_TIME.match(m['timestamp']), m['timestamp']
        uuid.UUID(m['message_id'])


#: our step name -> step name in data/glance33_own_notifications.json
GROUND_TRUTH_STEPS = dict({n: n for n in EXPECTED},
                          upload_over_size_cap='upload_over_size_cap_content_length')


def test_glance_own_notifications_match_the_recorded_ground_truth(lc):
    """Glance's own notifications in this run are those recorded in
    data/glance33_own_notifications.json (same Glance, same calls): same
    types, priorities, order and payload keys."""
    import os
    path = os.path.join(compare.DATA, 'glance33_own_notifications.json')
    with open(path) as f:
        recorded = {s['step']: s for s in json.load(f)['steps']}
    for name, step in lc.steps.items():
        truth = recorded[GROUND_TRUTH_STEPS[name]]
        assert step.status == truth['status'], name
        assert scenario.seq(step.own) == [(n['event_type'], n['priority'])
                                          for n in truth['notifications']], name
        for live, rec in zip(step.own, truth['notifications']):
            if isinstance(rec['payload'], dict):
                assert sorted(live['payload']) == sorted(rec['payload']), name
            else:
                assert isinstance(live['payload'], str), name


def test_differences_match_the_documented_list(lc):
    """Every difference between our notifications and Glance's own, per call,
    is listed in data/glance_format_differences.yaml, and every listed one is
    observed."""
    entries = compare.load_documented()
    documented = compare.documented_keys(entries)
    wildcards = {(c, e['event']) for e in entries if e['field'] == '*'
                 for c in e['calls']}
    observed = set()
    undocumented = []
    for name, step in lc.steps.items():
        for d in compare.diff(name, step.usage, step.own):
            if (name, d.event) in wildcards and d.kind in ('value', 'extra_field',
                                                           'missing_field'):
                observed.add((name, d.event, '*', 'value'))
                continue
            observed.add(d.key)
            if d.key not in documented:
                undocumented.append(d)
    assert not undocumented, 'differences not in %s:\n%s' % (
        compare.DIFFERENCES_FILE, '\n'.join(map(repr, undocumented)))
    # "*" entries describe a state that depends on timing (it may happen to match)
    never_seen = sorted(k for k in set(documented) - observed if k[2] != '*')
    assert not never_seen, 'documented but not observed: %s' % never_seen


def test_prepare_names_the_default_backend(lc):
    """image.prepare carries Glance's default store ([glance_store] default_backend
    when [DEFAULT] enabled_backends is set), as Glance's own does."""
    for name in ('upload_20MiB', 'upload_over_size_cap'):
        ours = [m for m in lc.steps[name].usage if m['event_type'] == 'image.prepare']
        own = [m for m in lc.steps[name].own if m['event_type'] == 'image.prepare']
        assert own[0]['payload']['backend'] == 'fs'
        assert ours[0]['payload'].get('backend') == 'fs'


def test_clock_fields_have_glance_format(lc):
    """updated_at/deleted_at are not compared by value (documented as 'clock');
    they must still be Glance's isotime format, and created_at Glance's value."""
    checked = 0
    for step in lc.steps.values():
        for m in step.usage:
            p = m['payload']
            if not isinstance(p, dict):
                continue
            for key in ('created_at', 'updated_at', 'deleted_at', 'expires_at'):
                if p.get(key) is not None:
                    assert ISO.match(p[key]), (step.name, m['event_type'], key, p[key])
                    checked += 1
    assert checked > 40
    clocks = {e['field'] for e in compare.load_documented() if e['kind'] == 'clock'}
    assert clocks == compare.CLOCK_FIELDS


def test_create_payload(lc):
    step = lc.steps['create_image']
    (ours,), (own,) = step.usage, step.own
    p = ours['payload']
    assert p == own['payload']          # nothing differs, timestamps included
    assert p['id'] == lc.image_id == json.loads(step.body)['id']
    assert {k: p[k] for k in ('name', 'status', 'owner', 'visibility', 'is_public',
                              'disk_format', 'container_format', 'size', 'virtual_size',
                              'checksum', 'protected', 'min_disk', 'min_ram', 'properties',
                              'tags', 'deleted', 'deleted_at')} == {
        'name': 'audit-image', 'status': 'queued', 'owner': 'p-demo',
        'visibility': 'private', 'is_public': False, 'disk_format': 'raw',
        'container_format': 'bare', 'size': None, 'virtual_size': None, 'checksum': None,
        'protected': False, 'min_disk': 0, 'min_ram': 0,
        'properties': {'audit_probe': 'x'}, 'tags': [], 'deleted': False,
        'deleted_at': None}
    assert sorted(p) == sorted(IMAGE_KEYS)


def test_upload_payloads(lc):
    step = lc.steps['upload_20MiB']
    ours = {i: m['payload'] for i, m in enumerate(step.usage)}
    own = {i: m['payload'] for i, m in enumerate(step.own)}
    # image.update + image.prepare when the data starts to flow: still saving
    for i in (0, 1):
        assert ours[i]['status'] == own[i]['status'] == 'saving'
        assert ours[i]['size'] is ours[i]['checksum'] is None
    assert ours[1]['os_glance_importing_to_stores'] == []
    assert ours[1]['os_glance_failed_import'] == []
    # image.upload, image.activate, image.update: stored and active
    for i in (2, 3, 4):
        assert ours[i]['status'] == 'active'
        assert ours[i]['size'] == scenario.UPLOAD_SIZE
        assert ours[i]['checksum'] == lc.upload_md5
        assert ours[i]['id'] == lc.image_id
        assert sorted(k for k in ours[i] if not k.startswith('os_glance')) == \
            sorted(IMAGE_KEYS)
    assert 'os_glance_importing_to_stores' in ours[2]
    assert 'os_glance_importing_to_stores' not in ours[3]
    # stable fields equal to Glance's, field for field
    for i in range(5):
        for key in ('id', 'name', 'status', 'owner', 'size', 'virtual_size', 'checksum',
                    'visibility', 'is_public', 'properties', 'tags', 'disk_format',
                    'container_format', 'created_at', 'protected', 'min_disk', 'min_ram'):
            assert ours[i][key] == own[i][key], (i, key)


def test_send_payloads(lc):
    full, ranged, broken = (lc.steps[n] for n in ('download_full', 'download_range_0_99',
                                                  'download_interrupted'))
    base = {'image_id': lc.image_id, 'owner_id': 'p-demo', 'receiver_tenant_id': 'p-demo',
            'receiver_user_id': 'u-admin'}
    assert full.usage[0]['payload'] == dict(base, bytes_sent=scenario.UPLOAD_SIZE,
                                            destination_ip='127.0.0.1')
    assert full.own[0]['payload'] == dict(base, bytes_sent=scenario.UPLOAD_SIZE)
    assert ranged.usage[0]['payload'] == dict(base, bytes_sent=100,
                                              destination_ip='127.0.0.1')
    assert ranged.own[0]['payload'] == dict(base, bytes_sent=100)
    # the client went away after two chunks: ERROR with what was handed over
    assert 0 < len(broken.body) < scenario.UPLOAD_SIZE
    assert broken.usage[0]['priority'] == ERROR
    assert broken.usage[0]['payload'] == dict(base, bytes_sent=len(broken.body),
                                              destination_ip='127.0.0.1')
    assert broken.own == []


def test_member_payloads(lc):
    add, upd, rm = (lc.steps[n] for n in ('member_add', 'member_update_accept',
                                          'member_delete'))
    expect = {'image_id': lc.image_id, 'member_id': 'p-other', 'deleted': False,
              'deleted_at': None}
    for step, status in ((add, 'pending'), (upd, 'accepted')):
        p = step.usage[0]['payload']
        assert sorted(p) == ['created_at', 'deleted', 'deleted_at', 'image_id', 'member_id',
                             'status', 'updated_at']
        assert {k: p[k] for k in expect} == expect and p['status'] == status
        assert p['created_at'] == step.own[0]['payload']['created_at']
    p = rm.usage[0]['payload']
    assert p['deleted'] is True and ISO.match(p['deleted_at'])
    assert (p['image_id'], p['member_id'], p['status']) == (lc.image_id, 'p-other',
                                                            'accepted')
    assert p['created_at'] == rm.own[0]['payload']['created_at']


def test_tag_action_and_patch_payloads(lc):
    """Calls answered without the image (204) still carry the record as Glance
    saved it (look-up), equal to Glance's own notification."""
    assert lc.steps['tag_add'].usage[0]['payload']['tags'] == ['audit-tag']
    assert lc.steps['tag_delete'].usage[0]['payload']['tags'] == []
    assert lc.steps['deactivate'].usage[0]['payload']['status'] == 'deactivated'
    assert lc.steps['reactivate'].usage[0]['payload']['status'] == 'active'
    patched = lc.steps['patch_json_patch'].usage[0]['payload']
    assert patched['name'] == 'audit-image-renamed'
    assert patched['properties'] == {'audit_probe': 'x', 'prop2': 'v2'}
    shared = lc.steps['patch_visibility_shared'].usage[0]['payload']
    assert (shared['visibility'], shared['is_public']) == ('shared', False)


def test_delete_payloads(lc):
    for name, image_id in (('delete_image', lc.image_id), ('delete_image3', lc.too_big_id)):
        step = lc.steps[name]
        ours, own = step.usage[0]['payload'], step.own[0]['payload']
        assert ours['id'] == image_id
        assert (ours['status'], ours['deleted']) == ('deleted', True)
        assert ISO.match(ours['deleted_at']) and ours['updated_at'] == ours['deleted_at']
        assert sorted(ours) == sorted(own)
    deleted = lc.steps['delete_image'].usage[0]['payload']
    assert (deleted['name'], deleted['size'], deleted['visibility']) == (
        'audit-image-renamed', scenario.UPLOAD_SIZE, 'shared')


def test_failure_texts(lc):
    """usage_failures (default): WARN text notifications where Glance sends none."""
    iid = lc.image_id
    assert lc.steps['forbidden_create_reader'].usage[0]['payload'] == (
        'POST /v2/images failed: 403 Forbidden: You are not authorized to complete '
        'add_image action.')
    assert lc.steps['invalid_json'].usage[0]['payload'] == (
        'POST /v2/images failed: 400 Bad Request: Malformed JSON in request body.')
    assert lc.steps['patch_wrong_media_type'].usage[0]['payload'] == (
        'PATCH /v2/images/%s failed: 415 Unsupported Media Type: The request media type '
        'application/json is not supported by this server. Image PATCH expects '
        'Content-Type one of: application/openstack-images-v2.0-json-patch, '
        'application/openstack-images-v2.1-json-patch' % iid)


def test_failed_upload_is_glances_own(lc):
    """image_size_cap exceeded: the same four notifications, the same ERROR
    text, the image back in queued."""
    step = lc.steps['upload_over_size_cap']
    error = step.usage[2]
    assert error['priority'] == ERROR
    assert error['payload'] == step.own[2]['payload'] == (
        'Failed to upload image data for image %s due to internal error: The provided '
        'image is too large.' % lc.too_big_id)
    assert step.usage[3]['payload']['status'] == step.own[3]['payload']['status'] == 'queued'


def test_stage_payloads(lc):
    step = lc.steps['stage_1MiB']
    first, second = (m['payload'] for m in step.usage)
    assert (first['status'], first['size']) == ('uploading', None)
    assert (second['status'], second['size']) == ('uploading', scenario.STAGE_SIZE)
    assert 'os_glance_stage_host' not in second['properties']     # documented


def test_import_reports_the_call(lc):
    """POST /import (202): task.create of the import task, as Glance's own,
    then image.update."""
    step = lc.steps['import_glance_direct']
    task, image = (m['payload'] for m in step.usage)
    own_task = step.own[0]['payload']
    assert {k: v for k, v in task.items() if k != 'expires_at'} == \
        {k: v for k, v in own_task.items() if k != 'expires_at'}
    assert (task['type'], task['status'], task['owner'], task['result'],
            task['message']) == ('api_image_import', 'pending', 'p-demo', None, None)
    assert ISO.match(task['expires_at'])
    assert 'input' not in task
    assert image['id'] == lc.staged_id
    assert image['status'] in ('uploading', 'importing', 'active')
    assert image['properties']['os_glance_import_task'] == task['id']


# --------------------------------------------------------------------------
# 2. CADF
# --------------------------------------------------------------------------

def _observer_id(lc):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'audit-notifier:image.audit-test'))


@pytest.mark.parametrize('name', list(EXPECTED))
def test_cadf_event(lc, name):
    status, _, _, spec = EXPECTED[name]
    step = lc.steps[name]
    assert len(step.cadf) == 1, scenario.seq(step.cadf)
    envelope = step.cadf[0]
    assert (envelope['event_type'], envelope['priority']) == (spec.event, spec.priority)
    assert envelope['publisher_id'] == 'image.audit-test'
    p = envelope['payload']
    cadf_support.assert_valid(p)
    assert (p['action'], p['outcome']) == (spec.action, spec.outcome)
    assert p['reason'] == {'reasonType': 'HTTP', 'reasonCode': str(status)}
    assert p['requestPath'] == step.path
    # target: the image (from the path, or the 201 body for a create)
    target = {'image': step.image_id, 'created': step.image_id,
              'observer': _observer_id(lc)}[spec.target]
    assert target is not None
    assert p['target']['typeURI'] == spec.type_uri
    assert p['target']['id'] == target
    if spec.target == 'created':
        assert target == json.loads(step.body)['id']
        assert step.header('Location').endswith('/v2/images/' + target)
    if spec.attachments:
        assert p['target']['attachments'] == [
            {'typeURI': 'mime:text/plain', 'name': k, 'content': v}
            for k, v in spec.attachments.items()]
    else:
        assert 'attachments' not in p['target']
    # initiator: the token's user, project and roles (AuthTokenFixture)
    user = step.user
    init = p['initiator']
    assert init['typeURI'] == 'service/security/account/user'
    assert init['id'] == init['user_id'] == init['name'] == user['user_id']
    assert init['project_id'] == init['project_name'] == user['project_id']
    assert init['roles'] == user['roles']
    assert (init['domain_id'], init['project_domain_id']) == ('default', 'default')
    assert init['identity_status'] == 'Confirmed'
    assert init['host'] == {'address': '127.0.0.1'}
    assert init['request_id'] == step.header('x-openstack-request-id')
    assert 'credential' not in init
    # observer: this Glance, with a stable id
    assert p['observer'] == {'typeURI': IMG, 'id': _observer_id(lc), 'name': 'glance'}
    if spec.measurement:
        metric, expected = spec.measurement
        (meas,) = p['measurements']
        assert meas['metric']['name'] == metric and meas['metric']['unit'] == 'B'
        if expected == 'body':
            expected = len(step.body)
        if callable(expected):
            assert expected(meas['result']), meas['result']
        else:
            assert meas['result'] == expected
    else:
        assert 'measurements' not in p


def test_cadf_not_found_targets_the_requested_image(lc):
    step = lc.steps['not_found']
    assert step.cadf[0]['payload']['target']['id'] == lc.missing_id


def test_cadf_same_request_same_shard_order(lc):
    """For a call about one image, its Glance-format notifications come first
    and its CADF record last (one resource, one publisher thread)."""
    for name in ('upload_20MiB', 'download_full', 'tag_add', 'member_add', 'delete_image',
                 'upload_over_size_cap'):
        kinds = ['cadf' if m['event_type'].startswith('audit.') else 'glance'
                 for m in lc.steps[name].ours]
        assert kinds[-1] == 'cadf' and set(kinds[:-1]) == {'glance'}, (name, kinds)


# --------------------------------------------------------------------------
# 3. Ceilometer: meters and event traits
# --------------------------------------------------------------------------

def _samples(envelopes):
    return [s for m in envelopes for s in ceilometer.samples(m)]


def test_ceilometer_samples_equal_glances_own(lc):
    """Ceilometer's meters (image.size, image.download, image.serve) come out
    the same from our notifications as from Glance's, call by call (the import
    task's notifications excepted, see the differences file)."""
    compared = 0
    for name, step in lc.steps.items():
        if name == 'import_glance_direct':
            continue
        assert _samples(step.usage) == _samples(step.own), name
        compared += len(_samples(step.own))
    assert compared >= 15


def test_ceilometer_download_meters(lc):
    iid = lc.image_id
    full = _samples(lc.steps['download_full'].usage)
    assert full == [
        {'name': 'image.download', 'type': 'delta', 'unit': 'B',
         'volume': scenario.UPLOAD_SIZE, 'resource_id': iid, 'user_id': 'u-admin',
         'project_id': 'p-demo'},
        {'name': 'image.serve', 'type': 'delta', 'unit': 'B',
         'volume': scenario.UPLOAD_SIZE, 'resource_id': iid, 'user_id': None,
         'project_id': 'p-demo'}]
    ranged = _samples(lc.steps['download_range_0_99'].usage)
    assert [(s['name'], s['volume']) for s in ranged] == [('image.download', 100),
                                                          ('image.serve', 100)]
    # ERROR image.send: Ceilometer takes no sample from it
    assert lc.steps['download_interrupted'].usage[0]['priority'] == ERROR
    assert _samples(lc.steps['download_interrupted'].usage) == []


def test_ceilometer_image_size_meter(lc):
    sizes = [(s['volume'], s['resource_id'], s['project_id'])
             for s in _samples(lc.steps['upload_20MiB'].usage)]
    # image.update(saving) has no size yet; image.upload and image.update(active) do
    assert sizes == [(None, lc.image_id, 'p-demo'),
                     (scenario.UPLOAD_SIZE, lc.image_id, 'p-demo'),
                     (scenario.UPLOAD_SIZE, lc.image_id, 'p-demo')]
    assert [s['name'] for s in _samples(lc.steps['upload_20MiB'].usage)] == ['image.size'] * 3
    # failures (text payloads at WARN/ERROR) give no sample
    for name in ('forbidden_create_reader', 'invalid_json', 'patch_wrong_media_type'):
        assert _samples(lc.steps[name].usage) == []


_CLOCK_TRAITS = {'deleted_at'}      # from a clock field (see the differences file)


def _traits(envelope):
    ev = ceilometer.event(envelope)
    return None if ev is None else ev['traits']


def test_ceilometer_event_traits_equal_glances_own(lc):
    compared = 0
    for name, step in lc.steps.items():
        if name == 'import_glance_direct':
            continue
        pairs, _, _ = compare.pair(step.usage, step.own)
        for ours, own in pairs:
            a, b = _traits(ours), _traits(own)
            if b is None:
                assert a is None, (name, ours['event_type'])
                continue
            assert a['service'] == 'image.audit-test' and b['service'] == 'image.localhost'
            drop = {'service', 'destination_ip'} | _CLOCK_TRAITS
            assert {k: v for k, v in a.items() if k not in drop} == \
                {k: v for k, v in b.items() if k not in drop}, (name, ours['event_type'])
            assert set(a) - set(b) <= {'destination_ip'}
            compared += 1
    assert compared >= 20


def test_ceilometer_event_traits_values(lc):
    traits = _traits(lc.steps['download_full'].usage[0])
    assert traits == {'service': 'image.audit-test', 'receiver_project': 'p-demo',
                      'receiver_user': 'u-admin', 'user_id': 'p-demo',
                      'image_id': lc.image_id, 'destination_ip': '127.0.0.1',
                      'bytes_sent': scenario.UPLOAD_SIZE}
    upload = _traits(lc.steps['upload_20MiB'].usage[2])
    assert {k: upload[k] for k in ('project_id', 'resource_id', 'name', 'status',
                                   'user_id', 'size')} == {
        'project_id': 'p-demo', 'resource_id': lc.image_id, 'name': 'audit-image',
        'status': 'active', 'user_id': 'p-demo', 'size': scenario.UPLOAD_SIZE}
    assert upload['created_at'].year >= 2024 and 'deleted_at' not in upload
    deleted = _traits(lc.steps['delete_image'].usage[0])
    assert deleted['status'] == 'deleted' and deleted['deleted_at'] is not None
    # no Ceilometer event definition for these (dropped, as Glance's are)
    for name, index in (('upload_20MiB', 1), ('upload_20MiB', 3), ('member_add', 0)):
        assert _traits(lc.steps[name].usage[index]) is None
    # the ERROR image.send of a broken download is still an event
    broken = _traits(lc.steps['download_interrupted'].usage[0])
    assert broken['bytes_sent'] == len(lc.steps['download_interrupted'].body)


# --------------------------------------------------------------------------
# 4. no token anywhere
# --------------------------------------------------------------------------

def test_no_token_in_any_envelope(lc):
    ours = [m for step in lc.steps.values() for m in step.ours]
    assert len(ours) > 50
    text = json.dumps(ours)
    for token in TOKENS:
        assert token not in text
    assert 'X-Auth-Token' not in text and 'HTTP_X_AUTH_TOKEN' not in text
    # the calls did carry the tokens
    assert {step.token for step in lc.steps.values()} == {'admin-token', 'other-token',
                                                          'reader-token'}


def test_no_token_in_the_journal(lc):
    """The journal holds the facts of every call (user, project, roles, path) but
    never a token: every byte of every file in the journal directory is checked."""
    from audit_notifier.delivery import record as record_mod
    from audit_notifier.exchange import FACT_KEYS
    roles = FACT_KEYS.index('HTTP_X_ROLES')
    directory = lc.pipeline.mw.delivery.directory
    blobs = {}
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), 'rb') as f:
            blobs[name] = f.read()
    frames = [r for name, data in blobs.items() if name.endswith('.journal')
              for _, _, r in record_mod.decode_frames(data) if r is not None]
    # the journal did hold this scenario's calls, with the caller's identity
    assert len(frames) >= len(lc.steps)
    assert any(r['q'][roles] for r in frames if 'q' in r)
    for name, data in blobs.items():
        for token in TOKENS:
            assert token.encode() not in data, name
        for header in (b'X-Auth-Token', b'HTTP_X_AUTH_TOKEN', b'X-Service-Catalog',
                       b'keystone.token_info'):
            assert header.lower() not in data.lower(), (name, header)


def test_no_token_in_logs(lc):
    records = lc.log_records
    # the log driver wrote every one of our notifications as a log line, so the
    # scan below covers payloads as logged, Glance's and keystonemiddleware's too
    ours = [r for r in records if r[0].startswith('oslo.messaging.notification.')
            and '"image.audit-test"' in r[2]]
    assert len(ours) == sum(len(step.ours) + len(step.completion)
                            for step in lc.steps.values())
    assert len(records) > len(ours)
    for logger, _, text in records:
        for token in TOKENS:
            assert token not in text, (logger, text[:300])


def test_no_token_in_our_error_logs(lc, caplog, monkeypatch):
    """When a look-up fails the filter logs a warning with the traceback; it
    names no token either."""
    import logging

    pipeline = lc.pipeline

    def broken(environ, path):
        raise RuntimeError('the wrapped app failed')
    monkeypatch.setattr(pipeline.mw.emitter._subrequests, 'get_json', broken)
    caplog.set_level(logging.DEBUG)
    driver = scenario.Driver(pipeline)
    r = pipeline.request('POST', '/v2/images', body={'name': 'log-check'})
    iid = r.json['id']
    step = driver.call('tag_on_new_image', 'PUT', '/v2/images/%s/tags/x' % iid,
                       expect=204, image_id=iid)
    assert step.usage[0]['payload']['id'] == iid
    assert step.usage[0]['payload']['status'] is None     # record unknown
    ours = [r for r in caplog.records if r.name.startswith('audit_notifier')]
    assert ours, 'the failing look-up was not logged'
    for record in caplog.records:
        text = record.getMessage() + (caplog.text or '')
        for token in TOKENS:
            assert token not in text
    pipeline.request('DELETE', '/v2/images/%s' % iid)


# --------------------------------------------------------------------------
# examples for the docs
# --------------------------------------------------------------------------

def test_examples_file_is_current(lc):
    """data/audit_notifier_examples.json holds real, normalised examples of our
    notifications (CADF, image.upload, image.send, member ...)."""
    import os

    from audit_notifier.events import cadf as cadf_events
    doc = examples.build(lc, _observer_id(lc),
                         [cadf_events.BYTES_SENT_METRIC['metricId'],
                          cadf_events.BYTES_RECEIVED_METRIC['metricId']])
    names = [e['name'] for e in doc['examples']]
    assert names == [c[0] for c in examples.CHOSEN]
    for example in doc['examples']:
        if example['envelope']['event_type'].startswith('audit.'):
            cadf_support.assert_valid(example['envelope']['payload'])
    text = examples.dumps(doc)
    for token in TOKENS:
        assert token not in text
    if os.environ.get(examples.WRITE_ENV):
        with open(examples.EXAMPLES_FILE, 'w') as f:
            f.write(text)
    with open(examples.EXAMPLES_FILE) as f:
        committed = f.read()
    assert committed == text, (
        '%s is stale: regenerate it with %s=1 python -m pytest -q '
        'tests/functional/test_glance_real.py -k examples' % (examples.EXAMPLES_FILE,
                                                              examples.WRITE_ENV))


def test_store_failure_is_a_5xx_error_like_glances(lc, monkeypatch):
    """The file store refuses the write (StorageWriteDenied, raised before a
    byte is read, as a read-only store directory does): Glance answers 503 and
    sends image.update(saving), image.prepare, ERROR image.upload (text),
    image.update(queued).  We send the same; the CADF record is ERROR."""
    import glance_store
    from glance_store._drivers import filesystem

    def denied(self, *args, **kwargs):
        raise glance_store.StorageWriteDenied('read-only file system')
    monkeypatch.setattr(filesystem.Store, 'add', denied)
    iid = lc.pipeline.request('POST', '/v2/images', body={
        'name': 'store-fails', 'disk_format': 'raw', 'container_format': 'bare'}).json['id']
    step = scenario.Driver(lc.pipeline).call(
        'upload_store_denied', 'PUT', '/v2/images/%s/file' % iid, expect=503,
        image_id=iid, body=b'x' * 1000, content_type='application/octet-stream')
    assert scenario.seq(step.own) == UPLOAD_FAILED
    assert scenario.seq(step.usage) == UPLOAD_FAILED
    assert step.usage[2]['payload'] == step.own[2]['payload'] == (
        'Insufficient permissions on image storage media: read-only file system')
    assert compare.diff(step.name, step.usage, step.own) == []
    (audit,) = step.cadf
    assert (audit['event_type'], audit['priority']) == ('audit.image.upload', ERROR)
    cadf_support.assert_valid(audit['payload'])
    assert audit['payload']['outcome'] == 'failure'
    assert audit['payload']['reason'] == {'reasonType': 'HTTP', 'reasonCode': '503'}
    assert 'measurements' not in audit['payload']        # Glance read nothing
    lc.pipeline.request('DELETE', '/v2/images/%s' % iid)
