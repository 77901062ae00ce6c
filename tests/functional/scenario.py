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

"""The image life cycle the functional tests drive through the REAL Glance 33.

A helper module, not a test file: :func:`run_lifecycle` sends the calls of
issue 2's acceptance list through one :class:`glance_app.AuditPipeline`
(Glance with audit_notifier after authtoken) and records, per call, the HTTP
response, OUR notifications (the pipeline's publisher_id) and Glance's OWN
notifications (``image.localhost``) emitted by that same call.  The step names
follow ``data/glance33_own_notifications.json``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

from tests.support.wait import wait_until

try:
    from . import glance_app
except ImportError:
    import glance_app

MIB = 1024 * 1024
UPLOAD_SIZE = 20 * MIB
STAGE_SIZE = MIB
SIZE_CAP = MIB
JSON_PATCH = 'application/openstack-images-v2.1-json-patch'
TOKENS = glance_app.TOKENS


@dataclasses.dataclass
class Step:
    name: str
    method: str
    path: str
    token: str
    status: int
    header_list: list
    body: bytes
    ours: list           # this pipeline's envelopes, in publication order
    own: list            # Glance's own envelopes (image.localhost), in order
    image_id: str | None = None
    completion: list = dataclasses.field(default_factory=list)  # import follow events

    @property
    def usage(self):
        """Our Glance-format notifications."""
        return [m for m in self.ours if not m['event_type'].startswith('audit.')]

    @property
    def cadf(self):
        """Our CADF notifications."""
        return [m for m in self.ours if m['event_type'].startswith('audit.')]

    def header(self, name):
        for key, value in self.header_list:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def user(self):
        user_id, project_id, roles = TOKENS[self.token]
        return {'user_id': user_id, 'project_id': project_id, 'roles': roles}


def seq(envelopes):
    """[(event_type, priority)] of envelopes."""
    return [(m['event_type'], m['priority']) for m in envelopes]


class Driver:
    """Sends calls through one audit pipeline and records :class:`Step`s."""

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.env = pipeline.env
        self.steps: dict[str, Step] = {}

    def _begin(self):
        self.pipeline.flush()          # nothing of an earlier call may land later
        glance_app.reset_notifications()

    def _record(self, name, method, path, token, status, header_list, body, image_id):
        self.pipeline.flush()
        step = Step(name, method, path, token, status, list(header_list), body,
                    self.pipeline.ours(), glance_app.glance_own_notifications(),
                    image_id)
        if name in self.steps:
            raise AssertionError('step %s recorded twice' % name)
        self.steps[name] = step
        return step

    def call(self, name, method, path, token='admin-token', expect=None,
             image_id=None, **kw):
        self._begin()
        r = self.pipeline.request(method, path, token=token, **kw)
        if expect is not None:
            assert r.status == expect, '%s: %s %s -> %s %s' % (
                name, method, path, r.status, r.text[:500])
        return self._record(name, method, path, token, r.status, r.header_list,
                            r.body, image_id)

    def interrupted_download(self, name, image_id, chunks=2, token='admin-token'):
        self._begin()
        resp, data = self.pipeline.interrupted_download(image_id, chunks=chunks,
                                                        token=token)
        return self._record(name, 'GET', '/v2/images/%s/file' % image_id, token,
                            resp.status, resp.header_list, data, image_id)

    def import_call(self, name, image_id, token='admin-token'):
        """POST /import, then wait for the end of Glance's import task
        (``task.run`` is Glance's last notification of the flow)."""
        self._begin()
        path = '/v2/images/%s/import' % image_id
        r = self.pipeline.request('POST', path, token=token,
                                  body={'method': {'name': 'glance-direct'}})
        assert r.status == 202, r.text
        glance_app.wait_for_notification('task.run', timeout=60)
        # The filter follows the import (delivery/follow.py): wait for its completion
        # events too, so that none lands in a later step; they are kept apart
        # (``completion``), the step's own notifications are those of the call.
        wait_until(lambda: any(m['event_type'] in ('task.success', 'task.failure')
                               for m in self.pipeline.ours()), timeout=60,
                   message='no import completion events from the filter')
        step = self._record(name, 'POST', path, token, r.status, r.header_list,
                            r.body, image_id)
        ends = [i for i, m in enumerate(step.ours) if m['event_type'] == 'task.processing']
        step.ours, step.completion = step.ours[:ends[0]], step.ours[ends[0]:]
        return step


@dataclasses.dataclass
class Lifecycle:
    steps: dict
    image_id: str
    staged_id: str
    too_big_id: str
    missing_id: str
    upload_md5: str
    pipeline: object


def run_lifecycle(pipeline) -> Lifecycle:
    """Every call of the acceptance list, in order, through ``pipeline``."""
    d = Driver(pipeline)
    env = pipeline.env

    # ------------------------------------------------------------ image 1
    r = d.call('create_image', 'POST', '/v2/images', expect=201, body={
        'name': 'audit-image', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private', 'audit_probe': 'x'})
    iid = r.image_id = _json(r)['id']
    img = '/v2/images/%s' % iid
    data = glance_app.PatternStream(UPLOAD_SIZE, seed=1)
    d.call('upload_20MiB', 'PUT', img + '/file', expect=204, image_id=iid,
           body=data, content_type='application/octet-stream')
    upload_md5 = data.md5
    full = d.call('download_full', 'GET', img + '/file', expect=200, image_id=iid)
    assert hashlib.md5(full.body).hexdigest() == upload_md5
    d.call('download_range_0_99', 'GET', img + '/file', expect=206, image_id=iid,
           headers={'Range': 'bytes=0-99'})
    d.interrupted_download('download_interrupted', iid, chunks=2)
    d.call('patch_json_patch', 'PATCH', img, expect=200, image_id=iid,
           content_type=JSON_PATCH, body=[
               {'op': 'replace', 'path': '/name', 'value': 'audit-image-renamed'},
               {'op': 'add', 'path': '/prop2', 'value': 'v2'}])
    d.call('patch_wrong_media_type', 'PATCH', img, expect=415, image_id=iid,
           content_type='application/json',
           body=[{'op': 'replace', 'path': '/name', 'value': 'nope'}])
    d.call('tag_add', 'PUT', img + '/tags/audit-tag', expect=204, image_id=iid)
    d.call('tag_delete', 'DELETE', img + '/tags/audit-tag', expect=204, image_id=iid)
    d.call('deactivate', 'POST', img + '/actions/deactivate', expect=204, image_id=iid)
    d.call('reactivate', 'POST', img + '/actions/reactivate', expect=204, image_id=iid)
    d.call('patch_visibility_shared', 'PATCH', img, expect=200, image_id=iid,
           content_type=JSON_PATCH,
           body=[{'op': 'replace', 'path': '/visibility', 'value': 'shared'}])
    d.call('member_add', 'POST', img + '/members', expect=200, image_id=iid,
           body={'member': 'p-other'})
    d.call('member_update_accept', 'PUT', img + '/members/p-other', expect=200,
           image_id=iid, token='other-token', body={'status': 'accepted'})
    d.call('member_delete', 'DELETE', img + '/members/p-other', expect=204,
           image_id=iid)
    d.call('forbidden_create_reader', 'POST', '/v2/images', expect=403,
           token='reader-token',
           body={'name': 'no', 'disk_format': 'raw', 'container_format': 'bare'})
    d.call('invalid_json', 'POST', '/v2/images', expect=400, body=b'{"name": ',
           content_type='application/json')
    missing = str(uuid.uuid4())
    d.call('not_found', 'GET', '/v2/images/%s' % missing, expect=404,
           image_id=missing)
    d.call('delete_image', 'DELETE', img, expect=204, image_id=iid)

    # ------------------------------------------------ image 2: glance-direct
    r = d.call('create_image2', 'POST', '/v2/images', expect=201, body={
        'name': 'audit-staged', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private'})
    sid = r.image_id = _json(r)['id']
    d.call('stage_1MiB', 'PUT', '/v2/images/%s/stage' % sid, expect=204, image_id=sid,
           body=glance_app.PatternStream(STAGE_SIZE, seed=2),
           content_type='application/octet-stream')
    d.import_call('import_glance_direct', sid)

    # ---------------------------------- image 3: upload that fails in Glance
    r = d.call('create_image3', 'POST', '/v2/images', expect=201, body={
        'name': 'audit-too-big', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private'})
    bid = r.image_id = _json(r)['id']
    with env.override('image_size_cap', SIZE_CAP):
        d.call('upload_over_size_cap', 'PUT', '/v2/images/%s/file' % bid, expect=413,
               image_id=bid, body=glance_app.PatternStream(2 * MIB, seed=3),
               content_type='application/octet-stream')
    d.call('delete_image3', 'DELETE', '/v2/images/%s' % bid, expect=204, image_id=bid)
    return Lifecycle(d.steps, iid, sid, bid, missing, upload_md5, pipeline)


def _json(step):
    import json
    return json.loads(step.body)
