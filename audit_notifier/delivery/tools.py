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

"""Operator tools on a journal directory: replay what is left, replay dead letters,
read the counters (``audit-notifier replay`` and ``stats``)."""

from __future__ import annotations

import glob
import json
import logging
import os

from audit_notifier.delivery import deadletter, journal as journal_mod, legacy_spool
from audit_notifier.delivery import stats as stats_mod
from audit_notifier.delivery.builder import Builder
from audit_notifier.delivery.leaves import BusUnavailable
from audit_notifier.delivery.sender import Sender

LOG = logging.getLogger(__name__)


class ReplayResult:
    def __init__(self):
        self.journals = 0           # journals of dead processes sent whole
        self.left = 0               # journals (or dead letters) left for later
        self.sent = 0               # notifications sent
        self.kept: list[str] = []   # why something was left


def replay(pipeline, timeout: float = 30.0) -> ReplayResult:
    """Send every journal of a process that is gone, oldest first, through the
    pipeline's leaves, exactly as a starting service would; a bus outage longer
    than ``timeout`` stops the run (what is left stays, with its checkpoint, so a
    second run sends nothing twice)."""
    result = ReplayResult()
    delivery = pipeline.delivery
    directory = delivery.directory
    sender = _offline_sender(pipeline, timeout)
    try:
        for orphan in journal_mod.claim_orphans(directory):
            if sender.send_orphan(orphan):
                result.journals += 1
            else:
                result.left += 1
                result.kept.append('%s: %s' % (orphan.owner, 'unreadable segment'
                                               if orphan.unreadable else 'the bus did not '
                                               'take everything'))
        if not legacy_spool.send(directory, sender):
            result.left += 1
            result.kept.append('spool files of the earlier release: the bus did not take '
                               'everything')
    finally:
        _close(sender)
    result.sent = sender.stats.counters['sent']
    return result


def replay_dead_letters(pipeline) -> ReplayResult:
    """Send every dead letter again (a record is built again first); what fails
    again stays in its file, so a second run sends nothing twice."""
    result = ReplayResult()
    directory = pipeline.delivery.directory
    leaves = pipeline.leaves()
    try:
        for path in deadletter.files(directory):
            owner = os.path.basename(path)[:-len(deadletter.SUFFIX)]
            entries, bad = deadletter.read(path)
            if bad:
                result.kept.append('%s: %d unreadable line(s) dropped' % (path, bad))
            builder = Builder(pipeline.emitter, pipeline.classifier.route_for, owner)
            kept = []
            for index, entry in enumerate(entries):
                try:
                    result.sent += _resend(entry, builder, leaves, index)
                except BusUnavailable as exc:
                    kept.extend(entries[index:])
                    result.kept.append('%s: the bus is unavailable (%s)' % (path, exc))
                    break
                except Exception as exc:
                    kept.append(entry)
                    result.kept.append('%s: %s: %s' % (path, type(exc).__name__, exc))
            deadletter.rewrite(path, kept)
            result.left += len(kept)
    finally:
        for leaf in leaves.values():
            leaf.close()
    return result


def _resend(entry: dict, builder: Builder, leaves: dict, index: int) -> int:
    if 'envelope' in entry:
        leaves[entry['fmt']].publish_many([entry['envelope']])
        return 1
    rec = entry.get('record')
    if not isinstance(rec, dict):
        raise ValueError('the dead letter has no journal record')
    built = builder.build(('dead', index), rec)
    builder.open.clear()
    for fmt, envelope in built:
        leaves[fmt].publish_many([envelope])
    return len(built)


def _offline_sender(pipeline, timeout: float) -> Sender:
    delivery = pipeline.delivery
    stats = stats_mod.Stats()
    journal = journal_mod.Journal(None, max_bytes=1 << 20, max_records=1, overflow='drop_newest',
                                  block_seconds=0.0, fsync=False, stats=stats)
    dead = deadletter.DeadLetters(delivery.directory, journal.owner, stats)
    sender = Sender(journal, pipeline.emitter, pipeline.classifier.route_for, pipeline.leaves(),
                    dead, stats, dead_letter_after=delivery.settings.dead_letter_after,
                    stats_interval=0)
    sender.stop(timeout)          # outages are waited out until then, not forever
    return sender


def _close(sender: Sender) -> None:
    for leaf in sender.leaves.values():
        leaf.close()


def read_stats(directory: str) -> list[dict]:
    """One dict per process that wrote stats here, with ``alive`` and its backlog."""
    out = []
    for path in sorted(glob.glob(os.path.join(glob.escape(directory), '*.stats.json'))):
        owner = os.path.basename(path)[:-len('.stats.json')]
        try:
            with open(path) as f:
                snap = json.load(f)
        except (OSError, ValueError):
            continue
        snap['process'] = owner
        snap['alive'] = owner_alive(directory, owner)
        snap['journal_bytes'] = sum(
            os.path.getsize(p) for p in glob.glob(os.path.join(glob.escape(directory),
                                                               owner + '.*.journal')))
        out.append(snap)
    return out


def owner_alive(directory: str, owner: str) -> bool:
    path = os.path.join(directory, owner + '.lock')
    if not os.path.exists(path):
        return False
    try:
        fd = journal_mod.try_lock(path)
    except OSError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False
