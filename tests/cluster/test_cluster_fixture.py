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

"""Smoke tests of the private RabbitMQ cluster fixture (tests/support/rabbit_cluster.py).

The main scenario: 100 persistent messages into a quorum queue through a kombu
connection with a multi-host URL, the node that connection is on stopped,
kombu fails over to another node, 100 more published, and all 200 consumed
exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import kombu
import pytest

from tests.support import rabbit as shared
from tests.support.rabbit_cluster import RabbitNotInstalled, find_rabbitmq, port_open
from tests.support.wait import wait_until

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 100


def _local_port(conn: kombu.Connection) -> int:
    return conn.connection.sock.getsockname()[1]


def _server_port(conn: kombu.Connection) -> int:
    return conn.connection.sock.getpeername()[1]


def test_cluster_is_private_and_formed(cluster):
    assert len(cluster.nodes) == 3 and len(set(cluster.nodes)) == 3
    assert not {'rabbit@localhost'} & set(cluster.nodes)
    assert shared.PORT not in cluster.ports
    assert len(set(cluster.ports + cluster.dist_ports)) == 6
    for i, node in enumerate(cluster.nodes):
        assert sorted(cluster.running_nodes(via=node)) == sorted(cluster.nodes)
        assert port_open(cluster.ports[i])
    status = cluster.cluster_status()
    assert sorted(status['disk_nodes']) == sorted(cluster.nodes)
    assert cluster.transport_url() == 'rabbit://' + ','.join(
        'guest:guest@127.0.0.1:%d' % p for p in cluster.ports) + '/'
    # each node's process group holds its Erlang VM (stop() kills the group)
    for i in range(cluster.size):
        comms = []
        for pid in cluster.node_pids(i):
            with open('/proc/%d/comm' % pid) as f:
                comms.append(f.read().strip())
        assert 'beam.smp' in comms, comms
    # the private helper refuses any node that is not a private one
    with pytest.raises(ValueError):
        cluster._ctl('rabbit@localhost', 'status')


def test_quorum_queue_survives_stop_of_the_connected_node(cluster):
    qname = 'cluster-smoke-%s' % uuid.uuid4().hex[:8]
    queue = kombu.Queue(qname, exchange=kombu.Exchange(''), routing_key=qname,
                        durable=True, queue_arguments={'x-queue-type': 'quorum'})
    failovers = []
    conn = kombu.Connection(
        cluster.kombu_url(), failover_strategy='round-robin', connect_timeout=5,
        transport_options={'confirm_publish': True,
                           'client_properties': {'connection_name': 'smoke-' + qname}})
    stopped = None
    try:
        conn.ensure_connection(max_retries=5)
        channel = conn.channel()
        queue(channel).declare()
        channel.close()
        producer = conn.Producer(serializer='json')
        publish = conn.ensure(producer, producer.publish, max_retries=30,
                              errback=lambda exc, interval: failovers.append(repr(exc)))

        def publish_range(start):
            for seq in range(start, start + N):
                publish({'seq': seq}, routing_key=qname, delivery_mode=2,
                        declare=[queue], retry=False)

        publish_range(0)
        wait_until(lambda: cluster.queue_message_count(qname) == N, timeout=60,
                   message='the queue does not hold the %d confirmed messages' % N)

        # which node is the connection on?  Ask the brokers, by client port and
        # by connection name; it must be the node of the port we dialled.
        first_node = cluster.connected_node_of(_local_port(conn))
        assert first_node == cluster.node_of_port(_server_port(conn))
        assert cluster.connected_node_of('smoke-' + qname) == first_node

        stopped = cluster.stop_node(first_node)
        assert not cluster.is_running(stopped)

        publish_range(N)                 # kombu reconnects to another node
        second_node = cluster.node_of_port(_server_port(conn))
        assert second_node != stopped
        assert cluster.connected_node_of(_local_port(conn)) == second_node
        assert failovers, 'kombu never saw the connection fail'

        received = []

        def on_message(body, message):
            received.append(body['seq'])
            message.ack()

        with conn.Consumer(queue, callbacks=[on_message], accept=['json'],
                           prefetch_count=50):
            deadline = time.monotonic() + 120
            while len(received) < 2 * N and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    pass
        assert sorted(received) == list(range(2 * N)), (
            'lost: %s, duplicated: %s' % (
                sorted(set(range(2 * N)) - set(received)),
                sorted({s for s in received if received.count(s) > 1})))
        # exactly once: nothing left, nothing redelivered later
        channel = conn.channel()
        try:
            assert channel.basic_get(qname, no_ack=False) is None
        finally:
            channel.close()
        wait_until(lambda: cluster.queue_message_count(qname) == 0, timeout=60,
                   message='acknowledged messages still counted in the queue')
    finally:
        try:
            conn.release()
        except Exception:
            pass
        if stopped is not None:
            cluster.start_node(stopped)
        with kombu.Connection(cluster.kombu_url(), connect_timeout=5) as c:
            c.ensure_connection(max_retries=5)
            try:
                queue(c.channel()).delete()
            except Exception:
                pass


def test_stop_node_and_start_node(cluster):
    node = cluster.stop_node(2)
    assert node == cluster.nodes[2]
    others = cluster.nodes[:2]
    for other in others:
        assert sorted(cluster.running_nodes(via=other)) == sorted(others)
    with pytest.raises(OSError):
        socket.create_connection(('127.0.0.1', cluster.ports[2]), timeout=5).close()
    # the other nodes still serve
    with kombu.Connection(cluster.kombu_url(), connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=5)
        assert _server_port(conn) != cluster.ports[2]
    cluster.start_node(2)
    for other in cluster.nodes:
        assert sorted(cluster.running_nodes(via=other)) == sorted(cluster.nodes)


def test_shared_broker_untouched(cluster):
    """The shared node still answers on 5672 while the private cluster runs."""
    assert shared.connect_error() is None


_CHILD = textwrap.dedent('''
    import json, os, sys, time
    sys.path.insert(0, %(root)r)
    from tests.support.rabbit_cluster import RabbitCluster
    c = RabbitCluster(size=1, name_prefix=%(prefix)r)
    c.start(timeout=150)
    print(json.dumps({'pids': c.node_pids(0), 'tempdir': c.tempdir,
                      'port': c.ports[0]}), flush=True)
    if %(mode)r == 'crash':
        raise SystemExit('crash without stop(): atexit must clean up')
    time.sleep(3600)     # waits to be SIGKILLed by the test
''')


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split()[2] != 'Z'
    except OSError:
        return False


def test_crashed_session_leaves_no_node_behind():
    """atexit (session exits without stop()) and PDEATHSIG (session SIGKILLed):
    either way the private node processes end."""
    try:
        find_rabbitmq()
    except RabbitNotInstalled as exc:
        shared.peer_missing(str(exc))
    children = {}
    for mode in ('crash', 'kill'):
        code = _CHILD % {'root': _ROOT, 'prefix': 'anc' + mode, 'mode': mode}
        children[mode] = subprocess.Popen([sys.executable, '-c', code],
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True)
    info = {}
    try:
        for mode, child in children.items():
            line = child.stdout.readline()
            assert line, 'child %s failed: %s' % (mode, child.stderr.read()[-3000:])
            info[mode] = json.loads(line)
        # 'crash': the interpreter exits without stop(); atexit stops the node
        assert children['crash'].wait(120) != 0
        # 'kill': SIGKILL, no atexit at all; PDEATHSIG stops the node
        children['kill'].send_signal(signal.SIGKILL)
        children['kill'].wait(30)
        for mode in ('crash', 'kill'):
            pids = info[mode]['pids']
            wait_until(lambda: not any(_alive(p) for p in pids), timeout=60,
                       message='%s: node process still alive' % mode)
            wait_until(lambda: not port_open(info[mode]['port']), timeout=60)
        assert not os.path.exists(info['crash']['tempdir']), 'atexit left the tempdir'
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait(30)
        for data in info.values():
            subprocess.run(['rm', '-rf', data['tempdir']], check=False)


def test_missing_rabbitmq_server_skips_or_fails_under_ci(monkeypatch, tmp_path):
    """No rabbitmq-server: tests.support.rabbit.peer_missing decides (skip
    here, fail under CI=true); nothing is started or left behind."""
    from tests.support import rabbit_cluster
    monkeypatch.setattr(rabbit_cluster, '_PACKAGE_BIN', str(tmp_path / 'absent'))
    monkeypatch.setenv('PATH', str(tmp_path))
    monkeypatch.delenv('RABBITMQ_CLUSTER_SBIN', raising=False)
    monkeypatch.delenv('CI', raising=False)
    with pytest.raises(pytest.skip.Exception, match='rabbitmq-server is not installed'):
        rabbit_cluster.start_or_peer_missing(size=1)
    monkeypatch.setenv('CI', 'true')
    with pytest.raises(pytest.fail.Exception,
                       match='CI=true and rabbitmq-server is not installed'):
        rabbit_cluster.start_or_peer_missing(size=1)
