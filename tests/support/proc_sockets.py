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

"""Which TCP servers a process is connected to right now, from ``/proc`` (Linux).

:func:`established` reads the process's socket inodes (``/proc/<pid>/fd``) and
the kernel's TCP tables (``/proc/<pid>/net/tcp`` and ``tcp6``): the
``(local port, remote port)`` of each of its ESTABLISHED connections.  No
broker or client library is asked, so it tells what the client really holds (a
connection the server closed is in CLOSE_WAIT and no longer counts), and the
local port tells one connection from the next.

:class:`PortTimeline` samples that in a thread and keeps the transitions, e.g.
to see when a client lost its connection to one RabbitMQ node and when it had
one to another::

    timeline = PortTimeline(watched={5673, 5674, 5675}).start()
    ...
    timeline.stop()
    timeline.changes      # [(monotonic time, frozenset of (local, remote)), ...]
"""

from __future__ import annotations

import os
import threading
import time

_ESTABLISHED = '01'
_LISTEN = '0A'


def _socket_inodes(pid: int) -> set:
    inodes = set()
    fd_dir = '/proc/%d/fd' % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:                 # closed meanwhile
            continue
        if target.startswith('socket:['):
            inodes.add(target[8:-1])
    return inodes


def _tcp_sockets(pid: int, state: str):
    """``(inode, local port, remote port)`` of each TCP socket in ``state`` in the
    network namespace of ``pid``."""
    for table in ('tcp', 'tcp6'):
        try:
            with open('/proc/%d/net/%s' % (pid, table)) as f:
                next(f)
                rows = [line.split() for line in f]
        except OSError:
            continue
        for fields in rows:
            if len(fields) > 9 and fields[3] == state:
                yield (fields[9], int(fields[1].rsplit(':', 1)[1], 16),
                       int(fields[2].rsplit(':', 1)[1], 16))


def established(pid: int | None = None) -> set:
    """``(local port, remote port)`` of the ESTABLISHED TCP connections of ``pid``
    (default: this process)."""
    pid = os.getpid() if pid is None else pid
    inodes = _socket_inodes(pid)
    return {(local, remote) for inode, local, remote in _tcp_sockets(pid, _ESTABLISHED)
            if inode in inodes}


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` (e.g. a local RabbitMQ), or
    None (no listener, or its /proc entries are not readable by this user)."""
    wanted = {inode for inode, local, _ in _tcp_sockets(os.getpid(), _LISTEN)
              if local == port}
    if not wanted:
        return None
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            if _socket_inodes(int(pid)) & wanted:
                return int(pid)
        except OSError:                 # gone, or not ours to read
            continue
    return None


class PortTimeline:
    """Samples :func:`established` (connections to a remote port in ``watched``)
    every ``interval`` s in a daemon thread; :attr:`changes` lists each new state."""

    def __init__(self, watched, pid: int | None = None, interval: float = 0.02):
        self.watched = frozenset(watched)
        self.pid = pid
        self.interval = interval
        self.changes: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='port-timeline')

    def sample(self) -> frozenset:
        state = frozenset(c for c in established(self.pid) if c[1] in self.watched)
        with self._lock:
            if not self.changes or self.changes[-1][1] != state:
                self.changes.append((time.monotonic(), state))
        return state

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except OSError:
                pass
            self._stop.wait(self.interval)

    def start(self) -> 'PortTimeline':
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def first(self, predicate, since: float = float('-inf')):
        """Time of the first recorded state at or after ``since`` (the state in force
        at ``since`` included) for which ``predicate(state)`` holds; None if none."""
        with self._lock:
            changes = list(self.changes)
        for k, (t, state) in enumerate(changes):
            ends = changes[k + 1][0] if k + 1 < len(changes) else float('inf')
            if ends < since:
                continue
            if predicate(state):
                return max(t, since)
        return None
