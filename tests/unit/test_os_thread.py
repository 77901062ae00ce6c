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

"""The OS name of the filter's thread (delivery/os_thread.py): what top -H, ps -L and
/proc/<pid>/task/<tid>/comm show."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from audit_notifier.delivery import os_thread


def comm(tid: int) -> str:
    with open('/proc/self/task/%d/comm' % tid) as f:
        return f.read().rstrip('\n')


def test_a_thread_names_itself_and_no_other():
    before = comm(threading.get_native_id())
    seen = {}

    def run():
        seen['named'] = os_thread.name_this_thread('audit-sender')
        seen['comm'] = comm(threading.get_native_id())
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert seen == {'named': True, 'comm': 'audit-sender'}
    assert comm(threading.get_native_id()) == before


def test_the_main_thread_is_never_renamed():
    """Under eventlet the sender is a green thread of the main OS thread: renaming
    that would rename the API process in ps and top."""
    before = comm(os.getpid())
    assert threading.get_native_id() == os.getpid()      # pytest runs on the main thread
    assert os_thread.name_this_thread('audit-sender') is False
    assert comm(os.getpid()) == before


def test_a_name_the_kernel_would_cut_is_refused():
    with pytest.raises(ValueError, match='at most 15 bytes'):
        os_thread.name_this_thread('audit-notifier-sender')


def deactivate_app(environ, start_response):
    start_response('204 No Content', [])
    return [b'']


def deactivate(mw, wsgi) -> None:
    environ = wsgi.environ('POST', '/v2/images/%s/actions/deactivate' % wsgi.IMAGE_ID,
                           headers=wsgi.IDENTITY)
    sr, _ = wsgi.run(mw, environ)
    assert sr.status.startswith('204')


def assert_deactivation_sent(captured, wsgi) -> None:
    """The sender did its work: exactly the call's CADF event reached the bus."""
    [event] = captured.all()
    assert (event['event_type'], event['priority'], event['payload']['action'],
            event['payload']['outcome'], event['payload']['target']['id']) == (
        'audit.image.deactivate', 'INFO', 'update/deactivate', 'success', wsgi.IMAGE_ID)


@pytest.mark.parametrize('sender, name', [('thread', 'audit-sender'),
                                          ('external', 'audit-journal')])
def test_the_filters_thread_is_named_once_started_and_gone_when_stopped(
        make_filter, captured, wsgi, sender, name):
    """(Other tests' filters may still have their threads: only this filter's counts.)
    The sender thread, named, sends the call's event; with sender = external the
    thread only journals it (no send process here)."""
    mw = make_filter(deactivate_app, formats='cadf', sender=sender)
    assert mw.delivery._thread is None                  # started by the first call
    deactivate(mw, wsgi)
    thread = mw.delivery._thread
    assert thread.name == 'audit-notifier-' + ('sender' if sender == 'thread' else 'journal')
    tid = thread.native_id
    assert tid != os.getpid()
    deadline = time.monotonic() + 120                    # it names itself as it starts
    while comm(tid) != name:
        assert time.monotonic() < deadline, 'the thread never named itself'
        time.sleep(0.01)
    assert comm(threading.get_native_id()) != name      # no other thread renamed
    if sender == 'thread':
        assert_deactivation_sent(captured, wsgi)
    else:
        snapshot = mw.delivery.snapshot()         # (its flush would wait for a send process)
        assert (snapshot['journaled'], snapshot['unsent']) == (1, 1)
    mw.delivery.stop()
    thread.join(60)
    assert not thread.is_alive()
    # (the OS thread leaves /proc just after Python's join returns)
    while os.path.exists('/proc/self/task/%d' % tid):
        assert time.monotonic() < deadline, 'the stopped thread is still listed'
        time.sleep(0.01)


def test_under_eventlet_the_process_keeps_its_name(tmp_path):
    script = textwrap.dedent('''
        import eventlet
        eventlet.monkey_patch()
        import json, os, webob
        from audit_notifier.middleware import AuditMiddleware

        def app(environ, start_response):
            start_response('204 No Content', [])
            return [b'']

        def names():
            found = []
            for t in os.listdir('/proc/self/task'):
                try:
                    found.append(open('/proc/self/task/' + t + '/comm').read().strip())
                except FileNotFoundError:
                    pass
            return sorted(found)
        def main():
            return open('/proc/self/task/%d/comm' % os.getpid()).read().strip()
        main_before = main()
        mw = AuditMiddleware(app, {'driver': 'test', 'formats': 'cadf',
                                   'journal_dir': JOURNAL})
        webob.Request.blank('/v2/images/img-1/actions/deactivate',
                            method='POST').get_response(mw)
        flushed = mw.delivery.flush(30)
        print(json.dumps({'flushed': flushed, 'after': names(),
                          'main': [main_before, main()]}))
    ''').replace('JOURNAL', repr(str(tmp_path)))
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['flushed'] is True
    assert 'audit-sender' not in result['after']
    assert result['main'][1] == result['main'][0] != 'audit-sender'   # the process's name


def test_a_failing_prctl_is_logged_and_the_sender_goes_on(
        monkeypatch, caplog, make_filter, captured, wsgi):
    class NoLibc:
        def __init__(self, *args, **kwargs):
            raise OSError('no libc here (test)')
    monkeypatch.setattr(os_thread.ctypes, 'CDLL', NoLibc)
    caplog.set_level('DEBUG', logger='audit_notifier.delivery.os_thread')
    mw = make_filter(deactivate_app, formats='cadf')
    deactivate(mw, wsgi)
    assert_deactivation_sent(captured, wsgi)
    assert comm(mw.delivery._thread.native_id) != 'audit-sender'
    assert [r.getMessage() for r in caplog.records
            if r.name == 'audit_notifier.delivery.os_thread'] == [
        'audit_notifier: could not name this thread audit-sender for the OS']
