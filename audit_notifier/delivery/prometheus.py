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

"""The delivery counters in Prometheus' text format (``audit-notifier stats --prometheus``),
for node_exporter's textfile collector.

One series per process that wrote a stats file (label ``process``, its journal
owner ``<host>-<pid>-<birth>``), every series labelled with ``journal_dir`` so
that the files of several services on one node never collide.  The collector
must never read a half-written file: :func:`write_atomically` writes a
temporary file next to the target (not ending in ``.prom``) and renames it.
"""

from __future__ import annotations

import os
import tempfile

PREFIX = 'audit_notifier_'

#: (stats key, metric name, type, help), in output order.
METRICS = (
    ('journaled', 'journaled_total', 'counter',
     'Records accepted into the journal (API call phases).'),
    ('built', 'built_total', 'counter', 'Notifications built and handed to the bus.'),
    ('sent', 'sent_total', 'counter', 'Notifications the bus accepted.'),
    ('dropped', 'dropped_total', 'counter',
     'Records lost to an overflow policy, or unsent at shutdown in memory mode.'),
    ('dead_letters', 'dead_letters_total', 'counter',
     'Records and notifications moved to the dead letters.'),
    ('send_errors', 'send_errors_total', 'counter',
     'Failed publishes: outages (one per attempt) and errors.'),
    ('build_errors', 'build_errors_total', 'counter', 'Records that could not be built.'),
    ('journal_errors', 'journal_errors_total', 'counter', 'Journal disk problems.'),
    ('corrupt_records', 'corrupt_records_total', 'counter',
     'Corrupt journal frames skipped.'),
    ('filter_errors', 'filter_errors_total', 'counter',
     'API calls served but not audited: the filter failed to classify or journal them.'),
    ('outages', 'outages_total', 'counter', 'Message bus outages seen.'),
    ('unsent', 'unsent', 'gauge',
     'Records accepted and not sent yet (in the journal or in the sender\'s batch).'),
    ('open_calls', 'open_calls', 'gauge', 'API calls begun and not finished.'),
    ('oldest_unsent_age', 'oldest_unsent_age_seconds', 'gauge',
     'Age of the oldest record the sender holds and has not sent (0: none).'),
    ('bus_down', 'bus_down', 'gauge', '1 while the message bus is unreachable.'),
    ('alive', 'alive', 'gauge',
     '1 while the process runs; 0: it is gone and left its stats file.'),
    ('journal_bytes', 'journal_bytes', 'gauge', 'Bytes of journal segments on disk.'),
    ('arrival_rate', 'arrival_rate_per_second', 'gauge',
     'Journal records arriving per second (the request load the sender yields to).'),
    ('send_rate_limit', 'send_rate_limit_per_second', 'gauge',
     'Rate the sender paces its work to, records per second (0: no limit).'),
    ('paced_seconds', 'paced_seconds_total', 'counter',
     'Seconds the sender rested between slices of work or let go of the GIL, '
     'yielding to requests.'),
    ('time', 'stats_updated_timestamp_seconds', 'gauge',
     'When the process last wrote its stats (every 5 s while it runs).'),
)
DEAD_LETTERS_WAITING = ('dead_letters_waiting', 'gauge',
                        'Dead letters in the journal directory, waiting for '
                        '"audit-notifier replay --dead-letters".')


def render(rows: list[dict], dead_letters_waiting: int, journal_dir: str,
           now: float) -> str:
    """The exposition text for :func:`~audit_notifier.delivery.tools.read_stats` rows.

    ``oldest_unsent_age`` is brought forward to ``now`` (Unix time) when records
    were held at the last report: a process that died with a backlog keeps ageing.
    A key a stats file lacks (an older release) is left out.
    """
    lines: list[str] = []
    for key, name, kind, text in METRICS:
        samples = []
        for row in sorted(rows, key=lambda r: r['process']):
            value = row.get(key)
            if not isinstance(value, (bool, int, float)):
                continue
            if key == 'oldest_unsent_age' and value > 0 and \
                    isinstance(row.get('time'), (int, float)):
                value = round(value + max(0.0, now - row['time']), 3)
            samples.append('%s%s{journal_dir="%s",process="%s"} %s' % (
                PREFIX, name, _label(journal_dir), _label(row['process']), _number(value)))
        if samples:
            lines += _head(name, kind, text) + samples
    name, kind, text = DEAD_LETTERS_WAITING
    lines += _head(name, kind, text)
    lines.append('%s%s{journal_dir="%s"} %d' % (PREFIX, name, _label(journal_dir),
                                                dead_letters_waiting))
    return '\n'.join(lines) + '\n'


def write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename (mode 0644: node_exporter usually
    runs as another user)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % os.path.basename(path),
                               suffix='.tmp')
    try:
        with os.fdopen(fd, 'w') as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _head(name: str, kind: str, text: str) -> list[str]:
    return ['# HELP %s%s %s' % (PREFIX, name, text.replace('\\', r'\\')),
            '# TYPE %s%s %s' % (PREFIX, name, kind)]


def _label(value: str) -> str:
    return str(value).replace('\\', r'\\').replace('"', r'\"').replace('\n', r'\n')


def _number(value) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return str(int(value))
    return repr(float(value))
