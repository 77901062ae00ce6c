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

"""Issue 10, part 3: import completion events against the REAL Glance 33 app.

The filter follows an accepted import (delivery/follow.py) and, once Glance's task
executor has ended it, sends the completion events Glance's own notifier sends.
Glance's own notifier is on in the harness, so each import is compared, in the
same run, with Glance's own events: same event types in the same order, same
priorities, same payload keys, same values for the stable fields, and the same
Ceilometer samples.

Glance's first ``image.update`` of an interoperable import (status ``importing``,
sent by the executor when it takes the image) is matched by the filter's
``image.update`` of the import call itself, so it is left out of the comparison
of completion events (doc/source/reference/events.rst, "Imports").
"""

from __future__ import annotations

import io
import json
import os
import shutil

import pytest

try:
    from . import glance_app
except ImportError:
    import glance_app

from tests.support import ceilometer
from tests.support.rabbit import peer_missing
from tests.support.wait import wait_until

pytestmark = pytest.mark.glance

PUBLISHER = 'image.audit-imports'
SOURCE_IMAGE = b'\x00audit-notifier-import' * 2048
IMAGE_STABLE = ('id', 'name', 'status', 'size', 'virtual_size', 'checksum', 'owner',
                'disk_format', 'container_format', 'visibility', 'is_public', 'created_at',
                'protected', 'min_disk', 'min_ram', 'tags', 'deleted', 'deleted_at')
TASK_STABLE = ('id', 'type', 'status', 'owner', 'created_at', 'result', 'message',
               'deleted', 'deleted_at')


@pytest.fixture(scope='module')
def pipeline(audit_pipelines):
    return audit_pipelines('imports', publisher_id=PUBLISHER, formats='cadf,glance',
                           driver='test')


@pytest.fixture(scope='module')
def image_source():
    """A loopback HTTP server: a small raw image, 404 for paths with 'missing'."""
    with glance_app.import_source(SOURCE_IMAGE) as base:
        yield base


def _about(messages, ids):
    out = []
    for m in messages:
        payload = m['payload']
        if isinstance(payload, dict) and payload.get('id') in ids:
            out.append(m)
    return out


def _ended(messages, task_id):
    return any(m['event_type'] in ('task.success', 'task.failure') and
               m['payload'].get('id') == task_id for m in messages)


def _wait_both(publisher, task_id):
    """Until Glance's own and our notifications both show the task's end."""
    wait_until(lambda: _ended(glance_app.glance_own_notifications(), task_id), timeout=60,
               message='Glance did not end task %s' % task_id)
    wait_until(lambda: _ended(_ours(publisher), task_id), timeout=60,
               message='the filter sent no completion events for task %s' % task_id)


def _ours(publisher):
    return [m for m in glance_app.all_notifications() if m['publisher_id'] == publisher]


def _completion(messages, ids, task_id, skip_importing=False):
    """The events from task.processing on, about the image or the task."""
    about = _about(messages, ids)
    start = [i for i, m in enumerate(about) if m['event_type'] == 'task.processing'
             and m['payload']['id'] == task_id]
    assert start, [m['event_type'] for m in about]
    events = about[start[0]:]
    if skip_importing:
        first = [i for i, m in enumerate(events) if m['event_type'] == 'image.update'
                 and m['payload']['status'] == 'importing']
        assert len(first) == 1
        del events[first[0]]
    return events


def _compare(own, ours):
    assert [(m['event_type'], m['priority']) for m in ours] == \
        [(m['event_type'], m['priority']) for m in own]
    for mine, theirs in zip(ours, own):
        assert set(mine['payload']) == set(theirs['payload']), mine['event_type']
        stable = TASK_STABLE if mine['event_type'].startswith('task.') else IMAGE_STABLE
        for key in stable:
            assert mine['payload'][key] == theirs['payload'][key], (mine['event_type'], key)
        assert 'input' not in json.dumps(mine['payload'])
    assert [ceilometer.samples(m) for m in ours] == [ceilometer.samples(m) for m in own]


def _staged_image(pipeline, name):
    created = pipeline.request('POST', '/v2/images', body={
        'name': name, 'disk_format': 'raw', 'container_format': 'bare'})
    assert created.status == 201
    image_id = created.json['id']
    assert pipeline.request('PUT', '/v2/images/%s/stage' % image_id,
                            body=io.BytesIO(b'y' * 65536),
                            content_type='application/octet-stream').status == 204
    return image_id


def _import(pipeline, image_id, method):
    answered = pipeline.request('POST', '/v2/images/%s/import' % image_id,
                                body={'method': method})
    assert answered.status == 202, answered.text
    own = [m for m in glance_app.glance_own_notifications()
           if m['event_type'] == 'task.create']
    assert len(own) == 1
    return own[0]['payload']['id']


def test_glance_direct(glance_env, pipeline):
    image_id = _staged_image(pipeline, 'import-direct')
    glance_app.reset_notifications()
    task_id = _import(pipeline, image_id, {'name': 'glance-direct'})
    _wait_both(PUBLISHER, task_id)
    ids = {image_id, task_id}
    own = _completion(glance_app.glance_own_notifications(), ids, task_id, True)
    ours = _completion(_ours(PUBLISHER), ids, task_id)
    assert [m['event_type'] for m in own] == [
        'task.processing', 'image.prepare', 'image.upload', 'image.activate',
        'image.update', 'image.update', 'task.success', 'task.run']
    _compare(own, ours)
    sizes = [s for m in ours for s in ceilometer.samples(m) if s['name'] == 'image.size']
    assert sizes and all(s['volume'] == 65536 and s['resource_id'] == image_id
                         for s in sizes)
    assert ours[1]['payload']['backend'] == own[1]['payload']['backend'] == 'fs'
    assert pipeline.mw.delivery._sender.follower.counters['follows_done'] >= 1


def _web_download(pipeline, name, uri):
    """Import ``uri`` into a new image; (image id, Glance's own completion, ours)."""
    created = pipeline.request('POST', '/v2/images', body={
        'name': name, 'disk_format': 'raw', 'container_format': 'bare'})
    image_id = created.json['id']
    glance_app.reset_notifications()
    task_id = _import(pipeline, image_id, {'name': 'web-download', 'uri': uri})
    _wait_both(PUBLISHER, task_id)
    ids = {image_id, task_id}
    own = _completion(glance_app.glance_own_notifications(), ids, task_id, True)
    return image_id, own, _completion(_ours(PUBLISHER), ids, task_id)


def test_web_download_failure(glance_env, pipeline, image_source):
    _, own, ours = _web_download(pipeline, 'import-fails', image_source + 'missing.raw')
    assert [m['event_type'] for m in own] == ['task.processing', 'image.update',
                                              'task.failure']
    _compare(own, ours)
    assert ours[1]['payload']['properties']['os_glance_failed_import'] == 'fs'


def test_web_download(glance_env, pipeline, image_source):
    image_id, own, ours = _web_download(pipeline, 'import-web', image_source + 'image.raw')
    assert [m['event_type'] for m in own] == [
        'task.processing', 'image.prepare', 'image.upload', 'image.activate',
        'image.update', 'image.update', 'task.success', 'task.run']
    _compare(own, ours)
    assert ours[1]['payload']['size'] is None          # nothing staged before
    assert [s['volume'] for s in ceilometer.samples(ours[2])] == [len(SOURCE_IMAGE)]
    assert ours[2]['payload']['id'] == image_id


def _legacy_task(pipeline, source):
    if shutil.which('qemu-img') is None:
        peer_missing('the legacy /v2/tasks import runs qemu-img (apt-get install '
                     'qemu-utils; .ci/run installs it)')
    answered = pipeline.request('POST', '/v2/tasks', body={
        'type': 'import',
        'input': {'import_from': source, 'import_from_format': 'raw',
                  'image_properties': {'name': 'legacy-import', 'disk_format': 'raw',
                                       'container_format': 'bare'}}})
    assert answered.status == 201, answered.text
    return answered.json['id']


def test_legacy_task_import(glance_env, pipeline, image_source):
    glance_app.reset_notifications()
    task_id = _legacy_task(pipeline, image_source + 'legacy.raw')
    _wait_both(PUBLISHER, task_id)
    image_ids = {m['payload']['id'] for m in glance_app.glance_own_notifications()
                 if m['event_type'] == 'image.create'}
    assert len(image_ids) == 1
    ids = image_ids | {task_id}
    own = _completion(glance_app.glance_own_notifications(), ids, task_id)
    ours = _completion(_ours(PUBLISHER), ids, task_id)
    assert [m['event_type'] for m in own] == [
        'task.processing', 'image.create', 'image.update', 'image.update', 'image.prepare',
        'image.upload', 'image.activate', 'image.update', 'image.update', 'task.success',
        'task.run']
    _compare(own, ours)
    assert image_source not in json.dumps(_ours(PUBLISHER))


def test_legacy_task_failure(glance_env, pipeline, image_source):
    glance_app.reset_notifications()
    task_id = _legacy_task(pipeline, image_source + 'missing.raw')
    _wait_both(PUBLISHER, task_id)
    own = [m for m in _about(glance_app.glance_own_notifications(), {task_id})
           if m['event_type'] != 'task.create']
    ours = _completion(_ours(PUBLISHER), {task_id}, task_id)
    assert [m['event_type'] for m in own] == ['task.processing', 'task.failure']
    _compare(own, ours)


def test_follow_resumed_by_the_next_process(glance_env, audit_pipelines, tmp_path):
    """A follow journaled by one filter is finished by a new one on the same journal
    directory (the first closed before its first poll, half a second after the call)."""
    shared = str(tmp_path / 'journal')
    os.mkdir(shared, 0o700)
    first = audit_pipelines('imports-a', publisher_id='image.audit-imports-a',
                            formats='glance', driver='test', journal_dir=shared)
    image_id = _staged_image(first, 'import-restart')
    glance_app.reset_notifications()
    task_id = _import(first, image_id, {'name': 'glance-direct'})
    first.flush()
    first.mw.delivery.close()
    files = [n for n in os.listdir(shared) if n.endswith('.follows.json')]
    assert len(files) == 1
    with open(os.path.join(shared, files[0])) as f:
        kept = json.load(f)
    assert [(k['kind'], k['image']) for k in kept] == [('import', image_id)]
    assert 'X-Auth-Token'.lower() not in json.dumps(kept).lower()
    assert not _ended(_ours('image.audit-imports-a'), task_id)

    second = audit_pipelines('imports-b', publisher_id='image.audit-imports-b',
                             formats='glance', driver='test', journal_dir=shared)
    # Its sender starts with its first audited call, and adopts what the first left.
    assert second.request('POST', '/v2/images', body={
        'name': 'starts-the-sender', 'disk_format': 'raw',
        'container_format': 'bare'}).status == 201
    _wait_both('image.audit-imports-b', task_id)
    ids = {image_id, task_id}
    own = _completion(glance_app.glance_own_notifications(), ids, task_id, True)
    ours = _completion(_ours('image.audit-imports-b'), ids, task_id)
    _compare(own, ours)
    wait_until(lambda: not [n for n in os.listdir(shared) if n.endswith('.follows.json')],
               timeout=30, message='the adopted follows file is still there')
