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

"""Issue 8, transparency: Glance's own functional tests that upload a body which can only
be iterated, run against the REAL Glance 33 in-process, without and with the filter.

Glance 33's ``TestImagesSingleStore.test_image_size_cap`` and
``TestQuotas.test_chunked_image_upload_{under,exceed}_quota``
(glance/tests/functional/v2/test_images.py) give webob's ``body_file`` an object that
only has ``__iter__`` (a ``StreamSim`` class, a generator): the request is chunked and
``wsgi.input`` is that object.  Glance's ``CooperativeReader`` reads with ``read()``
when ``hasattr(fd, 'read')``, else it iterates; a probe offering a ``read()`` its input
lacks made each of them answer 500.  Here each test runs first through the session's
Glance without the filter, then through a pipeline with it: the responses must be the
same, Glance's own notifications the same, ours the same sequence as Glance's, and the
CADF event must count the bytes Glance read.
"""

from __future__ import annotations

import contextlib
import hashlib

import pytest

try:
    from . import glance_app, scenario
except ImportError:
    import glance_app
    import scenario

pytestmark = pytest.mark.glance

INFO, ERROR = 'INFO', 'ERROR'
TOKEN = 'other-token'                   # project p-other: no other test fills its quota
UPLOAD = [('image.update', INFO), ('image.prepare', INFO), ('image.upload', INFO),
          ('image.activate', INFO), ('image.update', INFO)]
UPLOAD_FAILED = [('image.update', INFO), ('image.prepare', INFO), ('image.upload', ERROR),
                 ('image.update', INFO)]


class StreamSim:
    """Glance's test_image_size_cap body: a one-shot iterable, nothing else."""

    def __init__(self, size):
        self.size = size

    def __iter__(self):
        yield b'Z' * self.size


def data_gen(size):
    """Glance's test_chunked_image_upload_* body: a generator."""
    yield b'x' * size


@pytest.fixture(scope='module')
def pipeline(audit_pipelines):
    return audit_pipelines('transparency', formats='cadf,glance', driver='test',
                           publisher_id='image.audit-transparency')


def _storage_used(env, app):
    """Bytes the project of TOKEN already stores (Glance's user_storage_quota counts them)."""
    listing = env.request('GET', '/v2/images?owner=p-other&limit=1000', app=app, token=TOKEN)
    assert listing.status == 200, listing.text
    return sum(image.get('size') or 0 for image in listing.json['images'])


def run_glance_test(env, app, body, overrides, pipeline=None):
    """Create an image, upload ``body`` under the option ``overrides``, read the image
    back, delete it: what Glance's test does.  Returns what a client and a consumer of
    notifications could see of the upload."""
    def settle():
        if pipeline is not None:
            pipeline.flush()

    created = env.request('POST', '/v2/images', app=app, token=TOKEN, body={
        'name': 'testimg', 'type': 'kernel', 'foo': 'bar', 'disk_format': 'aki',
        'container_format': 'aki'})
    assert created.status == 201, created.text
    image_id = created.json['id']
    settle()
    glance_app.reset_notifications()
    with contextlib.ExitStack() as stack:
        for option, value in overrides.items():
            stack.enter_context(env.override(option, value))
        upload = env.request('PUT', '/v2/images/%s/file' % image_id, app=app, token=TOKEN,
                             body=body, content_type='application/octet-stream')
    settle()
    own = glance_app.glance_own_notifications()
    ours = pipeline.ours() if pipeline is not None else []
    image = env.request('GET', '/v2/images/%s' % image_id, app=app, token=TOKEN)
    deleted = env.request('DELETE', '/v2/images/%s' % image_id, app=app, token=TOKEN)
    settle()
    return {
        'status': upload.status,
        'content_type': upload.headers.get('Content-Type'),
        'body': upload.body.replace(image_id.encode(), b'<image id>'),
        'checksum': image.json['checksum'],
        'size': image.json['size'],
        'delete': deleted.status,
        'own': own,
        'ours': ours,
        'image_id': image_id,
    }


# Glance's quota check raises StorageQuotaFull, then its _restore fails ("Image status
# transition from active to queued is not allowed", glance/api/v2/image_data.py), so
# Glance sends no closing image.update; ours refreshes the record as after any failed
# store write (a Glance-format difference, not a transparency one).
QUOTA_EXCEEDED_OWN = UPLOAD_FAILED[:3]


CASES = {
    # Glance 33: TestImagesSingleStore.test_image_size_cap
    'test_image_size_cap': dict(
        options=lambda used: {'image_size_cap': 128}, body=lambda: StreamSim(129),
        status=413, size=129, own=UPLOAD_FAILED, ours=UPLOAD_FAILED),
    # Glance 33: TestQuotas.test_chunked_image_upload_under_quota (quota: 100 B more)
    'test_chunked_image_upload_under_quota': dict(
        options=lambda used: {'user_storage_quota': str(used + 100)},
        body=lambda: data_gen(99), status=204, size=99, own=UPLOAD, ours=UPLOAD),
    # Glance 33: TestQuotas.test_chunked_image_upload_exceed_quota
    'test_chunked_image_upload_exceed_quota': dict(
        options=lambda used: {'user_storage_quota': str(used + 100)},
        body=lambda: data_gen(101), status=413, size=101, own=QUOTA_EXCEEDED_OWN,
        ours=QUOTA_EXCEEDED_OWN + [('image.update', INFO)]),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_glance_own_iterable_upload_tests_pass_through_the_filter(glance_env, pipeline,
                                                                  name):
    case = CASES[name]
    status = case['status']
    assert glance_env.audit_filter is None          # the session app: no filter
    plain = run_glance_test(glance_env, glance_env.app, case['body'](),
                            case['options'](_storage_used(glance_env, glance_env.app)))
    filtered = run_glance_test(glance_env, pipeline.app, case['body'](),
                               case['options'](_storage_used(glance_env, pipeline.app)),
                               pipeline)

    # Glance's own test passes without the filter ...
    assert (plain['status'], plain['delete']) == (status, 204), plain['body']
    if status == 413:
        assert plain['checksum'] != hashlib.md5(b'Z' * 129).hexdigest()
        assert plain['size'] is None
    else:
        assert (plain['checksum'], plain['size']) == (hashlib.md5(b'x' * 99).hexdigest(), 99)
    # ... and the client sees exactly the same with it
    client_view = ('status', 'content_type', 'body', 'checksum', 'size', 'delete')
    assert {k: filtered[k] for k in client_view} == {k: plain[k] for k in client_view}
    # Glance did the same with the filter, and we saw the upload start and its bytes
    assert scenario.seq(plain['own']) == case['own']
    assert scenario.seq(filtered['own']) == case['own']
    ours = filtered['ours']
    usage = [m for m in ours if not m['event_type'].startswith('audit.')]
    assert scenario.seq(usage) == case['ours']
    assert [m['payload']['status'] for m in usage[:2]] == ['saving', 'saving']
    # the third is image.upload: Glance's error text, or the stored image
    ours_upload, own_upload = usage[2]['payload'], filtered['own'][2]['payload']
    if status == 204:
        fields = ('id', 'status', 'size', 'checksum', 'os_hash_value')
        assert ({k: ours_upload.get(k) for k in fields} ==
                {k: own_upload.get(k) for k in fields})
    else:
        assert ours_upload == own_upload
    [cadf] = [m for m in ours if m['event_type'] == 'audit.image.upload']
    payload = cadf['payload']
    assert payload['outcome'] == ('success' if status == 204 else 'failure')
    assert payload['reason'] == {'reasonType': 'HTTP', 'reasonCode': str(status)}
    assert payload['target']['id'] == filtered['image_id']
    assert [(m['metric']['name'], m['result']) for m in payload['measurements']] == \
        [('bytes_received', case['size'])]
