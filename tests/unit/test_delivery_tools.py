"""audit-notifier stats and replay as an operator runs them (subprocesses on real
files, the log driver for a bus), and the counters' rate-limited log lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

from audit_notifier.delivery import deadletter
from audit_notifier.delivery import stats as stats_mod
from test_sender import IMAGES, FakeLeaf, call, fake_filter, leave_a_journal

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'audit_notifier.cli', *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_replay_sends_a_dead_processs_journal_once(make_filter, wsgi, tmp_path):
    leave_a_journal(make_filter, wsgi, tmp_path, ['r-%d' % i for i in range(6)])
    first = cli('replay', '--journal-dir', str(tmp_path), '--driver', 'log')
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip() == ('sent 6 notification(s) from 1 journal(s) of earlier '
                                    'processes in %s' % tmp_path)
    # the log driver wrote each notification: the request ids, in order
    sent = [line for line in first.stderr.splitlines() if '"event_type"' in line]
    assert [json.loads(line[line.index('{'):])['payload']['initiator']['request_id']
            for line in sent] == ['r-%d' % i for i in range(6)]
    second = cli('replay', '--journal-dir', str(tmp_path), '--driver', 'log')
    assert second.returncode == 0
    assert second.stdout.startswith('sent 0 notification(s) from 0 journal(s)')


def test_stats_shows_counters_and_dead_letters(make_filter, wsgi, tmp_path):
    leaf = FakeLeaf(bad=lambda e: e['payload']['initiator']['request_id'] == 'req-1')
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path))
    for i in range(3):
        call(mw, wsgi, IMAGES[i], 'req-%d' % i)
    assert mw.delivery.flush(30)
    mw.delivery._sender.report()               # what the sender writes every 5 s
    out = cli('stats', '--journal-dir', str(tmp_path), '--json')
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    (process,) = [r for r in rows if 'process' in r]
    assert (process['alive'], process['journaled'], process['sent'], process['dead_letters'],
            process['unsent'], process['bus_down']) == (True, 3, 2, 1, 0, False)
    assert rows[-1] == {'dead_letters_waiting': 1}
    text = cli('stats', '--journal-dir', str(tmp_path))
    assert 'dead letters waiting in %s: 1 (audit-notifier replay --dead-letters' % tmp_path \
        in text.stdout
    assert deadletter.count(str(tmp_path)) == 1


def test_each_condition_has_its_own_rate_limit(caplog):
    stats = stats_mod.Stats()
    with caplog.at_level(logging.ERROR, logger='audit_notifier'):
        for _ in range(3):
            stats.limited(logging.ERROR, 'overflow-drop_oldest', 'journal full %d', 1)
            stats.limited(logging.ERROR, 'journal-disk', 'disk problem')
    assert [r.getMessage() for r in caplog.records] == ['journal full 1', 'disk problem']
    stats._limited._state['journal-disk'][0] -= stats_mod.LIMIT_SECONDS
    with caplog.at_level(logging.ERROR, logger='audit_notifier'):
        stats.limited(logging.ERROR, 'journal-disk', 'disk problem')
    assert caplog.records[-1].getMessage() == 'disk problem (and 2 more in the last 60 s)'
