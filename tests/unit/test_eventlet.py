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

# Seventy green calls on seven images through the filter (OPTIONS: its own options).
CALLS = textwrap.dedent('''
    import eventlet
    eventlet.monkey_patch()
    import json, tempfile, threading, webob
    from oslo_messaging.notify import _impl_test
    from audit_notifier.middleware import AuditMiddleware

    def app(environ, start_response):
        start_response('204 No Content', [])
        return [b'']

    directory = tempfile.mkdtemp()
    mw = AuditMiddleware(app, dict({'driver': 'test', 'formats': 'cadf',
                                    'journal_dir': directory}, **OPTIONS))
    ids = ['img-%d' % (i % 7) for i in range(70)]

    def call(image_id):
        webob.Request.blank('/v2/images/%s/actions/deactivate' % image_id,
                            method='POST').get_response(mw)
    pool = eventlet.GreenPool(10)
    for image_id in ids:
        pool.spawn_n(call, image_id)
    pool.waitall()
''')

SCRIPT = CALLS.replace('OPTIONS', '{}') + textwrap.dedent('''
    ok = mw.delivery.flush(20)
    got = [m['payload']['target']['id'] for _, m, _, _ in _impl_test.NOTIFICATIONS]
    kinds = sorted({(m['event_type'], m['payload']['outcome'], priority)
                    for _, m, priority, _ in _impl_test.NOTIFICATIONS})
    print(json.dumps({
        'flushed': ok, 'targets': got, 'kinds': kinds,
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
    assert result['kinds'] == [['audit.image.deactivate', 'success', 'INFO']]
    counters = result['counters']
    assert (counters['journaled'], counters['sent'], counters['dropped'],
            counters['send_errors'], counters['unsent']) == (70, 70, 0, 0, 0)


EXTERNAL_SCRIPT = CALLS.replace('OPTIONS', "{'sender': 'external'}") + textwrap.dedent('''
    from oslo_config import cfg
    from audit_notifier.assembly import Pipeline
    from audit_notifier.delivery import service

    before = mw.delivery.flush(0.5)        # nothing sends yet
    # the sender of audit-notifier send, built as serve() builds it
    pipeline = Pipeline({'driver': 'test', 'journal_dir': directory, 'formats': 'cadf',
                         'sender': 'external', 'process_hooks': 'false',
                         'oslo_config_config': cfg.ConfigOpts()})
    sender = service._sender(pipeline, pipeline.delivery.settings, directory)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    ok = mw.delivery.flush(20)
    sender.stop(5.0)
    thread.join(10)
    got = [m['payload']['target']['id'] for _, m, _, _ in _impl_test.NOTIFICATIONS]
    kinds = sorted({(m['event_type'], m['payload']['outcome'], priority)
                    for _, m, priority, _ in _impl_test.NOTIFICATIONS})
    print(json.dumps({
        'before': before, 'flushed': ok, 'targets': got, 'kinds': kinds,
        'thread': mw.delivery._thread.name,
        'green': eventlet.patcher.is_monkey_patched('thread'),
        'counters': mw.delivery.snapshot()}))
''')


def test_external_sender_under_eventlet_monkey_patching():
    """sender = external in a monkey-patched API process: calls are journaled by green
    threads, the counters thread is green, and flush() waits for the send process's
    checkpoint (here a send-process sender in the same process)."""
    out = subprocess.run([sys.executable, '-c', EXTERNAL_SCRIPT], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result['green'] is True and result['thread'] == 'audit-notifier-journal'
    assert result['before'] is False and result['flushed'] is True
    assert sorted(result['targets']) == sorted('img-%d' % (i % 7) for i in range(70))
    assert result['kinds'] == [['audit.image.deactivate', 'success', 'INFO']]
    counters = result['counters']
    assert (counters['journaled'], counters['dropped'], counters['unsent']) == (70, 0, 0)
