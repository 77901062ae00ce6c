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

"""A per-test TCP proxy that injects network faults in front of a TCP server
(typically RabbitMQ).

One daemon thread runs a ``selectors`` loop over the listening socket and every
client/upstream connection pair; all sockets are non-blocking, so no fault
(a peer that stops reading, a blackhole, a delay) can wedge the proxy.  The
fault controls are thread-safe and may be called at any time, before
``start()`` and after ``stop()`` included; those that act on live connections
(``cut``, ``refuse(True)``) return only once the proxy thread has done it.

Usage::

    from tests.support.tcp_proxy import TcpProxy

    with TcpProxy('127.0.0.1', 5672) as proxy:
        url = 'rabbit://guest:guest@127.0.0.1:%d/' % proxy.port
        ...
        proxy.cut()              # RST every current connection, keep accepting
        proxy.refuse(True)       # reset new connections at once, cut existing
        proxy.blackhole(True)    # swallow bytes both ways, connections stay open
        proxy.delay(0.2)         # add 200 ms latency to every forwarded chunk
        proxy.heal()             # all faults off

Semantics:

* ``cut()``: every current pair is closed abruptly on both sides (``SO_LINGER``
  0, i.e. an RST); new connections are still accepted and forwarded.
* ``refuse(True)``: like ``cut()``, and from then on every new connection is
  accepted and immediately reset (the client sees ECONNRESET or EOF, as from a
  host that refuses).  ``refuse(False)`` accepts again.
* ``blackhole(True)``: bytes read from either side are dropped, including
  bytes already buffered in the proxy; an EOF is not passed on either (it is
  passed on after ``blackhole(False)``).  New connections are accepted and the
  upstream connection is made, but nothing is forwarded.  An error (RST) on one
  side still resets the other.
* ``delay(seconds)``: each chunk is forwarded ``seconds`` after it was read
  (order is preserved; throughput is not throttled).  0 turns it off.
* ``connections_total`` counts client connections accepted for forwarding
  (not the ones reset by ``refuse``, see ``refused_total``);
  ``active_connections`` counts pairs currently open.
"""

from __future__ import annotations

import collections
import errno
import selectors
import socket
import struct
import threading
import time

_CHUNK = 65536
#: per direction: stop reading from the source while this much waits to be sent
_HIGH_WATER = 1 << 20
_CALL_TIMEOUT = 30.0


def _abort(sock: socket.socket) -> None:
    """Close ``sock`` with an RST (SO_LINGER on, timeout 0)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _PairError(Exception):
    """A socket of the pair failed: reset the pair."""


class _Direction(object):
    """Bytes flowing from ``src`` to ``dst``."""

    def __init__(self, src, dst):
        self.src = src
        self.dst = dst
        self.queue = collections.deque()    # (release_time, bytes)
        self.pending = 0                     # bytes in queue
        self.last_release = 0.0
        self.eof = False                     # src sent EOF
        self.shut = False                    # EOF passed on to dst
        self.want_write = False              # dst would block


class _Pair(object):
    def __init__(self, client, upstream, peer):
        self.client = client
        self.upstream = upstream
        self.peer = peer
        self.connecting = True
        self.c2u = _Direction(client, upstream)
        self.u2c = _Direction(upstream, client)
        self.masks = {}                      # socket -> registered event mask
        self.closed = False


class TcpProxy(object):
    """A TCP proxy to ``upstream_host:upstream_port`` listening on
    ``listen_host`` (ephemeral port, see :attr:`port`) with fault injection."""

    def __init__(self, upstream_host: str, upstream_port: int,
                 listen_host: str = '127.0.0.1'):
        self.upstream_host = upstream_host
        self.upstream_port = int(upstream_port)
        self.listen_host = listen_host
        self._lock = threading.Lock()
        self._commands = []                  # (callable, threading.Event, [result])
        self._refuse = False
        self._blackhole = False
        self._delay = 0.0
        self._connections_total = 0
        self._refused_total = 0
        self._pairs = set()
        self._port = None
        self._listener = None
        self._selector = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stopping = False
        self._stopped = False
        self._upstream_addr = None
        #: the exception that ended the proxy thread, if any (a bug)
        self.error = None

    # ------------------------------------------------------------------ life cycle

    def start(self) -> 'TcpProxy':
        """Listen on an ephemeral port of ``listen_host`` and start the proxy
        thread; returns self."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError('TcpProxy already started')
            if self._stopped:
                raise RuntimeError('TcpProxy cannot be restarted after stop()')
            infos = socket.getaddrinfo(self.upstream_host, self.upstream_port,
                                       type=socket.SOCK_STREAM)
            family, _, _, _, addr = infos[0]
            self._upstream_addr = (family, addr)
            lfamily = socket.getaddrinfo(self.listen_host, 0,
                                         type=socket.SOCK_STREAM)[0][0]
            listener = socket.socket(lfamily, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.listen_host, 0))
            listener.listen(128)
            listener.setblocking(False)
            self._listener = listener
            self._port = listener.getsockname()[1]
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector = selectors.DefaultSelector()
            self._selector.register(listener, selectors.EVENT_READ, 'listen')
            self._selector.register(self._wake_r, selectors.EVENT_READ, 'wake')
            self._thread = threading.Thread(
                target=self._run, name='TcpProxy-%d->%s:%d' % (
                    self._port, self.upstream_host, self.upstream_port),
                daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Close the listener and every connection (RST) and end the proxy
        thread.  Idempotent; safe before ``start()``."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping = True
            thread = self._thread
        if thread is None:
            return
        self._wake()
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError('TcpProxy thread did not end within %.0fs' % timeout)

    def __enter__(self) -> 'TcpProxy':
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        """The port the proxy listens on (after ``start()``)."""
        if self._port is None:
            raise RuntimeError('TcpProxy not started')
        return self._port

    @property
    def address(self) -> tuple:
        """``(listen_host, port)``."""
        return (self.listen_host, self.port)

    @property
    def connections_total(self) -> int:
        """Client connections accepted for forwarding since start."""
        with self._lock:
            return self._connections_total

    @property
    def refused_total(self) -> int:
        """Client connections reset at once because ``refuse(True)`` was on."""
        with self._lock:
            return self._refused_total

    @property
    def active_connections(self) -> int:
        """Client/upstream pairs currently open."""
        with self._lock:
            return len(self._pairs)

    @property
    def running(self) -> bool:
        """The proxy thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    # ------------------------------------------------------------------ faults

    def cut(self) -> None:
        """Reset (RST) every current connection pair; new ones are still accepted."""
        self._call(self._cut_all)

    def refuse(self, on: bool = True) -> None:
        """While on, reset every new connection at once; turning it on also cuts
        the current ones."""
        with self._lock:
            self._refuse = bool(on)
        if on:
            self._call(self._cut_all)

    def blackhole(self, on: bool = True) -> None:
        """While on, silently drop the bytes of every connection, both ways."""
        with self._lock:
            self._blackhole = bool(on)
        self._wake()

    def delay(self, seconds: float) -> None:
        """Forward each chunk ``seconds`` after reading it (0 = no delay)."""
        if seconds < 0:
            raise ValueError('delay must be >= 0')
        with self._lock:
            self._delay = float(seconds)
        self._wake()

    def heal(self) -> None:
        """Turn every fault off (refuse, blackhole, delay)."""
        with self._lock:
            self._refuse = False
            self._blackhole = False
            self._delay = 0.0
        self._wake()

    # ------------------------------------------------------------------ internals

    def _wake(self) -> None:
        w = self._wake_w
        if w is None:
            return
        try:
            w.send(b'x')
        except (BlockingIOError, OSError):
            pass                       # already awake, or closed by stop()

    def _call(self, fn) -> None:
        """Run ``fn`` in the proxy thread and wait until it has run."""
        thread = self._thread
        if thread is threading.current_thread():
            fn()
            return
        if thread is None or not thread.is_alive():
            return                     # not running: no connection to act on
        done = threading.Event()
        with self._lock:
            if self._stopping:
                return
            self._commands.append((fn, done))
        self._wake()
        deadline = time.monotonic() + _CALL_TIMEOUT
        while not done.wait(0.05):
            if not thread.is_alive():
                return                 # stopped meanwhile: everything is closed
            if time.monotonic() > deadline:
                raise RuntimeError('TcpProxy thread did not answer within %.0fs'
                                   % _CALL_TIMEOUT)

    def _cut_all(self) -> None:
        for pair in list(self._pairs):
            self._close_pair(pair, abort=True)

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        break
                    commands, self._commands = self._commands, []
                for fn, done in commands:
                    try:
                        fn()
                    finally:
                        done.set()
                now = time.monotonic()
                for pair in list(self._pairs):
                    self._service(pair, now)
                timeout = self._next_timeout(time.monotonic())
                for key, mask in self._selector.select(timeout):
                    tag = key.data
                    if tag == 'wake':
                        self._drain_wake()
                    elif tag == 'listen':
                        self._accept()
                    else:
                        pair, side = tag
                        if not pair.closed:
                            self._on_event(pair, side, mask)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        with self._lock:
            self._stopping = True
            commands, self._commands = self._commands, []
        for pair in list(self._pairs):
            self._close_pair(pair, abort=True)
        for _fn, done in commands:
            done.set()
        for sock in (self._listener, self._wake_r, self._wake_w):
            try:
                self._selector.unregister(sock)
            except Exception:
                pass
            try:
                sock.close()
            except OSError:
                pass
        self._wake_w = None
        self._selector.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _accept(self) -> None:
        while True:
            try:
                client, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return                 # e.g. EMFILE: try again on the next event
            with self._lock:
                refuse = self._refuse
                if refuse:
                    self._refused_total += 1
            if refuse:
                _abort(client)
                continue
            client.setblocking(False)
            family, addr = self._upstream_addr
            upstream = socket.socket(family, socket.SOCK_STREAM)
            upstream.setblocking(False)
            for sock in (client, upstream):
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                except OSError:
                    pass
            pair = _Pair(client, upstream, peer)
            with self._lock:
                self._pairs.add(pair)
                self._connections_total += 1
            err = upstream.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
                self._close_pair(pair, abort=True)
                continue
            self._update_masks(pair)

    def _on_event(self, pair, side, mask) -> None:
        try:
            if side == 'upstream' and pair.connecting:
                if mask & selectors.EVENT_WRITE:
                    err = pair.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise _PairError(errno.errorcode.get(err, err))
                    pair.connecting = False
                return
            if mask & selectors.EVENT_READ:
                self._read(pair.c2u if side == 'client' else pair.u2c)
            # writes (and everything else) happen in _service
        except _PairError:
            self._close_pair(pair, abort=True)

    def _read(self, direction) -> None:
        try:
            data = direction.src.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise _PairError(exc)
        if not data:
            direction.eof = True
            return
        with self._lock:
            blackhole, delay = self._blackhole, self._delay
        if blackhole:
            return
        release = time.monotonic() + delay
        release = max(release, direction.last_release)
        direction.last_release = release
        direction.queue.append((release, data))
        direction.pending += len(data)

    def _flush(self, direction, now, blackhole) -> None:
        if blackhole:
            direction.queue.clear()
            direction.pending = 0
            direction.want_write = False
            return
        direction.want_write = False
        while direction.queue:
            release, data = direction.queue[0]
            if release > now:
                break
            try:
                sent = direction.dst.send(data)
            except (BlockingIOError, InterruptedError):
                direction.want_write = True
                return
            except OSError as exc:
                raise _PairError(exc)
            direction.pending -= sent
            if sent < len(data):
                direction.queue[0] = (release, data[sent:])
                direction.want_write = True
                return
            direction.queue.popleft()
        if direction.eof and not direction.shut and not direction.queue:
            try:
                direction.dst.shutdown(socket.SHUT_WR)
            except OSError as exc:
                raise _PairError(exc)
            direction.shut = True

    def _service(self, pair, now) -> None:
        if pair.closed:
            return
        with self._lock:
            blackhole = self._blackhole
        try:
            if not pair.connecting:
                self._flush(pair.c2u, now, blackhole)
                self._flush(pair.u2c, now, blackhole)
        except _PairError:
            self._close_pair(pair, abort=True)
            return
        if pair.c2u.shut and pair.u2c.shut:
            self._close_pair(pair, abort=False)
            return
        self._update_masks(pair)

    def _update_masks(self, pair) -> None:
        wanted = {}
        c2u, u2c = pair.c2u, pair.u2c
        mask = 0
        if not c2u.eof and c2u.pending < _HIGH_WATER:
            mask |= selectors.EVENT_READ
        if u2c.want_write:
            mask |= selectors.EVENT_WRITE
        wanted[pair.client] = (mask, 'client')
        if pair.connecting:
            mask = selectors.EVENT_WRITE
        else:
            mask = 0
            if not u2c.eof and u2c.pending < _HIGH_WATER:
                mask |= selectors.EVENT_READ
            if c2u.want_write:
                mask |= selectors.EVENT_WRITE
        wanted[pair.upstream] = (mask, 'upstream')
        for sock, (mask, side) in wanted.items():
            current = pair.masks.get(sock, 0)
            if mask == current:
                continue
            if current == 0:
                self._selector.register(sock, mask, (pair, side))
            elif mask == 0:
                self._selector.unregister(sock)
            else:
                self._selector.modify(sock, mask, (pair, side))
            pair.masks[sock] = mask

    def _next_timeout(self, now):
        with self._lock:
            blackhole = self._blackhole
        if blackhole:
            return None
        soonest = None
        for pair in self._pairs:
            if pair.connecting:
                continue
            for direction in (pair.c2u, pair.u2c):
                if direction.queue and not direction.want_write:
                    release = direction.queue[0][0]
                    if soonest is None or release < soonest:
                        soonest = release
        if soonest is None:
            return None
        return max(0.0, soonest - now)

    def _close_pair(self, pair, abort: bool) -> None:
        if pair.closed:
            return
        pair.closed = True
        for sock in (pair.client, pair.upstream):
            if pair.masks.get(sock):
                try:
                    self._selector.unregister(sock)
                except (KeyError, ValueError):
                    pass
            if abort:
                _abort(sock)
            else:
                try:
                    sock.close()
                except OSError:
                    pass
        pair.masks.clear()
        pair.c2u.queue.clear()
        pair.u2c.queue.clear()
        with self._lock:
            self._pairs.discard(pair)
