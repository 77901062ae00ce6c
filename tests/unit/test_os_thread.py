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


@pytest.mark.parametrize('sender, name', [('thread', 'audit-sender'),
                                          ('external', 'audit-journal')])
def test_the_filters_thread_is_named_once_started_and_gone_when_stopped(
        make_filter, wsgi, sender, name):
    """(Other tests' filters may still have their threads: only this filter's counts.)"""
    def app(environ, start_response):
        start_response('204 No Content', [])
        return [b'']

    mw = make_filter(app, formats='cadf', sender=sender)
    assert mw.delivery._thread is None                  # started by the first call
    environ = wsgi.environ('POST', '/v2/images/%s/actions/deactivate' % wsgi.IMAGE_ID,
                           headers=wsgi.IDENTITY)
    sr, _ = wsgi.run(mw, environ)
    assert sr.status.startswith('204')
    thread = mw.delivery._thread
    assert thread.name == 'audit-notifier-' + ('sender' if sender == 'thread' else 'journal')
    tid = thread.native_id
    assert tid != os.getpid()
    deadline = time.monotonic() + 120                    # it names itself as it starts
    while comm(tid) != name:
        assert time.monotonic() < deadline, 'the thread never named itself'
        time.sleep(0.01)
    assert comm(threading.get_native_id()) != name      # no other thread renamed
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
        before = names()
        main_before = main()
        mw = AuditMiddleware(app, {'driver': 'test', 'formats': 'cadf',
                                   'journal_dir': JOURNAL})
        webob.Request.blank('/v2/images/img-1/actions/deactivate',
                            method='POST').get_response(mw)
        flushed = mw.delivery.flush(30)
        print(json.dumps({'flushed': flushed, 'before': before, 'after': names(),
                          'main': [main_before, main()]}))
    ''').replace('JOURNAL', repr(str(tmp_path)))
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result['flushed'] is True
    assert 'audit-sender' not in result['after']
    assert result['main'][1] == result['main'][0] != 'audit-sender'   # the process's name


def test_a_failing_prctl_is_logged_and_the_thread_goes_on(monkeypatch, caplog):
    class NoLibc:
        def __init__(self, *args, **kwargs):
            raise OSError('no libc here (test)')
    monkeypatch.setattr(os_thread.ctypes, 'CDLL', NoLibc)
    seen = {}

    def run():
        with caplog.at_level('DEBUG', logger='audit_notifier.delivery.os_thread'):
            seen['named'] = os_thread.name_this_thread('audit-sender')
        seen['comm'] = comm(threading.get_native_id())
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert seen['named'] is False and seen['comm'] != 'audit-sender'
    assert ['could not name this thread audit-sender for the OS' in r.getMessage()
            for r in caplog.records] == [True]
