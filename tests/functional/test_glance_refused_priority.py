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

"""Priority of refused calls (option ``refused_priority``) against the REAL Glance 33
behind keystonemiddleware's REAL auth_token (``authtoken audit context``).

Refused calls: a bad token (auth_token says ``Invalid``, Glance answers 401), a
delete of another project's image (404: Glance does not show it to that project), a
read of an image that does not exist (404) and a create by a reader (403, Glance's
policy).  With the option
unset (the shipped default), ``error``, ``warn`` and ``info``, the CADF event of
each has the chosen priority, and Ceilometer's event pipeline (tests/support/
ceilometer.py: it reads INFO and ERROR only) builds an event from it with the
definition the docs recommend, except at WARN.  The Glance-format text
notification of the same refused call stays WARN (usage_failures).
"""

from __future__ import annotations

import pytest

try:
    from . import glance_app
except ImportError:
    import glance_app

from tests.support import cadf as cadf_support
from tests.support import ceilometer

pytestmark = pytest.mark.glance

MISSING = '00000000-0000-4000-8000-0000000000aa'
CHOICES = {None: 'ERROR', 'error': 'ERROR', 'warn': 'WARN', 'info': 'INFO'}
AUDIT_DEFINITIONS = ceilometer.event_definitions(ceilometer.AUDIT_EVENTS_YAML)


@pytest.fixture(scope='module')
def pipelines(glance_env):
    made = {}
    for choice in CHOICES:
        audit_filter = {'formats': 'cadf,glance', 'driver': 'test',
                        'publisher_id': 'image.audit-refused-%s' % (choice or 'default')}
        if choice is not None:
            audit_filter['refused_priority'] = choice
        made[choice] = glance_app.AuditPipeline(glance_env, audit_filter,
                                                name='refused-%s' % (choice or 'default'))
    yield made
    for pipeline in made.values():
        pipeline.mw.delivery.close()


@pytest.fixture(scope='module')
def image_id(glance_env):
    """An image of project p-demo (Glance without the filter)."""
    r = glance_env.request('POST', '/v2/images', token='admin-token', body={
        'name': 'refused', 'disk_format': 'raw', 'container_format': 'bare'})
    assert r.status == 201, r.text
    return r.json['id']


def refused_calls(pipeline, image_id):
    """{label: (status, our notifications)} of the three refused calls."""
    out = {}
    for label, method, path, token in (
            ('bad token', 'GET', '/v2/images/%s' % image_id, 'not-a-token'),
            ('other project', 'DELETE', '/v2/images/%s' % image_id, 'other-token'),
            ('not found', 'GET', '/v2/images/%s' % MISSING, 'admin-token')):
        before = len(pipeline.ours())
        resp = pipeline.request(method, path, token=token)
        pipeline.flush()
        out[label] = (resp.status, pipeline.ours()[before:])
    return out


@pytest.mark.parametrize('choice', list(CHOICES))
def test_refused_calls_get_the_chosen_priority(pipelines, image_id, choice):
    priority = CHOICES[choice]
    calls = refused_calls(pipelines[choice], image_id)
    # Glance 33: another project's image is not visible to it (404, not 403)
    assert {label: status for label, (status, _) in calls.items()} == {
        'bad token': 401, 'other project': 404, 'not found': 404}
    for label, (status, notes) in calls.items():
        cadf = [n for n in notes if n['event_type'].startswith('audit.')]
        assert len(cadf) == 1, (label, notes)
        [note] = cadf
        payload = note['payload']
        assert (note['priority'], payload['outcome'], payload['reason']) == (
            priority, 'failure', {'reasonType': 'HTTP', 'reasonCode': str(status)}), label
        cadf_support.assert_valid(payload)
        # the Glance-format text of a refused call keeps WARN, whatever the option
        texts = [n for n in notes if not n['event_type'].startswith('audit.')]
        assert [n['priority'] for n in texts] == ['WARN'] * len(texts), label
        # Ceilometer's event pipeline: INFO and ERROR only
        event = ceilometer.event(note, AUDIT_DEFINITIONS)
        if priority == 'WARN':
            assert event is None, label
            continue
        assert event['event_type'] == note['event_type']
        traits = event['traits']
        assert (traits['outcome'], traits['reason_code'], traits['target_typeURI']) == (
            'failure', str(status), 'service/storage/image'), label
        assert traits['service'] == pipelines[choice].publisher_id
        if label == 'bad token':
            assert traits['user_id'] == 'unknown'      # auth_token: Invalid
        else:
            assert traits['user_id'] == {'other project': 'u-other',
                                         'not found': 'u-admin'}[label]


def test_forbidden_by_policy(pipelines):
    """A 403 from Glance's policy (a reader may not create): the shipped default
    makes it an ERROR event that Ceilometer reads."""
    pipeline = pipelines[None]
    before = len(pipeline.ours())
    resp = pipeline.request('POST', '/v2/images', token='reader-token', body={
        'name': 'refused-403', 'disk_format': 'raw', 'container_format': 'bare'})
    pipeline.flush()
    assert resp.status == 403, resp.text
    notes = pipeline.ours()[before:]
    [note] = [n for n in notes if n['event_type'] == 'audit.image.create']
    assert (note['priority'], note['payload']['outcome']) == ('ERROR', 'failure')
    event = ceilometer.event(note, AUDIT_DEFINITIONS)
    assert event['traits']['reason_code'] == '403'
    assert event['traits']['user_id'] == 'u-reader'
    [text] = [n for n in notes if n['event_type'] == 'image.create']
    assert text['priority'] == 'WARN'
