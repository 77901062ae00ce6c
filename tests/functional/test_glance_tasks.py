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

"""Issue 3: Glance tasks against the REAL Glance 33 app.

* The API calls (``POST /v2/tasks``, ``POST /v2/images/{id}/import``) go through the
  audit filter: ``task.create`` (Glance format, never ``input``) and a CADF create on
  the task target whose id comes from the 201 response.
* The executor's events (task.processing, task.success / task.failure, task.run)
  happen after the call answered; ``audit_notifier.get_notifier()`` is wired to
  Glance's own task proxy, at the very points where Glance's notifier fires, and
  its notifications are compared, in the same run, with the ones Glance itself
  sends: same event types in the same order, same priorities, same payload.
"""

from __future__ import annotations

import io
import json
import shutil
import time

import pytest

try:
    from . import glance_app
except ImportError:
    import glance_app

from tests.support import cadf as cadf_support
from tests.support.rabbit import peer_missing
from tests.support.wait import wait_until

pytestmark = pytest.mark.glance

PUBLISHER = 'image.audit-tasks'
OOB_PUBLISHER = 'image.audit-tasks-executor'
TASK_KEYS = {'id', 'type', 'status', 'result', 'owner', 'message', 'expires_at',
             'created_at', 'updated_at', 'deleted', 'deleted_at'}


@pytest.fixture(scope='module')
def pipeline(audit_pipelines):
    return audit_pipelines('tasks', publisher_id=PUBLISHER, formats='cadf,glance',
                           driver='test')


@pytest.fixture(scope='module')
def executor_notifier(glance_env, tmp_path_factory):
    """Our notifier, called wherever Glance's TaskProxy notifies (the hook a task
    executor would use), with the same options as the filter."""
    import audit_notifier
    from glance import notifier as glance_notifier
    ours = audit_notifier.get_notifier(
        driver='test', formats='cadf,glance', publisher_id=OOB_PUBLISHER,
        journal_dir=str(tmp_path_factory.mktemp('oob-spool')))
    proxy = glance_notifier.TaskProxy
    originals = {name: getattr(proxy, name)
                 for name in ('begin_processing', 'succeed', 'fail', 'run')}
    events = {'begin_processing': 'task.processing', 'succeed': 'task.success',
              'fail': 'task.failure', 'run': 'task.run'}

    def hooked(name):
        original = originals[name]

        def method(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            ours.task(events[name], self.repo, context=self.context)
            return result
        return method
    for name in originals:
        setattr(proxy, name, hooked(name))
    yield ours
    for name, original in originals.items():
        setattr(proxy, name, original)
    ours.close()


@pytest.fixture(scope='module')
def image_source():
    """A loopback HTTP server with a small raw image (legacy /v2/tasks import)."""
    with glance_app.import_source(b'\x00audit-notifier-task-image' * 4096) as base:
        yield base + 'image.raw'


def _mine(publisher):
    return [m for m in glance_app.all_notifications() if m['publisher_id'] == publisher]


def _tasks(messages, task_id=None):
    return [m for m in messages if m['event_type'].startswith(('task.', 'audit.task.'))
            and (task_id is None or _task_id(m) == task_id)]


def _task_id(message):
    payload = message['payload']
    return payload['target']['id'] if 'target' in payload else payload.get('id')


def _wait_for_own(event_type, task_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m['event_type'] == event_type and m['payload'].get('id') == task_id
               for m in glance_app.glance_own_notifications()):
            return
        time.sleep(0.05)
    raise AssertionError('Glance sent no %s for task %s' % (event_type, task_id))


def _wait_for_follow(task_id):
    """The filter follows the import (delivery/follow.py): wait for its end, so that
    no completion event lands in a later test (test_glance_imports.py checks them)."""
    wait_until(lambda: any(m['event_type'] == 'task.success' and
                           m['payload'].get('id') == task_id for m in _mine(PUBLISHER)),
               timeout=60, message='no import completion events from the filter')


def _compare_executor_events(own, ours):
    """Glance's own task.* (Glance format) and ours: same types, order, priority,
    and payloads equal field for field (expires_at is 'now' when unset, per event)."""
    assert [(m['event_type'], m['priority']) for m in ours] == \
        [(m['event_type'], m['priority']) for m in own]
    for mine, theirs in zip(ours, own):
        assert set(mine['payload']) == set(theirs['payload']) == TASK_KEYS
        for key in TASK_KEYS - {'expires_at'}:
            assert mine['payload'][key] == theirs['payload'][key], (mine['event_type'], key)
        assert mine['payload']['result'] is None and mine['payload']['message'] is None


def test_image_import_task_events(glance_env, pipeline, executor_notifier):
    glance_app.reset_notifications()
    created = pipeline.request('POST', '/v2/images', body={
        'name': 'task-import', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private'})
    assert created.status == 201
    image_id = created.json['id']
    assert pipeline.request('PUT', '/v2/images/%s/stage' % image_id,
                            body=io.BytesIO(b'x' * 65536),
                            content_type='application/octet-stream').status == 204
    answered = pipeline.request('POST', '/v2/images/%s/import' % image_id,
                                body={'method': {'name': 'glance-direct'}})
    assert answered.status == 202
    own_create = [m for m in glance_app.glance_own_notifications()
                  if m['event_type'] == 'task.create']
    assert len(own_create) == 1
    task_id = own_create[0]['payload']['id']
    _wait_for_own('task.run', task_id)
    _wait_for_follow(task_id)
    pipeline.flush()
    assert executor_notifier.flush(30)

    own = _tasks(glance_app.glance_own_notifications(), task_id)
    assert [m['event_type'] for m in own] == ['task.create', 'task.processing',
                                              'task.success', 'task.run']
    # The API call: task.create from the filter, found by the call's request id.
    filter_tasks = [m for m in _tasks(_mine(PUBLISHER)) if m['event_type'] == 'task.create']
    assert len(filter_tasks) == 1
    mine = filter_tasks[0]['payload']
    theirs = own[0]['payload']
    assert set(mine) == set(theirs) == TASK_KEYS
    for key in ('id', 'type', 'owner', 'created_at', 'result', 'message', 'deleted',
                'deleted_at'):
        assert mine[key] == theirs[key], key
    assert mine['type'] == 'api_image_import'
    # The executor: our notifier at Glance's own notification points.
    oob = _mine(OOB_PUBLISHER)
    _compare_executor_events(own[1:], [m for m in oob if not m['event_type'].startswith('audit.')])
    # Glance 33 order, including its stale task.run (status as the task was loaded).
    assert [m['payload']['status'] for m in own[1:]] == ['processing', 'success', 'pending']
    # CADF records of the executor events: valid, on the task target.
    cadf = [m for m in oob if m['event_type'].startswith('audit.task.')]
    assert [(m['event_type'], m['priority'], m['payload']['action'],
             m['payload']['outcome']) for m in cadf] == [
        ('audit.task.processing', 'INFO', 'update', 'pending'),
        ('audit.task.success', 'INFO', 'update', 'success'),
        ('audit.task.run', 'INFO', 'start', 'success')]
    for m in cadf:
        assert m['payload']['target'] == {'typeURI': 'service/storage/image/task',
                                          'id': task_id, 'name': 'api_image_import'}
        assert m['payload']['initiator']['user_id'] == 'u-admin'
        assert m['payload']['initiator']['project_id'] == 'p-demo'
        cadf_support.assert_valid(m['payload'])
    # And the filter's CADF record of the import call itself: pending (202).
    audit_import = [m for m in _mine(PUBLISHER) if m['event_type'] == 'audit.image.import']
    assert [(m['priority'], m['payload']['outcome'], m['payload']['target']['id'])
            for m in audit_import] == [('INFO', 'pending', image_id)]


def test_legacy_tasks_api(glance_env, pipeline, executor_notifier, image_source):
    if shutil.which('qemu-img') is None:
        peer_missing('the legacy /v2/tasks import runs qemu-img (apt-get install '
                     'qemu-utils; .ci/run installs it)')
    glance_app.reset_notifications()
    answered = pipeline.request('POST', '/v2/tasks', body={
        'type': 'import',
        'input': {'import_from': image_source, 'import_from_format': 'raw',
                  'image_properties': {'name': 'legacy-task', 'disk_format': 'raw',
                                       'container_format': 'bare'}}})
    assert answered.status == 201
    task_id = answered.json['id']
    _wait_for_own('task.run', task_id)
    _wait_for_follow(task_id)
    pipeline.flush()
    assert executor_notifier.flush(30)
    own = _tasks(glance_app.glance_own_notifications(), task_id)
    assert [m['event_type'] for m in own] == ['task.create', 'task.processing',
                                              'task.success', 'task.run']
    ours_api = [m for m in _mine(PUBLISHER) if m['event_type'] in ('task.create',
                                                                   'audit.task.create')]
    assert [(m['event_type'], m['priority']) for m in ours_api] == [
        ('task.create', 'INFO'), ('audit.task.create', 'INFO')]
    usage, audit = ours_api[0]['payload'], ours_api[1]['payload']
    assert set(usage) == TASK_KEYS and 'input' not in json.dumps(usage)
    for key in ('id', 'type', 'status', 'owner', 'created_at', 'updated_at'):
        assert usage[key] == own[0]['payload'][key], key
    assert (audit['action'], audit['outcome'], audit['target']['typeURI'],
            audit['target']['id']) == ('create', 'success', 'service/storage/image/task',
                                       task_id)
    cadf_support.assert_valid(audit)
    assert image_source not in json.dumps(_mine(PUBLISHER) + _mine(OOB_PUBLISHER))
    _compare_executor_events(own[1:], [m for m in _mine(OOB_PUBLISHER)
                                       if m['event_type'].startswith('task.')
                                       and m['payload']['id'] == task_id])


def test_task_delete_is_a_failed_delete(glance_env, pipeline):
    glance_app.reset_notifications()
    task_id = '6ba7b810-9dad-11d1-80b4-00c04fd430c8'
    answered = pipeline.request('DELETE', '/v2/tasks/%s' % task_id)
    assert answered.status == 405
    pipeline.flush()
    mine = _mine(PUBLISHER)
    assert [(m['event_type'], m['priority']) for m in mine] == [
        ('task.delete', 'WARN'), ('audit.task.delete', 'ERROR')]
    assert isinstance(mine[0]['payload'], str) and '405' in mine[0]['payload']
    audit = mine[1]['payload']
    assert (audit['action'], audit['outcome'], audit['reason']['reasonCode'],
            audit['target']['id']) == ('delete', 'failure', '405', task_id)
