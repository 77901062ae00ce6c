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

"""The import follower without a broker or Glance: a fake app serves the image and
task records, fake clocks stand for time.  Bounds, back-off, give-ups (counted and
logged), persistence and adoption by the next process."""

from __future__ import annotations

import json
import logging
import os
import stat
import types

import pytest

from audit_notifier.delivery import follow as follow_mod
from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery.stats import Stats
from audit_notifier.emitter import EventFilter
from audit_notifier.events import glance as glance_events
from audit_notifier.exchange import request_facts
from audit_notifier.lookup import SubRequester
from tests.support.clock import Clock

IMAGE = '11111111-1111-4111-8111-111111111111'
TASK = '22222222-2222-4222-8222-222222222222'
CALLER = {'REQUEST_METHOD': 'POST', 'PATH_INFO': '/v2/images/%s/import' % IMAGE,
          'HTTP_X_IDENTITY_STATUS': 'Confirmed', 'HTTP_X_USER_ID': 'u-1',
          'HTTP_X_PROJECT_ID': 'p-1', 'HTTP_X_ROLES': 'member,reader',
          'HTTP_X_AUTH_TOKEN': 'secret-token', 'openstack.request_id': 'req-1'}


class FakeGlance:
    """Image, task and task-list records as Glance's API shows them."""

    def __init__(self):
        self.image = {'id': IMAGE, 'name': 'x', 'status': 'importing', 'size': 10,
                      'virtual_size': None, 'checksum': None, 'owner': 'p-1',
                      'disk_format': 'raw', 'container_format': 'bare',
                      'visibility': 'shared', 'protected': False, 'min_ram': 0,
                      'min_disk': 0, 'tags': [], 'created_at': '2026-01-01T00:00:00Z',
                      'updated_at': '2026-01-01T00:00:01Z', 'os_glance_import_task': TASK,
                      'os_glance_importing_to_stores': 'fs', 'os_glance_failed_import': ''}
        self.task = {'id': TASK, 'type': 'api_image_import', 'status': 'processing',
                     'owner': 'p-1', 'created_at': '2026-01-01T00:00:00.5',
                     'updated_at': '2026-01-01T00:00:00.6', 'expires_at': None,
                     'request_id': 'req-1',
                     'input': {'import_req': {'method': {'name': 'glance-direct'}}}}
        self.calls = []
        self.broken = False
        self.gone = False

    def finish(self, status='success'):
        self.task.update(status=status, expires_at='2026-01-03T00:00:02.1')
        self.image.pop('os_glance_import_task')
        if status == 'success':
            self.image.update(status='active', checksum='abc', virtual_size=10,
                              os_glance_importing_to_stores='', stores='fs')
        else:
            self.image.update(status='uploading', os_glance_importing_to_stores='',
                              os_glance_failed_import='fs')

    def __call__(self, environ, start_response):
        self.calls.append(dict(environ))
        if self.broken:
            raise RuntimeError('app bug')
        path = environ['PATH_INFO']
        body = None
        if not self.gone:
            if path == '/v2/images/%s' % IMAGE:
                body = self.image
            elif path == '/v2/images/%s/tasks' % IMAGE:
                body = {'tasks': [self.task]}
            elif path == '/v2/tasks/%s' % TASK:
                body = self.task
        if body is None:
            start_response('404 Not Found', [])
            return [b'']
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [json.dumps(body).encode()]


class FakeEmitter:
    filter = EventFilter(['task.run'])           # a disabled event is left out
    glance_settings = glance_events.Settings(default_backend='fs')

    @staticmethod
    def envelope(note, message_id):
        return {'message_id': message_id, 'event_type': note.event_type,
                'priority': note.priority, 'payload': note.payload}


@pytest.fixture
def app():
    return FakeGlance()


@pytest.fixture
def clock():
    return Clock()


def _follower(app, clock, directory=None, owner='host-1-1', **kw):
    kw.setdefault('timeout', 60)
    kw.setdefault('limit', 10)
    return follow_mod.Follower(FakeEmitter(), SubRequester(app), directory, owner, Stats(),
                               clock=clock, monotonic=clock, **kw)


def _exchange(usage='image.import', status='202 Accepted', body=None, call=7):
    return types.SimpleNamespace(
        route=types.SimpleNamespace(usage=usage), status_code=int(status[:3]),
        status=status, params={'image_id': IMAGE}, facts=request_facts(CALLER), call=call,
        finished_at=1000.0, started_at=999.0, headers=[('Content-Type', 'application/json')],
        body=[json.dumps(body).encode()] if body else None, request=CALLER,
        header=lambda name: 'application/json' if name.lower() == 'content-type' else None)


def _poll_at(follower, clock, when):
    clock.now = when
    return follower.poll()


def test_an_accepted_import_is_followed_to_its_end(app, clock):
    follower = _follower(app, clock)
    follower.watch(_exchange(), 'stream')
    follower.watch(_exchange(status='409 Conflict', call=8), 'stream')
    assert list(follower.follows) == ['stream/7']
    assert follower.poll() == ([], []) and not app.calls        # not due yet
    assert _poll_at(follower, clock, 1000.5) == ([], [])         # still locked
    assert follower.follows['stream/7']['task'] == TASK
    app.finish()
    ended, built = _poll_at(follower, clock, 1001.5)
    assert ended == ['stream/7']
    assert [(fmt, e['event_type']) for fmt, e in built] == [
        ('glance', 'task.processing'), ('glance', 'image.prepare'),
        ('glance', 'image.upload'), ('glance', 'image.activate'),
        ('glance', 'image.update'), ('glance', 'image.update'),
        ('glance', 'task.success')]
    payloads = [e['payload'] for _, e in built]
    assert payloads[1]['status'] == 'importing' and payloads[1]['backend'] == 'fs'
    assert payloads[2]['status'] == 'active' and payloads[2]['checksum'] == 'abc'
    assert payloads[2]['os_glance_importing_to_stores'] == ['fs']
    assert set(payloads[0]) == set(glance_events.TASK_FIELDS)
    assert payloads[-1]['expires_at'] == '2026-01-03T00:00:02Z'
    assert 'input' not in json.dumps(payloads)
    # The sub-requests: the caller's identity from the journaled facts, no token.
    for environ in app.calls:
        assert environ['HTTP_X_USER_ID'] == 'u-1' and environ['HTTP_X_ROLES']
        assert 'HTTP_X_AUTH_TOKEN' not in environ
    # Message ids are the same when the same follow ends again (after a crash).
    again = _follower(app, clock)
    again.add(dict(follower.follows['stream/7'], tries=0))
    assert [e['message_id'] for _, e in _poll_at(again, clock, 1010)[1]] == \
        [e['message_id'] for _, e in built]
    follower.finished(ended)
    assert follower.follows == {} and follower.next_due() is None
    assert follower.counters['follows_done'] == 1


def test_a_failed_import(app, clock):
    follower = _follower(app, clock)
    follower.watch(_exchange(), 's')
    app.finish('failure')
    ended, built = _poll_at(follower, clock, 1000.5)
    assert [e['event_type'] for _, e in built] == ['task.processing', 'image.update',
                                                   'task.failure']
    assert built[1][1]['payload']['properties']['os_glance_failed_import'] == 'fs'


def test_a_legacy_import_task(app, clock):
    follower = _follower(app, clock)
    follower.watch(_exchange('task.create', '201 Created',
                             {'id': TASK, 'type': 'import', 'status': 'pending'}), 's')
    follower.watch(_exchange('task.create', '201 Created',
                             {'id': 'x', 'type': 'location_import'}, call=9), 's')
    assert [f['task'] for f in follower.follows.values()] == [TASK]
    app.finish()
    app.task['result'] = {'image_id': IMAGE}
    ended, built = _poll_at(follower, clock, 1000.5)
    assert [e['event_type'] for _, e in built] == [
        'task.processing', 'image.create', 'image.update', 'image.update', 'image.prepare',
        'image.upload', 'image.activate', 'image.update', 'image.update', 'task.success']
    assert [e['payload']['status'] for _, e in built[1:4]] == ['queued', 'queued', 'saving']
    assert 'backend' not in built[4][1]['payload']


def test_back_off_from_half_a_second_to_ten(app, clock):
    follower = _follower(app, clock, timeout=1000)
    follower.watch(_exchange(), 's')
    pauses = []
    for _ in range(8):
        due = follower.next_due()
        pauses.append(due - clock.now)
        _poll_at(follower, clock, due)
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert len(app.calls) == 8               # one GET per poll while the lock is held


def test_given_up_after_the_timeout_counted_and_logged(app, clock, caplog):
    follower = _follower(app, clock, timeout=30)
    follower.watch(_exchange(), 's')
    follower.watch(_exchange(call=8), 's')
    with caplog.at_level(logging.WARNING):
        assert _poll_at(follower, clock, 1031) == ([], [])
    assert follower.follows == {} and follower.counters['follows_given_up'] == 2
    lines = [r for r in caplog.records if 'stopped following' in r.getMessage()]
    assert len(lines) == 1                   # rate-limited: once for both


def test_a_deleted_image_is_given_up(app, clock):
    follower = _follower(app, clock)
    follower.watch(_exchange(), 's')
    app.gone = True
    assert _poll_at(follower, clock, 1000.5) == ([], [])
    assert follower.follows == {} and follower.counters['follows_given_up'] == 1


def test_at_most_follow_imports_max(app, clock, caplog):
    follower = _follower(app, clock, limit=2)
    with caplog.at_level(logging.WARNING):
        for call in range(4):
            follower.watch(_exchange(call=call), 's')
    assert len(follower.follows) == 2
    assert follower.counters['follows_refused'] == 2
    assert [r for r in caplog.records if 'follow_imports_max' in r.getMessage()]


def test_a_poll_error_is_logged_and_tried_again(app, clock, caplog):
    follower = _follower(app, clock)
    follower.watch(_exchange(), 's')
    app.broken = True
    with caplog.at_level(logging.ERROR):
        assert _poll_at(follower, clock, 1000.5) == ([], [])
    assert [r for r in caplog.records if 'polling the import' in r.getMessage()]
    assert list(follower.follows) == ['s/7']
    app.broken = False
    app.finish()
    assert _poll_at(follower, clock, 1002)[0] == ['s/7']


def test_a_bad_exchange_never_raises(app, clock, caplog):
    follower = _follower(app, clock)
    with caplog.at_level(logging.ERROR):
        follower.watch(types.SimpleNamespace(route=None), 's')
    assert follower.counters['follows_refused'] == 1


def test_follows_kept_on_disk_and_adopted_by_the_next_process(app, clock, tmp_path):
    first = _follower(app, clock, str(tmp_path), owner='host-1-1')
    first.watch(_exchange(), 'host-1-1')
    path = tmp_path / ('host-1-1' + follow_mod.SUFFIX)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    text = path.read_text()
    assert 'secret-token' not in text and 'u-1' in text
    # While its process lives (its journal lock held), nobody adopts them.
    fd = journal_mod.try_lock(str(tmp_path / 'host-1-1.lock'))
    second = _follower(app, clock, str(tmp_path), owner='host-2-2')
    assert second.adopt() == 0
    os.close(fd)
    assert second.adopt() == 1
    assert not path.exists() and not (tmp_path / 'host-1-1.lock').exists()
    assert (tmp_path / ('host-2-2' + follow_mod.SUFFIX)).exists()
    # The replayed journal registers the same call again: not followed twice.
    second.watch(_exchange(), 'host-1-1')
    assert list(second.follows) == ['host-1-1/7']
    app.finish()
    ended, built = _poll_at(second, clock, 1000.5)
    assert ended == ['host-1-1/7'] and built
    second.finished(ended)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('overrides, followed', [
    ({'formats': 'glance'}, True),
    ({'formats': 'glance', 'follow_imports': 'false'}, False),
    ({'formats': 'glance', 'record_lookups': 'false'}, False),
    ({'formats': 'cadf'}, False),
])
def test_who_follows(tmp_path, overrides, followed):
    """Only a Glance-format filter with look-ups and follow_imports follows imports."""
    from oslo_config import cfg

    from audit_notifier.assembly import Pipeline
    pipeline = Pipeline(dict(overrides, driver='test', journal_dir=str(tmp_path),
                             process_hooks='false', oslo_config_config=cfg.ConfigOpts()),
                        app=FakeGlance())
    follower = pipeline.delivery._follower('host-3-3')
    assert (follower is not None) == followed
    if followed:
        assert (follower.timeout, follower.limit) == (3600, 1000)


def test_bad_option_value_is_one_clear_line(tmp_path):
    from oslo_config import cfg

    from audit_notifier._config import ConfigError
    from audit_notifier.assembly import Pipeline
    with pytest.raises(ConfigError) as raised:
        Pipeline({'formats': 'glance', 'driver': 'test', 'journal_dir': str(tmp_path),
                  'follow_imports_timeout': '1', 'process_hooks': 'false',
                  'oslo_config_config': cfg.ConfigOpts()}, app=FakeGlance())
    assert 'follow_imports_timeout' in str(raised.value)
    assert '\n' not in str(raised.value)
