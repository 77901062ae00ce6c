"""Harness of the delivery acceptance tests (issue 4), against a REAL RabbitMQ.

* :class:`Broker`: where the tests talk to RabbitMQ (a private vhost when rabbitmqctl
  can make one) and :meth:`Broker.stop_app` / :meth:`Broker.start_app` to simulate an
  outage; :meth:`Broker.ensure_running` is called by every fixture teardown and at exit,
  so the broker is never left stopped.
* :class:`Listener`: a real oslo.messaging notification listener (rabbit, threading
  executor, ONE worker so callbacks run in delivery order) recording, per message, its
  arrival index, message_id, event_type, the CADF target id and initiator request_id.
* :class:`Server`: ``delivery_server.py`` (cheroot) or gunicorn serving the filtered app
  on a loopback port, as a subprocess with its log in a file.
* :class:`Load`: a bounded, paced loop of HTTP calls from a few client threads; each
  thread walks resources through create -> update... -> delete, sends a unique
  ``X-Test-Request-Id`` per call and records its latency, status, resource and worker.

This is a helper module, not a test file.
"""

from __future__ import annotations

import atexit
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
from tests.support.rabbit import (HOST, PORT, USER, amqp_url,
                                   connect_error, transport_url)
PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample')
#: the queues are durable (and kombu's messages persistent) on both sides, so what
#: sits in a queue when the test stops the broker is still there after start_app.
#: measured numbers of each scenario, printed in pytest's terminal summary
REPORT: dict[str, dict] = {}
SERVER_RABBIT = {'amqp_durable_queues': 'true'}
LISTENER_RABBIT = {'amqp_durable_queues': 'true', 'rabbit_retry_interval': '1',
                   'rabbit_retry_backoff': '0', 'rabbit_interval_max': '1',
                   'kombu_reconnect_delay': '0.1'}


# -- the broker -------------------------------------------------------------------------
def rabbitmqctl(*args, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(['rabbitmqctl', *args], capture_output=True, text=True,
                          timeout=timeout)





class Broker:
    """The session's place on the broker, and the outage switch."""

    def __init__(self):
        self.vhost = '/'
        self.stopped = False
        self.interrupted_at: float | None = None
        self.events: list[tuple[str, float, float]] = []   # (what, began, done)
        self._lock = threading.Lock()
        atexit.register(self.ensure_running)

    @property
    def transport_url(self) -> str:
        return transport_url(self.vhost)

    @property
    def amqp_url(self) -> str:
        return amqp_url(self.vhost)

    def make_vhost(self) -> None:
        name = 'audit-notifier-delivery-%d-%s' % (time.time(), uuid.uuid4().hex[:8])
        if shutil.which('rabbitmqctl') is None:
            return
        listed = rabbitmqctl('list_vhosts', '--quiet', '--no-table-headers')
        for line in listed.stdout.split() if listed.returncode == 0 else ():
            parts = line.split('-')          # audit-notifier-delivery-<epoch>-<hex>
            if line.startswith('audit-notifier-delivery-') and len(parts) == 5 \
                    and parts[3].isdigit() and time.time() - int(parts[3]) > 7200:
                rabbitmqctl('delete_vhost', line)      # left by a killed session
        if rabbitmqctl('add_vhost', name).returncode != 0:
            return
        if rabbitmqctl('set_permissions', '-p', name, USER, '.*', '.*', '.*').returncode \
                or connect_error(name) is not None:
            rabbitmqctl('delete_vhost', name)
            return
        self.vhost = name

    def drop_vhost(self) -> None:
        if self.vhost != '/':
            self.ensure_running()
            rabbitmqctl('delete_vhost', self.vhost)

    def stop_app(self) -> tuple[float, float]:
        with self._lock:
            began = time.monotonic()
            self.stopped = True
            self.interrupted_at = None
            proc = rabbitmqctl('stop_app')
            done = time.monotonic()
            self.events.append(('stop_app', began, done))
        assert proc.returncode == 0, 'rabbitmqctl stop_app failed: %s' % proc.stderr
        threading.Thread(target=self._watch, args=(done,), daemon=True).start()
        return began, done

    def _watch(self, since: float) -> None:
        """While stopped: note when the broker answers again without our start_app
        (another process on this machine started it): the outage was cut short."""
        while self.stopped:
            try:
                socket.create_connection((HOST, PORT), timeout=0.3).close()
            except OSError:
                time.sleep(0.25)
                continue
            if self.stopped and self.interrupted_at is None:
                self.interrupted_at = time.monotonic() - since
            return

    def check_outage(self, seconds: float) -> None:
        """Fail (environment) when the broker came back before ``seconds``."""
        import pytest
        if self.interrupted_at is not None and self.interrupted_at < seconds:
            pytest.fail('the simulated outage was cut short: RabbitMQ accepted connections '
                        '%.1f s after stop_app, before this test ran start_app (another '
                        'process on this machine started it); rerun without concurrent '
                        'broker tests' % self.interrupted_at, pytrace=False)

    def start_app(self) -> tuple[float, float]:
        with self._lock:
            began = time.monotonic()
            if self.stopped and self.interrupted_at is None and connect_error() is None:
                self.interrupted_at = began - self.events[-1][2]
            self.stopped = False        # ends the watcher before the app is back
            proc = rabbitmqctl('start_app')
            rabbitmqctl('await_startup', '--timeout', '60', timeout=70)
            deadline = time.monotonic() + 60
            while connect_error(self.vhost) is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            self.stopped = connect_error(self.vhost) is not None
            done = time.monotonic()
            self.events.append(('start_app', began, done))
        assert proc.returncode == 0, 'rabbitmqctl start_app failed: %s' % proc.stderr
        assert not self.stopped, 'RabbitMQ did not come back after start_app'
        return began, done

    def ensure_running(self) -> None:
        """Teardown safety net: start the app if a test left it stopped."""
        if self.stopped or connect_error() is not None:
            try:
                self.start_app()
            except Exception:
                rabbitmqctl('start_app')
            self.stopped = False

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


def _quietly(fn):
    try:
        fn()
    except Exception:
        pass


def names(prefix: str) -> tuple[str, str]:
    """(control exchange, topic), unique per test."""
    tag = uuid.uuid4().hex[:10]
    return 'delivery_%s_%s' % (prefix, tag), 'audit_%s_%s' % (prefix, tag)


def listener_conf(exchange: str) -> cfg.ConfigOpts:
    lines = ['[DEFAULT]', 'control_exchange = %s' % exchange,
             'executor_thread_pool_size = 1', '[oslo_messaging_rabbit]']
    lines += ['%s = %s' % kv for kv in sorted(LISTENER_RABBIT.items())]
    path = os.path.join('/tmp', 'delivery-listener-%s.conf' % uuid.uuid4().hex)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        if group is None:
            conf.register_opts(opts)
    try:
        conf([], project='audit_notifier_delivery_listener', default_config_files=[path])
    finally:
        os.unlink(path)
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
    """A real oslo.messaging notification listener on one topic, all priorities."""

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
        self.transport = oslo_messaging.get_notification_transport(
            listener_conf(self.exchange), url=self.url)
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
        return self.wait_until(lambda s: wanted <= s.request_ids, timeout,
                               'the events of %d requests' % len(wanted))

    def quiet(self, seconds: float = 1.0, timeout: float = 30.0) -> None:
        """Wait until nothing arrived for ``seconds`` (late duplicates, stragglers)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                last = self.items[-1].arrived if self.items else 0.0
            if time.monotonic() - last >= seconds:
                return
            time.sleep(0.1)


# -- the server -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """The filtered app in a subprocess (cheroot script, or gunicorn)."""

    def __init__(self, tmp_path, config: dict, kind: str = 'cheroot',
                 gunicorn_args: tuple = ()):
        self.config = dict(config)
        self.config.setdefault('port', free_port())
        self.kind = kind
        self.gunicorn_args = tuple(gunicorn_args)
        self.tmp_path = tmp_path
        self.config_path = os.path.join(str(tmp_path), 'server-%s.json' % uuid.uuid4().hex[:6])
        with open(self.config_path, 'w') as f:
            json.dump(self.config, f)
        self.log_path = os.path.join(str(tmp_path), 'server.log')
        self.proc: subprocess.Popen | None = None
        self.pids: list[int] = []          # every process started, in order

    @property
    def port(self) -> int:
        return self.config['port']

    def start(self, timeout: float = 30.0) -> 'Server':
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [HERE, ROOT, os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep),
                   PYTHONUNBUFFERED='1')
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

    def log(self) -> str:
        try:
            with open(self.log_path, encoding='utf-8', errors='replace') as f:
                return f.read()
        except OSError:
            return ''


# -- stats files ------------------------------------------------------------------------
def stats_files(spool_dir: str) -> dict[str, dict]:
    out = {}
    for path in sorted(glob.glob(os.path.join(spool_dir, '*.stats.json'))):
        try:
            with open(path) as f:
                out[os.path.basename(path)] = json.load(f)
        except (OSError, ValueError):
            pass
    return out


def wait_stats(spool_dir: str, predicate, timeout: float, what: str) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while True:
        files = stats_files(spool_dir)
        if files and predicate(files):
            return files
        if time.monotonic() >= deadline:
            raise AssertionError('stats files: waited %.0f s for %s; have %s'
                                 % (timeout, what, json.dumps(files, indent=1)))
        time.sleep(0.25)


def spool_segments(spool_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(spool_dir, '*.spool')))


# -- the load ---------------------------------------------------------------------------
@dataclasses.dataclass
class Call:
    started: float           # monotonic
    latency: float           # seconds
    method: str
    path: str
    status: int | None       # None: no response (connection refused/reset)
    request_id: str
    resource: str | None
    worker: int | None
    seq: int                 # position of the call in its resource's life
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Load:
    """``threads`` clients, together ``rate`` calls/s, each walking resources through
    POST -> ``updates`` x PATCH -> DELETE (one resource at a time per client, so the
    calls of a resource are strictly sequential)."""

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

    running: list['Load'] = []          # stopped by the fixtures' teardown, whatever happens

    def start(self) -> 'Load':
        Load.running.append(self)
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
                data = resp.read()
                status = resp.status
                worker = int(resp.getheader('X-Worker-Pid') or 0) or None
                if method == 'POST' and status == 201:
                    new_id = json.loads(data)['id']
                if not self.keepalive or resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                error = '%s: %s' % (type(exc).__name__, exc)
                _quietly(conn.close) if conn is not None else None
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
    lat = [c.latency * 1000 for c in calls]
    return {'n': len(lat), 'median_ms': round(percentile(lat, 0.5), 2),
            'p99_ms': round(percentile(lat, 0.99), 2),
            'max_ms': round(max(lat), 2) if lat else float('nan')}


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
    return problems
