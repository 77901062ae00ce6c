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

"""A private three-node RabbitMQ cluster on loopback for one test session.

Fully separate from the shared broker (``rabbit@localhost`` on 5672):

* own node names ``anc1-<pid>@localhost`` ... (the pid keeps two concurrent
  test sessions on one machine apart);
* own AMQP ports and Erlang distribution ports, picked free on 127.0.0.1,
  every listener bound to 127.0.0.1 only;
* own data, log, pid, config, env-config and enabled-plugins files under one
  temporary directory (``RABBITMQ_CONF_ENV_FILE`` points to a private empty
  file, so ``/etc/rabbitmq/rabbitmq-env.conf``, which names the shared node,
  is never read; no ``/etc/rabbitmq/rabbitmq.conf`` either);
* its OWN random Erlang cookie in a private ``HOME``: the private nodes and the
  CLI calls made here can authenticate to each other only, so no call from
  this module can ever reach the shared node, and its cookie is never read;
* the server scripts are run directly from ``/usr/lib/rabbitmq/bin`` (the
  ``/usr/sbin`` wrappers of the Debian package ``su`` to the ``rabbitmq`` user
  and ``cd /var/lib/rabbitmq``); the nodes run as the current user (root in
  CI), which owns the temporary directory;
* the only thing shared is the machine's epmd (port 4369), where the private
  nodes register their own names.

Every ``rabbitmqctl`` call goes through :meth:`RabbitCluster._ctl`, which
refuses any node that is not one of the private ones.

Nodes never outlive the test session: :meth:`RabbitCluster.stop` is
registered with ``atexit``, and each node's ``rabbitmq-server`` script is
started with ``PR_SET_PDEATHSIG = SIGTERM`` (its own TERM trap then stops the
Erlang VM it runs as a child), so the node ends even if the session itself is
SIGKILLed.  The signal fires when the THREAD that started the node ends:
start the cluster from the main thread, as pytest fixtures are.  Each node is
a process group of its own (script, VM, helpers), which :meth:`stop` kills
as a last resort.

Usage (see ``tests/cluster/conftest.py``)::

    cluster = RabbitCluster(size=3)
    cluster.start(timeout=180)
    url = cluster.transport_url()     # rabbit://guest:guest@127.0.0.1:p1,.../
    cluster.stop_node(0); cluster.start_node(0)
    cluster.stop()
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

HOST = '127.0.0.1'
NODE_HOST = 'localhost'
#: where the Debian/Ubuntu package keeps the real scripts (no su, no cd)
_PACKAGE_BIN = '/usr/lib/rabbitmq/bin'
_LOG_TAIL = 4000


class RabbitNotInstalled(RuntimeError):
    """No rabbitmq-server / rabbitmqctl on this machine."""


class ClusterError(RuntimeError):
    """The private cluster did not reach the state asked for."""


def find_rabbitmq() -> tuple:
    """``(rabbitmq-server, rabbitmqctl)`` paths that run a node as the calling
    user, or raise :class:`RabbitNotInstalled`."""
    dirs = []
    if os.environ.get('RABBITMQ_CLUSTER_SBIN'):
        dirs.append(os.environ['RABBITMQ_CLUSTER_SBIN'])
    dirs.append(_PACKAGE_BIN)
    found = shutil.which('rabbitmq-server')
    if found:
        dirs.append(os.path.dirname(os.path.realpath(found)))
        dirs.append(os.path.dirname(found))
    for d in dirs:
        server = os.path.join(d, 'rabbitmq-server')
        ctl = os.path.join(d, 'rabbitmqctl')
        if not (os.access(server, os.X_OK) and os.access(ctl, os.X_OK)):
            continue
        try:
            with open(server, 'rb') as f:
                head = f.read(8192)
        except OSError:
            continue
        if b'su rabbitmq' in head:        # the Debian wrapper: not usable here
            continue
        return server, ctl
    raise RabbitNotInstalled('rabbitmq-server is not installed (looked in %s); '
                             'apt-get install rabbitmq-server' % ', '.join(dirs))


def start_or_peer_missing(size: int = 3, timeout: float = 180.0) -> 'RabbitCluster':
    """A started cluster; without rabbitmq-server on the machine
    ``tests.support.rabbit.peer_missing`` (skip, or fail under CI=true)."""
    from tests.support.rabbit import peer_missing
    cluster = RabbitCluster(size=size)
    try:
        cluster.start(timeout=timeout)
    except RabbitNotInstalled as exc:
        peer_missing(str(exc))
    return cluster


def free_port() -> int:
    """A TCP port nobody listens on right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _pdeathsig():
    """preexec_fn: SIGTERM this child when the thread that forked it dies.

    The child is the ``rabbitmq-server`` shell script, which runs the Erlang VM
    as ITS child and traps SIGTERM to stop the VM gracefully and wait for it
    (a SIGKILL would orphan the VM: PDEATHSIG is not inherited across fork)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM, 0, 0, 0)            # PR_SET_PDEATHSIG


try:    # resolved here, not in the forked child (no dlopen after fork)
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _poll(predicate, timeout, what, interval=0.2, diagnose=None):
    """Poll ``predicate`` until truthy; ClusterError after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = interval
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = ''
            if diagnose is not None:
                try:
                    extra = '\n' + diagnose()
                except Exception as exc:     # diagnostics must not hide the error
                    extra = '\n(diagnostics failed: %r)' % exc
            raise ClusterError('%s: not reached within %.0fs%s' % (what, timeout, extra))
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


class RabbitCluster(object):
    """A private RabbitMQ cluster of ``size`` nodes on 127.0.0.1."""

    def __init__(self, size: int = 3, name_prefix: str = 'anc'):
        if size < 1:
            raise ValueError('size must be >= 1')
        self.size = size
        suffix = '-%d' % os.getpid()
        #: node names, e.g. ``anc1-4242@localhost``
        self.nodes = ['%s%d%s@%s' % (name_prefix, i + 1, suffix, NODE_HOST)
                      for i in range(size)]
        #: AMQP ports, one per node, same order as :attr:`nodes`
        self.ports = []
        #: Erlang distribution ports, same order
        self.dist_ports = []
        self.host = HOST
        self.tempdir = None
        #: seconds :meth:`start` took (boot, join and wait for all running)
        self.start_seconds = None
        self._procs = [None] * size
        self._server = self._ctl_bin = None
        self._env = None
        self._lock = threading.RLock()
        self._atexit = False
        self._stopped = False

    # ------------------------------------------------------------------ paths, env

    def _path(self, *parts) -> str:
        return os.path.join(self.tempdir, *parts)

    def _short(self, node) -> str:
        return node.split('@', 1)[0]

    def _base_env(self) -> dict:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(('RABBITMQ_', 'ERL_', 'CONF_ENV_FILE'))}
        env.update({
            'HOME': self._path('home'),               # private .erlang.cookie
            'RABBITMQ_CONF_ENV_FILE': self._path('rabbitmq-env.conf'),
            'RABBITMQ_MNESIA_BASE': self._path('mnesia'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': self._path('enabled_plugins'),
            'RABBITMQ_ADVANCED_CONFIG_FILE': self._path('advanced.config'),
            'ERL_EPMD_ADDRESS': HOST,
            # CLI tools: an ephemeral distribution port each (no fixed range
            # shared with the shared node's CLI calls)
            'RABBITMQ_CTL_DIST_PORT_MIN': '0',
            'RABBITMQ_CTL_DIST_PORT_MAX': '0',
        })
        env.setdefault('LC_ALL', 'C.UTF-8')
        env.setdefault('LANG', 'C.UTF-8')
        return env

    def _node_env(self, i) -> dict:
        node = self.nodes[i]
        short = self._short(node)
        env = dict(self._env)
        env.update({
            'RABBITMQ_NODENAME': node,
            'RABBITMQ_NODE_IP_ADDRESS': HOST,
            'RABBITMQ_NODE_PORT': str(self.ports[i]),
            'RABBITMQ_DIST_PORT': str(self.dist_ports[i]),
            'RABBITMQ_CONFIG_FILE': self._path('%s.conf' % short),
            'RABBITMQ_LOG_BASE': self._path('log', short),
            'RABBITMQ_PID_FILE': self._path('%s.pid' % short),
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS':
                '-kernel inet_dist_use_interface {127,0,0,1}',
        })
        return env

    def _write_files(self):
        os.makedirs(self._path('home'), mode=0o700)
        os.makedirs(self._path('mnesia'))
        os.makedirs(self._path('log'))
        cookie = self._path('home', '.erlang.cookie')
        with open(cookie, 'w') as f:
            f.write(secrets.token_hex(24).upper())
        os.chmod(cookie, 0o400)
        with open(self._path('rabbitmq-env.conf'), 'w') as f:
            f.write('# private cluster: nothing from /etc/rabbitmq/rabbitmq-env.conf\n')
        with open(self._path('enabled_plugins'), 'w') as f:
            f.write('[].\n')

    def _write_node_config(self, i):
        short = self._short(self.nodes[i])
        os.makedirs(self._path('log', short), exist_ok=True)
        with open(self._path('%s.conf' % short), 'w') as f:
            f.write('listeners.tcp.1 = %s:%d\n' % (HOST, self.ports[i]))
            f.write('loopback_users.guest = true\n')
            f.write('log.console = false\n')
            f.write('log.file.level = info\n')
            f.write('disk_free_limit.absolute = 50MB\n')

    # ------------------------------------------------------------------ rabbitmqctl

    def _ctl(self, node, *args, timeout: float = 120.0, check: bool = True):
        """Run ``rabbitmqctl -n <node> args``; ``node`` must be a private node
        (name or index).  Returns the CompletedProcess; raises ClusterError on
        a non-zero exit when ``check``."""
        if isinstance(node, int):
            node = self.nodes[node]
        if node not in self.nodes:
            raise ValueError('%r is not a node of this private cluster' % (node,))
        cmd = [self._ctl_bin, '-n', node] + [str(a) for a in args]
        try:
            result = subprocess.run(cmd, env=self._env, capture_output=True,
                                    text=True, timeout=timeout, cwd=self.tempdir)
        except subprocess.TimeoutExpired as exc:
            raise ClusterError('%s timed out after %.0fs' % (' '.join(cmd[1:]), timeout)) \
                from exc
        if check and result.returncode != 0:
            raise ClusterError('%s failed (%d): %s %s' % (
                ' '.join(cmd[1:]), result.returncode, result.stdout.strip(),
                result.stderr.strip()))
        return result

    def _ctl_json(self, node, *args, timeout: float = 60.0):
        out = self._ctl(node, *args, '--formatter', 'json', timeout=timeout).stdout
        start = min([p for p in (out.find('['), out.find('{')) if p >= 0] or [0])
        return json.loads(out[start:])

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 180.0) -> 'RabbitCluster':
        """Boot every node, join nodes 2..n to node 1 and wait until
        ``cluster_status`` shows them all running.  Raises
        :class:`RabbitNotInstalled` or :class:`ClusterError` (after cleaning up)."""
        with self._lock:
            if self.tempdir is not None:
                raise RuntimeError('cluster already started')
            self._server, self._ctl_bin = find_rabbitmq()
            t0 = time.monotonic()
            deadline = t0 + timeout
            self.tempdir = tempfile.mkdtemp(prefix='rabbit-cluster-')
            if not self._atexit:
                atexit.register(self.stop)
                self._atexit = True
            try:
                self._write_files()
                self._env = self._base_env()
                for i in range(self.size):
                    self.ports.append(None)
                    self.dist_ports.append(None)
                    self._pick_ports(i)
                    self._launch(i)
                for i in range(self.size):
                    self._await_boot(i, deadline)
                for i in range(1, self.size):
                    self._join(i, deadline)
                self._await_running(self.nodes, deadline)
            except BaseException:
                self.stop()
                raise
            self.start_seconds = time.monotonic() - t0
        return self

    def _pick_ports(self, i):
        taken = set(self.ports) | set(self.dist_ports)
        while True:
            amqp, dist = free_port(), free_port()
            if amqp != dist and not {amqp, dist} & taken:
                break
        self.ports[i], self.dist_ports[i] = amqp, dist
        self._write_node_config(i)

    def _launch(self, i):
        short = self._short(self.nodes[i])
        out = open(self._path('log', '%s.stdout' % short), 'ab')
        try:
            self._procs[i] = subprocess.Popen(
                [self._server], env=self._node_env(i), cwd=self.tempdir,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_pdeathsig)
        finally:
            out.close()

    def _await_boot(self, i, deadline, attempts=3):
        """Wait until node ``i`` has fully booted; relaunch it on other ports
        if it died at boot (a port picked free was taken meanwhile)."""
        node = self.nodes[i]
        for attempt in range(attempts):
            def booted():
                proc = self._procs[i]
                if proc.poll() is not None:
                    return 'died'
                left = max(5, min(30, deadline - time.monotonic()))
                r = self._ctl(node, 'await_startup', '--timeout', int(left),
                              timeout=left + 30, check=False)
                return 'up' if r.returncode == 0 else None
            state = _poll(booted, max(1.0, deadline - time.monotonic()),
                          '%s boot' % node, diagnose=lambda: self.log_tail(i))
            if state == 'up':
                return
            if attempt + 1 < attempts:
                self._pick_ports(i)
                self._launch(i)
        raise ClusterError('%s died at boot %d times:\n%s'
                           % (node, attempts, self.log_tail(i)))

    def _join(self, i, deadline):
        node, seed = self.nodes[i], self.nodes[0]
        self._ctl(node, 'stop_app')
        errors = []

        def joined():                   # retried: the seed may still be settling
            r = self._ctl(node, 'join_cluster', seed, check=False)
            out = (r.stdout + r.stderr).strip()
            errors.append(out)
            return r.returncode == 0 or 'already_member' in out
        _poll(joined, max(1.0, min(60.0, deadline - time.monotonic())),
              '%s joined to %s' % (node, seed), diagnose=lambda: errors[-1])
        self._ctl(node, 'start_app')
        left = max(5, deadline - time.monotonic())
        self._ctl(node, 'await_startup', '--timeout', int(left), timeout=left + 30)

    def _await_running(self, nodes, deadline):
        """Wait until ``cluster_status`` on every node in ``nodes`` lists
        exactly ``nodes`` as running."""
        want = set(nodes)

        def converged():
            for node in nodes:
                if set(self.running_nodes(via=node)) != want:
                    return False
            return True
        _poll(converged, max(1.0, deadline - time.monotonic()),
              'running nodes == %s' % sorted(want), diagnose=self._status_summary)

    def stop(self) -> None:
        """Halt every private node (the CLI's ``stop`` command through
        :meth:`_ctl`, then SIGKILL of what is left) and remove the temporary
        directory.  Idempotent; also registered with ``atexit``."""
        with self._lock:
            if self.tempdir is None or self._stopped:
                return
            self._stopped = True
            threads = []
            for i, proc in enumerate(self._procs):
                if proc is not None and proc.poll() is None:
                    t = threading.Thread(target=self._halt, args=(i,), daemon=True)
                    t.start()
                    threads.append(t)
            for t in threads:
                t.join(90)
            for i in range(self.size):
                self._kill(i)
            shutil.rmtree(self.tempdir, ignore_errors=True)
            if self._atexit:
                try:
                    atexit.unregister(self.stop)
                except Exception:
                    pass

    def _halt(self, i):
        proc = self._procs[i]
        try:
            self._ctl(i, 'stop', timeout=60, check=False)
            proc.wait(60)
        except Exception:
            pass                       # _kill does the rest

    def _kill(self, i):
        """SIGKILL whatever is left of node ``i``'s process group."""
        proc = self._procs[i]
        if proc is None:
            return
        if proc.poll() is None:        # leader not reaped: the group is ours
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        else:
            # leader gone: a pgid is never reused while its group has members,
            # so its remaining members (an orphaned VM) are still ours
            for pid in self.node_pids(i):
                if pid != proc.pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            pass

    def __enter__(self):
        if self.tempdir is None:
            self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # ------------------------------------------------------------------ one node

    def node_pids(self, i) -> list:
        """Pids of node ``i``'s process group (the script, the Erlang VM ...)."""
        proc = self._procs[self._index(i)]
        if proc is None:
            return []
        pids = []
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % entry) as f:
                    fields = f.read().rsplit(')', 1)[1].split()
            except (OSError, IndexError):
                continue
            # fields: state ppid pgrp ...
            if fields[0] != 'Z' and int(fields[2]) == proc.pid:
                pids.append(int(entry))
        return sorted(pids)

    def _index(self, node) -> int:
        if isinstance(node, int):
            if not 0 <= node < self.size:
                raise IndexError('node index %d out of range' % node)
            return node
        return self.nodes.index(node)

    def stop_node(self, i, timeout: float = 120.0) -> str:
        """``stop_app`` on node ``i`` (index or name); returns once its AMQP
        port is closed and the other nodes see it as not running."""
        i = self._index(i)
        node = self.nodes[i]
        self._ctl(node, 'stop_app', timeout=timeout)
        deadline = time.monotonic() + timeout
        _poll(lambda: not port_open(self.ports[i]), timeout,
              '%s AMQP port closed' % node)
        others = [n for n in self.nodes if n != node and self.is_running(n)]
        if others:
            _poll(lambda: node not in self.running_nodes(via=others[0]),
                  max(1.0, deadline - time.monotonic()),
                  '%s seen down by %s' % (node, others[0]),
                  diagnose=self._status_summary)
        return node

    def start_node(self, i, timeout: float = 120.0) -> str:
        """``start_app`` on node ``i`` (index or name); returns once it has
        booted, accepts AMQP and every running node lists it as running."""
        i = self._index(i)
        node = self.nodes[i]
        self._ctl(node, 'start_app', timeout=timeout)
        deadline = time.monotonic() + timeout
        self._ctl(node, 'await_startup', '--timeout', int(timeout), timeout=timeout + 30)
        _poll(lambda: port_open(self.ports[i]), max(1.0, deadline - time.monotonic()),
              '%s AMQP port open' % node)
        running = [n for n in self.nodes if self.is_running(n)]
        self._await_running(running, deadline)
        return node

    def is_running(self, node) -> bool:
        """The RabbitMQ application of ``node`` (index or name) accepts AMQP
        connections (``stop_app`` closes the listener, ``start_app`` opens it
        last)."""
        return port_open(self.ports[self._index(node)])

    # ------------------------------------------------------------------ queries

    def cluster_status(self, via=0) -> dict:
        """``rabbitmqctl cluster_status`` of node ``via`` as a dict."""
        return self._ctl_json(via, 'cluster_status')

    def running_nodes(self, via=0) -> list:
        """Running nodes as node ``via`` sees them ([] if it cannot answer)."""
        try:
            return list(self.cluster_status(via).get('running_nodes', []))
        except (ClusterError, ValueError):
            return []

    def transport_url(self, user: str = 'guest', password: str = 'guest',
                      vhost: str = '/') -> str:
        """oslo.messaging URL naming every node:
        ``rabbit://u:p@127.0.0.1:p1,u:p@127.0.0.1:p2,.../``."""
        hosts = ','.join('%s:%s@%s:%d' % (user, password, HOST, p) for p in self.ports)
        return 'rabbit://%s/%s' % (hosts, '' if vhost == '/' else vhost)

    def kombu_url(self, user: str = 'guest', password: str = 'guest',
                  vhost: str = '/') -> str:
        """kombu failover URL: ``amqp://u:p@127.0.0.1:p1//;amqp://...``."""
        return ';'.join('amqp://%s:%s@%s:%d/%s' % (user, password, HOST, p, vhost)
                        for p in self.ports)

    def node_of_port(self, amqp_port: int) -> str:
        """The node whose AMQP listener is ``amqp_port``."""
        return self.nodes[self.ports.index(amqp_port)]

    def connections(self, node) -> list:
        """Client connections of one node: dicts with ``name``, ``peer_port``,
        ``connection_name`` (the client-provided name, or None).

        ``list_connections`` answers for the whole cluster, whichever node is
        asked: a connection belongs to the node whose AMQP port it reached."""
        name = node if isinstance(node, str) else self.nodes[node]
        port = self.ports[self.nodes.index(name)]
        rows = self._ctl_json(node, 'list_connections', 'name', 'port', 'peer_port',
                              'client_properties')
        result = []
        for row in rows:
            if row.get('port') != port:
                continue
            props = {p[0]: p[2] for p in row.get('client_properties') or ()
                     if isinstance(p, list) and len(p) == 3}
            result.append({'name': row.get('name'), 'peer_port': row.get('peer_port'),
                           'connection_name': props.get('connection_name')})
        return result

    def connected_node_of(self, client) -> str | None:
        """The node a client connection is on, asked of the brokers.

        ``client``: the client's local port (int: matched to ``peer_port``), or
        a string found in the connection's name (``"127.0.0.1:54321 ->
        127.0.0.1:5673"``) or in its client-provided ``connection_name``.
        None when no running node has such a connection."""
        for node in self.nodes:
            try:
                conns = self.connections(node)
            except (ClusterError, ValueError):
                continue               # app stopped: no connections there
            for c in conns:
                if isinstance(client, int):
                    if c['peer_port'] == client:
                        return node
                elif client in (c['name'] or '') or client in (c['connection_name'] or ''):
                    return node
        return None

    def queue_message_count(self, queue: str, vhost: str = '/') -> int | None:
        """Messages in ``queue`` (ready + unacknowledged) as a running node
        reports it; None if there is no such queue."""
        for node in self.nodes:
            try:
                rows = self._ctl_json(node, 'list_queues', '-p', vhost, 'name', 'messages')
            except (ClusterError, ValueError):
                continue
            for row in rows:
                if row.get('name') == queue:
                    return int(row.get('messages') or 0)
            return None
        raise ClusterError('no node could list queues')

    # ------------------------------------------------------------------ diagnostics

    def log_tail(self, i, chars: int = _LOG_TAIL) -> str:
        """The end of node ``i``'s stdout and log file."""
        short = self._short(self.nodes[i])
        parts = []
        for path in (self._path('log', '%s.stdout' % short),
                     self._path('log', short, '%s.log' % self.nodes[i])):
            try:
                with open(path, errors='replace') as f:
                    parts.append('--- %s\n%s' % (path, f.read()[-chars:]))
            except OSError:
                pass
        return '\n'.join(parts)

    def _status_summary(self) -> str:
        lines = []
        for node in self.nodes:
            lines.append('%s sees running: %s' % (node, self.running_nodes(via=node)))
        return '\n'.join(lines)
