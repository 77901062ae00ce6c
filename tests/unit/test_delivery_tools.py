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

"""audit-notifier stats and replay as an operator runs them (subprocesses on real
files, the log driver for a bus), and the counters' rate-limited log lines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

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


def _three_calls_one_dead_letter(make_filter, wsgi, tmp_path):
    """A filter journaling in tmp_path after three calls, the second dead-lettered,
    with its stats file written."""
    leaf = FakeLeaf(bad=lambda e: e['payload']['initiator']['request_id'] == 'req-1')
    mw = fake_filter(make_filter, leaf, journal_dir=str(tmp_path))
    for i in range(3):
        call(mw, wsgi, IMAGES[i], 'req-%d' % i)
    assert mw.delivery.flush(30)
    mw.delivery._sender.report()               # what the sender writes every 5 s
    return mw


def test_stats_shows_counters_and_dead_letters(make_filter, wsgi, tmp_path):
    mw = _three_calls_one_dead_letter(make_filter, wsgi, tmp_path)
    assert mw.delivery.counters['dead_letters'] == 1     # what the file must say
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


def test_stats_prometheus_shows_a_running_filters_counters(make_filter, wsgi, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families
    mw = _three_calls_one_dead_letter(make_filter, wsgi, tmp_path)
    out = cli('stats', '--journal-dir', str(tmp_path), '--prometheus')
    assert (out.returncode, out.stderr) == (0, '')
    values = {(s.name, s.labels.get('process')): s.value
              for f in text_string_to_metric_families(out.stdout) for s in f.samples}
    owner = mw.delivery._journal.owner
    assert {name: values[(name, owner)] for name in (
        'audit_notifier_journaled_total', 'audit_notifier_sent_total',
        'audit_notifier_dead_letters_total', 'audit_notifier_unsent',
        'audit_notifier_bus_down', 'audit_notifier_alive')} == {
        'audit_notifier_journaled_total': 3, 'audit_notifier_sent_total': 2,
        'audit_notifier_dead_letters_total': 1, 'audit_notifier_unsent': 0,
        'audit_notifier_bus_down': 0, 'audit_notifier_alive': 1}
    assert values[('audit_notifier_dead_letters_waiting', None)] == 1


@pytest.mark.parametrize('extra, exchange', [
    ('', 'glance'),                                   # what Glance itself defaults to
    ('route_map = magnum\n', 'magnum'),
    ('[DEFAULT]\ncontrol_exchange = images\n', 'images'),     # set in the file: honoured
])
def test_replay_publishes_to_the_services_exchange(tmp_path, extra, exchange):
    from audit_notifier import cli
    conf = tmp_path / 'service.conf'
    conf.write_text('[audit_notifier]\ndriver = log\njournal_dir = %s\n%s'
                    % (tmp_path / 'journal', extra))
    args = cli.build_parser().parse_args(['replay', '--config-file', str(conf)])
    pipeline = cli._replay_pipeline(args)
    assert pipeline.conf.control_exchange == exchange
