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

"""A tiny, deterministic stand-in for the Glance v2 image API (no Glance).

Enough for the audit filter's Glance routes: ``POST /v2/images`` creates a queued
image (ids from a fixed list), ``GET /v2/images/{id}`` shows it (the filter's
record look-ups), ``GET /v2/images/{id}/file`` streams the data of the seeded
active image in three chunks, ``PATCH`` answers 403 and ``DELETE`` answers 500.
Every timestamp and id is fixed, so two runs produce identical records.

This is a helper module, not a test file.
"""

from __future__ import annotations

import json

import webob
import webob.exc

OWNER = 'p-broker'
CREATED = '2024-01-02T03:04:05Z'
ACTIVE_ID = '11111111-2222-4333-8444-555555555555'
NEW_IDS = ('aaaaaaaa-bbbb-4ccc-8ddd-000000000001', 'aaaaaaaa-bbbb-4ccc-8ddd-000000000002')
DATA = bytes(range(256)) * 64          # 16 KiB
CHUNKS = (DATA[:5000], DATA[5000:11000], DATA[11000:])


def _record(image_id, name, status, size=None, checksum=None, **extra):
    record = {
        'id': image_id, 'name': name, 'status': status, 'visibility': 'shared',
        'protected': False, 'os_hidden': False, 'owner': OWNER, 'min_disk': 0,
        'min_ram': 0, 'checksum': checksum, 'os_hash_algo': None, 'os_hash_value': None,
        'size': size, 'virtual_size': None, 'disk_format': 'raw', 'container_format': 'bare',
        'tags': [], 'created_at': CREATED, 'updated_at': CREATED,
        'self': '/v2/images/%s' % image_id, 'file': '/v2/images/%s/file' % image_id,
        'schema': '/v2/schemas/image',
    }
    record.update(extra)
    return record


class FakeImageAPI:
    def __init__(self):
        self.images = {ACTIVE_ID: _record(ACTIVE_ID, 'seeded', 'active', size=len(DATA),
                                          checksum='0' * 32)}
        self._ids = list(NEW_IDS)
        self.calls = []

    def __call__(self, environ, start_response):
        req = webob.Request(environ)
        self.calls.append((req.method, req.path_info))
        try:
            resp = self._route(req)
        except webob.exc.HTTPException as exc:
            resp = exc
        return resp(environ, start_response)

    def _route(self, req):
        parts = req.path_info.strip('/').split('/')
        if parts[:2] != ['v2', 'images']:
            raise webob.exc.HTTPNotFound()
        if len(parts) == 2 and req.method == 'POST':
            body = json.loads(req.body or b'{}')
            image_id = self._ids.pop(0)
            record = _record(image_id, body.get('name'), 'queued',
                             **{k: v for k, v in body.items() if k not in ('name',)})
            self.images[image_id] = record
            return self._json(record, 201, location='http://localhost/v2/images/%s'
                              % image_id)
        image = self.images.get(parts[2]) if len(parts) > 2 else None
        if image is None:
            raise webob.exc.HTTPNotFound(explanation='No image found')
        if len(parts) == 3 and req.method == 'GET':
            return self._json(image, 200)
        if len(parts) == 3 and req.method == 'PATCH':
            raise webob.exc.HTTPForbidden(explanation='You are not authorized to update '
                                                      'this image.')
        if len(parts) == 3 and req.method == 'DELETE':
            raise webob.exc.HTTPInternalServerError(explanation='The store is on fire.')
        if parts[3:] == ['file'] and req.method == 'GET':
            resp = webob.Response(status=200, content_type='application/octet-stream')
            resp.app_iter = iter(CHUNKS)
            resp.content_length = len(DATA)
            return resp
        raise webob.exc.HTTPMethodNotAllowed()

    @staticmethod
    def _json(doc, status, location=None):
        resp = webob.Response(status=status, content_type='application/json',
                              charset=None, body=json.dumps(doc).encode())
        resp.headers['X-OpenStack-Request-Id'] = 'req-00000000-0000-4000-8000-%012d' % status
        if location:
            resp.headers['Location'] = location
        return resp
