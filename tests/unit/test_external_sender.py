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

"""sender = external without a broker: a filter that only journals, and the sender
of ``audit-notifier send`` (delivery/service.py) with a recording leaf, in threads of
this process; the options it refuses at start-up."""

from __future__ import annotations

import glob
import os
import threading
import time

import pytest
from oslo_config import cfg

from audit_notifier import _config
from audit_notifier.assembly import Pipeline
from audit_notifier.delivery import external as external_mod
from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import pacing
from audit_notifier.delivery import service
from test_sender import FakeLeaf, call, deactivate_app, request_ids


def wait_until(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.01)


def send_process(directory, leaf, **conf):
    """The sender of audit-notifier send (built as serve() builds it), in a thread."""
    pipeline = Pipeline(dict({'driver': 'test', 'journal_dir': directory, 'formats': 'cadf',
                              'sender': 'external', 'stats_interval': '0',
                              'process_hooks': 'false',
                              'oslo_config_config': cfg.ConfigOpts()}, **conf))
    pipeline.leaves = lambda: {'cadf': leaf}
    sender = service._sender(pipeline, pipeline.delivery.settings, directory)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    return sender, thread


def api_load(mw, wsgi, pause):
    """(stop, made, thread): a thread that calls ``mw`` every ``pause`` seconds
    (not started) until ``stop`` is set; ``made`` numbers the calls made."""
    stop, made = threading.Event(), []

    def requests():
        while not stop.is_set():
            call(mw, wsgi, 'img-%d' % len(made), 'req-%d' % len(made))
            made.append(len(made))
            stop.wait(pause)

    return stop, made, threading.Thread(target=requests)


def journal_files(directory, owner):
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(directory, owner + '.*'))
                  if not p.endswith('.stats.json'))


def test_the_filter_journals_and_the_send_process_sends_in_order(make_filter, wsgi, tmp_path):
    directory = str(tmp_path)
    mw = make_filter(deactivate_app, formats='cadf', sender='external', journal_dir=directory)
    mw.delivery.leaf_factory = lambda: pytest.fail('an external-sender filter made leaves')
    for i in range(5):
        call(mw, wsgi, 'img-%d' % i, 'req-%d' % i)
    assert mw.delivery.leaves == {}
    # this filter's one thread only writes counters (other tests' filters may still
    # have sender threads: the check is on this delivery's own)
    assert mw.delivery._thread.name == 'audit-notifier-journal'
    assert isinstance(mw.delivery._sender, external_mod.JournalOnly)
    owner = mw.delivery._journal.owner
    leaf = FakeLeaf()
    sender, thread = send_process(directory, leaf)
    try:
        wait_until(lambda: len(leaf.sent) == 5, 'the first five notifications')
        for i in range(5, 8):                     # while the send process runs
            call(mw, wsgi, 'img-%d' % i, 'req-%d' % i)
        assert mw.delivery.flush(30.0) is True    # the checkpoint covers all eight
        assert request_ids(leaf.sent) == ['req-%d' % i for i in range(8)]
        assert [e['event_type'] for e in leaf.sent] == ['audit.image.deactivate'] * 8
        snap = mw.delivery.snapshot()
        assert (snap['journaled'], snap['unsent'], snap['dropped']) == (8, 0, 0)
        mw.delivery.close()                       # the API process stops
        # the send process adopts what it left and removes its files
        wait_until(lambda: journal_files(directory, owner) == [], 'the files removed')
        assert len(leaf.sent) == 8                # nothing sent twice: nothing was open
        assert sender.stats.counters['sent'] == 8
    finally:
        sender.stop(5.0)
        thread.join(10.0)
    assert not thread.is_alive()


def test_an_upload_in_progress_is_not_committed_past(make_filter, wsgi, tmp_path):
    """The checkpoint stays before a call still open, so the process that adopts the
    journal of a killed writer builds the call whole (here: as incomplete)."""
    directory = str(tmp_path)
    release = threading.Event()

    def slow_upload(environ, start_response):
        if environ['REQUEST_METHOD'] != 'PUT':
            return deactivate_app(environ, start_response)
        environ['wsgi.input'].read(1)             # the upload starts
        assert release.wait(30)
        start_response('204 No Content', [])
        return []

    mw = make_filter(slow_upload, formats='cadf', sender='external', journal_dir=directory)
    leaf = FakeLeaf()
    sender, thread = send_process(directory, leaf)
    environ = wsgi.environ('PUT', '/v2/images/img-0/file', body=b'x' * 10,
                           headers=dict(wsgi.IDENTITY, **{'Content-Type':
                                                          'application/octet-stream'}))
    upload = threading.Thread(target=wsgi.run, args=(mw, environ))
    try:
        upload.start()
        wait_until(lambda: mw.delivery.counters['journaled'] >= 1, 'the upload started')
        call(mw, wsgi, 'img-1', 'req-1')
        wait_until(lambda: request_ids(leaf.sent) == ['req-1'], 'the call after it')
        position, confirmed = mw.delivery._journal.confirmed()
        assert position[1] <= 1 and confirmed == 0          # before the upload's start
        release.set()
        upload.join(30)
        assert mw.delivery.flush(30.0) is True
        assert [e['event_type'] for e in leaf.sent] == [
            'audit.image.deactivate', 'audit.image.upload']
    finally:
        release.set()
        sender.stop(5.0)
        thread.join(10.0)


def test_a_second_send_process_for_the_directory_is_refused(tmp_path, caplog):
    directory = str(tmp_path)
    fd = journal_mod.try_lock(os.path.join(directory, external_mod.SEND_LOCK))
    try:
        pipeline = Pipeline({'driver': 'test', 'journal_dir': directory,
                             'process_hooks': 'false',
                             'oslo_config_config': cfg.ConfigOpts()})
        assert service.serve(pipeline) == 1
    finally:
        os.close(fd)
    assert 'another audit-notifier send serves %s' % directory in caplog.text


def test_external_needs_the_journal(make_filter):
    with pytest.raises(_config.ConfigError) as err:
        make_filter(deactivate_app, sender='external', delivery_mode='memory')
    assert str(err.value) == (
        'audit_notifier: option sender: external needs the journal (the sender process '
        'reads it); set delivery_mode = journal, or sender = thread')


def test_external_refuses_events_that_need_a_look_up_after_the_call(make_filter):
    with pytest.raises(_config.ConfigError) as err:
        make_filter(deactivate_app, sender='external', formats='cadf,glance',
                    record_lookups='true')
    message = str(err.value)
    assert message.startswith('audit_notifier: option sender: external, but the events of ')
    assert message.endswith('need a record look-up after the call, which only the API '
                            'process can make; set record_lookups = false, or sender = thread')
    # the same formats without look-ups, and CADF alone with them, are fine
    make_filter(deactivate_app, sender='external', formats='cadf,glance',
                record_lookups='false')
    make_filter(deactivate_app, sender='external', formats='cadf', record_lookups='true')


def test_a_send_process_names_itself_and_removes_what_a_killed_one_left(tmp_path):
    directory = str(tmp_path)
    killed = 'host-1-1000'
    for suffix in ('lock', 'ckpt'):
        (tmp_path / ('%s.%s' % (killed, suffix))).write_text('')
    (tmp_path / ('%s.stats.json' % killed)).write_text('{}')
    (tmp_path / external_mod.SEND_LOCK).write_text(killed + '\n')
    fd = journal_mod.try_lock(os.path.join(directory, external_mod.SEND_LOCK))
    try:
        service._succeed(directory, fd, 'host-2-2000')
    finally:
        os.close(fd)
    assert (tmp_path / external_mod.SEND_LOCK).read_text() == 'host-2-2000\n'
    assert sorted(os.listdir(directory)) == [external_mod.SEND_LOCK, killed + '.stats.json']


def test_the_send_command_refuses_what_the_filter_refuses(tmp_path, caplog):
    from audit_notifier import cli
    conf = tmp_path / 'glance-api.conf'
    conf.write_text('[audit_notifier]\ndriver = log\nformats = cadf,glance\n'
                    'sender = external\njournal_dir = %s\n' % tmp_path)
    assert cli.main(['send', '--config-file', str(conf)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelname == 'ERROR']
    assert len(errors) == 1 and errors[0].startswith(
        'audit_notifier: option sender: external, but the events of ')
    assert not os.path.exists(os.path.join(str(tmp_path), external_mod.SEND_LOCK))


def test_a_killed_api_process_is_finished_by_the_send_process(make_filter, wsgi, tmp_path):
    """The writer dies (its lock is released, nothing removed) with an upload in
    progress whose start the send process had already sent: the send process
    adopts the journal, sends the upload as incomplete (its start again, with the
    same id: at-least-once) and removes the files."""
    directory = str(tmp_path)
    started = threading.Event()

    def stuck_upload(environ, start_response):
        if environ['REQUEST_METHOD'] != 'PUT':
            return deactivate_app(environ, start_response)
        environ['wsgi.input'].read(1)
        started.set()
        threading.Event().wait(60)                # never answers: the process "dies"
        start_response('204 No Content', [])
        return []

    mw = make_filter(stuck_upload, formats='cadf', sender='external', journal_dir=directory)
    make_filter.forget(mw)                        # killed: nobody closes it
    leaf = FakeLeaf()
    sender, thread = send_process(directory, leaf)
    environ = wsgi.environ('PUT', '/v2/images/img-0/file', body=b'x' * 10,
                           headers=dict(wsgi.IDENTITY, **{'Content-Type':
                                                          'application/octet-stream'}))
    threading.Thread(target=wsgi.run, args=(mw, environ), daemon=True).start()
    try:
        assert started.wait(30)
        call(mw, wsgi, 'img-1', 'req-1')
        wait_until(lambda: request_ids(leaf.sent) == ['req-1'], 'the call after the upload')
        journal = mw.delivery._journal
        owner = journal.owner
        os.close(journal._lock_fd)                # what the kernel does when it dies
        journal._lock_fd = None
        wait_until(lambda: journal_files(directory, owner) == [], 'the journal adopted')
        events = [(e['event_type'], e['payload']['outcome'],
                   e['payload'].get('reason', {}).get('reasonCode')) for e in leaf.sent]
        assert events == [('audit.image.deactivate', 'success', '204'),
                          ('audit.image.deactivate', 'success', '204'),
                          ('audit.image.upload', 'failure', 'incomplete')]
        # the deactivate after the upload's start was sent again, with the same id
        assert leaf.sent[0]['message_id'] == leaf.sent[1]['message_id']
    finally:
        sender.stop(5.0)
        thread.join(10.0)


def test_the_calls_of_several_api_processes_go_out_in_one_publish(make_filter, wsgi, tmp_path):
    directory = str(tmp_path)
    first = make_filter(deactivate_app, formats='cadf', sender='external',
                        journal_dir=directory)
    second = make_filter(deactivate_app, formats='cadf', sender='external',
                         journal_dir=directory)
    for i in range(3):
        call(first, wsgi, 'img-a%d' % i, 'a-%d' % i)
        call(second, wsgi, 'img-b%d' % i, 'b-%d' % i)
    leaf = FakeLeaf()
    sender, thread = send_process(directory, leaf)
    try:
        assert first.delivery.flush(30.0) and second.delivery.flush(30.0)
        assert leaf.batches == [6]                # one round: one publish for both
        ids = request_ids(leaf.sent)
        assert [i for i in ids if i.startswith('a')] == ['a-0', 'a-1', 'a-2']
        assert [i for i in ids if i.startswith('b')] == ['b-0', 'b-1', 'b-2']
    finally:
        sender.stop(5.0)
        thread.join(10.0)


def test_the_send_process_paces_a_backlog_while_requests_arrive(make_filter, wsgi, tmp_path):
    """A backlog (the publish held, as in an outage) sent while calls go on arriving:
    the send process counts the API process's appends as arrivals and rests
    between batches (delivery/pacing.py); every call still arrives, in order."""
    directory = str(tmp_path)
    mw = make_filter(deactivate_app, formats='cadf', sender='external', journal_dir=directory)
    gate = threading.Event()
    leaf = FakeLeaf(gate=gate)
    sender, thread = send_process(directory, leaf)
    stop, made, api = api_load(mw, wsgi, 0.01)    # about 100 calls/s
    try:
        api.start()
        wait_until(lambda: len(made) >= 400, 'a backlog of 400 calls')
        gate.set()                                # the bus is back
        wait_until(lambda: sender.pacer.rested > 0.0, 'a rest between two batches')
        assert sender.pacer.arrival_rate > 0.0 and sender.pacer.busy
        assert sender.snapshot()['send_rate_limit'] > 0.0
        stop.set()
        api.join(30)
        assert mw.delivery.flush(60.0) is True
        assert request_ids(leaf.sent) == ['req-%d' % i for i in range(len(made))]
        assert [(e['event_type'], e['priority'], e['payload']['target']['id'])
                for e in leaf.sent] == [('audit.image.deactivate', 'INFO', 'img-%d' % i)
                                        for i in range(len(made))]
        assert max(leaf.batches) <= pacing.BATCH
    finally:
        stop.set()
        gate.set()
        sender.stop(5.0)
        thread.join(10.0)


class TimedLeaf(FakeLeaf):
    """A FakeLeaf that also notes when each publish went."""

    def __init__(self):
        super().__init__()
        self.times: list = []

    def publish_many(self, envelopes, contexts=None, between=None):
        super().publish_many(envelopes, contexts, between)
        self.times.append(time.monotonic())


def test_while_calls_arrive_the_send_process_reads_once_per_gather_window(
        make_filter, wsgi, tmp_path):
    """About 20 calls/s: once the send process has seen them arrive it reads the
    live journals once per gather_seconds (1 s, the default), not every 200 ms, and
    publishes what came meanwhile together; every call arrives, in order.  (A
    busy machine only makes the gaps longer.)"""
    directory = str(tmp_path)
    mw = make_filter(deactivate_app, formats='cadf', sender='external', journal_dir=directory)
    leaf = TimedLeaf()
    sender, thread = send_process(directory, leaf)
    assert sender.pacer.gather_seconds == pacing.GATHER == 1.0
    stop, made, api = api_load(mw, wsgi, 0.05)    # about 20 calls/s
    try:
        api.start()
        wait_until(lambda: sender.pacer.busy, 'the send process to see calls arrive')
        seen = len(leaf.times)
        wait_until(lambda: len(leaf.times) >= seen + 4, 'four more publishes', timeout=60)
        stop.set()
        api.join(30)
        gaps = [b - a for a, b in zip(leaf.times[seen:], leaf.times[seen + 1:seen + 4])]
        assert len(gaps) == 3 and min(gaps) >= 0.5, gaps      # 200 ms polls: ~0.2 s
        assert mw.delivery.flush(60.0) is True
        assert request_ids(leaf.sent) == ['req-%d' % i for i in range(len(made))]
        assert [(e['event_type'], e['priority'], e['payload']['target']['id'])
                for e in leaf.sent] == [('audit.image.deactivate', 'INFO', 'img-%d' % i)
                                        for i in range(len(made))]
        assert sum(leaf.batches) == len(made) and max(leaf.batches) <= pacing.BATCH
    finally:
        stop.set()
        sender.stop(5.0)
        thread.join(10.0)


def test_gather_seconds_reaches_the_send_process(tmp_path):
    sender, thread = send_process(str(tmp_path), FakeLeaf(), gather_seconds='0.3')
    try:
        assert sender.pacer.gather_seconds == 0.3
    finally:
        sender.stop(5.0)
        thread.join(10.0)
