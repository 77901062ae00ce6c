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

"""tests/support/tcp_proxy.py against a local echo server (no broker needed)."""

from __future__ import annotations

import os
import random
import socket
import sys
import threading
import time

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.tcp_proxy import TcpProxy  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

MiB = 1 << 20
#: how long a negative check ("nothing arrives") listens; not a synchronisation
QUIET = 0.3


class EchoServer(object):
    """A threaded TCP echo server on 127.0.0.1 that records what it received.

    ``banner`` is sent first on every connection (server-to-client traffic
    that is not an echo)."""

    def __init__(self, banner: bytes = b''):
        self.banner = banner
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.accepted = 0
        self.received = []          # bytearray per connection
        self.closed = 0             # connections that ended (EOF or error)
        self.resets = 0             # connections that ended with an error
        self.conns = []
        self.threads = []
        self.stopping = False
        thread = threading.Thread(target=self._accept, name='EchoServer', daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.stopping:
                    conn.close()
                    return
                self.accepted += 1
                buf = bytearray()
                self.received.append(buf)
                self.conns.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn, buf),
                                      name='EchoServer-conn', daemon=True)
            thread.start()
            self.threads.append(thread)

    def _echo(self, conn, buf):
        error = False
        try:
            if self.banner:
                conn.sendall(self.banner)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                with self.lock:
                    buf.extend(data)
                conn.sendall(data)
        except OSError:
            error = True
        finally:
            with self.lock:
                self.closed += 1
                self.resets += error
            try:
                conn.close()
            except OSError:
                pass

    def total_received(self) -> bytes:
        with self.lock:
            return b''.join(bytes(b) for b in self.received)

    def stop(self):
        with self.lock:
            self.stopping = True
            conns = list(self.conns)
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.stop()


@pytest.fixture
def proxy(echo):
    p = TcpProxy('127.0.0.1', echo.port).start()
    yield p
    assert p.error is None, 'proxy thread crashed: %r' % (p.error,)
    p.stop()


def connect(proxy, timeout=30.0):
    sock = socket.create_connection(('127.0.0.1', proxy.port), timeout=timeout)
    return sock


def recv_exactly(sock, n, timeout=30.0):
    sock.settimeout(timeout)
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(min(65536, n - len(data)))
        if not chunk:
            raise EOFError('EOF after %d of %d bytes' % (len(data), n))
        data.extend(chunk)
    return bytes(data)


def echo_roundtrip(sock, payload=b'ping'):
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def assert_dead(sock, timeout=30.0):
    """The connection was reset or closed by the far side."""
    sock.settimeout(timeout)
    try:
        # first a write: a reset connection may only show on the next read
        sock.sendall(b'x')
        data = sock.recv(1)
    except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
        return 'reset'
    assert data == b'', 'connection still forwards: got %r' % data
    return 'eof'


def assert_refused(proxy):
    """A new connection through ``proxy`` fails: at connect time (the reset can
    beat the end of ``connect()``) or on first use."""
    try:
        sock = connect(proxy)
    except (ConnectionResetError, ConnectionRefusedError, ConnectionAbortedError):
        return 'reset at connect'
    with sock:
        return assert_dead(sock)


def proxy_threads():
    return [t for t in threading.enumerate() if t.name.startswith('TcpProxy')]


# ---------------------------------------------------------------------- forwarding

def test_forwards_both_ways(proxy, echo):
    with connect(proxy) as sock:
        assert echo_roundtrip(sock, b'hello') == b'hello'
        assert proxy.connections_total == 1
        assert proxy.active_connections == 1
        assert echo.total_received() == b'hello'


def test_server_speaks_first():
    server = EchoServer(banner=b'AMQP-like greeting\n')
    try:
        with TcpProxy('127.0.0.1', server.port) as proxy:
            with connect(proxy) as sock:
                assert recv_exactly(sock, 19) == b'AMQP-like greeting\n'
                assert echo_roundtrip(sock, b'abc') == b'abc'
    finally:
        server.stop()


def test_forwards_one_mebibyte_each_way(proxy, echo):
    payload = os.urandom(MiB)
    with connect(proxy) as sock:
        errors = []

        def send():
            try:
                sock.sendall(payload)
            except Exception as exc:      # reported below
                errors.append(exc)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        back = recv_exactly(sock, len(payload), timeout=60)
        sender.join(30)
        assert not errors
        assert back == payload
        assert echo.total_received() == payload


def test_half_close_is_passed_on_and_pair_ends(proxy, echo):
    sock = connect(proxy)
    try:
        assert echo_roundtrip(sock, b'bye') == b'bye'
        sock.shutdown(socket.SHUT_WR)          # server sees EOF, closes its side
        sock.settimeout(30)
        assert sock.recv(10) == b''
        wait_until(lambda: proxy.active_connections == 0,
                   message='pair still open after both sides closed')
        wait_until(lambda: echo.closed == 1)
        assert echo.resets == 0
    finally:
        sock.close()


def test_many_concurrent_connections(proxy, echo):
    socks = [connect(proxy) for _ in range(20)]
    try:
        for i, sock in enumerate(socks):
            msg = b'conn-%d' % i
            assert echo_roundtrip(sock, msg) == msg
        assert proxy.connections_total == 20
        assert proxy.active_connections == 20
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: proxy.active_connections == 0)


def test_upstream_down_resets_client():
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    port = listener.getsockname()[1]
    listener.close()                          # nothing listens there now
    with TcpProxy('127.0.0.1', port) as proxy:
        assert_refused(proxy)
        wait_until(lambda: proxy.active_connections == 0)
        assert proxy.connections_total == 1


# ---------------------------------------------------------------------- faults

def test_cut_resets_current_connections_and_keeps_accepting(proxy, echo):
    socks = [connect(proxy) for _ in range(3)]
    try:
        for sock in socks:
            assert echo_roundtrip(sock) == b'ping'
        proxy.cut()
        assert proxy.active_connections == 0   # cut() returns once it is done
        # SO_LINGER 0: the client sees an RST, not an orderly EOF
        for sock in socks:
            sock.settimeout(30)
            with pytest.raises(ConnectionResetError):
                sock.recv(1)
        wait_until(lambda: echo.closed == 3, message='upstream side not closed')
        assert echo.resets == 3, 'upstream connections were not reset'
        with connect(proxy) as sock:
            assert echo_roundtrip(sock, b'again') == b'again'
        assert proxy.connections_total == 4
    finally:
        for sock in socks:
            sock.close()


def test_cut_with_no_connection_and_before_start():
    proxy = TcpProxy('127.0.0.1', 9)
    proxy.cut()                 # nothing to do, must not fail
    proxy.refuse(True)
    proxy.blackhole(True)
    proxy.delay(0.5)
    proxy.heal()
    proxy.stop()


def test_refuse_then_accept_again(proxy, echo):
    old = connect(proxy)
    try:
        assert echo_roundtrip(old) == b'ping'
        proxy.refuse(True)
        assert proxy.active_connections == 0
        assert assert_dead(old) == 'reset'
        for _ in range(3):
            assert_refused(proxy)
        assert proxy.refused_total == 3
        assert proxy.connections_total == 1
        assert echo.accepted == 1, 'a refused connection reached the upstream'
        proxy.refuse(False)
        with connect(proxy) as sock:
            assert echo_roundtrip(sock, b'back') == b'back'
        assert proxy.connections_total == 2
    finally:
        old.close()


def test_blackhole_swallows_both_ways_then_heal(proxy, echo):
    sock = connect(proxy)
    try:
        assert echo_roundtrip(sock, b'before') == b'before'
        proxy.blackhole(True)
        sock.sendall(b'lost')
        sock.settimeout(QUIET)
        with pytest.raises(socket.timeout):
            sock.recv(1)                                 # nothing comes back
        assert proxy.active_connections == 1             # connection stays open
        # a new connection is accepted, and connected upstream, but mute
        late = connect(proxy)
        try:
            wait_until(lambda: echo.accepted == 2, message='upstream not connected')
            assert proxy.active_connections == 2
            late.sendall(b'late')
            late.settimeout(QUIET)
            with pytest.raises(socket.timeout):
                late.recv(1)
            proxy.heal()
            assert echo_roundtrip(sock, b'after') == b'after'
            assert echo_roundtrip(late, b'late2') == b'late2'
        finally:
            late.close()
        # swallowed, not delayed: the upstream never saw them
        assert echo.received[0] == bytearray(b'beforeafter')
        assert echo.received[1] == bytearray(b'late2')
    finally:
        sock.close()


def test_blackhole_swallows_upstream_to_client():
    server = EchoServer()
    try:
        with TcpProxy('127.0.0.1', server.port) as proxy:
            with connect(proxy) as sock:
                assert echo_roundtrip(sock) == b'ping'
                proxy.blackhole(True)
                # the server pushes bytes by itself while the hole is open
                with server.lock:
                    conn = server.conns[0]
                conn.sendall(b'pushed')
                sock.settimeout(QUIET)
                with pytest.raises(socket.timeout):
                    sock.recv(1)
                proxy.blackhole(False)
                assert echo_roundtrip(sock, b'x') == b'x'
    finally:
        server.stop()


def test_delay_adds_latency_per_chunk(proxy, echo):
    with connect(proxy) as sock:
        start = time.monotonic()
        assert echo_roundtrip(sock) == b'ping'
        fast = time.monotonic() - start
        proxy.delay(0.4)
        start = time.monotonic()
        assert echo_roundtrip(sock) == b'ping'
        slow = time.monotonic() - start
        # two forwarded chunks (there and back) of 0.4 s each
        assert slow >= 0.75, 'round trip took %.3fs with delay 0.4' % slow
        assert slow > fast
        proxy.delay(0)
        assert echo_roundtrip(sock, b'quick') == b'quick'
        with pytest.raises(ValueError):
            proxy.delay(-1)


def test_delay_keeps_order_and_heal_turns_it_off(proxy, echo):
    with connect(proxy) as sock:
        proxy.delay(0.2)
        for i in range(5):
            sock.sendall(b'%d,' % i)
        assert recv_exactly(sock, 10) == b'0,1,2,3,4,'
        proxy.heal()
        assert echo_roundtrip(sock) == b'ping'


def test_fault_controls_are_thread_safe(proxy, echo):
    stop = threading.Event()
    errors = []

    def chaos(seed):
        rnd = random.Random(seed)
        try:
            while not stop.is_set():
                action = rnd.choice(['cut', 'refuse', 'blackhole', 'delay', 'heal'])
                if action == 'cut':
                    proxy.cut()
                elif action == 'refuse':
                    proxy.refuse(rnd.random() < 0.5)
                elif action == 'blackhole':
                    proxy.blackhole(rnd.random() < 0.5)
                elif action == 'delay':
                    proxy.delay(rnd.choice([0, 0.001, 0.01]))
                else:
                    proxy.heal()
        except Exception as exc:
            errors.append(exc)

    def client():
        while not stop.is_set():
            try:
                with socket.create_connection(('127.0.0.1', proxy.port), timeout=1) as s:
                    s.sendall(b'data' * 100)
                    s.recv(100)
            except OSError:
                pass

    threads = [threading.Thread(target=chaos, args=(i,), daemon=True) for i in range(3)]
    threads += [threading.Thread(target=client, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: proxy.connections_total + proxy.refused_total >= 50,
               message='clients made no progress')
    stop.set()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert not errors, errors
    assert proxy.error is None and proxy.running
    proxy.heal()
    proxy.cut()
    with connect(proxy) as sock:
        assert echo_roundtrip(sock, b'calm') == b'calm'


# ---------------------------------------------------------------------- stop

def test_stop_is_idempotent_closes_everything_and_ends_thread(echo):
    proxy = TcpProxy('127.0.0.1', echo.port)
    proxy.stop()                            # before start: no-op
    proxy = TcpProxy('127.0.0.1', echo.port).start()
    port = proxy.port
    sock = connect(proxy)
    try:
        assert echo_roundtrip(sock) == b'ping'
        proxy.stop()
        proxy.stop()
        assert proxy.active_connections == 0
        assert assert_dead(sock) == 'reset'
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(('127.0.0.1', port), timeout=30).close()
        wait_until(lambda: not proxy_threads(), message='proxy thread still alive')
        assert not proxy.running
        proxy.cut()                         # after stop: no-op
        proxy.heal()
        with pytest.raises(RuntimeError):
            proxy.start()
    finally:
        sock.close()


def test_context_manager_stops(echo):
    with TcpProxy('127.0.0.1', echo.port) as proxy:
        with connect(proxy) as sock:
            assert echo_roundtrip(sock) == b'ping'
        assert proxy.running
    assert not proxy.running
    wait_until(lambda: not proxy_threads(), message='proxy thread still alive')


def test_no_proxy_thread_left_behind():
    # every test above stopped its proxy: none of their threads may linger
    wait_until(lambda: not proxy_threads(),
               message='threads left: %s' % proxy_threads())
