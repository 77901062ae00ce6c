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

"""Spool files of the release before the journal: sent once, then removed.

That release kept what the bus could not take as JSON lines ``{"fmt": ...,
"envelope": ...}`` in ``<spool_dir>/<owner>-s<shard>-<seq>.spool``, with
``<owner>.lock`` locked while its process lived.  The sender (at start and every
minute) and ``audit-notifier replay`` send such files left in the journal
directory (``journal_dir`` reads the old ``spool_dir`` option) as they would a dead
process's journal: per shard, oldest first, the envelopes as they were written
(same ``message_id``).  A line that is not such a record is counted and logged as
corrupt; a file is removed once all of it was sent.
"""

from __future__ import annotations

import collections
import glob
import json
import logging
import os
import re

from audit_notifier.delivery import journal as journal_mod

LOG = logging.getLogger(__name__)
_SEGMENT = re.compile(r'^(?P<owner>.+-\d+-\d+)-s(?P<shard>\d+)-(?P<seq>\d+)\.spool$')


def send(directory: str, sender) -> bool:
    """Send every ``*.spool`` file of a process that is gone; True when nothing
    is left (``sender.publish`` waits out an outage until its stop deadline)."""
    by_owner = collections.defaultdict(list)
    for path in glob.glob(os.path.join(glob.escape(directory), '*.spool')):
        m = _SEGMENT.match(os.path.basename(path))
        if m:
            by_owner[m.group('owner')].append((int(m.group('shard')), int(m.group('seq')),
                                               path))
    everything = True
    for owner, files in sorted(by_owner.items()):
        lock_path = os.path.join(directory, owner + '.lock')
        try:
            fd = journal_mod.try_lock(lock_path)
        except OSError:
            fd = None
        if fd is None:
            continue                                 # alive, or being sent elsewhere
        try:
            for _shard, _seq, path in sorted(files):
                if not _send_file(path, sender):
                    everything = False
                    break
            else:
                for suffix in ('.lock', '.stats.json'):
                    journal_mod.remove(os.path.join(directory, owner + suffix))
        finally:
            os.close(fd)
    return everything


def _send_file(path: str, sender) -> bool:
    LOG.info('audit_notifier: sending the spool file %s of an earlier release', path)
    try:
        with open(path, 'rb') as f:
            lines = f.read().split(b'\n')
    except OSError as exc:
        problem = exc.strerror or str(exc)
    else:
        problem = None
    if problem is not None:     # logged outside the handler: oslo.log would repeat it
        sender.stats.add('journal_errors')
        LOG.error('audit_notifier: cannot read %s (%s); it is kept', path, problem)
        return False
    built = []
    for number, line in enumerate(lines[:-1], 1):     # after the last newline: torn
        try:
            item = json.loads(line)
            fmt, envelope = item['fmt'], dict(item['envelope'])
        except (ValueError, TypeError, KeyError):
            fmt = envelope = None
        if fmt not in sender.leaves:
            journal_mod.corrupt(sender.stats, path, 'line %d' % number)
            continue
        built.append((fmt, envelope))
    if not sender.publish(sender._runs(built)):
        return False
    journal_mod.remove(path)
    return True
