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

"""The sender without a broker: a fake leaf that fails on demand stands for the bus.

Order after an outage, bus outages told apart from bugs, dead letters (build and
send), adoption of a dead process's journal off the request path, malformed
left-over records, crash (SIGKILL) recovery with incomplete calls, threads that
end with their filter, and the operator tools (replay, dead-letter replay)."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from oslo_config import cfg

from audit_notifier.assembly import Pipeline
from audit_notifier.delivery import builder as builder_mod
from audit_notifier.delivery import deadletter, leaves as leaves_mod
from audit_notifier.delivery import record as record_mod
from audit_notifier.delivery import sender as sender_mod
from audit_notifier.delivery import tools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = ['11111111-1111-4111-8111-1111111111%02d' % i for i in range(5)]


class FakeLeaf:
    """publish_many that records, or fails: ``down`` (BusUnavailable) a number of
    times, or with a TypeError for envelopes ``bad`` picks."""

    DOWN_TEXT = 'connection refused (fake)'

    def __init__(self, down: int = 0, bad=None, gate: threading.Event | None = None):
        self.sent: list = []
        self.batches: list = []         # envelopes per publish_many that went
        self.calls = 0
        self.down = down
        self.bad = bad
        self.gate = gate
        self.lock = threading.Lock()

    def publish_many(self, envelopes, contexts=None, between=None):
        if self.gate is not None:
            assert self.gate.wait(60), 'the test never opened the gate'
        for _ in envelopes:             # as the real leaf: before each envelope
            if between is not None:
                between()
        with self.lock:
            self.calls += 1
            if self.down > 0:
                self.down -= 1
                raise leaves_mod.BusUnavailable(self.DOWN_TEXT)
            if self.bad is not None and any(self.bad(e) for e in envelopes):
                raise TypeError('cannot serialise this envelope (fake bug)')
            self.sent.extend(envelopes)
            self.batches.append(len(envelopes))

    def close(self):
        pass


def deactivate_app(environ, start_response):
    start_response('204 No Content', [])
    return [b'']


def call(mw, wsgi, image_id, request_id):
    environ = wsgi.environ('POST', '/v2/images/%s/actions/deactivate' % image_id,
                           headers=dict(wsgi.IDENTITY))
    environ['openstack.request_id'] = request_id
    sr, _ = wsgi.run(mw, environ)
    assert sr.status.startswith('204')


def fake_filter(make_filter, leaf, app=deactivate_app, **paste):
    paste.setdefault('formats', 'cadf')
    mw = make_filter(app, **paste)
    mw.delivery.leaf_factory = lambda: {'cadf': leaf, 'glance': leaf}
    return mw


def request_ids(envelopes):
    return [e['payload']['initiator']['request_id'] for e in envelopes]


def deactivations(envelopes):
    """What a consumer reads of each CADF event of deactivate_app's calls."""
    return [(e['event_type'], e['priority'], e['payload']['action'], e['payload']['outcome'],
             e['payload']['reason'], e['payload']['target']['id'],
             e['payload']['initiator']['request_id']) for e in envelopes]


def deactivated(*calls):
    """deactivations() of successful deactivate calls ``(image index, request id)``."""
    return [('audit.image.deactivate', 'INFO', 'update/deactivate', 'success',
             {'reasonType': 'HTTP', 'reasonCode': '204'}, IMAGES[i], request_id)
            for i, request_id in calls]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(sender_mod, 'RETRY_FIRST', 0.01)
    monkeypatch.setattr(sender_mod, 'RETRY_MAX', 0.05)


def test_order_is_kept_through_an_outage_and_it_is_reported_once(make_filter, wsgi, caplog,
                                                                 oslo_log_lines):
    leaf = FakeLeaf(down=5)
    mw = fake_filter(make_filter, leaf)
    with caplog.at_level(logging.WARNING, logger='audit_notifier'):
        ids = ['req-%03d' % i for i in range(50)]
        for i, rid in enumerate(ids):
            call(mw, wsgi, IMAGES[i % 5], rid)
        assert mw.delivery.flush(30)
    assert request_ids(leaf.sent) == ids
    counters = mw.delivery.counters
    assert (counters['journaled'], counters['sent'], counters['send_errors'],
            counters['dead_letters'], counters['dropped']) == (50, 50, 5, 0, 0)
    lines = [r.getMessage() for r in caplog.records]
    assert sum('message bus is unreachable' in m for m in lines) == 1
    assert sum('message bus is back after' in m for m in lines) == 1
    # as the service's log shows it: the cause once, not repeated by oslo.log
    down, = [x for x in oslo_log_lines() if 'message bus is unreachable' in x]
    assert down.count(FakeLeaf.DOWN_TEXT) == 1, down
    assert mw.delivery.snapshot()['unsent'] == 0


class ScriptedPacer:
    """Slices of 7 records; records what the sender tells it after each slice and
    asks for a rest after every slice that left records to read."""

    def __init__(self, gather: float = 0.0):
        self.told = []                  # (records, drained)
        self.gathering = gather
        self.asked_to_gather = 0
        self.yields = 0                 # yield_gil calls: between records, messages

    def slice(self):
        return 7

    def resumed(self):
        pass

    def yield_gil(self):
        self.yields += 1

    def gather(self):
        self.asked_to_gather += 1
        return self.gathering

    def pause(self, records, cpu, wall, drained=False):
        self.told.append((records, drained))
        return 0.0 if drained else 0.001

    def gauges(self):
        return {}


def test_a_backlog_is_sent_in_the_pacers_slices_with_its_rests(make_filter, wsgi):
    """The sender reads what the pacer's slice says, tells it each slice's size and
    whether the journal was drained, and rests as long as it answers; every event
    goes, in order."""
    gate = threading.Event()
    leaf = FakeLeaf(gate=gate)
    mw = fake_filter(make_filter, leaf)
    call(mw, wsgi, IMAGES[0], 'req-first')           # the sender holds it at the gate
    wait_until(lambda: leaf.calls == 0 and mw.delivery.snapshot()['built'] == 1, 60,
               'the first record taken by the sender')
    sender = mw.delivery._sender
    sender.pacer = pacer = ScriptedPacer()
    rests = []
    sender._pause = lambda seconds: rests.append(seconds) or False
    backlog = ['req-%03d' % i for i in range(40)]
    for i, rid in enumerate(backlog):
        call(mw, wsgi, IMAGES[i % 5], rid)
    gate.set()
    assert mw.delivery.flush(30)
    assert request_ids(leaf.sent) == ['req-first'] + backlog
    assert leaf.batches == [1, 7, 7, 7, 7, 7, 5]
    assert pacer.told == [(1, True)] + [(7, False)] * 5 + [(5, True)]
    assert rests == [0.001] * 5
    # Before each record built and each message published (the first record was
    # built before the pacer was swapped): 40 + 41.
    assert pacer.yields == 81


def test_a_stopping_sender_does_not_yield(make_filter, wsgi):
    """Between records the sender asks the pacer to yield the GIL, except while
    stopping (a close waits for it)."""
    leaf = FakeLeaf()
    mw = fake_filter(make_filter, leaf)
    call(mw, wsgi, IMAGES[0], 'req-first')            # the sender starts
    assert mw.delivery.flush(30) and request_ids(leaf.sent) == ['req-first']
    sender = mw.delivery._sender
    sender.pacer = pacer = ScriptedPacer()
    sender._yield_gil()
    assert pacer.yields == 1
    sender.stopping = True
    sender._yield_gil()
    assert pacer.yields == 1
    sender.stopping = False
    mw.delivery.close()


def test_a_closing_sender_does_not_rest(make_filter, wsgi):
    """A sender resting (here: 60 s after each slice) is woken by close() and
    sends the rest of its backlog without resting again, within close's 30 s."""
    gate = threading.Event()
    leaf = FakeLeaf(gate=gate)
    mw = fake_filter(make_filter, leaf, background_max_rate='1')
    call(mw, wsgi, IMAGES[0], 'req-first')
    wait_until(lambda: mw.delivery.snapshot()['built'] == 1, 60,
               'the first record taken by the sender')
    sender = mw.delivery._sender
    assert sender.pacer.max_rate == 1.0                   # the option reaches the pacer
    sender.pacer = pacer = ScriptedPacer()
    pacer.pause = lambda records, cpu, wall, drained=False: (
        pacer.told.append((records, drained)) or 60.0)
    ids = ['req-%03d' % i for i in range(50)]
    for i, rid in enumerate(ids):
        call(mw, wsgi, IMAGES[i % 5], rid)
    gate.set()
    wait_until(lambda: len(pacer.told) == 1, 60, 'the first slice and its rest')
    assert request_ids(leaf.sent) == ['req-first']        # resting, not sending
    mw.delivery.close(30)
    assert request_ids(leaf.sent) == ['req-first'] + ids
    # the capped pacer's first slice was one record (1/s); no rest asked after the stop
    assert pacer.told == [(1, False)]


def deactivate_or_show_app(environ, start_response):
    """Deactivate (204), and the image record for a look-up."""
    if environ['REQUEST_METHOD'] == 'GET':
        image_id = environ['PATH_INFO'].rsplit('/', 1)[-1]
        body = json.dumps({'id': image_id, 'status': 'deactivated', 'size': 42}).encode()
        start_response('200 OK', [('Content-Type', 'application/json'),
                                  ('Content-Length', str(len(body)))])
        return [body]
    return deactivate_app(environ, start_response)


def gathering_filter(make_filter, wsgi, gather, **paste):
    """A filter whose sender has sent its first call and now has a scripted pacer
    that gathers ``gather`` seconds; its builder notes each record it builds."""
    gate = threading.Event()
    leaf = FakeLeaf(gate=gate)
    mw = fake_filter(make_filter, leaf, **paste)
    call(mw, wsgi, IMAGES[0], 'req-first')
    wait_until(lambda: mw.delivery.snapshot()['built'] >= 1, 60,
               'the first record taken by the sender')
    sender = mw.delivery._sender
    sender.pacer = pacer = ScriptedPacer(gather=gather)
    built = []
    build = sender.builder.build
    sender.builder.build = lambda position, rec: built.append(rec['c']) or build(position, rec)
    gate.set()
    wait_until(lambda: mw.delivery.snapshot()['unsent'] == 0, 60, 'the first call sent')
    sent_first = len(leaf.batches)
    return mw, leaf, pacer, built, sent_first


def gathering_after_one_call(make_filter, wsgi, **paste):
    """gathering_filter with a 600 s gathering, once a first call after it (req-a,
    call 2) is built and the sender gathers."""
    mw, leaf, pacer, built, sent_first = gathering_filter(make_filter, wsgi, gather=600.0,
                                                          **paste)
    sender = mw.delivery._sender
    call(mw, wsgi, IMAGES[1], 'req-a')
    wait_until(lambda: sender.gathering and built == [2], 60,
               'req-a built and the sender gathering')
    return mw, leaf, pacer, built, sent_first


def test_gather_seconds_sets_the_sender_threads_window(make_filter, wsgi):
    """Option gather_seconds is the pacer's gathering window (pacing.Pacer.gather,
    tested in test_pacing.py)."""
    leaf = FakeLeaf()
    mw = fake_filter(make_filter, leaf, gather_seconds='0.3')
    call(mw, wsgi, IMAGES[0], 'req-first')
    assert mw.delivery.flush(60) is True
    assert mw.delivery._sender.pacer.gather_seconds == 0.3
    assert fake_filter(make_filter, FakeLeaf()).delivery.settings.gather_seconds == 1.0
    mw.delivery.close(30)


def test_records_arriving_while_gathering_share_one_publish(make_filter, wsgi):
    """A call whose events need no record look-up does not wake a gathering
    sender (nothing is published meanwhile, and nothing lost: ``unsent`` counts
    them); a stop ends the gathering and the calls go in one publish, in order."""
    mw, leaf, pacer, built, _ = gathering_after_one_call(make_filter, wsgi)
    sender = mw.delivery._sender
    call(mw, wsgi, IMAGES[2], 'req-b')
    call(mw, wsgi, IMAGES[3], 'req-c')
    assert not sender.wake.is_set()             # deactivate, formats cadf: no look-up
    assert leaf.batches == [1]                  # held back, not lost
    assert mw.delivery.snapshot()['unsent'] == 3
    mw.delivery.close(30)
    assert leaf.batches == [1, 3]
    assert deactivations(leaf.sent) == deactivated(
        (0, 'req-first'), (1, 'req-a'), (2, 'req-b'), (3, 'req-c'))
    assert built == [2, 3, 4] and pacer.asked_to_gather == 1


def test_a_flush_ends_a_gathering_at_once(make_filter, wsgi):
    """flush() (AuditNotifier.flush) wants what was submitted sent now: a gathering
    sender publishes what it holds instead of waiting out its gathering (600 s
    here; flush's own 60 s deadline would make it return False)."""
    mw, leaf, pacer, built, _ = gathering_after_one_call(make_filter, wsgi)
    sender = mw.delivery._sender
    call(mw, wsgi, IMAGES[2], 'req-b')
    assert leaf.batches == [1]
    assert mw.delivery.flush(60) is True
    assert leaf.batches == [1, 2]
    assert deactivations(leaf.sent) == deactivated((0, 'req-first'), (1, 'req-a'),
                                                   (2, 'req-b'))
    assert sender.hurry == 0 and pacer.asked_to_gather == 1
    mw.delivery.close(30)
    assert leaf.batches == [1, 2]


def test_a_call_that_may_look_up_is_built_at_once_while_gathering(make_filter, wsgi):
    """With the Glance format and record look-ups, a deactivate's image.update
    needs the image record: such a call wakes the gathering sender, which builds
    it (and looks the record up) at once, not when the gathering ends (600 s)."""
    mw, leaf, pacer, built, sent_first = gathering_after_one_call(
        make_filter, wsgi, formats='cadf,glance', record_lookups='true',
        app=deactivate_or_show_app)
    sender = mw.delivery._sender
    call(mw, wsgi, IMAGES[2], 'req-b')
    wait_until(lambda: built == [2, 3], 60, 'req-b built while gathering')
    assert sender.gathering
    assert len(leaf.batches) == sent_first      # still gathering: nothing published
    mw.delivery.close(30)
    cadf = [e for e in leaf.sent if e['event_type'].startswith('audit.')]
    glance = [e for e in leaf.sent if e['event_type'] == 'image.update']
    assert request_ids(cadf) == ['req-first', 'req-a', 'req-b']
    assert [(e['payload']['id'], e['payload']['status'], e['payload']['size'])
            for e in glance] == [(i, 'deactivated', 42) for i in IMAGES[:3]]


def test_gathering_takes_at_most_a_batch(make_filter, wsgi):
    """What is gathered is at most BATCH records; the rest goes in later batches,
    in order."""
    mw, leaf, pacer, built, _ = gathering_filter(make_filter, wsgi, gather=600.0)
    sender = mw.delivery._sender
    call(mw, wsgi, IMAGES[1], 'req-000')
    wait_until(lambda: sender.gathering, 60, 'the sender gathering')
    ids = ['req-%03d' % i for i in range(sender_mod.BATCH + 50)]
    for i, rid in enumerate(ids[1:], 1):
        call(mw, wsgi, IMAGES[i % 5], rid)
    mw.delivery.close(30)
    assert leaf.batches[:2] == [1, sender_mod.BATCH]
    assert sum(leaf.batches) == 1 + len(ids)
    assert request_ids(leaf.sent) == ['req-first'] + ids


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.01)


def test_a_bug_is_not_an_outage_the_envelope_is_dead_lettered_and_the_rest_flows(
        make_filter, wsgi, caplog, tmp_path):
    bad_image = IMAGES[3]
    leaf = FakeLeaf(bad=lambda e: e['payload']['target']['id'] == bad_image)
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path), dead_letter_after='3')
    with caplog.at_level(logging.ERROR, logger='audit_notifier'):
        ids = ['req-%03d' % i for i in range(10)]
        for i, rid in enumerate(ids):
            call(mw, wsgi, IMAGES[i % 5], rid)
        assert mw.delivery.flush(30)
    assert request_ids(leaf.sent) == [r for i, r in enumerate(ids) if i % 5 != 3]
    counters = mw.delivery.counters
    assert (counters['sent'], counters['dead_letters']) == (8, 2)
    # every failed publish counts: 3 attempts of each bad envelope alone, plus the
    # batch (or two) it first failed in
    assert counters['send_errors'] - 3 * 2 in (1, 2), counters
    assert not any('unreachable' in r.getMessage() for r in caplog.records)
    assert any(r.exc_info and r.exc_info[0] is TypeError for r in caplog.records)
    (path,) = deadletter.files(str(tmp_path))
    entries, bad = deadletter.read(path)
    assert bad == 0
    assert [(e['stage'], e['envelope']['payload']['initiator']['request_id'])
            for e in entries] == [('send', 'req-003'), ('send', 'req-008')]
    assert entries[0]['error'].startswith('TypeError: cannot serialise')


def test_a_record_the_builder_cannot_use_is_dead_lettered(make_filter, wsgi, tmp_path):
    leaf = FakeLeaf()
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path))
    call(mw, wsgi, IMAGES[0], 'req-a')
    for broken in ({'t': 'f', 'c': 900}, {'t': 'x', 'c': 901}, {'c': 902},
                   {'t': 'f', 'c': 903, 'k': ['GET', '/no/such/route'], 'a': 1.0}):
        mw.delivery._journal.append(broken)
    call(mw, wsgi, IMAGES[1], 'req-b')
    assert mw.delivery.flush(30)
    assert request_ids(leaf.sent) == ['req-a', 'req-b']
    assert mw.delivery.counters['build_errors'] == 4
    (path,) = deadletter.files(str(tmp_path))
    entries, _ = deadletter.read(path)
    assert [e['record']['c'] for e in entries] == [900, 901, 902, 903]
    assert 'not in the route map' in entries[3]['error']


def leave_a_journal(make_filter, wsgi, directory, ids, extra_records=()):
    """A filter that journals ``ids`` (and ``extra_records``), never reaches the bus
    and is closed at once: its journal stays behind, as a dead process's would."""
    down = FakeLeaf(down=10 ** 9)
    mw = fake_filter(make_filter, down, journal_dir=str(directory))
    make_filter.forget(mw)
    for i, rid in enumerate(ids):
        call(mw, wsgi, IMAGES[i % 5], rid)
    for rec in extra_records:
        mw.delivery._journal.append(rec)
    mw.delivery.close(0.2)
    assert down.sent == []
    assert any(p.endswith('.journal') for p in os.listdir(directory))


def test_a_dead_processs_journal_is_sent_first_and_off_the_request_path(
        make_filter, wsgi, tmp_path):
    leave_a_journal(make_filter, wsgi, tmp_path, ['old-%d' % i for i in range(20)],
                    extra_records=[{}, {'t': 'f', 'c': 77}, {'fmt': 'cadf'},
                                   {'t': 'b', 'c': 78, 'n': 'not a list of notes'}])
    gate = threading.Event()
    leaf = FakeLeaf(gate=gate)
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path))
    # The sender is stuck on the left-over journal: API calls are answered anyway.
    for i in range(3):
        call(mw, wsgi, IMAGES[i], 'new-%d' % i)
    assert leaf.sent == []
    gate.set()
    assert mw.delivery.flush(30)
    assert request_ids(leaf.sent) == ['old-%d' % i for i in range(20)] + \
        ['new-%d' % i for i in range(3)]
    assert mw.delivery.counters['build_errors'] == 4
    assert mw.delivery.counters['dead_letters'] == 4
    own = mw.delivery._journal.owner
    leftovers = [p for p in os.listdir(tmp_path) if not p.startswith(own)]
    assert [p for p in leftovers if not p.endswith(deadletter.SUFFIX)] == []


def test_message_ids_are_the_same_when_a_journal_is_sent_twice(make_filter, wsgi, tmp_path,
                                                               captured):
    leave_a_journal(make_filter, wsgi, tmp_path, ['r-%d' % i for i in range(5)])
    copy_dir = tmp_path / 'copy'
    copy_dir.mkdir()
    for name in os.listdir(tmp_path):
        if name.endswith(('.journal', '.ckpt')):
            (copy_dir / name).write_bytes((tmp_path / name).read_bytes())
    first, second = FakeLeaf(), FakeLeaf()
    for directory, leaf in ((tmp_path, first), (copy_dir, second)):
        mw = fake_filter(make_filter, leaf, journal_dir=str(directory))
        call(mw, wsgi, IMAGES[0], 'trigger')
        assert mw.delivery.flush(30)
    ids = [e['message_id'] for e in first.sent[:5]]
    assert len(set(ids)) == 5
    assert [e['message_id'] for e in second.sent[:5]] == ids
    assert [e['payload']['id'] for e in second.sent[:5]] == \
        [e['payload']['id'] for e in first.sent[:5]]


@pytest.mark.parametrize('name', ['', 'host-12-1733300000000000/17/f/0',
                                  'host-12-1/17/f/0/event', 'h\xe9te/1/s/3' * 40])
def test_ids_are_the_uuid5_of_earlier_releases(name):
    """builder.name_id makes the uuid5 string without a UUID object: a journal
    written before the change is sent with the same ids (duplicates recognised)."""
    made = builder_mod.name_id(name)
    assert made == str(uuid.uuid5(builder_mod._ID_NAMESPACE, name))
    assert uuid.UUID(made).version == 5


def test_replay_twice_sends_nothing_twice(make_filter, wsgi, tmp_path, captured):
    leave_a_journal(make_filter, wsgi, tmp_path, ['r-%d' % i for i in range(4)],
                    extra_records=[{}, {'t': 'f', 'c': 'x'}, {'t': 's', 'c': 5, 'k': 7}])
    leave_a_journal(make_filter, wsgi, tmp_path, ['r-%d' % i for i in range(4, 7)])
    pipeline = Pipeline({'driver': 'test', 'formats': 'cadf', 'journal_dir': str(tmp_path),
                         'process_hooks': 'false', 'oslo_config_config': cfg.ConfigOpts()})
    first = tools.replay(pipeline, timeout=5)
    # the malformed records were dead-lettered, the rest went, oldest journal first
    assert (first.sent, first.journals, first.left) == (7, 2, 0)
    assert deadletter.count(str(tmp_path)) == 3
    assert request_ids(captured.all()) == ['r-%d' % i for i in range(7)]
    second = tools.replay(pipeline, timeout=5)
    assert (second.sent, second.journals, second.left) == (0, 0, 0)
    assert len(captured.all()) == 7
    assert [p for p in os.listdir(tmp_path) if p.endswith(('.journal', '.ckpt'))] == []


def test_dead_letters_are_replayed_after_a_fix_once(make_filter, wsgi, tmp_path, captured):
    leaf = FakeLeaf(bad=lambda e: e['payload']['initiator']['request_id'] == 'req-1')
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path))
    for i in range(3):
        call(mw, wsgi, IMAGES[i], 'req-%d' % i)
    mw.delivery._journal.append({'t': 'f', 'c': 555, 'k': ['GET', '/nowhere'], 'a': 1.0})
    assert mw.delivery.flush(30)
    assert deadletter.count(str(tmp_path)) == 2
    pipeline = Pipeline({'driver': 'test', 'formats': 'cadf', 'journal_dir': str(tmp_path),
                         'process_hooks': 'false', 'oslo_config_config': cfg.ConfigOpts()})
    result = tools.replay_dead_letters(pipeline)
    # the envelope goes; the record from an unknown route fails again and is kept
    assert (result.sent, result.left) == (1, 1)
    assert request_ids(captured.all()) == ['req-1']
    again = tools.replay_dead_letters(pipeline)
    assert (again.sent, again.left) == (0, 1)
    assert len(captured.all()) == 1


def test_filters_that_are_dropped_stop_their_sender_threads(make_filter, wsgi, captured):
    def senders():
        return [t for t in threading.enumerate() if t.name == 'audit-notifier-sender']
    before = len(senders())
    for i in range(25):
        mw = fake_filter(make_filter, FakeLeaf())
        call(mw, wsgi, IMAGES[0], 'req-%d' % i)
        assert mw.delivery.flush(10)
        captured.filters.remove(mw)
        del mw
    gc.collect()
    deadline = time.monotonic() + 60
    while len(senders()) > before and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert len(senders()) == before


CHILD = textwrap.dedent('''
    import sys, threading, webob
    from oslo_config import cfg
    from audit_notifier.middleware import filter_factory

    def app(environ, start_response):
        if environ['PATH_INFO'].endswith('/file'):
            start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                      ('Content-Length', str(1024 * 1024))])
            def chunks():
                for _ in range(1024):
                    yield b'x' * 1024
            return chunks()
        start_response('204 No Content', [])
        return [b'']

    mw = filter_factory({}, oslo_config_config=cfg.ConfigOpts(), formats='cadf',
                        driver='messagingv2', transport_url='rabbit://guest:guest@127.0.0.1:1/',
                        journal_dir=sys.argv[1], stats_interval='0')(app)
    for i in range(200):
        req = webob.Request.blank('/v2/images/%s/actions/deactivate' % sys.argv[2],
                                  method='POST', headers={'X-User-Id': 'u', 'X-Roles': 'r'})
        req.environ['openstack.request_id'] = 'req-%03d' % i
        assert req.get_response(mw).status_int == 204
    # a download cut short by the kill: its first chunk has left the filter
    environ = webob.Request.blank('/v2/images/%s/file' % sys.argv[2]).environ
    environ['openstack.request_id'] = 'req-download'
    body = iter(mw(environ, lambda s, h, e=None: None))
    next(body)
    print('ready', flush=True)
    threading.Event().wait()
''')


def test_sigkill_loses_no_answered_call_and_reports_the_cut_one(make_filter, wsgi, tmp_path):
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(tmp_path), IMAGES[0]],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=ROOT)
    try:
        line = child.stdout.readline()
        assert line.strip() == 'ready', child.stderr.read()[-3000:]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    leaf = FakeLeaf()
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path))
    call(mw, wsgi, IMAGES[1], 'after-restart')
    assert mw.delivery.flush(60)
    got = leaf.sent
    assert request_ids(got) == ['req-%03d' % i for i in range(200)] + \
        ['req-download', 'after-restart']
    download = got[200]
    assert download['event_type'] == 'audit.image.download'
    assert (download['priority'], download['payload']['outcome'],
            download['payload']['reason']) == \
        ('ERROR', 'failure', {'reasonType': 'exception', 'reasonCode': 'incomplete'})


def test_process_hooks_can_be_switched_off():
    script = textwrap.dedent('''
        import json, logging, signal, sys, tempfile, webob
        from oslo_config import cfg
        from audit_notifier.middleware import filter_factory
        def app(environ, start_response):
            start_response('204 No Content', [])
            return [b'']
        mw = filter_factory({}, oslo_config_config=cfg.ConfigOpts(), driver='noop',
                            journal_dir=tempfile.mkdtemp(), process_hooks=sys.argv[1])(app)
        webob.Request.blank('/v2/images/x/actions/deactivate', method='POST').get_response(mw)
        print(json.dumps({
            'sigterm_default': signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            'kombu_filters': len(logging.getLogger('kombu').filters)}))
        mw.delivery.close()
    ''')
    out = {}
    for value in ('true', 'false'):
        proc = subprocess.run([sys.executable, '-c', script, value], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[value] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['true'] == {'sigterm_default': False, 'kombu_filters': 1}
    assert out['false'] == {'sigterm_default': True, 'kombu_filters': 0}


def test_responded_record_is_written_before_the_first_byte_leaves(make_filter, wsgi):
    """A streamed body: the call is in the journal when its first chunk is handed on."""
    leaf = FakeLeaf()

    def download_app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('Content-Length', '6'), ('X-Auth-Token', 'secret')])
        return iter([b'abc', b'def'])
    mw = make_filter(download_app, formats='cadf')
    mw.delivery.leaf_factory = lambda: {'cadf': leaf, 'glance': leaf}
    body = iter(mw(wsgi.environ('GET', '/v2/images/%s/file' % IMAGES[0],
                                headers=dict(wsgi.IDENTITY)), wsgi.StartResponse()))
    assert next(body) == b'abc'
    journal = mw.delivery._journal
    path = [s.path for s in journal._segments][0]
    with open(path, 'rb') as f:
        records = [r for _, _, r in record_mod.decode_frames(f.read())]
    assert [r['t'] for r in records] == ['r']
    assert records[0]['st'] == '200 OK'
    assert records[0]['h'] == [['Content-Type', 'application/octet-stream'],
                               ['Content-Length', '6']]
    assert list(body) == [b'def']
    assert mw.delivery.flush(10)
    assert [e['payload']['outcome'] for e in leaf.sent] == ['success']


def test_journal_dir_replaced_by_a_file_after_start_delivery_goes_on(
        make_filter, wsgi, tmp_path, caplog):
    directory = tmp_path / 'journal'
    leaf = FakeLeaf()
    # 256 KiB on disk at most: segments of 64 KiB, so a new one is needed soon
    mw = fake_filter(make_filter, leaf, journal_dir=str(directory),
                     journal_max_bytes=str(256 * 1024))
    call(mw, wsgi, IMAGES[0], 'before')
    assert mw.delivery.flush(30)
    for name in os.listdir(directory):
        os.unlink(directory / name)
    directory.rmdir()
    directory.write_text('an operator mistake')
    with caplog.at_level(logging.ERROR, logger='audit_notifier'):
        ids = ['after-%03d' % i for i in range(300)]    # past one 64 KiB segment
        for i, rid in enumerate(ids):
            call(mw, wsgi, IMAGES[i % 5], rid)
        assert mw.delivery.flush(30)
    assert request_ids(leaf.sent) == ['before'] + ids
    counters = mw.delivery.counters
    assert counters['journal_errors'] >= 1 and counters['dropped'] == 0
    assert any('cannot create a journal segment' in r.getMessage() and
               'kept in memory' in r.getMessage() for r in caplog.records)


def test_a_failed_finish_of_an_upload_is_dead_lettered_whole_and_replayed(
        make_filter, wsgi, tmp_path, captured, monkeypatch):
    """The dead letter of a call that failed to build at its end holds the whole
    call (its first record too): replay builds it again on its own."""
    leaf = FakeLeaf()

    def upload_app(environ, start_response):
        environ['wsgi.input'].read()
        start_response('204 No Content', [])
        return [b'']
    mw = make_filter(upload_app, formats='cadf', journal_dir=str(tmp_path))
    mw.delivery.leaf_factory = lambda: {'cadf': leaf, 'glance': leaf}
    emitter = mw.delivery.emitter
    real = emitter.notifications

    def broken(phase, exchange):
        if phase == 'finished':
            raise KeyError('a builder bug')
        return real(phase, exchange)
    monkeypatch.setattr(emitter, 'notifications', broken)
    environ = wsgi.environ('PUT', '/v2/images/%s/file' % IMAGES[0], body=b'x' * 1000,
                           headers=dict(wsgi.IDENTITY))
    environ['openstack.request_id'] = 'req-upload'
    wsgi.run(mw, environ)
    assert mw.delivery.flush(30)
    assert leaf.sent == []
    (path,) = deadletter.files(str(tmp_path))
    (entry,) = deadletter.read(path)[0]
    assert entry['record']['t'] == 'f' and entry['record']['k'][1] == '/v2/images/{image_id}/file'
    monkeypatch.setattr(emitter, 'notifications', real)
    pipeline = Pipeline({'driver': 'test', 'formats': 'cadf', 'journal_dir': str(tmp_path),
                         'process_hooks': 'false', 'oslo_config_config': cfg.ConfigOpts()})
    result = tools.replay_dead_letters(pipeline)
    assert (result.sent, result.left) == (1, 0)
    (event,) = captured.all()
    assert event['payload']['initiator']['request_id'] == 'req-upload'
    assert event['payload']['measurements'][0]['result'] == 1000


def test_spool_files_of_the_earlier_release_are_sent_once(make_filter, wsgi, tmp_path,
                                                          caplog):
    """journal_dir reads the old spool_dir: its *.spool files (JSON lines of built
    envelopes) are sent as they were written, in order, and removed."""
    owner = 'oldhost-4242-1764600000000000'
    envelopes = [{'message_id': 'old-%d' % i, 'publisher_id': 'image.old',
                  'event_type': 'audit.image.read', 'priority': 'INFO',
                  'payload': {'initiator': {'request_id': 'spooled-%d' % i}},
                  'timestamp': '2026-11-30 10:00:00.000000'} for i in range(4)]
    lines = [json.dumps({'fmt': 'cadf', 'envelope': e}) for e in envelopes]
    lines.insert(2, '{"fmt": "cadf"}')                  # no envelope: corrupt
    (tmp_path / (owner + '-s0-00000001.spool')).write_text('\n'.join(lines[:3]) + '\n')
    (tmp_path / (owner + '-s0-00000002.spool')).write_text(
        '\n'.join(lines[3:]) + '\n{"torn')
    (tmp_path / (owner + '.lock')).write_text('')
    leaf = FakeLeaf()
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path))
    with caplog.at_level(logging.ERROR, logger='audit_notifier'):
        call(mw, wsgi, IMAGES[0], 'new')
        assert mw.delivery.flush(30)
    assert [e['message_id'] for e in leaf.sent[:4]] == ['old-%d' % i for i in range(4)]
    assert request_ids(leaf.sent) == ['spooled-%d' % i for i in range(4)] + ['new']
    assert mw.delivery.counters['corrupt_records'] == 1
    assert 'corrupt record in' in caplog.text and 'line 3' in caplog.text
    assert not [p for p in os.listdir(tmp_path) if p.startswith(owner)]


def test_at_exit_what_is_journaled_is_sent_and_the_journal_removed(tmp_path):
    script = textwrap.dedent('''
        import logging, sys, webob
        from oslo_config import cfg
        from audit_notifier.middleware import filter_factory
        logging.basicConfig(level=logging.INFO, stream=sys.stderr)
        def app(environ, start_response):
            start_response('204 No Content', [])
            return [b'']
        mw = filter_factory({}, oslo_config_config=cfg.ConfigOpts(), driver='log',
                            formats='cadf', journal_dir=sys.argv[1], stats_interval='0')(app)
        for i in range(50):
            req = webob.Request.blank('/v2/images/x/actions/deactivate', method='POST')
            req.environ['openstack.request_id'] = 'exit-%02d' % i
            req.get_response(mw)
        # no flush, no close: the interpreter exits now
    ''')
    proc = subprocess.run([sys.executable, '-c', script, str(tmp_path)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    sent = [line for line in proc.stderr.splitlines()
            if line.startswith('INFO:oslo.messaging.notification.audit.image')]
    assert ['exit-%02d' % i in line for i, line in enumerate(sent)] == [True] * 50
    assert os.listdir(tmp_path) == []
