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

"""The per-process journal: every audited call's facts, appended before it answers.

Request threads append records (:mod:`.record` frames) to the tail segment with
one copy into its shared memory map under a lock (~1 us, no system call: see
:class:`Segment`); the sender thread reads
them in order, and once the bus confirmed what they produced, commits a position:
segments entirely before it are deleted and the position is written to the
``.ckpt`` file.  A process killed at any moment leaves its segments and checkpoint
behind; the next process (or ``audit-notifier replay``) adopts them: it takes the
dead owner's ``flock`` and sends what follows the checkpoint, oldest first.

Files in ``journal_dir`` (mode 0600), per process ``<owner>`` (host, pid, start):
``<owner>.lock`` (held while it lives), ``<owner>.<seq>.journal`` (segments),
``<owner>.ckpt`` ("<seq> <offset>": what the bus confirmed).

When the disk cannot take a record (ENOSPC, the directory gone or unwritable), the
record goes to an in-memory segment instead (counted as ``journal_errors``, one
ERROR line per condition and minute): delivery goes on while the bus is up, only
crash safety is lost until a disk segment can be opened again (retried every
``DISK_RETRY`` s).  ``delivery_mode = memory`` uses memory segments only.

With ``sender = external`` (:class:`Journal` ``external=True``) this process only
writes: another process (``audit-notifier send``, :mod:`.live`) reads the segments
while they are written, commits the checkpoint and deletes what it sent.  The
writer then keeps no memory segments (a record the disk cannot take is dropped,
counted and logged: no other process could read it), unmaps a segment once it
starts the next one, and learns what was sent from the files that are gone and
from the checkpoint (:meth:`Journal.confirmed`).

Caps: ``journal_max_bytes`` on disk, ``queue_size`` records in memory; at a cap the
overflow policy decides (``drop_oldest``, ``drop_newest``, ``block``); every
dropped record is counted and logged.
"""

from __future__ import annotations

import collections
import fcntl
import glob
import itertools
import logging
import mmap
import os
import re
import socket
import threading
import time

from audit_notifier.delivery import record as record_mod

LOG = logging.getLogger(__name__)

FILE_MODE = 0o600
SEGMENT_BYTES = 4 * 1024 * 1024
DISK_RETRY = 5.0                 # seconds between attempts to go back to disk
READ_BYTES = 256 * 1024          # bytes the sender reads at once
TAIL_RETIRE_BYTES = 64 * 1024    # a tail all sent and this big is removed
EXTERNAL_MARK = b'sender=external\n'   # in the lock file of a journal another process sends
_births = itertools.count()
_SEGMENT = re.compile(r'^(?P<owner>.+-\d+-\d+)\.(?P<seq>\d+)\.journal$')


class Segment:
    """One segment: a file on disk (``path``), written and read through a shared
    memory map (``mm``), or a FIFO in memory (``items``).

    A disk segment's file is allocated whole when it is made (``posix_fallocate``:
    a full disk shows then, not as a SIGBUS on a later write) and mapped
    ``MAP_SHARED``: an append is a copy into the page cache, with no system call,
    so the request thread never gives up the GIL for it, and what it wrote
    survives the process (SIGKILL included).  Unwritten space reads as zeros."""

    __slots__ = ('seq', 'path', 'size', 'records', 'writable', 'mm', 'items',
                 'popped', 'read_records')

    def __init__(self, seq: int, path: str | None = None):
        self.seq = seq
        self.path = path
        self.size = 0                  # complete bytes written (disk)
        self.records = 0               # records appended
        self.writable = False          # disk: the tail that takes appends
        self.mm: mmap.mmap | None = None
        self.items: collections.deque | None = None if path else collections.deque()
        self.popped = 0                # memory: records handed to the reader or dropped
        self.read_records = 0          # disk: records handed to the reader

    @property
    def on_disk(self) -> bool:
        return self.path is not None

    def close(self) -> None:
        self.writable = False
        mm, self.mm = self.mm, None
        if mm is not None:
            mm.close()


def owner_name() -> str:
    host = re.sub(r'[^A-Za-z0-9_.]', '_', socket.gethostname()) or 'host'
    # Unique within the process too; the number sorts by start time.
    birth = int(time.time() * 1000) * 1000 + next(_births) % 1000
    return '%s-%d-%d' % (host, os.getpid(), birth)


def try_lock(path: str) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None if someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove(path: str) -> None:
    try:
        os.unlink(path)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        problem = exc.strerror or str(exc)
    # Logged outside the handler: oslo.log appends the active exception to an ERROR line.
    LOG.error('audit_notifier: cannot remove %s (%s)', path, problem)


def read_checkpoint(path: str) -> tuple[int, int]:
    return read_checkpoint_count(path)[:2]


def read_checkpoint_count(path: str) -> tuple[int, int, int]:
    """(seq, offset, records): the position, and how many records before it an
    external sender confirmed (0 when the file does not say)."""
    try:
        with open(path, 'rb') as f:
            fields = f.read(64).split()[:3]
        return int(fields[0]), int(fields[1]), int(fields[2]) if len(fields) > 2 else 0
    except (OSError, ValueError, IndexError):
        return (0, 0, 0)


def count_frames(path: str, size: int, offset: int) -> int:
    """Frames of the segment file ``path`` that start at or after ``offset`` within
    its first ``size`` bytes (headers only, no decoding)."""
    try:
        with open(path, 'rb') as f:
            data = f.read(size)
    except OSError:
        return 0
    n = 0
    for start in frame_starts(data, 0):
        n += start >= offset
    return n


def frame_starts(buf, pos: int):
    """The start of each frame in ``buf`` from ``pos`` on (a header that is not
    one ends the walk; a frame that runs past ``buf`` counts): headers only, about
    half a microsecond a frame."""
    while pos + record_mod.HEADER_SIZE <= len(buf):
        magic, length, _crc = record_mod.HEADER.unpack_from(buf, pos)
        if magic != record_mod.MAGIC:
            return
        yield pos
        pos += record_mod.HEADER_SIZE + length


def write_checkpoint(path: str, position: tuple[int, int], records: int | None = None) -> None:
    """Replace the checkpoint at ``path``: ``<seq> <offset>``, and the records
    confirmed before it when given (external sender).  Unwritable: left as it was
    (the records after the old one are sent again, never lost)."""
    line = b'%d %d' % position + (b' %d' % records if records is not None else b'') + b'\n'
    try:
        fd = os.open(path + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        os.replace(path + '.tmp', path)
    except OSError:
        pass


class Journal:
    """This process's journal: request threads append, the sender reads and commits."""

    def __init__(self, directory: str | None, *, max_bytes: int, max_records: int,
                 overflow: str, block_seconds: float, fsync: bool, stats,
                 segment_bytes: int = SEGMENT_BYTES, external: bool = False):
        self.directory = directory             # None: memory only
        self.external = external and directory is not None   # another process sends
        self.max_bytes = max_bytes
        self.max_records = max_records
        self.overflow = overflow
        self.block_seconds = block_seconds
        self.fsync = fsync
        self.stats = stats
        self.segment_bytes = max(64 * 1024, min(segment_bytes, max_bytes // 4 or 1))
        self.owner = owner_name()
        self._lock = threading.Lock()
        self._segments: collections.deque[Segment] = collections.deque()
        self._seq = 0
        self._disk_bytes = 0
        self._memory_records = 0
        self._disk_retry_at = 0.0
        self._read_pos = (0, 0)                # (seq, offset or index) of the next read
        self._retired: list[Segment] = []      # dropped segments whose fds the sender closes
        self._reading: Segment | None = None   # the segment the sender reads right now
        self._last_read_start = -1             # offset of the last record read (disk)
        self.appended = 0                      # records accepted
        self.last_position = (0, -1)           # (seq, offset) of the last record on disk
        self._forget_at = 0.0                  # external: next look for deleted segments
        self.dropped = 0                       # records dropped before the sender read them
        self._lock_fd = None
        self._ckpt_fd = None
        if directory is not None:
            problem = None
            try:
                self._lock_fd = try_lock(self._path('lock'))
                self._ckpt_fd = os.open(self._path('ckpt'), os.O_WRONLY | os.O_CREAT,
                                        FILE_MODE)
                if self.external and self._lock_fd is not None:
                    os.pwrite(self._lock_fd, EXTERNAL_MARK, 0)
            except OSError as exc:
                problem = exc.strerror or str(exc)
            if problem is not None:
                # Appends will fail too and go to memory: delivery goes on, logged.
                self._disk_failed('cannot create the journal lock or checkpoint in %s (%s)'
                                  % (directory, problem))

    def _path(self, suffix: str) -> str:
        return os.path.join(self.directory, '%s.%s' % (self.owner, suffix))

    # -- request path ---------------------------------------------------------------------
    def append(self, record: dict) -> bool:
        """Keep ``record``; False when it was dropped (counted and logged)."""
        data = record_mod.encode(record) if self.directory is not None else None
        with self._lock:
            kept = self._append_locked(record, data)
        if kept is not False:
            return bool(kept)
        if self.overflow == 'block':
            until = time.monotonic() + self.block_seconds
            while time.monotonic() < until:
                time.sleep(0.01)
                with self._lock:
                    kept = self._append_locked(record, data)
                if kept is not False:
                    return bool(kept)
        self._count_drop(1, self.overflow)
        return False

    def _append_locked(self, record: dict, data: bytes | None) -> bool | None:
        """True: kept; False: no room (the overflow policy decides); None: dropped
        because the disk cannot take it and nothing may wait in memory (external
        sender), counted and logged here."""
        tail = self._segments[-1] if self._segments else None
        if data is not None and (tail is None or tail.on_disk or
                                 time.monotonic() >= self._disk_retry_at):
            if self.external and time.monotonic() < self._disk_retry_at and \
                    (tail is None or not tail.writable or
                     tail.size + len(data) > len(tail.mm)):
                return self._unkept()          # no new segment tried meanwhile
            # The cap first: a segment is opened only for a record that fits.
            if self._disk_bytes + len(data) > self.max_bytes:
                if self.external and time.monotonic() >= self._forget_at:
                    self._forget_at = time.monotonic() + 1.0      # not per call when full
                    self._forget_sent()
                if self._disk_bytes + len(data) > self.max_bytes and \
                        not self._make_room_on_disk(len(data)):
                    return False
            tail = self._segments[-1] if self._segments else None
            if tail is None or not tail.on_disk or not tail.writable or \
                    tail.size + len(data) > len(tail.mm):
                tail = self._new_disk_segment(len(data))
            if tail is not None and self._write(tail, data):
                return True
            if self.external:
                return self._unkept()
        tail = self._memory_tail()
        if self._memory_records >= self.max_records and not self._make_room_in_memory():
            return False
        tail.items.append(record)
        tail.records += 1
        self._memory_records += 1
        self.appended += 1
        return True

    def _unkept(self) -> None:
        self.stats.add('dropped')
        self.stats.limited(logging.ERROR, 'journal-unkept',
                           'audit_notifier: the journal directory %s cannot take a record and '
                           'with sender = external none is kept in memory; %d notification '
                           'record(s) dropped', self.directory, 1)
        return None

    def _forget_sent(self) -> None:
        """External sender: segments it has deleted (all sent) no longer count
        against ``journal_max_bytes``.  A stat per unmapped segment, only when a
        segment is added or (at most once a second) when the journal looks full."""
        for segment in [s for s in self._segments if s.mm is None and s.on_disk]:
            if not os.path.exists(segment.path):
                self._segments.remove(segment)
                self._disk_bytes -= segment.size

    def _write(self, tail: Segment, data: bytes) -> bool:
        end = tail.size + len(data)
        tail.mm[tail.size:end] = data
        if self.fsync:
            problem = None
            try:
                tail.mm.flush()
            except OSError as exc:
                problem = exc.strerror or str(exc)
            if problem is not None:
                self._disk_failed('cannot flush %s (%s)' % (tail.path, problem))
        self.last_position = (tail.seq, tail.size)
        tail.size = end
        tail.records += 1
        self._disk_bytes += len(data)
        self.appended += 1
        return True

    def _new_disk_segment(self, need: int) -> Segment | None:
        if self.directory is None:
            return None
        self._seq += 1
        segment = Segment(self._seq, self._path('%08d.journal' % self._seq))
        fd = None
        problem = None
        try:
            fd = os.open(segment.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
            capacity = max(self.segment_bytes, need)
            os.posix_fallocate(fd, 0, capacity)
            segment.mm = mmap.mmap(fd, capacity)
        except (OSError, ValueError) as exc:
            problem = getattr(exc, 'strerror', None) or str(exc)
        finally:
            if fd is not None:
                os.close(fd)                      # the map keeps the file
        if problem is not None:
            # Logged outside the handler: oslo.log appends the active exception to
            # WARNING and ERROR lines, which would say the same thing twice.
            segment.close()
            if fd is not None:
                remove(segment.path)
            self._disk_failed('cannot create a journal segment in %s (%s)'
                              % (self.directory, problem))
            return None
        self._close_writer()
        if self.external:
            self._forget_sent()
        segment.writable = True
        self._segments.append(segment)
        return segment

    def _memory_tail(self) -> Segment:
        tail = self._segments[-1] if self._segments else None
        if tail is not None and not tail.on_disk:
            return tail
        self._close_writer()
        self._seq += 1
        segment = Segment(self._seq)
        self._segments.append(segment)
        return segment

    def _close_writer(self) -> None:
        tail = self._segments[-1] if self._segments else None
        if tail is not None:
            tail.writable = False
            if self.external:
                tail.close()               # this process never reads it: unmapped now

    def _disk_failed(self, problem: str) -> None:
        self._disk_retry_at = time.monotonic() + DISK_RETRY
        self.stats.add('journal_errors')
        self.stats.limited(
            logging.ERROR, 'journal-disk',
            'audit_notifier: %s; notifications are kept in memory (not crash-safe) until '
            'the journal directory can be written again', problem)

    def _make_room_on_disk(self, need: int) -> bool:
        """drop_oldest: drop whole segments, oldest first, but never the one the
        sender is reading from at this moment."""
        if self.overflow != 'drop_oldest':
            return False
        while self._disk_bytes + need > self.max_bytes:
            victim = next((s for s in self._segments if s.on_disk and not s.writable
                           and s is not self._reading), None)
            if victim is None:
                tail = self._segments[-1] if self._segments else None
                if tail is not None and tail.writable and tail.size and \
                        tail is not self._reading:
                    self._close_writer()           # rotate: the tail becomes droppable
                    continue
                return False
            self._drop_segment(victim)
        return True

    def _drop_segment(self, segment: Segment) -> None:
        unread = self._unconfirmed(segment) if self.external else \
            segment.records - segment.read_records
        self._segments.remove(segment)
        self._disk_bytes -= segment.size
        if segment.seq == self._read_pos[0]:
            self._read_pos = (segment.seq + 1, 0)
        # The sender may be reading it right now: it closes the read fd itself.
        if self.external:
            segment.close()
        else:
            self._retired.append(segment)
        remove(segment.path)
        if unread:
            self.dropped += unread
            self._count_drop(unread, 'drop_oldest')

    def _unconfirmed(self, segment: Segment) -> int:
        """External sender: records of ``segment`` it has not confirmed (from the
        checkpoint; the overflow path only).  A batch it has read but not yet
        committed counts as dropped, though it may still reach the bus."""
        seq, offset = read_checkpoint(self._path('ckpt'))
        if seq > segment.seq:
            return 0
        if seq < segment.seq:
            return segment.records
        return count_frames(segment.path, segment.size, offset)

    def confirmed(self) -> tuple[tuple[int, int], int]:
        """External sender: its checkpoint (a position) and the records of this
        journal it has confirmed (a file read: the reporter thread and flush only)."""
        seq, offset, records = read_checkpoint_count(self._path('ckpt'))
        return (seq, offset), records

    def _make_room_in_memory(self) -> bool:
        if self.overflow != 'drop_oldest':
            return False
        for segment in self._segments:
            if not segment.on_disk and segment.items:
                segment.items.popleft()
                segment.popped += 1
                self._memory_records -= 1
                self.dropped += 1
                self._count_drop(1, 'drop_oldest')
                return True
        return False

    def _count_drop(self, n: int, policy: str) -> None:
        self.stats.add('dropped', n)
        self.stats.limited(logging.ERROR, 'overflow-' + policy,
                           'audit_notifier: the journal is full (journal_max_bytes on disk, '
                           'queue_size in memory); overflow policy %s dropped %d '
                           'notification record(s)', policy, n, count=n)

    # -- sender ---------------------------------------------------------------------------
    def read(self, limit: int) -> list[tuple[tuple[int, int], dict]]:
        """Up to ``limit`` records after the last read, in order: [(position, record)]."""
        out: list = []
        with self._lock:
            retired, self._retired = self._retired, []
        for segment in retired:
            segment.close()
        while len(out) < limit:
            with self._lock:
                segment = self._segment_at(self._read_pos[0])
                if segment is None:
                    return out
                is_tail = segment is self._segments[-1]
                if not segment.on_disk:
                    while segment.items and len(out) < limit:
                        out.append(((segment.seq, segment.popped), segment.items.popleft()))
                        segment.popped += 1
                        self._memory_records -= 1
                    if segment.items or is_tail:
                        return out
                    self._read_pos = (segment.seq + 1, 0)
                    continue
                offset, end = self._read_pos[1], segment.size
                if offset >= end:
                    if is_tail:
                        return out
                    self._read_pos = (segment.seq + 1, 0)
                    continue
                self._reading = segment           # not dropped while being read
            got, offset = self._read_frames(segment, offset, end, limit - len(out))
            out.extend(got)
            with self._lock:
                self._reading = None
                segment.read_records += len(got)
                if got:
                    self._last_read_start = got[-1][0][1]
                if self._read_pos[0] == segment.seq:     # not dropped meanwhile
                    self._read_pos = (segment.seq, offset)
        return out

    def _segment_at(self, seq: int) -> Segment | None:
        for segment in self._segments:
            if segment.seq >= seq:
                if segment.seq > seq:
                    self._read_pos = (segment.seq, 0)
                return segment
        return None

    def _read_frames(self, segment: Segment, offset: int, end: int, limit: int):
        """Up to ``limit`` records of ``segment`` from ``offset`` (bytes up to ``end``
        are complete), and the offset after them."""
        out = []
        data = segment.mm[offset:min(end, offset + READ_BYTES)]
        pos = 0
        for start, stop, rec in record_mod.decode_frames(data):
            if len(out) >= limit:
                break
            pos = stop
            if rec is None:
                corrupt(self.stats, segment.path, offset + start)
                continue
            out.append(((segment.seq, offset + start), rec))
        if pos == 0 and not out:
            # A frame larger than one read: read it whole.
            data = segment.mm[offset:end]
            for start, stop, rec in record_mod.decode_frames(data):
                pos = stop
                if rec is not None:
                    out.append(((segment.seq, offset + start), rec))
                break
            pos = pos or (end - offset)
        return out, offset + pos

    def commit(self, position: tuple[int, int]) -> None:
        """Every record that starts before ``position`` is done: drop the segments
        before it, and the tail too once all of it is done (the next append opens
        a new one), and record ``position`` in the checkpoint file."""
        freed = []
        with self._lock:
            while self._segments and self._segments[0].seq < position[0] and \
                    self._segments[0] is not self._segments[-1]:
                freed.append(self._segments.popleft())
            tail = self._segments[-1] if self._segments else None
            if tail is not None and tail.on_disk and \
                    tail.size >= min(TAIL_RETIRE_BYTES, self.max_bytes // 2) and \
                    self._read_pos == (tail.seq, tail.size) and \
                    position > (tail.seq, self._last_read_start):
                freed.append(self._segments.pop())
            for segment in freed:
                if segment.on_disk:
                    self._disk_bytes -= segment.size
        for segment in freed:
            segment.close()
            if segment.on_disk:
                remove(segment.path)
        if self._ckpt_fd is not None:
            try:
                os.pwrite(self._ckpt_fd, (b'%d %d\n' % position).ljust(40), 0)
            except OSError:
                pass

    def in_memory(self, position: tuple[int, int]) -> bool:
        """Was the record at ``position`` kept in memory (not on disk)?"""
        with self._lock:
            for segment in self._segments:
                if segment.seq == position[0]:
                    return not segment.on_disk
        return False

    def unsent_on_disk_and_in_memory(self) -> tuple[int, int]:
        """Records not yet read by the sender: (on disk, in memory only)."""
        with self._lock:
            return self._unread_locked()

    def _unread_locked(self) -> tuple[int, int]:
        disk = memory = 0
        for segment in self._segments:
            if not segment.on_disk:
                memory += len(segment.items)
            elif segment.seq >= self._read_pos[0]:
                disk += segment.records - segment.read_records
        return disk, memory

    def unsent(self) -> int:
        """Records accepted and not yet read by the sender (a gauge)."""
        return sum(self.unsent_on_disk_and_in_memory())

    @property
    def disk_bytes(self) -> int:
        return self._disk_bytes

    def close(self, keep: bool) -> tuple[int, int]:
        """Release the journal.  Its files are removed unless ``keep`` (the sender
        holds records it did not send) or records are still unread on disk: those
        stay, with the checkpoint, for the next process.  Decided under the lock, so
        a record appended meanwhile is never removed.  Returns what was left
        unread: (on disk, in memory only: lost)."""
        with self._lock:
            left = self._unread_locked()
            # External sender: it finishes (and removes) a journal with records.
            clean = not keep and not left[0] and not (self.external and self.appended)
            segments, self._segments = list(self._segments), collections.deque()
            retired, self._retired = self._retired, []
            for segment in segments:
                segment.close()
                if clean and segment.on_disk:
                    remove(segment.path)
            if self._ckpt_fd is not None:
                os.close(self._ckpt_fd)
                self._ckpt_fd = None
            if self._lock_fd is not None:
                if clean:
                    remove(self._path('ckpt'))
                    remove(self._path('lock'))
                os.close(self._lock_fd)
                self._lock_fd = None
        for segment in retired:
            segment.close()
        return left


def corrupt(stats, path: str, where) -> None:
    """Count and log (rate-limited) a record that cannot be read; ``where``: a byte
    offset or a description."""
    stats.add('corrupt_records')
    stats.limited(logging.ERROR, 'corrupt',
                  'audit_notifier: corrupt record in %s at %s skipped', path,
                  'byte %d' % where if isinstance(where, int) else where)


# -- journals of processes that are gone -------------------------------------------------

class Orphan:
    """A dead process's journal, claimed by taking its lock."""

    def __init__(self, directory: str, owner: str, lock_fd: int, segments: list[tuple[int, str]]):
        self.directory = directory
        self.owner = owner
        self.lock_fd = lock_fd
        self.segments = segments                  # [(seq, path)], oldest first
        self.checkpoint = read_checkpoint(self._path('ckpt'))

    def _path(self, suffix: str) -> str:
        return os.path.join(self.directory, '%s.%s' % (self.owner, suffix))

    def records(self, stats):
        """(position, record) of every record at or after the checkpoint, oldest
        first.  A checkpoint is a position, not a frame boundary ("every record
        that starts before it is done"), so a segment is decoded from its start.
        An unreadable segment is kept (and logged, counted); it ends the walk."""
        for seq, path in self.segments:
            if seq < self.checkpoint[0]:
                continue
            done_before = self.checkpoint[1] if seq == self.checkpoint[0] else 0
            problem = None
            try:
                with open(path, 'rb') as f:
                    data = f.read()
            except OSError as exc:
                problem = exc.strerror or str(exc)
            if problem is not None:     # outside the handler: oslo.log would repeat it
                stats.add('journal_errors')
                LOG.error('audit_notifier: cannot read the journal segment %s left by an '
                          'earlier process (%s); it is kept: fix its permissions and run '
                          'audit-notifier replay', path, problem)
                self.unreadable = True
                return
            for start, stop, rec in record_mod.decode_frames(data):
                if start < done_before:
                    continue
                if rec is None:
                    corrupt(stats, path, start)
                    continue
                yield (seq, start), rec

    unreadable = False

    def commit(self, position: tuple[int, int]) -> None:
        for seq, path in list(self.segments):
            if seq < position[0]:
                remove(path)
                self.segments.remove((seq, path))
        write_checkpoint(self._path('ckpt'), position)

    def finish(self) -> None:
        """Everything was sent (or the walk stopped): remove what is done, unlock."""
        if not self.unreadable:
            for _seq, path in self.segments:
                remove(path)
            for suffix in ('ckpt', 'stats.json'):
                remove(self._path(suffix))
            remove(self._path('lock'))
        self.release()

    def release(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None


def claim_orphans(directory: str, exclude=()) -> list[Orphan]:
    """Journals in ``directory`` whose process is gone, claimed (their lock taken),
    oldest process first; owners named in ``exclude`` are left alone."""
    by_owner: dict[str, list[tuple[int, str]]] = collections.defaultdict(list)
    for path in glob.glob(os.path.join(glob.escape(directory), '*.journal')):
        m = _SEGMENT.match(os.path.basename(path))
        if m and m.group('owner') not in exclude:
            by_owner[m.group('owner')].append((int(m.group('seq')), path))
    claimed = []
    for owner in sorted(by_owner, key=lambda o: int(o.rsplit('-', 1)[1])):
        try:
            fd = try_lock(os.path.join(directory, owner + '.lock'))
        except OSError:
            continue
        if fd is None:
            continue                                 # alive, or claimed by another process
        claimed.append(Orphan(directory, owner, fd, sorted(by_owner[owner])))
    return claimed
