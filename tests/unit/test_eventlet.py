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

"""Under eventlet monkey-patching (some deployments still use it) the sender runs as
green threads and every notification is still delivered, in order per resource.

Runs in a subprocess: monkey-patching must happen before anything else is imported.
"""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import eventlet
    eventlet.monkey_patch()
    import json, sys, tempfile, threading, webob
    from oslo_messaging.notify import _impl_test
    from audit_notifier.middleware import AuditMiddleware

    def app(environ, start_response):
        start_response('204 No Content', [])
        return [b'']

    mw = AuditMiddleware(app, {'driver': 'test', 'formats': 'cadf',
                               'journal_dir': tempfile.mkdtemp()})
    ids = ['img-%d' % (i % 7) for i in range(70)]

    def call(image_id):
        webob.Request.blank('/v2/images/%s/actions/deactivate' % image_id,
                            method='POST').get_response(mw)
    pool = eventlet.GreenPool(10)
    for image_id in ids:
        pool.spawn_n(call, image_id)
    pool.waitall()
    ok = mw.delivery.flush(20)
    got = [m['payload']['target']['id'] for _, m, _, _ in _impl_test.NOTIFICATIONS]
    print(json.dumps({
        'flushed': ok, 'targets': got,
        'green': eventlet.patcher.is_monkey_patched('thread'),
        'counters': mw.delivery.snapshot()}))
''')


def test_delivery_under_eventlet_monkey_patching():
    out = subprocess.run([sys.executable, '-c', SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['green'] is True
    assert result['flushed'] is True
    assert sorted(result['targets']) == sorted('img-%d' % (i % 7) for i in range(70))
    counters = result['counters']
    assert (counters['journaled'], counters['sent'], counters['dropped'],
            counters['send_errors'], counters['unsent']) == (70, 70, 0, 0, 0)
