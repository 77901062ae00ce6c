"""The local spool: notifications waiting for the message bus, on disk, in order.

One spool per process and shard, as a series of segment files in ``spool_dir``:
``<host>-<pid>-<birth>-s<shard>-<seq>.spool``.  A record is one JSON document on one
line; a record is complete only with its newline, so a write torn by a crash leaves
an incomplete last line that is skipped (crash-safe append).  Every live process
holds an ``flock`` on its ``.lock`` file: segments whose owner is gone are adopted
by the next process that starts (or by ``audit-notifier replay``) and sent first.

Records are never rewritten: a segment is deleted once every record in it has been
sent.  ``SpoolCap`` accounts for the bytes of all shards of a process against
``spool_max_bytes``.
"""

from __future__ import annotations

import collections
import fcntl
import itertools
import glob
import json
import os
import re
import socket
import threading
import time

SEGMENT_BYTES = 4 * 1024 * 1024
ROTATE_READ_BYTES = 64 * 1024   # a fully sent current segment this big is rotated away
FILE_MODE = 0o600            # spooled payloads are audit data: owner only
_births = itertools.count()
_SEGMENT = re.compile(r'^(?P<owner>.+-\d+-\d+)-s(?P<shard>\d+)-(?P<seq>\d+)\.spool$')


class SpoolCap:
    """Bytes used by one process's spool, shared by its shards."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.max_bytes:
                return False
            self.used += n
            return True

    def add(self, n: int) -> None:
        with self._lock:
            self.used += n

    def release(self, n: int) -> None:
        with self._lock:
            self.used = max(0, self.used - n)


class Owner:
    """This process's identity in the spool directory, and its lock."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, mode=0o700, exist_ok=True)
        host = re.sub(r'[^A-Za-z0-9_.-]', '_', socket.gethostname()).replace('-', '_') or 'host'
        # Unique within the process too (a filter and a notifier may start together);
        # the number still sorts by start time.
        birth = int(time.time() * 1000) * 1000 + next(_births) % 1000
        self.name = '%s-%d-%d' % (host, os.getpid(), birth)
        self.lock_path = os.path.join(directory, self.name + '.lock')
        fd = os.open(self.lock_path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
        self._lock_file = os.fdopen(fd, 'w')
        fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        _unlink(self.lock_path)
        self._lock_file.close()


def claim_orphans(owner: Owner) -> dict[int, list[str]]:
    """Take over the segments of owners that are gone: each is renamed into
    ``owner``'s name (so no other process or replay sends it too), per shard,
    oldest first.  A segment another process claimed first is skipped."""
    claimed: dict[int, list[str]] = {}
    seq = 0
    for shard, paths in sorted(orphan_segments(owner.directory).items()):
        for path in paths:
            seq += 1
            new = os.path.join(owner.directory, '%s-s%d-%08d.spool' % (owner.name, shard, seq))
            try:
                os.rename(path, new)
            except OSError:
                continue
            claimed.setdefault(shard, []).append(new)
    owner.first_seq = seq
    return claimed


def orphan_segments(directory: str) -> dict[int, list[str]]:
    """Segments of owners that are gone, per shard, oldest first; their locks and
    stats files removed."""
    found: dict[int, list[tuple]] = collections.defaultdict(list)
    dead = {}
    for path in glob.glob(os.path.join(directory, '*.spool')):
        m = _SEGMENT.match(os.path.basename(path))
        if not m:
            continue
        owner = m.group('owner')
        if owner not in dead:
            dead[owner] = not owner_alive(directory, owner)
        if dead[owner]:
            birth = int(owner.rsplit('-', 1)[1])
            found[int(m.group('shard'))].append((birth, owner, int(m.group('seq')), path))
    for owner, is_dead in dead.items():
        if is_dead:
            _unlink(os.path.join(directory, owner + '.lock'))
            _unlink(os.path.join(directory, owner + '.stats.json'))
    return {shard: [p for *_, p in sorted(items)] for shard, items in found.items()}


def owner_alive(directory: str, owner: str) -> bool:
    path = os.path.join(directory, owner + '.lock')
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return False                      # no lock file: nobody holds these segments
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True                       # someone holds the lock
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def encode(fmt: str, envelope: dict) -> bytes:
    return (json.dumps({'fmt': fmt, 'envelope': envelope}, separators=(',', ':'),
                       default=str) + '\n').encode('utf-8')


class ShardSpool:
    """Append at the tail, read from the head; only its shard's worker touches it
    (and, in write-ahead mode, request threads appending under ``lock``)."""

    def __init__(self, owner: Owner, shard: int, cap: SpoolCap, fsync: bool = False,
                 adopted: list[str] | None = None, segment_bytes: int = SEGMENT_BYTES):
        self.owner = owner
        self.segment_bytes = segment_bytes
        self.shard = shard
        self.cap = cap
        self.fsync = fsync
        self.lock = threading.Lock()
        self._segments: collections.deque = collections.deque()   # [path, size, records]
        self._seq = getattr(owner, 'first_seq', 0)       # after the claimed segments
        self._writer = None
        self._segments_writing = None
        self._read_path = None
        self._read_offset = 0
        self.records = 0                    # records not yet sent
        for path in adopted or ():
            size, count = _scan(path)
            if count:
                self._segments.append([path, size, count])
                self.records += count
                cap.add(size)
            else:
                _unlink(path)

    # -- tail -----------------------------------------------------------------------------
    def append(self, record: bytes) -> bool:
        """Write one record; False if the spool is at its cap."""
        with self.lock:
            if not self.cap.reserve(len(record)):
                return False
            if self._writer is None or self._segments[-1][1] >= self.segment_bytes:
                self._open_segment()
            self._writer.write(record)
            self._writer.flush()
            if self.fsync:
                os.fsync(self._writer.fileno())
            self._segments[-1][1] += len(record)
            self._segments[-1][2] += 1
            self.records += 1
            return True

    def _open_segment(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._seq += 1
        path = os.path.join(self.owner.directory, '%s-s%d-%08d.spool'
                            % (self.owner.name, self.shard, self._seq))
        self._writer = os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                         FILE_MODE), 'ab')
        self._segments_writing = path
        self._segments.append([path, 0, 0])

    def drop_oldest_segment(self) -> int:
        """Delete the oldest segment that is not being written; records dropped."""
        with self.lock:
            if len(self._segments) == 1 and self._writer is not None:
                self._close_writer()           # rotate: the current segment becomes old
            if not self._segments or (len(self._segments) == 1 and self._writer is not None):
                return 0
            path, size, count = self._segments.popleft()
            unread = count
            if path == self._read_path:
                unread = _count_from(path, self._read_offset)
                self._read_path, self._read_offset = None, 0
            _unlink(path)
            self.cap.release(size)
            self.records -= unread
            return unread

    # -- head -----------------------------------------------------------------------------
    def peek(self):
        """(record dict, position) of the oldest unsent record, or None."""
        with self.lock:
            while self._segments:
                path = self._segments[0][0]
                if self._read_path != path:
                    self._read_path, self._read_offset = path, 0
                line = _read_line(path, self._read_offset)
                if line is not None:
                    try:
                        return json.loads(line), self._read_offset + len(line)
                    except ValueError:
                        self._read_offset += len(line)      # corrupt line: skip it
                        self.records -= 1
                        continue
                if self._writer is not None and len(self._segments) == 1:
                    # The current segment, fully read.  Once it is sizeable, rotate
                    # so a crash cannot make the next process send it all again.
                    if self._segments[0][1] >= ROTATE_READ_BYTES:
                        self._finish_head()
                    return None
                self._finish_head()
            return None

    def advance(self, position: int) -> None:
        with self.lock:
            self._read_offset = position
            self.records -= 1

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None
        self._segments_writing = None

    def _finish_head(self) -> None:
        path, size, _ = self._segments.popleft()
        if self._writer is not None and self._segments_writing == path:
            self._close_writer()
        _unlink(path)
        self.cap.release(size)
        self._read_path, self._read_offset = None, 0

    def close(self) -> None:
        with self.lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self.records <= 0:
                while self._segments:
                    path, size, _ = self._segments.popleft()
                    _unlink(path)
                    self.cap.release(size)

    def oldest_timestamp(self) -> float | None:
        item = self.peek()
        if item is None:
            return None
        try:
            return time.mktime(time.strptime(item[0]['envelope']['timestamp'][:19],
                                             '%Y-%m-%d %H:%M:%S')) - time.timezone
        except (KeyError, ValueError, TypeError):
            return None


def _read_line(path: str, offset: int) -> bytes | None:
    try:
        with open(path, 'rb') as f:
            f.seek(offset)
            line = f.readline()
    except OSError:
        return None
    if not line.endswith(b'\n'):
        return None                      # nothing yet, or a torn last write
    return line


def _scan(path: str) -> tuple[int, int]:
    """Size and complete-record count of a segment; a torn tail is cut off."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return 0, 0
    end = data.rfind(b'\n') + 1
    if end < len(data):
        with open(path, 'r+b') as f:
            f.truncate(end)
    return end, data.count(b'\n', 0, end)


def _count_from(path: str, offset: int) -> int:
    try:
        with open(path, 'rb') as f:
            f.seek(offset)
            return f.read().count(b'\n')
    except OSError:
        return 0


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
