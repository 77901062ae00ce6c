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

"""Issue 8, item 2: uploads to the REAL Glance 33 served by a REAL uWSGI, filter in the
pipeline, sent with ``Transfer-Encoding: chunked`` (what glanceclient sends) and with
``Content-Length``.

Under uWSGI, Glance reads a chunked body with ``uwsgi.chunked_read()`` and never
touches ``wsgi.input`` (glance/common/wsgi.py ``_UWSGIChunkFile``); the filter must
still see the upload start and count its bytes (audit_notifier/uwsgi_input.py).

uWSGI (PyPI ``uWSGI``, test-requirements.txt) runs ``glance_uwsgi_app.py`` in a child
process on a free loopback port: one worker, 4 threads, ``lazy-apps`` as devstack runs
Glance.  That worker records Glance's own notifications and the filter's (the
oslo.messaging ``test`` driver) and hands them over on ``GET /_test/notifications``.
Without uWSGI the tests are skipped, and FAIL under ``CI=true``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

try:
    from . import scenario
except ImportError:
    import scenario

from tests.support.rabbit import peer_missing
from tests.support.wait import wait_until

pytestmark = pytest.mark.glance

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
INFO = 'INFO'
GLANCE = 'image.localhost'
PUBLISHER = 'image.audit-uwsgi'
UPLOAD = [('image.update', INFO), ('image.prepare', INFO), ('image.upload', INFO),
          ('image.activate', INFO), ('image.update', INFO)]
STAGE = [('image.update', INFO), ('image.update', INFO)]
#: 40 chunks of 64 KiB (glanceclient's chunk size) and an odd tail: Glance's
#: _UWSGIChunkFile buffers across chunked_read() calls
CHUNKS = [bytes([i]) * 65536 for i in range(40)] + [b'odd tail']
SIZE = sum(map(len, CHUNKS))


def _uwsgi_binary() -> str | None:
    beside_python = os.path.join(os.path.dirname(sys.executable), 'uwsgi')
    if os.access(beside_python, os.X_OK):
        return beside_python
    return shutil.which('uwsgi')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class UwsgiGlance:
    """Glance under uWSGI in a child process, and an HTTP client for it."""

    def __init__(self, binary, base):
        self.base = str(base)
        self.port = _free_port()
        self.log = os.path.join(self.base, 'uwsgi.log')
        spec = os.path.join(self.base, 'spec.json')
        glance_base = os.path.join(self.base, 'glance')
        os.makedirs(glance_base)
        with open(spec, 'w') as f:
            json.dump({'base_dir': glance_base, 'audit_filter': {
                'formats': 'cadf,glance', 'driver': 'test', 'publisher_id': PUBLISHER,
                'journal_dir': os.path.join(glance_base, 'audit-journal')}}, f)
        env = dict(os.environ, GLANCE_UWSGI_SPEC=spec, PYTHONPATH=os.pathsep.join(
            p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
        self.proc = subprocess.Popen(
            [binary, '--http-socket', '127.0.0.1:%d' % self.port,
             '--wsgi-file', os.path.join(HERE, 'glance_uwsgi_app.py'),
             '--callable', 'application', '--master', '--processes', '1',
             '--threads', '4', '--lazy-apps', '--need-app', '--die-on-term',
             # Glance's harness runs glance-manage with sys.executable
             '--py-sys-executable', sys.executable, '--logto', self.log],
            cwd=self.base, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout=240.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError('uWSGI exited with %s; log:\n%s'
                                     % (self.proc.returncode, self.log_tail()))
            try:
                return self.request('GET', '/_test/notifications')[0] == 200
            except OSError:
                return False
        try:
            wait_until(ready, timeout=timeout, interval=0.2, message='Glance under uWSGI')
        except TimeoutError as exc:
            raise AssertionError('%s; log:\n%s' % (exc, self.log_tail()))

    def stop(self):
        self.proc.terminate()                # --die-on-term: SIGTERM stops uWSGI
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)

    def log_tail(self, chars=4000):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()[-chars:]
        except OSError as exc:
            return '(%s)' % exc

    def request(self, method, path, body=None, headers=None, chunked=False):
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=120)
        try:
            all_headers = {'X-Auth-Token': 'admin-token'}
            all_headers.update(headers or {})
            conn.request(method, path, body=body, headers=all_headers,
                         encode_chunked=chunked)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def notifications(self):
        status, body = self.request('GET', '/_test/notifications')
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    binary = _uwsgi_binary()
    if binary is None:
        peer_missing('uWSGI is not installed (pip install uWSGI, test-requirements.txt)')
    glance = UwsgiGlance(binary, tmp_path_factory.mktemp('uwsgi-glance'))
    try:
        glance.wait_ready()
        yield glance
    finally:
        glance.stop()


def _upload(server, route, transfer):
    status, body = server.request('POST', '/v2/images', json.dumps({
        'name': 'uwsgi-%s-%s' % (route, transfer), 'disk_format': 'raw',
        'container_format': 'bare'}), {'Content-Type': 'application/json'})
    assert status == 201, body
    image_id = json.loads(body)['id']
    server.notifications()                   # the create's events are all recorded ...
    assert server.request('POST', '/_test/reset')[0] == 200    # ... and forgotten
    headers = {'Content-Type': 'application/octet-stream'}
    if transfer == 'chunked':
        data, chunked = iter(CHUNKS), True
        headers['Transfer-Encoding'] = 'chunked'
    else:
        data, chunked = b''.join(CHUNKS), False
    status, body = server.request('PUT', '/v2/images/%s/%s' % (image_id, route), data,
                                  headers, chunked=chunked)
    assert status == 204, body
    return image_id, server.notifications()


@pytest.mark.parametrize('route, transfer', [('file', 'chunked'), ('stage', 'chunked'),
                                             ('file', 'length'), ('stage', 'length')])
def test_upload_under_uwsgi(server, route, transfer):
    image_id, snapshot = _upload(server, route, transfer)
    # Glance takes its uWSGI path: chunked bodies read with uwsgi.chunked_read()
    assert (snapshot['uwsgi'], snapshot['flushed']) == (True, True)
    envelopes = snapshot['notifications']
    own = [m for m in envelopes if m['publisher_id'] == GLANCE]
    ours = [m for m in envelopes if m['publisher_id'] == PUBLISHER]
    usage = [m for m in ours if not m['event_type'].startswith('audit.')]
    cadf = [m for m in ours if m['event_type'].startswith('audit.')]
    expected = UPLOAD if route == 'file' else STAGE

    assert scenario.seq(own) == expected
    assert scenario.seq(usage) == expected
    # the image as each notification shows it: status and size, ours as Glance's
    assert [(m['payload']['status'], m['payload']['size']) for m in usage] == \
        [(m['payload']['status'], m['payload']['size']) for m in own]
    assert {m['payload']['id'] for m in usage} == {image_id}
    [event] = cadf
    assert event['event_type'] == 'audit.image.%s' % ('upload' if route == 'file' else 'stage')
    payload = event['payload']
    assert (payload['outcome'], payload['target']['id']) == ('success', image_id)
    assert [(m['metric']['name'], m['result']) for m in payload['measurements']] == \
        [('bytes_received', SIZE)]

    status, body = server.request('GET', '/v2/images/%s' % image_id)
    assert status == 200, body
    image = json.loads(body)
    if route == 'file':                      # stored whole, exactly what was sent
        assert (image['status'], image['size'], image['checksum']) == \
            ('active', SIZE, hashlib.md5(b''.join(CHUNKS)).hexdigest())
    else:
        assert image['status'] == 'uploading'
    assert server.request('DELETE', '/v2/images/%s' % image_id)[0] == 204
