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

"""Harness of the delivery acceptance tests, against the REAL shared RabbitMQ.

The shared broker on 127.0.0.1:5672 is never stopped, restarted or reconfigured by
these tests.  Broker faults are injected by a per-test TCP proxy
(``tests/support/tcp_proxy.TcpProxy``) that stands between the filter's process
and the broker; the consumer (:class:`Listener`) talks to the broker directly.

* :class:`Broker`: the session's place on the broker: a private vhost when
  ``rabbitmqctl add_vhost`` works (deleted at the end of the session), else the
  default vhost with unique exchange and topic names per test; :meth:`Broker.delete`
  removes one test's queues and exchange.
* :class:`Listener`: a real oslo.messaging notification listener (rabbit, threading
  executor, ONE worker so callbacks run in delivery order) recording, per message,
  its arrival index, message_id, event_type, priority, the CADF target id and
  initiator request_id.
* :class:`Server`: ``delivery_server.py`` (cheroot) or gunicorn serving the filtered
  app on a loopback port, as a subprocess with its log in a file; the cheroot
  server also answers ``GET /_delivery/snapshot`` (``mw.delivery.snapshot()``).
* :class:`Load`: a paced loop of HTTP calls from a few client threads; each thread
  walks resources through create -> update... -> delete, sends a unique
  ``X-Test-Request-Id`` per call and records its latency, status, resource and
  worker.  Scenarios advance by the number of calls made (condition polls), never
  by fixed sleeps.
* :func:`run_cli`: the ``audit-notifier`` console script as a subprocess.

Measured figures go to :data:`REPORT` (printed in pytest's terminal summary);
they are never asserted.

This is a helper module, not a test file.
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
from tests.support.rabbit import HOST, PORT, USER, PASSWORD, connect_error  # noqa: E402
from tests.support.wait import wait_until  # noqa: E402

PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample')
#: measured numbers of each scenario, printed in pytest's terminal summary
REPORT: dict[str, dict] = {}
#: durable queues on both sides: what waits in a queue survives the test's faults
SERVER_RABBIT = {'amqp_durable_queues': 'true'}
LISTENER_RABBIT = {'amqp_durable_queues': 'true', 'rabbit_retry_interval': '1',
                   'rabbit_retry_backoff': '0', 'rabbit_interval_max': '1',
                   'kombu_reconnect_delay': '0.1'}
#: the CADF event_type of each call the load makes (route map glance.yaml)
EVENT_TYPES = {'POST': 'audit.image.create', 'PATCH': 'audit.image.update',
               'DELETE': 'audit.image.delete'}
VHOST_PREFIX = 'audit-notifier-delivery-'


def report(name: str, **values) -> None:
    REPORT.setdefault(name, {}).update(values)
    print('\n[%s] %s' % (name, json.dumps(values, sort_keys=True, default=str)))


def _quietly(fn, *args):
    try:
        fn(*args)
    except Exception:
        pass


# -- the broker -------------------------------------------------------------------------
def _ctl(*args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """rabbitmqctl, for the session's private vhost only (add, list, delete)."""
    assert args[0] in ('add_vhost', 'delete_vhost', 'list_vhosts', 'set_permissions'), args
    return subprocess.run(['rabbitmqctl', *args], capture_output=True, text=True,
                          timeout=timeout)


class Broker:
    """Where the tests live on the shared broker (never changed otherwise)."""

    def __init__(self):
        self.vhost = '/'

    def url(self, scheme: str = 'rabbit', port: int = PORT) -> str:
        """The broker's URL; ``port``: a proxy's port in front of it."""
        return '%s://%s:%s@%s:%d/%s' % (scheme, USER, PASSWORD, HOST, port,
                                        '' if self.vhost == '/' else self.vhost)

    @property
    def transport_url(self) -> str:
        return self.url()

    @property
    def amqp_url(self) -> str:
        return self.url('amqp')

    def make_vhost(self) -> None:
        """A private vhost for the session, when rabbitmqctl can make one."""
        if shutil.which('rabbitmqctl') is None:
            return
        try:
            listed = _ctl('list_vhosts', '--quiet', '--no-table-headers')
            for line in listed.stdout.split() if listed.returncode == 0 else ():
                parts = line[len(VHOST_PREFIX):].split('-')     # <epoch>-<hex>
                if line.startswith(VHOST_PREFIX) and len(parts) == 2 and \
                        parts[0].isdigit() and time.time() - int(parts[0]) > 7200:
                    _ctl('delete_vhost', line)      # left by a killed session
            name = '%s%d-%s' % (VHOST_PREFIX, time.time(), uuid.uuid4().hex[:8])
            if _ctl('add_vhost', name).returncode != 0:
                return
            if _ctl('set_permissions', '-p', name, USER, '.*', '.*', '.*').returncode \
                    or connect_error(name) is not None:
                _ctl('delete_vhost', name)
                return
        except (OSError, subprocess.SubprocessError):
            return
        self.vhost = name
        atexit.register(self.drop_vhost)

    def drop_vhost(self) -> None:
        if self.vhost != '/':
            vhost, self.vhost = self.vhost, '/'
            _quietly(_ctl, 'delete_vhost', vhost)

    def delete(self, exchange: str, topics) -> None:
        """Queues and exchange of one test (durable: they would outlive the run)."""
        import kombu
        try:
            with kombu.Connection(self.amqp_url, connect_timeout=5) as conn:
                for name in ['%s.%s' % (t, p) for t in topics for p in PRIORITIES]:
                    channel = conn.channel()
                    try:
                        channel.queue_delete(name)
                    except conn.channel_errors:
                        pass
                    finally:
                        _quietly(channel.close)
                channel = conn.channel()
                try:
                    channel.exchange_delete(exchange)
                except conn.channel_errors:
                    pass
        except Exception:
            pass


class BrokerWatch:
    """Notes when the shared broker itself went away (stopped by someone else on this
    machine, e.g. a benchmark's ``stop_app``): one idle AMQP connection, reconnected
    every 0.5 s while the broker is down.  A test that fails while an outage
    overlapped it says so in its report (conftest)."""

    def __init__(self, amqp_url: str):
        self.amqp_url = amqp_url
        self.outages: list[list] = []          # [down_at, up_at or None] (monotonic)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='broker-watch')

    def start(self) -> 'BrokerWatch':
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def overlapping(self, began: float, ended: float) -> list[list]:
        return [o for o in self.outages if o[0] <= ended and (o[1] is None or o[1] >= began)]

    def _run(self) -> None:
        import kombu
        while not self._stop.is_set():
            conn = kombu.Connection(self.amqp_url, connect_timeout=2, heartbeat=10)
            try:
                conn.connect()
                if self.outages and self.outages[-1][1] is None:
                    self.outages[-1][1] = time.monotonic()
                while not self._stop.is_set():
                    try:
                        conn.drain_events(timeout=1.0)
                    except socket.timeout:
                        conn.heartbeat_check()
            except Exception:
                if not self.outages or self.outages[-1][1] is not None:
                    self.outages.append([time.monotonic(), None])
                self._stop.wait(0.5)
            finally:
                _quietly(conn.release)


def names(prefix: str) -> tuple[str, str]:
    """(control exchange, topic), unique per test."""
    tag = uuid.uuid4().hex[:10]
    return 'delivery_%s_%s' % (prefix, tag), 'audit_%s_%s' % (prefix, tag)


def messaging_conf(exchange: str, rabbit: dict | None = None,
                   extra_default: dict | None = None) -> cfg.ConfigOpts:
    """A private ConfigOpts: control_exchange and [oslo_messaging_rabbit] options from a
    config file (rabbit options are registered only when the transport is made)."""
    lines = ['[DEFAULT]', 'control_exchange = %s' % exchange]
    lines += ['%s = %s' % kv for kv in sorted((extra_default or {}).items())]
    lines += ['[oslo_messaging_rabbit]']
    lines += ['%s = %s' % kv for kv in sorted((rabbit or {}).items())]
    path = os.path.join('/tmp', 'delivery-conf-%s.conf' % uuid.uuid4().hex)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        if group is None:
            conf.register_opts(opts)
    try:
        conf([], project='audit_notifier_delivery_tests', default_config_files=[path])
    finally:
        os.unlink(path)          # parsed already
    return conf


# -- the listener -----------------------------------------------------------------------
@dataclasses.dataclass
class Received:
    index: int
    arrived: float
    message_id: str
    event_type: str
    priority: str
    publisher_id: str
    target_id: str | None
    request_id: str | None
    timestamp: str | None


class Listener:
    """A real oslo.messaging notification listener on one topic, all priorities, on
    the shared broker directly (never through a test's proxy)."""

    def __init__(self, url: str, exchange: str, topic: str):
        self.url = url
        self.exchange = exchange
        self.topic = topic
        self._cond = threading.Condition()
        self.items: list[Received] = []
        self.message_ids: set[str] = set()
        self.request_ids: set[str] = set()
        self.transport = None
        self.server = None

    def _endpoint(self, prio):
        def on(ctxt, publisher_id, event_type, payload, metadata):
            payload = payload if isinstance(payload, dict) else {}
            with self._cond:
                item = Received(
                    index=len(self.items), arrived=time.monotonic(),
                    message_id=metadata.get('message_id'), event_type=event_type,
                    priority=prio, publisher_id=publisher_id,
                    target_id=(payload.get('target') or {}).get('id'),
                    request_id=(payload.get('initiator') or {}).get('request_id'),
                    timestamp=metadata.get('timestamp'))
                self.items.append(item)
                self.message_ids.add(item.message_id)
                if item.request_id:
                    self.request_ids.add(item.request_id)
                self._cond.notify_all()
        return on

    def start(self) -> 'Listener':
        class Endpoint:
            pass
        endpoint = Endpoint()
        for prio in PRIORITIES:
            setattr(endpoint, prio, self._endpoint(prio))
        conf = messaging_conf(self.exchange, LISTENER_RABBIT,
                              {'executor_thread_pool_size': 1})
        self.transport = oslo_messaging.get_notification_transport(conf, url=self.url)
        self.server = oslo_messaging.get_notification_listener(
            self.transport, [oslo_messaging.Target(topic=self.topic)], [endpoint],
            executor='threading')
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            _quietly(self.server.stop)
            _quietly(self.server.wait)
            self.server = None
        if self.transport is not None:
            _quietly(self.transport.cleanup)
            self.transport = None

    def snapshot(self) -> list[Received]:
        with self._cond:
            return list(self.items)

    def wait_until(self, predicate, timeout: float, what: str = 'condition') -> float:
        """Seconds waited; AssertionError after ``timeout``."""
        began = time.monotonic()
        deadline = began + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError('listener: waited %.0f s for %s; got %d messages '
                                         '(%d unique)' % (timeout, what, len(self.items),
                                                          len(self.message_ids)))
                self._cond.wait(min(left, 0.2))
        return time.monotonic() - began

    def wait_for_requests(self, request_ids, timeout: float) -> float:
        wanted = set(request_ids)

        def done(s):
            return wanted <= s.request_ids
        try:
            return self.wait_until(done, timeout, 'the events of %d requests' % len(wanted))
        except AssertionError as exc:
            missing = sorted(wanted - self.request_ids)
            raise AssertionError('%s; %d missing, e.g. %s' % (exc, len(missing),
                                                              missing[:5])) from None

    def wait_for_count(self, unique: int, timeout: float) -> float:
        return self.wait_until(lambda s: len(s.message_ids) >= unique, timeout,
                               '%d unique messages' % unique)


def send_sentinel(url: str, exchange: str, topic: str, request_id: str) -> None:
    """One INFO notification with a CADF-like payload (same queue as the events,
    so once it arrived everything published before it has arrived too)."""
    conf = messaging_conf(exchange, SERVER_RABBIT)
    transport = oslo_messaging.get_notification_transport(conf, url=url)
    try:
        notifier = oslo_messaging.Notifier(transport, publisher_id='sentinel',
                                           driver='messagingv2', topics=[topic])
        notifier.info({}, 'sentinel', {'initiator': {'request_id': request_id},
                                       'target': {'id': 'sentinel'}})
    finally:
        transport.cleanup()


# -- checks of what the consumer saw ------------------------------------------------------
def by_request(received) -> dict[str, list[Received]]:
    out = collections.defaultdict(list)
    for r in received:
        out[r.request_id].append(r)
    return out


def event_problems(calls, received, publisher: str) -> list[str]:
    """Exact checks of the events of ``calls`` (each audited call: ONE CADF event):

    * every acknowledged call (the client saw a status line) has its event;
    * all copies of a call's event carry one message_id (duplicates are only
      re-sends of the same notification);
    * event_type, priority (INFO for 2xx), publisher and target id are right;
    * no event of this publisher that belongs to no call of the test.
    """
    problems = []
    mine = [r for r in received if r.publisher_id == publisher]
    groups = by_request(mine)
    known = {c.request_id for c in calls}
    for c in calls:
        got = groups.get(c.request_id, [])
        if c.acknowledged and not got:
            problems.append('lost: %s %s %s (status %s)' % (c.request_id, c.method, c.path,
                                                            c.status))
            continue
        if not got:
            continue
        ids = {r.message_id for r in got}
        if len(ids) != 1:
            problems.append('%s has %d different message_ids: %s' % (c.request_id, len(ids),
                                                                     sorted(ids)))
        for r in got:
            if r.event_type != EVENT_TYPES[c.method]:
                problems.append('%s: event_type %s for %s'
                                % (c.request_id, r.event_type, c.method))
            if c.ok and r.priority != 'info':
                problems.append('%s: priority %s for a %s call'
                                % (c.request_id, r.priority, c.status))
            if c.resource is not None and r.target_id != c.resource:
                problems.append('%s: target %s, resource %s' % (c.request_id, r.target_id,
                                                                c.resource))
    strangers = [r for r in mine if r.request_id not in known]
    if strangers:
        problems.append('%d events of no call of this test, e.g. %s' % (len(strangers),
                                                                        strangers[:2]))
    return problems[:40]


def order_violations(calls, received) -> list[str]:
    """Per resource: the first arrivals of its events must follow the call order."""
    position = {c.request_id: (c.resource, i) for i, c in enumerate(calls)
                if c.resource is not None}
    first: dict[str, Received] = {}
    for item in received:
        if item.request_id in position and item.request_id not in first:
            first[item.request_id] = item
    last_seen: dict[str, tuple[int, str]] = {}
    problems = []
    for item in sorted(first.values(), key=lambda r: r.index):
        resource, call_index = position[item.request_id]
        prev = last_seen.get(resource)
        if prev is not None and call_index < prev[0]:
            problems.append('resource %s: event of call #%d (%s) arrived after call #%d (%s)'
                            % (resource, call_index, item.request_id, prev[0], prev[1]))
        if prev is None or call_index > prev[0]:
            last_seen[resource] = (call_index, item.request_id)
    return problems[:40]


def duplicates(received) -> int:
    return len(received) - len({r.message_id for r in received})


# -- the server -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(
        [HERE, ROOT, os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep),
        PYTHONUNBUFFERED='1')


class Server:
    """The filtered app in a subprocess (cheroot script, or gunicorn)."""

    def __init__(self, tmp_path, config: dict, kind: str = 'cheroot',
                 gunicorn_args: tuple = ()):
        self.config = dict(config)
        self.config.setdefault('port', free_port())
        self.kind = kind
        self.gunicorn_args = tuple(gunicorn_args)
        self.config_path = os.path.join(str(tmp_path), 'server-%s.json' % uuid.uuid4().hex[:6])
        with open(self.config_path, 'w') as f:
            json.dump(self.config, f)
        self.log_path = os.path.join(str(tmp_path), 'server-%s.log' % uuid.uuid4().hex[:6])
        self.proc: subprocess.Popen | None = None
        self.pids: list[int] = []          # every process started, in order

    @property
    def port(self) -> int:
        return self.config['port']

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> 'Server':
        env = child_env()
        if self.kind == 'gunicorn':
            env['DELIVERY_SERVER_CONFIG'] = self.config_path
            cmd = [sys.executable, '-m', 'gunicorn', '--chdir', HERE,
                   '-b', '%s:%d' % (HOST, self.port), '--graceful-timeout', '10',
                   *self.gunicorn_args, 'delivery_server:app']
        else:
            cmd = [sys.executable, os.path.join(HERE, 'delivery_server.py'),
                   self.config_path]
        log = open(self.log_path, 'ab')
        log.write(b'==== start %s\n' % ' '.join(cmd).encode())
        log.flush()
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)
        log.close()
        self.pids.append(self.proc.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError('server exited with %s:\n%s'
                                     % (self.proc.returncode, self.log()[-3000:]))
            try:
                conn = http.client.HTTPConnection(HOST, self.port, timeout=1)
                conn.request('GET', '/ready')       # unmatched route: not audited
                conn.getresponse().read()
                conn.close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError('server did not answer within %.0f s:\n%s'
                             % (timeout, self.log()[-3000:]))

    def snapshot(self) -> dict:
        """``mw.delivery.snapshot()`` of the (cheroot) server process."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=5)
        try:
            conn.request('GET', '/_delivery/snapshot')
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (resp.status, body[:200])
            return json.loads(body)
        finally:
            conn.close()

    def wait_snapshot(self, predicate, timeout: float, what: str) -> dict:
        last = {}

        def probe():
            last['snap'] = self.snapshot()
            return predicate(last['snap'])
        try:
            wait_until(probe, timeout, interval=0.05, message=what)
        except TimeoutError as exc:
            raise AssertionError('%s; last snapshot: %s' % (exc, last.get('snap'))) from None
        return last['snap']

    def send_signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        self.send_signal(sig)
        return self.wait(timeout)

    def dump_stacks(self) -> str:
        """The server's thread stacks (faulthandler on SIGUSR2), for a failure message."""
        if self.proc is None or self.proc.poll() is not None:
            return ''
        size = len(self.log())
        os.kill(self.proc.pid, signal.SIGUSR2)
        try:
            wait_until(lambda: len(self.log()) > size, 5.0)
        except TimeoutError:
            pass
        return self.log()[size:]

    def log(self) -> str:
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def log_lines(self, pattern: str, pid: int | None = None) -> list[str]:
        import re
        rx = re.compile(pattern)
        tag = None if pid is None else ' %d ' % pid
        return [line for line in self.log().splitlines()
                if rx.search(line) and (tag is None or tag in line)]


# -- journal directory --------------------------------------------------------------------
def stats_files(journal_dir: str) -> dict[str, dict]:
    out = {}
    for path in sorted(glob.glob(os.path.join(journal_dir, '*.stats.json'))):
        try:
            with open(path) as f:
                out[os.path.basename(path)] = json.load(f)
        except (OSError, ValueError):
            pass
    return out


def journal_segments(journal_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(journal_dir, '*.journal')))


def owner_files(journal_dir: str, pid: int) -> list[str]:
    """Files of the journal owners of process ``pid`` (``<host>-<pid>-<birth>.*``)."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(journal_dir, '*'))
                  if '-%d-' % pid in os.path.basename(p))


def cli_path() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), 'audit-notifier')
    if os.path.exists(script):
        return [script]
    return [sys.executable, '-m', 'audit_notifier.cli']


def run_cli(*args, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """``audit-notifier ARGS`` as an operator runs it."""
    return subprocess.run(cli_path() + list(args), capture_output=True, text=True,
                          timeout=timeout, env=child_env(), cwd=ROOT)


# -- the load ---------------------------------------------------------------------------
@dataclasses.dataclass
class Call:
    started: float           # monotonic
    latency: float           # seconds
    method: str
    path: str
    status: int | None       # None: no status line seen (connection refused/reset)
    request_id: str
    resource: str | None
    worker: int | None
    seq: int                 # position of the call in its resource's life
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def acknowledged(self) -> bool:
        """The client saw a status line: the filter journaled the call before."""
        return self.status is not None


class Load:
    """``threads`` clients, together ``rate`` calls/s, each walking resources through
    POST -> ``updates`` x PATCH -> DELETE (one resource at a time per client, so the
    calls of a resource are strictly sequential)."""

    running: list['Load'] = []          # stopped by the fixtures' teardown, whatever happens

    def __init__(self, port: int, rate: float = 150.0, threads: int = 4, updates: int = 3,
                 keepalive: bool = True, timeout: float = 10.0):
        self.port = port
        self.rate = rate
        self.threads = threads
        self.updates = updates
        self.keepalive = keepalive
        self.timeout = timeout
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.began: float | None = None

    def start(self) -> 'Load':
        Load.running.append(self)
        self.began = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, args=(i,), daemon=True,
                                 name='load-%d' % i)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> list[Call]:
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5)
        if self in Load.running:
            Load.running.remove(self)
        return self.snapshot()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def count(self) -> int:
        with self._lock:
            return len(self.calls)

    def wait_calls(self, n: int, timeout: float = 120.0, what: str = '') -> int:
        """Wait until ``n`` more calls were made (the scenario's clock); their total."""
        target = self.count() + n
        wait_until(lambda: self.count() >= target, timeout, interval=0.02,
                   message='the load made fewer than %d calls %s' % (n, what))
        return self.count()

    def _run(self, index: int) -> None:
        period = self.threads / self.rate
        next_at = time.monotonic() + period * index / self.threads
        conn = None
        resource = None
        seq = 0
        while not self._stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + period, time.monotonic() - period)
            if resource is None:
                method, path, body = 'POST', '/v2/images', b'{"name": "load"}'
            elif seq <= self.updates:
                method, path = 'PATCH', '/v2/images/%s' % resource
                body = b'[{"op": "replace", "path": "/name", "value": "n%d"}]' % seq
            else:
                method, path, body = 'DELETE', '/v2/images/%s' % resource, None
            rid = 'req-%s' % uuid.uuid4()
            headers = {'X-Test-Request-Id': rid, 'X-User-Id': 'u-load',
                       'X-Project-Id': 'p-load', 'X-Identity-Status': 'Confirmed'}
            if body is not None:
                headers['Content-Type'] = 'application/json' if method == 'POST' else \
                    'application/openstack-images-v2.1-json-patch'
            if not self.keepalive:
                headers['Connection'] = 'close'
            status = worker = error = None
            new_id = None
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port, timeout=self.timeout)
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                status = resp.status            # the status line was seen
                worker = int(resp.getheader('X-Worker-Pid') or 0) or None
                data = resp.read()
                if method == 'POST' and status == 201:
                    new_id = json.loads(data)['id']
                if not self.keepalive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException, ValueError) as exc:
                error = '%s: %s' % (type(exc).__name__, exc)
                if conn is not None:
                    _quietly(conn.close)
                conn = None
            latency = time.monotonic() - t0
            call = Call(t0, latency, method, path, status, rid,
                        new_id if method == 'POST' else resource, worker, seq, error)
            with self._lock:
                self.calls.append(call)
            # advance the resource's life
            if method == 'POST':
                if new_id is not None:
                    resource, seq = new_id, 1
            elif method == 'PATCH':
                seq += 1
            else:
                resource, seq = None, 0
        if conn is not None:
            _quietly(conn.close)


def percentile(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float('nan')
    k = (len(values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def latency_summary(calls) -> dict:
    """Recorded in REPORT only: never asserted."""
    lat = [c.latency * 1000 for c in calls]
    return {'n': len(lat), 'median_ms': round(percentile(lat, 0.5), 2),
            'p99_ms': round(percentile(lat, 0.99), 2),
            'max_ms': round(max(lat), 2) if lat else float('nan')}


def phases(calls, *marks) -> list[list[Call]]:
    """Calls split by start time at the monotonic ``marks``."""
    out = [[] for _ in range(len(marks) + 1)]
    for c in calls:
        i = sum(1 for m in marks if c.started >= m)
        out[i].append(c)
    return out
