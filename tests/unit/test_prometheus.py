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

"""``audit-notifier stats --prometheus``: the exact exposition text for a journal
directory with stats files, read back by prometheus_client's parser (what
Prometheus' own parser accepts), and the atomic ``--output`` write node_exporter's
textfile collector needs."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import prometheus, tools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIVE = 'api1-4242-1764700000000'
GONE = 'api1-4100-1764600000000'
NOW = 1764700060.5

LIVE_STATS = {'journaled': 120, 'built': 236, 'sent': 230, 'dropped': 0, 'dead_letters': 2,
              'send_errors': 5, 'build_errors': 0, 'journal_errors': 0,
              'corrupt_records': 0, 'filter_errors': 1, 'outages': 1, 'unsent': 4,
              'open_calls': 1, 'journal_bytes': 7, 'oldest_unsent_age': 0.25,
              'arrival_rate': 151.5, 'send_rate_limit': 2500.0, 'paced_seconds': 3.25,
              'bus_down': False, 'pid': 4242, 'time': 1764700058.0}
# an earlier release's file: no filter_errors; the process died with the bus down
GONE_STATS = {'journaled': 40, 'built': 0, 'sent': 0, 'dropped': 0, 'dead_letters': 0,
              'send_errors': 12, 'build_errors': 0, 'journal_errors': 0,
              'corrupt_records': 0, 'outages': 1, 'unsent': 39, 'open_calls': 0,
              'journal_bytes': 7, 'oldest_unsent_age': 11.1, 'bus_down': True,
              'pid': 4100, 'time': 1764700000.5}

EXPECTED = '''\
# HELP audit_notifier_journaled_total Records accepted into the journal (API call phases).
# TYPE audit_notifier_journaled_total counter
audit_notifier_journaled_total{journal_dir="DIR",process="api1-4100-1764600000000"} 40
audit_notifier_journaled_total{journal_dir="DIR",process="api1-4242-1764700000000"} 120
# HELP audit_notifier_built_total Notifications built and handed to the bus.
# TYPE audit_notifier_built_total counter
audit_notifier_built_total{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_built_total{journal_dir="DIR",process="api1-4242-1764700000000"} 236
# HELP audit_notifier_sent_total Notifications the bus accepted.
# TYPE audit_notifier_sent_total counter
audit_notifier_sent_total{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_sent_total{journal_dir="DIR",process="api1-4242-1764700000000"} 230
# HELP audit_notifier_dropped_total Records lost to an overflow policy, or unsent at \
shutdown in memory mode.
# TYPE audit_notifier_dropped_total counter
audit_notifier_dropped_total{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_dropped_total{journal_dir="DIR",process="api1-4242-1764700000000"} 0
# HELP audit_notifier_dead_letters_total Records and notifications moved to the dead letters.
# TYPE audit_notifier_dead_letters_total counter
audit_notifier_dead_letters_total{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_dead_letters_total{journal_dir="DIR",process="api1-4242-1764700000000"} 2
# HELP audit_notifier_send_errors_total Failed publishes: outages (one per attempt) and \
errors.
# TYPE audit_notifier_send_errors_total counter
audit_notifier_send_errors_total{journal_dir="DIR",process="api1-4100-1764600000000"} 12
audit_notifier_send_errors_total{journal_dir="DIR",process="api1-4242-1764700000000"} 5
# HELP audit_notifier_build_errors_total Records that could not be built.
# TYPE audit_notifier_build_errors_total counter
audit_notifier_build_errors_total{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_build_errors_total{journal_dir="DIR",process="api1-4242-1764700000000"} 0
# HELP audit_notifier_journal_errors_total Journal disk problems.
# TYPE audit_notifier_journal_errors_total counter
audit_notifier_journal_errors_total{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_journal_errors_total{journal_dir="DIR",process="api1-4242-1764700000000"} 0
# HELP audit_notifier_corrupt_records_total Corrupt journal frames skipped.
# TYPE audit_notifier_corrupt_records_total counter
audit_notifier_corrupt_records_total{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_corrupt_records_total{journal_dir="DIR",process="api1-4242-1764700000000"} 0
# HELP audit_notifier_filter_errors_total API calls served but not audited: the filter \
failed to classify or journal them.
# TYPE audit_notifier_filter_errors_total counter
audit_notifier_filter_errors_total{journal_dir="DIR",process="api1-4242-1764700000000"} 1
# HELP audit_notifier_outages_total Message bus outages seen.
# TYPE audit_notifier_outages_total counter
audit_notifier_outages_total{journal_dir="DIR",process="api1-4100-1764600000000"} 1
audit_notifier_outages_total{journal_dir="DIR",process="api1-4242-1764700000000"} 1
# HELP audit_notifier_unsent Records accepted and not sent yet (in the journal or in the \
sender's batch).
# TYPE audit_notifier_unsent gauge
audit_notifier_unsent{journal_dir="DIR",process="api1-4100-1764600000000"} 39
audit_notifier_unsent{journal_dir="DIR",process="api1-4242-1764700000000"} 4
# HELP audit_notifier_open_calls API calls begun and not finished.
# TYPE audit_notifier_open_calls gauge
audit_notifier_open_calls{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_open_calls{journal_dir="DIR",process="api1-4242-1764700000000"} 1
# HELP audit_notifier_oldest_unsent_age_seconds Age of the oldest record the sender holds \
and has not sent (0: none).
# TYPE audit_notifier_oldest_unsent_age_seconds gauge
audit_notifier_oldest_unsent_age_seconds{journal_dir="DIR",process="api1-4100-1764600000000"} 71.1
audit_notifier_oldest_unsent_age_seconds{journal_dir="DIR",process="api1-4242-1764700000000"} 2.75
# HELP audit_notifier_bus_down 1 while the message bus is unreachable.
# TYPE audit_notifier_bus_down gauge
audit_notifier_bus_down{journal_dir="DIR",process="api1-4100-1764600000000"} 1
audit_notifier_bus_down{journal_dir="DIR",process="api1-4242-1764700000000"} 0
# HELP audit_notifier_alive 1 while the process runs; 0: it is gone and left its stats file.
# TYPE audit_notifier_alive gauge
audit_notifier_alive{journal_dir="DIR",process="api1-4100-1764600000000"} 0
audit_notifier_alive{journal_dir="DIR",process="api1-4242-1764700000000"} 1
# HELP audit_notifier_journal_bytes Bytes of journal segments on disk.
# TYPE audit_notifier_journal_bytes gauge
audit_notifier_journal_bytes{journal_dir="DIR",process="api1-4100-1764600000000"} 100
audit_notifier_journal_bytes{journal_dir="DIR",process="api1-4242-1764700000000"} 4096
# HELP audit_notifier_arrival_rate_per_second Journal records arriving per second (the \
request load the sender yields to).
# TYPE audit_notifier_arrival_rate_per_second gauge
audit_notifier_arrival_rate_per_second{journal_dir="DIR",\
process="api1-4242-1764700000000"} 151.5
# HELP audit_notifier_send_rate_limit_per_second Rate the sender paces its work to, records \
per second (0: no limit).
# TYPE audit_notifier_send_rate_limit_per_second gauge
audit_notifier_send_rate_limit_per_second{journal_dir="DIR",\
process="api1-4242-1764700000000"} 2500.0
# HELP audit_notifier_paced_seconds_total Seconds the sender rested between slices of work \
or let go of the GIL, yielding to requests.
# TYPE audit_notifier_paced_seconds_total counter
audit_notifier_paced_seconds_total{journal_dir="DIR",process="api1-4242-1764700000000"} 3.25
# HELP audit_notifier_stats_updated_timestamp_seconds When the process last wrote its \
stats (every 5 s while it runs).
# TYPE audit_notifier_stats_updated_timestamp_seconds gauge
audit_notifier_stats_updated_timestamp_seconds{journal_dir="DIR",\
process="api1-4100-1764600000000"} 1764700000.5
audit_notifier_stats_updated_timestamp_seconds{journal_dir="DIR",\
process="api1-4242-1764700000000"} 1764700058.0
# HELP audit_notifier_dead_letters_waiting Dead letters in the journal directory, waiting \
for "audit-notifier replay --dead-letters".
# TYPE audit_notifier_dead_letters_waiting gauge
audit_notifier_dead_letters_waiting{journal_dir="DIR"} 2
'''


@pytest.fixture
def journal_dir(tmp_path):
    """Two processes' stats files: one alive (its lock held), one gone, with
    journal segments and two dead letters."""
    directory = tmp_path / 'journal'
    directory.mkdir()
    for owner, snap, size in ((LIVE, LIVE_STATS, 4096), (GONE, GONE_STATS, 100)):
        (directory / (owner + '.stats.json')).write_text(json.dumps(snap))
        (directory / (owner + '.1.journal')).write_bytes(b'x' * size)
    (directory / (LIVE + '.dead.jsonl')).write_text('{"stage": "send"}\n{"stage": "build"}\n')
    lock = journal_mod.try_lock(str(directory / (LIVE + '.lock')))
    assert lock is not None
    yield directory
    os.close(lock)


def _render(directory, now=NOW) -> str:
    rows = tools.read_stats(str(directory))
    return prometheus.render(rows, 2, str(directory), now)


def test_exact_exposition_text(journal_dir):
    assert _render(journal_dir) == EXPECTED.replace('DIR', str(journal_dir))


def test_prometheus_parser_reads_it_back(journal_dir):
    families = {f.name: f for f in text_string_to_metric_families(_render(journal_dir))}
    counters = {name for name, f in families.items() if f.type == 'counter'}
    assert counters == {'audit_notifier_' + c for c in (
        'journaled', 'built', 'sent', 'dropped', 'dead_letters', 'send_errors',
        'build_errors', 'journal_errors', 'corrupt_records', 'filter_errors', 'outages',
        'paced_seconds')}
    sent = {s.labels['process']: s.value for s in families['audit_notifier_sent'].samples}
    assert sent == {LIVE: 230.0, GONE: 0.0}
    assert [s.name for s in families['audit_notifier_sent'].samples] == [
        'audit_notifier_sent_total'] * 2
    assert {s.labels['journal_dir'] for f in families.values() for s in f.samples} == {
        str(journal_dir)}
    age = families['audit_notifier_oldest_unsent_age_seconds']
    assert {s.labels['process']: s.value for s in age.samples} == {LIVE: 2.75, GONE: 71.1}


def test_label_values_are_escaped(tmp_path):
    odd = tmp_path / 'a "quoted" \\ dir'
    odd.mkdir()
    (odd / (GONE + '.stats.json')).write_text(json.dumps(GONE_STATS))
    text = prometheus.render(tools.read_stats(str(odd)), 0, str(odd), NOW)
    assert '{journal_dir="%s"}' % str(odd).replace('\\', '\\\\').replace('"', '\\"') in text
    families = list(text_string_to_metric_families(text))
    assert {s.labels['journal_dir'] for f in families for s in f.samples} == {str(odd)}


def test_an_empty_directory_still_says_how_many_dead_letters_wait(tmp_path):
    assert prometheus.render([], 0, '/j', NOW) == (
        '# HELP audit_notifier_dead_letters_waiting Dead letters in the journal directory, '
        'waiting for "audit-notifier replay --dead-letters".\n'
        '# TYPE audit_notifier_dead_letters_waiting gauge\n'
        'audit_notifier_dead_letters_waiting{journal_dir="/j"} 0\n')


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'audit_notifier.cli', 'stats', *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_cli_writes_the_textfile_atomically(journal_dir, tmp_path):
    textfiles = tmp_path / 'textfile_collector'
    textfiles.mkdir()
    target = textfiles / 'audit_notifier.prom'
    target.write_text('stale\n')
    done = _cli('--journal-dir', str(journal_dir), '--prometheus', '--output', str(target))
    assert (done.returncode, done.stdout, done.stderr) == (0, '', '')
    assert os.listdir(textfiles) == ['audit_notifier.prom']       # no temporary left
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644          # node_exporter reads it
    expected = EXPECTED.replace('DIR', str(journal_dir))
    # a held backlog keeps ageing after the report: ages are brought forward to now
    age_line = re.compile(r'^(audit_notifier_oldest_unsent_age_seconds\{.*process="(.*)"\}) '
                          r'(.*)$', re.M)
    written = target.read_text()
    ages = {m.group(2): float(m.group(3)) for m in age_line.finditer(written)}
    assert ages.keys() == {LIVE, GONE}
    assert ages[LIVE] > 2.75 and ages[GONE] > 71.1
    assert age_line.sub(r'\1 AGE', written) == age_line.sub(r'\1 AGE', expected)
    printed = _cli('--journal-dir', str(journal_dir), '--prometheus')
    assert printed.returncode == 0
    assert age_line.sub(r'\1 AGE', printed.stdout) == age_line.sub(r'\1 AGE', expected)


def test_cli_output_errors(journal_dir, tmp_path):
    without = _cli('--journal-dir', str(journal_dir), '--output', str(tmp_path / 'x.prom'))
    assert (without.returncode, without.stderr) == (
        2, 'audit-notifier stats: error: --output needs --prometheus\n')
    missing = tmp_path / 'no-such-dir' / 'x.prom'
    failed = _cli('--journal-dir', str(journal_dir), '--prometheus', '--output', str(missing))
    assert (failed.returncode, failed.stderr) == (
        1, 'audit-notifier stats: error: cannot write %s: No such file or directory\n'
        % missing)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'audit_notifier.prom'
    target.write_text('old\n')

    def no_rename(src, dst):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(prometheus.os, 'replace', no_rename)
    with pytest.raises(OSError):
        prometheus.write_atomically(str(target), 'new\n')
    assert os.listdir(tmp_path) == ['audit_notifier.prom']
    assert target.read_text() == 'old\n'
