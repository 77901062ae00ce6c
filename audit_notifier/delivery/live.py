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

"""Journals that API processes write now, read by the external sender.

With ``sender = external`` the API processes only append to their journals
(:class:`~.journal.Journal` ``external=True``, which marks its lock file); the
``audit-notifier send`` process (:mod:`.service`) reads them while they are
written, builds and publishes, and commits each journal's checkpoint.  Everything
here runs in that process's sender thread, never in an API process.

A frame is complete once written: the writer copies it into the segment's shared
map in one go and appends strictly in order, one at a time.  Reading the map
while it writes, this side may see the frame being written half done: its header
still zero (read as "nothing yet"), or written with a payload that does not match
its CRC yet.  Such a frame is read again at the next poll; it counts as corrupt
only once it has looked the same for :data:`SETTLE_SECONDS` and a later frame
follows it.  A writer that starts its next segment has finished the previous one,
so the rest of a segment is read once more before moving on.  When the writer's
lock is free (the process ended, or was killed), the journal is left to the orphan
adoption of :mod:`.sender`, which sends what follows the checkpoint and removes
the files.
"""

from __future__ import annotations

import collections
import fcntl
import glob
import mmap
import os
import re
import time

from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import record as record_mod

# Between two reads of the journals while no calls arrive (the sender reads them every
# gather_seconds while calls do; at once after a full batch).
POLL_SECONDS = 0.2
SCAN_SECONDS = 1.0       # between two looks for journals that came or went
SETTLE_SECONDS = 1.0     # a frame that stays bad this long is corrupt, not half written
_LOCK = re.compile(r'^(?P<owner>.+-\d+-\d+)\.lock$')


class LiveJournal:
    """One API process's journal, read while that process writes it."""

    def __init__(self, directory: str, owner: str, stats, builder):
        self.directory = directory
        self.owner = owner
        self.stats = stats
        self.builder = builder                 # this journal's calls (delivery/builder.py)
        seq, offset, self.confirmed = journal_mod.read_checkpoint_count(self._path('ckpt'))
        self._seq = seq                        # segment read now (or the next one to open)
        self._done_before = offset             # frames of _seq that start before it are sent
        self._offset = 0                       # read offset in the mapped segment
        self._mm: mmap.mmap | None = None
        self._read = collections.deque()       # positions read and not yet committed
        self._suspect = None                   # (seq, offset, first seen) of a bad frame
        self._next = None                      # the writer's next segment, once seen
        self._next_listing = 0.0
        self._deleted_before = seq             # segments before it are deleted
        # The writer's progress for the pacer (count_appended), in a map of its own:
        # frames counted up to _probe_at in segment _probe_seq.
        self._probe_seq, self._probe_at = seq, 0
        self._probe_mm: mmap.mmap | None = None
        self.count_appended()                  # what is there already did not arrive now

    def _path(self, suffix: str) -> str:
        return os.path.join(self.directory, '%s.%s' % (self.owner, suffix))

    def _segment_path(self, seq: int) -> str:
        return self._path('%08d.journal' % seq)

    def _segment_seqs(self) -> list[int]:
        """Sequence numbers of this journal's segments on disk, in order."""
        prefix = self.owner + '.'
        seqs = []
        for path in glob.glob(glob.escape(self._path('')) + '*.journal'):
            middle = os.path.basename(path)[len(prefix):-len('.journal')]
            if middle.isdigit():
                seqs.append(int(middle))
        return sorted(seqs)

    def _later_segments(self, seq: int) -> list[int]:
        """Sequence numbers of this journal's segments after ``seq``."""
        return [later for later in self._segment_seqs() if later > seq]

    def _open(self) -> bool:
        """Map the segment at ``_seq``, or the first later one; False if none."""
        if not os.path.exists(self._segment_path(self._seq)):
            later = self._later_segments(self._seq)
            if not later:
                return False
            self._seq, self._done_before = later[0], 0
        self._mm = _map(self._segment_path(self._seq))
        if self._mm is None:
            return False
        # A checkpoint is a position, not a frame boundary: read from the first
        # frame at or after it.
        done = self._done_before
        self._offset = next((start for start in journal_mod.frame_starts(self._mm, 0)
                             if start >= done), done)
        return True

    def _successor(self) -> int | None:
        """The writer's next segment after the one read now, once it exists (then
        this one is complete); listed at most every few polls."""
        if self._next is None and time.monotonic() >= self._next_listing:
            self._next_listing = time.monotonic() + POLL_SECONDS
            later = self._later_segments(self._seq)
            self._next = later[0] if later else None
        return self._next

    def read(self, limit: int) -> list[tuple[tuple[int, int], dict]]:
        """Up to ``limit`` records after the last read, in order: [(position, record)]."""
        out: list = []
        while len(out) < limit:
            if self._mm is None and not self._open():
                break
            got = self._read_frames(limit - len(out))
            if not got:
                successor = self._successor()
                if successor is None:
                    break
                # Complete now: what was half written at the last look is read again.
                got = self._read_frames(limit - len(out), final=True)
                if not got:
                    self._close_map()
                    self._seq, self._done_before, self._next = successor, 0, None
                    continue
            out.extend(got)
        self._read.extend(position for position, _ in out)
        return out

    def _read_frames(self, limit: int, final: bool = False) -> list:
        """Records of the mapped segment from the read offset.  ``final``: the
        writer has moved on, so a bad frame is corrupt at once."""
        mm, seq, offset = self._mm, self._seq, self._offset
        data = mm[offset:offset + journal_mod.READ_BYTES]
        if len(data) >= record_mod.HEADER_SIZE:
            magic, length, _crc = record_mod.HEADER.unpack_from(data, 0)
            whole = record_mod.HEADER_SIZE + length
            if magic == record_mod.MAGIC and len(data) < whole <= len(mm) - offset:
                data = mm[offset:offset + whole]           # a frame larger than one read
        out = []
        for start, stop, rec in record_mod.decode_frames(data):
            if len(out) >= limit:
                break
            if rec is None:
                if not (final or self._settled(
                        seq, offset + start, data.find(record_mod.MAGIC, start + 1) >= 0)):
                    break
                journal_mod.corrupt(self.stats, self._segment_path(seq), offset + start)
            else:
                self._suspect = None
                out.append(((seq, offset + start), rec))
            self._offset = offset + stop
        return out

    def _settled(self, seq: int, offset: int, followed: bool) -> bool:
        """Is the bad frame at ``offset`` corrupt (True) or maybe half written?"""
        now = time.monotonic()
        if self._suspect is None or self._suspect[:2] != (seq, offset):
            self._suspect = (seq, offset, now)
            return False
        return followed and now - self._suspect[2] >= SETTLE_SECONDS

    def commit(self, position: tuple[int, int]) -> None:
        """Every record that starts before ``position`` is sent: write the checkpoint
        (position and the records confirmed so far) and delete the segments before
        it."""
        read = self._read
        while read and read[0] < position:
            read.popleft()
            self.confirmed += 1
        journal_mod.write_checkpoint(self._path('ckpt'), position, self.confirmed)
        if position[0] > self._deleted_before:
            self._deleted_before = position[0]
            for seq in self._segment_seqs():
                if seq < position[0]:
                    journal_mod.remove(self._segment_path(seq))

    def count_appended(self) -> int:
        """Frames the writer appended since the last count: the arrival rate the
        pacer reads (sender thread, once per pacing window).  Walks the new frames'
        headers only (0.4-0.5 us a frame, 20,000 frames of 1 KB) and lists the
        segments once.  The newest frame of a segment is counted once a frame
        follows it or the writer has moved on (its header may be half copied yet);
        a whole segment written and sent between two counts is not counted (4 MiB
        in half a second)."""
        added = 0
        while True:
            if self._probe_mm is None:         # None too while the writer sizes it
                self._probe_mm = _map(self._segment_path(self._probe_seq))
            later = self._later_segments(self._probe_seq)
            if self._probe_mm is not None:
                added += self._count_frames(final=bool(later))
            if not later:
                return added
            _unmap(self._probe_mm)
            self._probe_mm, self._probe_seq, self._probe_at = None, later[0], 0

    def _count_frames(self, final: bool) -> int:
        """Frames of the probed segment from ``_probe_at``; unless ``final``, the
        newest is left for the next count (the walk resumes at it)."""
        n, newest = 0, None
        for start in journal_mod.frame_starts(self._probe_mm, self._probe_at):
            n, newest = n + 1, start
        if not final and newest is not None:
            n, self._probe_at = n - 1, newest
        return n

    def _close_map(self) -> None:
        mm, self._mm = self._mm, None
        _unmap(mm)

    def close(self) -> None:
        self._close_map()
        probe, self._probe_mm = self._probe_mm, None
        _unmap(probe)


class LiveJournals:
    """The journals of the API processes that write now with ``sender = external``."""

    def __init__(self, directory: str, stats, make_builder):
        self.directory = directory
        self.stats = stats
        self.make_builder = make_builder       # owner -> Builder
        self.journals: dict[str, LiveJournal] = {}
        self._next_scan = 0.0
        self.appended = 0                      # frames the followed writers appended

    def count_appended(self) -> int:
        """Frames appended by the writers followed since they were found: the
        send process's arrivals for its pacer (delivery/pacing.py)."""
        for journal in self.journals.values():
            self.appended += journal.count_appended()
        return self.appended

    def scan(self) -> bool:
        """Every SCAN_SECONDS: follow new writers, let go of those that are gone.
        True when one is gone (its journal is an orphan now)."""
        now = time.monotonic()
        if now < self._next_scan:
            return False
        self._next_scan = now + SCAN_SECONDS
        gone = False
        for owner in list(self.journals):
            if not _held(os.path.join(self.directory, owner + '.lock')):
                self.journals.pop(owner).close()
                gone = True
        for path in glob.glob(os.path.join(glob.escape(self.directory), '*.lock')):
            m = _LOCK.match(os.path.basename(path))
            if not m or m.group('owner') in self.journals or not _external(path):
                continue
            if _held(path):
                owner = m.group('owner')
                self.journals[owner] = LiveJournal(self.directory, owner, self.stats,
                                                   self.make_builder(owner))
        return gone

    def sources(self) -> list[LiveJournal]:
        return list(self.journals.values())

    def close(self) -> None:
        for journal in self.journals.values():
            journal.close()
        self.journals.clear()


def _map(path: str) -> mmap.mmap | None:
    """A read-only map of the segment file ``path``; None when it is gone or not
    sized yet."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _unmap(mm: mmap.mmap | None) -> None:
    if mm is not None:
        mm.close()


def _external(path: str) -> bool:
    try:
        with open(path, 'rb') as f:
            return f.read(len(journal_mod.EXTERNAL_MARK)) == journal_mod.EXTERNAL_MARK
    except OSError:
        return False


def _held(path: str) -> bool:
    """Does a live process hold the flock on ``path``?  (Never creates the file.)"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
