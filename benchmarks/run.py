#!/usr/bin/env python
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

"""audit_notifier vs keystonemiddleware.audit: one run, same machine, same app, same requests.

    python benchmarks/run.py            # full run, ~10 minutes; writes benchmarks/results.json
    python benchmarks/run.py --quick    # smaller counts and a 10 s outage, ~2-3 minutes
    python benchmarks/run.py --profile  # cProfile of audit_notifier's request path, then exit

Sections (see benchmarks/README.md for the method):

1. Request-path cost, in process: time added to ``GET /v2/images/<uuid>`` (audited) and
   ``GET /v2/schemas/image`` (not in our route map) by keystonemiddleware.audit (pycadf Glance
   map) and audit_notifier (formats cadf; delivery_mode journal, the durable default, and
   memory; driver messagingv2 to the local RabbitMQ, and noop).  Variants are interleaved
   block by block so they share noise; median of 3 rounds.  audit_notifier's sender is
   flushed after each of its blocks, outside the timed region; its counters and the broker
   queues are checked afterwards.
2. A broker outage under load: one process per middleware serves 150 audited calls/s
   (in process, one thread); after a while the benchmark runs ``rabbitmqctl stop_app`` on
   the shared broker, ``start_app`` 30 s later (always: try/finally, atexit and signal
   handlers), and real oslo.messaging listeners (durable queues) count what arrives.
   Reported: lost events, request latency before / during / after the outage, and how fast
   the backlog drained.
3. Streaming memory and time to first byte for a 1 GiB download from a generator app that
   calls start_response lazily, one fresh subprocess per variant.
4. Notifications handed to RabbitMQ per second by one process: audit_notifier with the
   fast leaf (rabbit_batch_publish = true, the default) and with the plain leaf, and
   keystonemiddleware; twice each, alternating, the fastest reported; a real
   oslo.messaging notification listener drains each queue afterwards and counts.
5. Filter construction time (a fresh process per variant, shipped route maps).
6. The integrity trail's cost (``--only trail``).
7. The CPU an audited call costs its process at a live rate, sender included (``--only sender``).
8. Tail latency with an app that holds the GIL for 3.9 ms per call: does the sender's work
   make requests wait (``--only tail``)?
9. The request path with cold caches, as over HTTP a worker's call finds them
   (``--only cold``): each timed call after 48 MiB were written, and back to back.

Only ``AuditMiddleware.delivery`` (``flush()``, ``close()``, ``counters``, ``snapshot()``,
``leaves``) of audit_notifier's internals is used.  The script exits 0 unless something
crashed; PASS/MISS is informational.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import json
import logging
import marshal
import mmap
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
import zlib

warnings.filterwarnings('ignore')           # eventlet deprecation noise from oslo imports

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)                # the working tree's audit_notifier

BROKER_URL = os.environ.get('BENCH_TRANSPORT_URL', 'rabbit://guest:guest@127.0.0.1:5672/')
KOMBU_URL = BROKER_URL.replace('rabbit://', 'amqp://', 1)
RESULTS = os.path.join(HERE, 'results.json')

IMAGE_ID = '3f2a8c51-9b7e-4d0c-8a61-2b5e7c9d1f04'
AUDITED_PATH = '/v2/images/' + IMAGE_ID
UNAUDITED_PATH = '/v2/schemas/image'
# Requests cycle through many images, as a real cloud's do (every event then has its own
# target id; nothing in either middleware caches per image).
IMAGE_PATHS = tuple('/v2/images/%s' % uuid.UUID(int=(0x3f2a8c519b7e4d0c8a612b5e7c9d0000 + i))
                    for i in range(1000))
DOWNLOAD_PATH = '/v2/images/%s/file' % IMAGE_ID
CHUNK = 64 * 1024
PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample')

# Goals of issue 7, printed next to the figures (informational).
TARGET_AUDITED_US = 10.0              # added median, audited call, journal mode, messagingv2
TARGET_AUDITED_P99_US = 200.0         # added p99, same
TARGET_UNAUDITED_US = 2.0             # added median, call that is not audited
TARGET_RATE = 5000.0                  # notifications/s handed to RabbitMQ, fast leaf
TARGET_STREAM_GROWTH_MIB = 16.0       # RSS growth of a 1 GiB generator download (<)
TARGET_OUTAGE_FACTOR = 2.0            # request p99 during / after an outage vs before
TARGET_CONSTRUCT_MS = 10.0            # a later filter construction, shipped map (median)
OUTAGE_RATE = 150.0                   # calls/s during the outage scenario

# [oslo_messaging_rabbit] of the outage scenario: durable queues and exchange (a broker
# restart deletes non-durable ones, and what sat in them), on every side.
OUTAGE_RABBIT = 'amqp_durable_queues = true\n'
# the listeners reconnect quickly after start_app (oslo's default backoff reaches 30 s)
LISTENER_RABBIT = ('rabbit_retry_interval = 1\nrabbit_retry_backoff = 0\n'
                   'rabbit_interval_max = 1\nkombu_reconnect_delay = 0.1\n')

# pycadf's etc/pycadf/glance_api_audit_map.conf (ground-truth.md section 5).
GLANCE_AUDIT_MAP = """\
[DEFAULT]
target_endpoint_type = None

[path_keywords]
detail = None
file = None
images = image
members = member
tags = tag

[service_endpoints]
image = service/storage/image
"""

LOG = logging.getLogger('benchmarks')


# ---------------------------------------------------------------------------------------
# The app, the identity auth_token would set, the middlewares
# ---------------------------------------------------------------------------------------


def _peak_rss_bytes() -> int:
    # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across execve (parent's high-water mark).
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError('no VmHWM in /proc/self/status')


def make_app():
    """A trivial JSON API: an image record, its schema, a 404 for anything else."""
    image = json.dumps({
        'id': IMAGE_ID, 'name': 'cirros-0.6.2-x86_64-disk', 'status': 'active',
        'visibility': 'private', 'protected': False, 'os_hidden': False,
        'owner': '9a1d3f6c2b7e4d8f8c1b2a3d4e5f6a7b',
        'checksum': 'c8fc807773e5354afe61636071771906',
        'os_hash_algo': 'sha512', 'size': 21430272, 'virtual_size': 117440512,
        'disk_format': 'qcow2', 'container_format': 'bare', 'min_ram': 0, 'min_disk': 0,
        'tags': [], 'created_at': '2026-01-12T09:30:11Z', 'updated_at': '2026-01-12T09:30:14Z',
        'self': AUDITED_PATH, 'file': DOWNLOAD_PATH, 'schema': '/v2/schemas/image'}).encode()
    schema = json.dumps({'name': 'image', 'properties': {
        k: {'type': 'string'} for k in ('id', 'name', 'status', 'visibility', 'owner',
                                        'checksum', 'disk_format', 'container_format')},
        'links': [{'rel': 'self', 'href': '{self}'}]}).encode()
    image_headers = [('Content-Type', 'application/json'),
                     ('Content-Length', str(len(image)))]
    schema_headers = [('Content-Type', 'application/json'),
                      ('Content-Length', str(len(schema)))]

    def app(environ, start_response):
        path = environ['PATH_INFO']
        if path == UNAUDITED_PATH:
            start_response('200 OK', list(schema_headers))
            return [schema]
        if path.startswith('/v2/images/'):
            start_response('200 OK', list(image_headers))
            return [image]
        start_response('404 Not Found', [('Content-Type', 'text/plain'),
                                         ('Content-Length', '0')])
        return [b'']
    return app


def stream_app(environ, start_response):
    """A download whose start_response is called only when the body is first iterated.

    Every chunk is a new, filled 64 KiB bytes object (its pages are really touched),
    so anything that keeps the chunks shows up in RSS.
    """
    size = environ['bench.size']

    def body():
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('Content-Length', str(size))])
        left = size
        while left > 0:
            n = CHUNK if left >= CHUNK else left
            left -= n
            yield b'x' * n
    return body()


def base_environ(path: str) -> dict:
    """A request as it leaves keystonemiddleware.auth_token (include_service_catalog)."""
    token = 'gAAAAABm' + uuid.uuid4().hex * 6
    token = (token * 2)[:180]
    catalog = [
        {'type': 'image', 'name': 'glance', 'endpoints': [{
            'id': 'b7c1f3f0c0a54bb0a5d1e0f2f6b0c9d1', 'region': 'RegionOne',
            'publicURL': 'http://glance.example.com:9292',
            'internalURL': 'http://glance-int.example.com:9292',
            'adminURL': 'http://glance.example.com:9292'}]},
        {'type': 'identity', 'name': 'keystone', 'endpoints': [{
            'id': '0c6d0e52f3b84c4c9d1c3f0c1d2e3f40', 'region': 'RegionOne',
            'publicURL': 'http://keystone.example.com:5000/v3',
            'internalURL': 'http://keystone-int.example.com:5000/v3',
            'adminURL': 'http://keystone.example.com:5000/v3'}]},
        {'type': 'compute', 'name': 'nova', 'endpoints': [{
            'id': '5e6f7a8b9c0d4e1f8a2b3c4d5e6f7a8b', 'region': 'RegionOne',
            'publicURL': 'http://nova.example.com:8774/v2.1',
            'internalURL': 'http://nova-int.example.com:8774/v2.1',
            'adminURL': 'http://nova.example.com:8774/v2.1'}]},
    ]
    user_id, project_id = 'f1e2d3c4b5a64798a1b2c3d4e5f60718', '9a1d3f6c2b7e4d8f8c1b2a3d4e5f6a7b'
    # auth_token's own record of the validated token (what makes the identity confirmed)
    from keystoneauth1 import access, fixture
    from keystonemiddleware.auth_token import _user_plugin
    token_auth = _user_plugin.UserAuthPlugin(
        access.create(body=fixture.V3Token(user_id=user_id, project_id=project_id)), None)
    return {
        'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '', 'PATH_INFO': path, 'QUERY_STRING': '',
        'SERVER_NAME': 'glance.example.com', 'SERVER_PORT': '9292',
        'SERVER_PROTOCOL': 'HTTP/1.1', 'HTTP_HOST': 'glance.example.com:9292',
        'REMOTE_ADDR': '10.0.0.5', 'HTTP_USER_AGENT': 'python-glanceclient/4.6.0',
        'HTTP_ACCEPT': 'application/json', 'HTTP_ACCEPT_ENCODING': 'gzip, deflate',
        'HTTP_CONNECTION': 'keep-alive',
        'wsgi.version': (1, 0), 'wsgi.url_scheme': 'http', 'wsgi.errors': sys.stderr,
        'wsgi.multithread': True, 'wsgi.multiprocess': False, 'wsgi.run_once': False,
        # set by auth_token
        'HTTP_X_AUTH_TOKEN': token, 'HTTP_X_IDENTITY_STATUS': 'Confirmed',
        'HTTP_X_USER_ID': user_id, 'HTTP_X_USER_NAME': 'alice', 'HTTP_X_USER': 'alice',
        'HTTP_X_USER_DOMAIN_ID': 'default', 'HTTP_X_USER_DOMAIN_NAME': 'Default',
        'HTTP_X_PROJECT_ID': project_id, 'HTTP_X_PROJECT_NAME': 'demo',
        'HTTP_X_PROJECT_DOMAIN_ID': 'default', 'HTTP_X_PROJECT_DOMAIN_NAME': 'Default',
        'HTTP_X_TENANT_ID': project_id, 'HTTP_X_TENANT_NAME': 'demo', 'HTTP_X_TENANT': 'demo',
        'HTTP_X_ROLES': 'member,reader', 'HTTP_X_IS_ADMIN_PROJECT': 'False',
        'HTTP_X_SERVICE_CATALOG': json.dumps(catalog),
        'keystone.token_auth': token_auth,
        'keystone.token_info': {'token': {
            'methods': ['password'], 'roles': [{'name': 'member'}, {'name': 'reader'}],
            'user': {'id': user_id, 'name': 'alice', 'domain': {'id': 'default'}},
            'project': {'id': project_id, 'name': 'demo', 'domain': {'id': 'default'}},
            'expires_at': '2026-01-12T10:30:11.000000Z'}},
    }


def private_conf(tmpdir: str, name: str, sections: str | None = None):
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    files = []
    if sections:
        path = os.path.join(tmpdir, name + '.conf')
        with open(path, 'w') as f:
            f.write(sections)
        files.append(path)
    conf(args=[], project='bench-' + name, default_config_files=files)
    return conf


def make_audit_notifier(app, tmpdir: str, driver: str, topic: str, name: str, *,
                        mode: str = 'journal', fast: bool = False, sections: str | None = None,
                        **paste):
    """audit_notifier's filter, every option at its default except the bus, the format,
    ``delivery_mode`` and ``rabbit_batch_publish`` (both at their defaults unless asked)
    and a private ``journal_dir`` (no run adopts or leaves journals in the shared default
    directory)."""
    from audit_notifier.middleware import filter_factory
    conf = private_conf(tmpdir, name, sections)
    paste.setdefault('journal_dir', os.path.join(tmpdir, 'journal-' + name))
    return filter_factory({}, oslo_config_config=conf, formats='cadf', driver=driver,
                          transport_url=BROKER_URL, topics=topic, delivery_mode=mode,
                          rabbit_batch_publish='true' if fast else 'false', **paste)(app)


def write_audit_map(tmpdir: str) -> str:
    map_file = os.path.join(tmpdir, 'glance_api_audit_map.conf')
    if not os.path.exists(map_file):
        with open(map_file, 'w') as f:
            f.write(GLANCE_AUDIT_MAP)
    return map_file


def make_keystonemiddleware(app, tmpdir: str, driver: str, topic: str, name: str, *,
                            sections: str = ''):
    from keystonemiddleware import audit
    map_file = write_audit_map(tmpdir)
    conf = private_conf(tmpdir, name, '[audit_middleware_notifications]\n'
                        'driver = %s\ntransport_url = %s\ntopics = %s\n%s'
                        % (driver, BROKER_URL, topic, sections))
    return audit.AuditMiddleware(app, audit_map_file=map_file, oslo_config_config=conf)


def _start_response(status, headers, exc_info=None):
    return _write


def _write(data):
    pass


def call(app, env) -> None:
    """One WSGI call as a server makes it: iterate the body, close it."""
    body = app(env, _start_response)
    for _chunk in body:
        pass
    close = getattr(body, 'close', None)
    if close is not None:
        close()


# ---------------------------------------------------------------------------------------
# Broker helpers
# ---------------------------------------------------------------------------------------

def ensure_broker() -> None:
    if _broker_up():
        return
    # Other tests on this machine stop the broker for a few seconds on purpose: give it a
    # chance to come back before starting it.
    print('RabbitMQ is not answering; waiting up to 30 s ...', flush=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        time.sleep(2)
        if _broker_up():
            return
    print('RabbitMQ is down: starting it (rabbitmq-server -detached)', flush=True)
    subprocess.run(['rabbitmq-server', '-detached'], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        if _broker_up():
            return
        time.sleep(1)
    raise RuntimeError('RabbitMQ at %s is not reachable' % KOMBU_URL.split('@')[-1])


def _broker_up(timeout: float = 3) -> bool:
    import kombu
    try:
        with kombu.Connection(KOMBU_URL, connect_timeout=timeout) as conn:
            conn.connect()
        return True
    except Exception:
        return False


def _with_broker(fn, what: str, timeout: float = 90.0):
    """Run ``fn(channel)``, retrying while the broker is away (others stop it in tests)."""
    import kombu
    deadline = time.time() + timeout
    while True:
        try:
            with kombu.Connection(KOMBU_URL, connect_timeout=5) as conn:
                conn.connect()
                return fn(conn)
        except (OSError, ConnectionError) as exc:
            if time.time() > deadline:
                raise RuntimeError('RabbitMQ unreachable while %s: %s' % (what, exc))
            time.sleep(1)
        except Exception as exc:        # amqp's connection errors are not all OSErrors
            if 'connect' not in type(exc).__name__.lower() or time.time() > deadline:
                raise
            time.sleep(1)


def queue_count(name: str) -> int | None:
    """Messages ready in queue ``name``, None if it does not exist."""
    def count(conn):
        try:
            return conn.channel().queue_declare(queue=name, passive=True).message_count
        except Exception as exc:
            if 'NOT_FOUND' in str(exc) or '404' in str(exc):
                return None
            raise
    return _with_broker(count, 'counting messages in ' + name)


def delete_queues(names, exchanges=()) -> None:
    names = list(names)

    def delete(conn):
        for name in names:
            try:
                conn.channel().queue_delete(queue=name)
            except Exception:
                pass
        for name in exchanges:
            try:
                conn.channel().exchange_delete(exchange=name)
            except Exception:
                pass
    try:
        _with_broker(delete, 'deleting the benchmark queues', timeout=60)
    except Exception as exc:
        print('warning: could not delete bench queues %s: %s' % (names, exc))


def wait_queue_count(name: str, expected: int, timeout: float = 15.0) -> int | None:
    deadline = time.time() + timeout
    count = None
    while time.time() < deadline:
        count = queue_count(name)
        if count is not None and count >= expected:
            return count
        time.sleep(0.25)
    return count


def rabbitmqctl(*args, timeout: float = 90.0) -> subprocess.CompletedProcess:
    return subprocess.run(['rabbitmqctl', *args], capture_output=True, text=True,
                          timeout=timeout)


class BrokerSwitch:
    """``rabbitmqctl stop_app`` / ``start_app`` of the shared broker (section 2 only).

    Whatever happens, the broker is started again: :meth:`ensure_running` runs in the
    outage section's ``finally``, from ``atexit``, before the script's final ``os._exit``
    and from the SIGTERM/SIGINT/SIGHUP handlers installed while the broker is stopped.
    """

    def __init__(self):
        self.stopped = False
        self.answered_early: float | None = None     # s after stop_app, if someone else
        self._watching = False                       # started it again
        atexit.register(self.ensure_running)

    @staticmethod
    def available() -> bool:
        return shutil.which('rabbitmqctl') is not None

    def stop(self) -> tuple[float, float]:
        began = time.time()
        self.stopped = True
        self._handlers(install=True)
        proc = rabbitmqctl('stop_app')
        done = time.time()
        if proc.returncode != 0:
            self.ensure_running()
            raise RuntimeError('rabbitmqctl stop_app failed: %s' % proc.stderr.strip()[-500:])
        self.answered_early = None
        self._watching = True
        threading.Thread(target=self._watch, args=(done,), daemon=True).start()
        return began, done

    def _watch(self, since: float) -> None:
        host, port = _broker_address()
        while self._watching:
            try:
                socket.create_connection((host, port), timeout=0.3).close()
            except OSError:
                time.sleep(0.25)
                continue
            if self._watching:
                self.answered_early = time.time() - since
            return

    def start(self) -> tuple[float, float]:
        """start_app, then wait until the broker takes an AMQP login again."""
        began = time.time()
        self._watching = False
        proc = rabbitmqctl('start_app')
        rabbitmqctl('await_startup', '--timeout', '60', timeout=75)
        deadline = time.time() + 90
        while not _broker_up(2) and time.time() < deadline:
            time.sleep(0.2)
        done = time.time()
        if not _broker_up(5):
            raise RuntimeError('RabbitMQ did not come back after start_app: %s'
                               % proc.stderr.strip()[-500:])
        self.stopped = False
        self._handlers(install=False)
        return began, done

    def ensure_running(self) -> None:
        if not self.stopped:
            return
        print('starting RabbitMQ again (rabbitmqctl start_app) ...', file=sys.stderr,
              flush=True)
        for _attempt in range(3):
            try:
                self.start()
                return
            except Exception as exc:               # keep trying: never leave it stopped
                print('start_app failed: %s' % exc, file=sys.stderr, flush=True)
                time.sleep(2)

    _saved: dict = {}

    def _handlers(self, install: bool) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            if install:
                self._saved[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
            elif sig in self._saved:
                signal.signal(sig, self._saved.pop(sig))

    def _on_signal(self, signum, frame):
        self.ensure_running()
        raise SystemExit(128 + signum)


def _broker_address() -> tuple[str, int]:
    hostport = KOMBU_URL.split('@')[-1].split('/')[0]
    host, _, port = hostport.partition(':')
    return host or '127.0.0.1', int(port or 5672)


BROKER_SWITCH: BrokerSwitch | None = None


class BrokerTrouble(logging.Handler):
    """Counts oslo.messaging's connection errors and audit_notifier's outage lines (the
    broker went away during a section).

    Other test suites on this machine stop RabbitMQ on purpose; a section that saw such
    errors is flagged, since its figures then measure an outage.
    """

    def __init__(self):
        super().__init__(logging.WARNING)
        self.count = 0
        self.first = None

    def emit(self, record):
        self.count += 1
        if self.first is None:
            self.first = '%s: %s' % (record.levelname, ' '.join(record.getMessage().split())[:200])

    def take(self) -> dict:
        out = {'errors': self.count, 'first': self.first}
        self.count, self.first = 0, None
        return out


BROKER_TROUBLE = BrokerTrouble()


def install_broker_trouble() -> None:
    log = logging.getLogger('oslo.messaging')
    log.addHandler(BROKER_TROUBLE)
    log.propagate = False          # counted and summarised, not one console line each
    # "the message bus is unreachable" / "is back after": one line each per outage
    logging.getLogger('audit_notifier.delivery').addHandler(BROKER_TROUBLE)


# ---------------------------------------------------------------------------------------
# 1. Request-path cost
# ---------------------------------------------------------------------------------------

def run_block(app, template: dict, n: int, out: list, paths=None) -> None:
    pc = time.perf_counter_ns
    sr = _start_response
    paths = paths or (template['PATH_INFO'],)
    npaths = len(paths)
    for i in range(n):
        env = template.copy()
        env['PATH_INFO'] = paths[i % npaths]
        env['wsgi.input'] = io.BytesIO(b'')
        t0 = pc()
        body = app(env, sr)
        for _chunk in body:
            pass
        close = getattr(body, 'close', None)
        if close is not None:
            close()
        out.append(pc() - t0)


def pct(sorted_ns: list, p: float) -> float:
    """Nearest-rank percentile, in microseconds."""
    i = min(len(sorted_ns) - 1, int(p / 100.0 * len(sorted_ns)))
    return sorted_ns[i] / 1000.0


# audit_notifier's variants of section 1: (delivery_mode, driver)
AN_SERIES = {'an-journal': ('journal', 'messagingv2'), 'an-memory': ('memory', 'messagingv2'),
             'an-noop': ('journal', 'noop')}
AN_MESSAGING = ('an-journal', 'an-memory')


def request_path_cost(args, tmpdir: str, run_id: str) -> dict:
    app = make_app()
    topics = {'an-journal': 'bench-%s-an-journal' % run_id,
              'an-memory': 'bench-%s-an-memory' % run_id,
              'an-noop': 'bench-%s-an-noop' % run_id,
              'km': 'bench-%s-km' % run_id}
    stacks = {'bare': app}
    for key, (mode, driver) in AN_SERIES.items():
        stacks[key] = make_audit_notifier(app, tmpdir, driver, topics[key], key, mode=mode)
    stacks['km-noop'] = make_keystonemiddleware(app, tmpdir, 'noop', topics['km'], 'km-noop')
    stacks['km-msg'] = make_keystonemiddleware(app, tmpdir, 'messagingv2', topics['km'],
                                               'km-msg')
    ours = {key: stacks[key] for key in AN_SERIES}
    templates = {'audited': base_environ(AUDITED_PATH),
                 'unaudited': base_environ(UNAUDITED_PATH)}
    paths = {'audited': IMAGE_PATHS, 'unaudited': None}
    blocks = args.blocks
    per_block = {v: args.requests // blocks for v in ['bare'] + list(AN_SERIES)}
    per_block.update({'km-noop': max(1, args.km_noop_requests // blocks),
                      'km-msg': max(1, args.km_msg_requests // blocks)})
    series = [(v, p) for p in ('audited', 'unaudited') for v in stacks]
    issued = {s: 0 for s in series}

    def outages() -> int:
        return sum(mw.delivery.snapshot()['outages'] for mw in ours.values())

    # Warm-up: imports, connections (the first km publish connects in the request thread,
    # audit_notifier's sender connects in the background), caches.
    print('  warm-up ...', flush=True)
    for variant, path in series:
        n = min(2000, per_block[variant] * 4)
        run_block(stacks[variant], templates[path], n, [], paths[path])
        issued[(variant, path)] += n
        if variant in ours:
            ours[variant].delivery.flush(120)
    leaves = {key: {fmt: type(leaf).__name__ + (' (batched)' if leaf.batched else '')
                    for fmt, leaf in (mw.delivery.leaves or {}).items()}
              for key, mw in ours.items()}

    rounds = []
    discarded = []
    # A broker stop (stop_app) deletes the non-durable queues: counts then not comparable.
    broker_lost = bool(BROKER_TROUBLE.take()['errors'])
    seen_outages = outages()
    attempt = 0
    while len(rounds) < args.rounds:
        attempt += 1
        r = len(rounds)
        t_round = time.perf_counter()
        times = {s: [] for s in series}
        flush_s = {key: 0.0 for key in ours}
        for b in range(blocks):
            k = b % len(series)
            for variant, path in series[k:] + series[:k]:    # rotate: no fixed position
                n = per_block[variant]
                run_block(stacks[variant], templates[path], n, times[(variant, path)],
                          paths[path])
                issued[(variant, path)] += n
                if variant in ours:
                    t = time.perf_counter()
                    if not ours[variant].delivery.flush(120):  # outside the timed region
                        print('  warning: %s: flush timed out' % variant, flush=True)
                    flush_s[variant] += time.perf_counter() - t
        stats = {}
        for (variant, path), ns in times.items():
            ns.sort()
            stats['%s/%s' % (variant, path)] = {
                'n': len(ns), 'median': pct(ns, 50), 'p90': pct(ns, 90), 'p99': pct(ns, 99)}
        this = {'stats': stats, 'seconds': time.perf_counter() - t_round,
                'an_flush_seconds': flush_s, 'broker_trouble': BROKER_TROUBLE.take(),
                'load': os.getloadavg()[0]}
        now_outages = outages()
        if this['broker_trouble']['errors'] or now_outages != seen_outages:
            seen_outages = now_outages
            broker_lost = True
            discarded.append(this)
            print('  round %d: the broker went away (%s); round discarded'
                  % (r + 1, this['broker_trouble']['first']), flush=True)
            if attempt >= args.rounds + 2:
                print('  giving up on a quiet broker: keeping the troubled round', flush=True)
                rounds.append(this)
            continue
        rounds.append(this)
        print('  round %d: %.1f s (of which %.1f s waiting for audit_notifier\'s senders); '
              'load %.1f' % (r + 1, this['seconds'], sum(flush_s.values()), this['load']),
              flush=True)

    # Added cost vs the bare app, per round, then the median of the rounds.
    summary = {}
    for variant in stacks:
        if variant == 'bare':
            continue
        for path in templates:
            key = '%s/%s' % (variant, path)
            entry = {'requests_per_round': rounds[0]['stats'][key]['n']}
            for stat in ('median', 'p90', 'p99'):
                added = [rd['stats'][key][stat] - rd['stats']['bare/' + path][stat]
                         for rd in rounds]
                entry['added_' + stat] = statistics.median(added)
                entry['added_%s_rounds' % stat] = added
            summary[key] = entry
    bare = {path: {stat: statistics.median(rd['stats']['bare/' + path][stat] for rd in rounds)
                   for stat in ('median', 'p99')}
            for path in templates}

    # Did every event reach the broker?
    delivery = {}
    queues = []
    for key in AN_SERIES:
        mw = ours[key]
        mw.delivery.flush(120)
        counters = dict(mw.delivery.counters)
        expected = issued[(key, 'audited')]          # one CADF event per audited call
        entry = {'audited_requests': expected, 'counters': counters}
        ok = (counters.get('sent') == expected and not counters.get('dropped')
              and not counters.get('build_errors') and not counters.get('dead_letters'))
        if key in AN_MESSAGING:
            queue = topics[key] + '.info'
            queues.append(queue)
            entry['on_broker'] = wait_queue_count(queue, expected)
            ok = ok and entry['on_broker'] == expected
        entry['ok'] = ok
        delivery[key] = entry
    km_expected = 2 * (issued[('km-msg', 'audited')] + issued[('km-msg', 'unaudited')])
    km_queue = topics['km'] + '.info'
    queues.append(km_queue)
    km_on_broker = wait_queue_count(km_queue, km_expected)
    delivery['km-msg'] = {'requests': km_expected // 2, 'expected_events': km_expected,
                          'on_broker': km_on_broker, 'ok': km_on_broker == km_expected}
    if BROKER_TROUBLE.take()['errors'] or outages() != seen_outages:
        broker_lost = True
    delivery['broker_restarted'] = broker_lost
    delete_queues(queues)
    for mw in ours.values():
        mw.delivery.close(10)
    return {'bare_us': bare, 'added': summary, 'rounds': rounds, 'discarded': discarded,
            'delivery': delivery, 'per_block': per_block, 'blocks': blocks, 'leaves': leaves}


# 1b. Audit policy levels: PATCH /v2/images/<uuid> at metadata and at request
# ---------------------------------------------------------------------------------------

PATCH_BODY = json.dumps([{'op': 'replace', 'path': '/visibility', 'value': 'public'},
                         {'op': 'replace', 'path': '/name', 'value': 'cirros-renamed'}]).encode()
# audit_notifier's variants of the PATCH figure: paste keys (driver noop, journal mode)
POLICY_SERIES = {
    'metadata': {'audit_policy': 'metadata'},
    'request': {'audit_policy': 'default', 'record_lookups': 'false'},
    'request+old': {'audit_policy': 'default', 'record_lookups': 'true'},
}
POLICY_LABELS = {'metadata': 'level metadata',
                 'request': 'level request (changes, no look-up)',
                 'request+old': 'level request + old values (1 GET)'}


def make_patch_app():
    """The image app of section 1, which also reads a PATCH's body (as Glance does)."""
    app = make_app()

    def patch_app(environ, start_response):
        if environ['REQUEST_METHOD'] == 'PATCH':
            environ['wsgi.input'].read(int(environ.get('CONTENT_LENGTH') or 0))
        return app(environ, start_response)
    return patch_app


def run_patch_block(app, template: dict, n: int, out: list) -> None:
    pc = time.perf_counter_ns
    sr = _start_response
    for i in range(n):
        env = template.copy()
        env['PATH_INFO'] = IMAGE_PATHS[i % len(IMAGE_PATHS)]
        env['wsgi.input'] = io.BytesIO(PATCH_BODY)
        t0 = pc()
        body = app(env, sr)
        for _chunk in body:
            pass
        close = getattr(body, 'close', None)
        if close is not None:
            close()
        out.append(pc() - t0)


def policy_patch_cost(args, tmpdir: str) -> dict:
    """Time added to a JSON-patch PATCH by audit_notifier at level metadata, at level
    request (the request tee and its journaled bytes) and at level request with
    record_lookups (plus the in-process GET of the record before the call: here the
    bench app, in Glance one Glance GET).  Driver noop, journal mode; interleaved
    blocks, median of the rounds."""
    app = make_patch_app()
    stacks = {'bare': app}
    for key, paste in POLICY_SERIES.items():
        stacks[key] = make_audit_notifier(app, tmpdir, 'noop', 'bench-policy', 'pol-' + key,
                                          **paste)
    template = base_environ(AUDITED_PATH)
    template.update({'REQUEST_METHOD': 'PATCH', 'CONTENT_LENGTH': str(len(PATCH_BODY)),
                     'CONTENT_TYPE': 'application/openstack-images-v2.1-json-patch'})
    n = max(1, args.requests // args.blocks)
    for variant, mw in stacks.items():                      # warm-up
        run_patch_block(mw, template, min(2000, n * 4), [])
        if variant != 'bare':
            mw.delivery.flush(120)
    rounds = []
    for _ in range(args.rounds):
        times = {v: [] for v in stacks}
        variants = list(stacks)
        for b in range(args.blocks):
            k = b % len(variants)
            for variant in variants[k:] + variants[:k]:
                run_patch_block(stacks[variant], template, n, times[variant])
                if variant != 'bare':
                    stacks[variant].delivery.flush(120)     # outside the timed region
        stats = {}
        for variant, ns in times.items():
            ns.sort()
            stats[variant] = {'median': pct(ns, 50), 'p90': pct(ns, 90), 'p99': pct(ns, 99)}
        rounds.append(stats)
    added = {}
    for key in POLICY_SERIES:
        added[key] = {stat: statistics.median(r[key][stat] - r['bare'][stat] for r in rounds)
                      for stat in ('median', 'p90', 'p99')}
    sent = {key: stacks[key].delivery.counters.get('sent') for key in POLICY_SERIES}
    for key in POLICY_SERIES:
        stacks[key].delivery.close(10)
    return {'bare_us': statistics.median(r['bare']['median'] for r in rounds),
            'added': added, 'requests_per_round': n * args.blocks, 'rounds': rounds,
            'sent': sent,
            'request_over_metadata_us': added['request']['median'] -
            added['metadata']['median']}


def report_policy(w, po: dict) -> None:
    a = po['added']
    w('')
    w('1b. Audit policy levels: time ADDED to PATCH /v2/images/<uuid> (JSON patch, %d bytes), '
      'microseconds, median of %d rounds of %d requests; driver noop, journal mode'
      % (len(PATCH_BODY), len(po['rounds']), po['requests_per_round']))
    w('   bare app itself: %.2f us' % po['bare_us'])
    for key in POLICY_SERIES:
        e = a[key]
        w('   %-40s %s / %s / %s' % (POLICY_LABELS[key], fmt_us(e['median']), fmt_us(e['p90']),
                                     fmt_us(e['p99'])))
    w('   level request adds %s over level metadata (goal <= 20 us) -> %s'
      % (fmt_us(po['request_over_metadata_us']),
         verdict(po['request_over_metadata_us'] <= 20.0)))


# ---------------------------------------------------------------------------------------
# 2. A broker outage under load (driver processes + listener processes)
# ---------------------------------------------------------------------------------------

def outage_sections(exchange: str, listener: bool = False) -> str:
    return ('[DEFAULT]\ncontrol_exchange = %s\n[oslo_messaging_rabbit]\n%s%s'
            % (exchange, OUTAGE_RABBIT, LISTENER_RABBIT if listener else ''))


OUTAGE_WARMUP = 20


def child_outage(impl: str, topic: str, exchange: str, rate: float, fast: bool,
                 sender: str = 'thread') -> dict:
    """Serve ``rate`` audited calls/s, paced, in one thread, until a line on stdin.

    Every call's start (wall clock) and in-process latency are recorded.  A call that
    blocks makes the loop skip the slots it missed (counted), as a saturated server
    would not take them.  audit_notifier: delivery snapshots every 0.25 s, and after the
    stop a flush until everything journaled was sent.  ``sender = external``: this
    process only journals; an ``audit-notifier send`` process at nice 19 (as its systemd
    unit runs it), started here with the same options, sends.
    """
    tmpdir = tempfile.mkdtemp(prefix='bench-outage-')
    app = make_app()
    sections = outage_sections(exchange)
    send_process = None
    if impl == 'an':
        mw = make_audit_notifier(app, tmpdir, 'messagingv2', topic, 'an', sections=sections,
                                 fast=fast, sender=sender)
        if sender == 'external':
            send_process = start_send_process(tmpdir, send_options(
                topic, fast, os.path.join(tmpdir, 'journal-an')), sections)
    else:
        mw = make_keystonemiddleware(app, tmpdir, 'messagingv2', topic, 'km',
                                     sections=sections)
    template = base_environ(AUDITED_PATH)

    def env_for(i):
        env = template.copy()
        env['PATH_INFO'] = IMAGE_PATHS[i % len(IMAGE_PATHS)]
        env['wsgi.input'] = io.BytesIO(b'')
        return env
    for i in range(OUTAGE_WARMUP):                    # warm-up: connections, caches
        call(mw, env_for(i))
    if impl == 'an':
        mw.delivery.flush(30)
    # The bare app, paced the same way for 2 s: what a call costs when calls are 6.7 ms
    # apart (cold caches after each sleep), for scale.
    bare = []
    interval = 1.0 / rate
    t0 = time.perf_counter()
    for i in range(int(2 * rate)):
        due = t0 + i * interval
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        env = env_for(i)
        c0 = time.perf_counter_ns()
        call(app, env)
        bare.append((time.perf_counter_ns() - c0) / 1000.0)
    bare.sort()
    calls: list = []
    state = {'skipped': 0, 'in_call_since': None}
    stop = threading.Event()
    snapshots: list = []

    def load():
        interval = 1.0 / rate
        pc = time.perf_counter
        t0 = pc()
        k = 0
        i = 0
        while not stop.is_set():
            due = t0 + k * interval
            now = pc()
            if due > now:
                time.sleep(due - now)
            elif now - due > interval:
                missed = int((now - due) / interval)
                state['skipped'] += missed
                k += missed
            env = env_for(i)
            started = time.time()
            state['in_call_since'] = started
            c0 = time.perf_counter_ns()
            call(mw, env)
            c1 = time.perf_counter_ns()
            state['in_call_since'] = None
            calls.append((round(started, 5), round((c1 - c0) / 1000.0, 2)))
            i += 1
            k += 1

    def sample():
        while not stop.wait(0.25):
            s = mw.delivery.snapshot()
            # external: what the send process confirmed (its bus counters are its own)
            sent = s['journaled'] - s['unsent'] - s['dropped'] if send_process else s['sent']
            snapshots.append((round(time.time(), 3), s['journaled'], sent, s['unsent'],
                              s['bus_down'], s['send_errors']))

    loader = threading.Thread(target=load, daemon=True, name='bench-load')
    sampler = threading.Thread(target=sample, daemon=True, name='bench-sample') \
        if impl == 'an' else None
    print('READY', flush=True)
    loader.start()
    if sampler is not None:
        sampler.start()
    sys.stdin.readline()                              # the parent says: stop
    t_stop = time.time()
    stop.set()
    loader.join(60.0)
    out = {'impl': impl, 'rate': rate, 't_stop': t_stop, 'calls': list(calls),
           'skipped_slots': state['skipped'], 'still_in_call_s': None,
           'warmup_calls': OUTAGE_WARMUP,
           'bare_paced': {'median_us': bare[len(bare) // 2],
                          'p99_us': bare[int(0.99 * len(bare))]}}
    if loader.is_alive():                             # a call still blocked
        since = state['in_call_since']
        out['still_in_call_s'] = round(time.time() - since, 1) if since else None
    if impl == 'an':
        t = time.time()
        out['flushed'] = mw.delivery.flush(180)
        out['flush_s'] = time.time() - t
        out['counters'] = dict(mw.delivery.counters)
        out['snapshot'] = mw.delivery.snapshot()
        out['snapshots'] = snapshots
        out['leaves'] = {fmt: leaf.batched for fmt, leaf in mw.delivery.leaves.items()}
    if send_process is not None:
        stop_send_process(send_process, tmpdir)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return out


def send_options(topic: str, fast: bool, journal_dir: str, driver: str = 'messagingv2') -> dict:
    """The [audit_notifier] options of :func:`make_audit_notifier`'s filter with
    ``sender = external``, for its send process."""
    return {'driver': driver, 'transport_url': BROKER_URL, 'topics': topic, 'formats': 'cadf',
            'sender': 'external', 'journal_dir': journal_dir,
            'rabbit_batch_publish': 'true' if fast else 'false'}


def start_send_process(tmpdir: str, options: dict, sections: str = '') -> subprocess.Popen:
    """``audit-notifier send`` for ``options['journal_dir']``: ``sections`` and the
    ``[audit_notifier]`` ``options`` in a conf file of its own, at low priority
    (:func:`send_process_priority`); its log in ``<tmpdir>/send.log``."""
    conf = os.path.join(tmpdir, 'audit-notifier-send.conf')
    with open(conf, 'w') as f:
        f.write(sections + '[audit_notifier]\n' +
                ''.join('%s = %s\n' % kv for kv in options.items()))
    with open(os.path.join(tmpdir, 'send.log'), 'wb') as log:
        return subprocess.Popen(
            [sys.executable, '-m', 'audit_notifier.cli', 'send', '--config-file', conf,
             '--journal-dir', options['journal_dir']], cwd=REPO, env=_child_env(),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=send_process_priority)


def stop_send_process(proc: subprocess.Popen, tmpdir: str) -> None:
    """SIGTERM (it publishes what it read, then exits 0); its log's tail if it failed."""
    proc.send_signal(signal.SIGTERM)
    if proc.wait(120):
        with open(os.path.join(tmpdir, 'send.log'), errors='replace') as f:
            sys.exit('audit-notifier send failed (%d):\n%s'
                     % (proc.returncode, f.read()[-4000:]))


def send_process_priority() -> None:
    """preexec_fn of a send process: nice 19 (its systemd unit's Nice=19), or the
    SCHED_IDLE policy (CPUSchedulingPolicy=idle) when ``BENCH_SEND_SCHED=idle``."""
    if os.environ.get('BENCH_SEND_SCHED') == 'idle':
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(19)


class Driver:
    """A paced driver child (section 2): READY, runs until told, then its JSON."""

    def __init__(self, impl: str, topic: str, exchange: str, rate: float, fast: bool,
                 sender: str = 'thread'):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--child', 'outage', '--impl', impl,
             '--topic', topic, '--exchange', exchange, '--rate', str(rate),
             '--sender', sender] + (['--fast'] if fast else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_child_env())
        line = self.proc.stdout.readline()
        if line.strip() != 'READY':
            self.kill()
            raise RuntimeError('outage driver %s did not start: %s %s'
                               % (impl, line, self.proc.stderr.read()[-3000:]))

    def stop(self) -> None:
        try:
            self.proc.stdin.write('STOP\n')
            self.proc.stdin.flush()
        except OSError:
            pass

    def result(self, timeout: float) -> dict:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError('outage driver failed:\n%s' % stderr[-4000:])
        res = json.loads(stdout.strip().splitlines()[-1])
        res['log_warnings'] = [line for line in stderr.splitlines()
                               if ' WARNING ' in ' %s ' % line or 'ERROR' in line][:20]
        return res

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def latency(calls: list, lo: float, hi: float) -> dict:
    lat = sorted(c[1] for c in calls if lo <= c[0] < hi)
    if not lat:
        return {'n': 0, 'median_us': None, 'p99_us': None, 'max_us': None}
    return {'n': len(lat), 'median_us': lat[len(lat) // 2],
            'p99_us': lat[min(len(lat) - 1, int(0.99 * len(lat)))], 'max_us': lat[-1]}


def outage(args, tmpdir: str, run_id: str) -> dict:
    global BROKER_SWITCH
    if not BrokerSwitch.available():
        return {'skipped': 'rabbitmqctl is not on PATH'}
    if BROKER_SWITCH is None:
        BROKER_SWITCH = BrokerSwitch()
    switch = BROKER_SWITCH
    exchange = 'bench_%s_outage' % run_id
    topics = {'an': 'bench-%s-outage-an' % run_id, 'km': 'bench-%s-outage-km' % run_id}
    impls = ['an'] + ([] if args.outage_no_km else ['km'])
    conf_file = os.path.join(tmpdir, 'outage-listener.conf')
    with open(conf_file, 'w') as f:
        f.write(outage_sections(exchange, listener=True))
    listeners, drivers, res = {}, {}, {}
    try:
        for impl in impls:
            listeners[impl] = Listener(topics[impl], 0, 0, conf_file=conf_file,
                                       arrivals=True)
        for impl in impls:
            drivers[impl] = Driver(impl, topics[impl], exchange, args.outage_rate,
                                   args.outage_fast_leaf and impl == 'an',
                                   args.outage_sender if impl == 'an' else 'thread')
        t_load = time.time()
        print('  load running at %.0f calls/s per middleware; stop_app in %.0f s'
              % (args.outage_rate, args.outage_before), flush=True)
        time.sleep(args.outage_before)
        BROKER_TROUBLE.take()
        stop_began, stop_done = switch.stop()
        print('  rabbitmqctl stop_app took %.1f s; broker down for %.0f s'
              % (stop_done - stop_began, args.outage_seconds), flush=True)
        time.sleep(max(0.0, stop_done + args.outage_seconds - time.time()))
        early = switch.answered_early
        start_began, start_done = switch.start()
        print('  rabbitmqctl start_app: answering again after %.1f s' % (start_done - start_began),
              flush=True)
        time.sleep(args.outage_after)
        for d in drivers.values():
            d.stop()
        t_end = time.time()
        for impl in impls:
            res[impl] = drivers[impl].result(timeout=300)
        for impl in impls:
            r = res[impl]
            expected = (len(r['calls']) + r['warmup_calls']) * (1 if impl == 'an' else 2)
            listeners[impl].expect(expected)
            r['expected_events'] = expected
        for impl in impls:
            res[impl]['listener'] = listeners[impl].result(timeout=300)
    finally:
        for d in drivers.values():
            d.kill()
        switch.ensure_running()
        for lst in listeners.values():
            lst.kill()
        delete_queues(['%s.%s' % (topics[i], p) for i in impls for p in PRIORITIES],
                      exchanges=[exchange])
    out = {'rate': args.outage_rate, 'outage_seconds': args.outage_seconds,
           'fast_leaf': args.outage_fast_leaf, 'sender': args.outage_sender,
           'stop_app': [stop_began, stop_done], 'start_app': [start_began, start_done],
           'broker_down_s': start_done - stop_began, 'answered_early_s': early,
           'load_started': t_load, 'load_stopped': t_end}
    for impl in impls:
        r = res[impl]
        heard = r['listener']
        calls = r['calls']
        entry = {'calls': len(calls), 'expected_events': r['expected_events'],
                 'received_unique': heard['unique'],
                 'duplicates': heard['received'] - heard['unique'],
                 'lost': r['expected_events'] - heard['unique'],
                 'skipped_slots': r['skipped_slots'], 'still_in_call_s': r['still_in_call_s'],
                 'before': latency(calls, t_load + 1.0, stop_began),
                 'during': latency(calls, stop_began, start_done),
                 'after': latency(calls, start_done, t_end + 1.0),
                 'calls_started_during': sum(1 for c in calls if stop_began <= c[0] < start_done),
                 'slots_during': int((start_done - stop_began) * args.outage_rate),
                 'bare_paced': r['bare_paced'], 'log_warnings': r['log_warnings']}
        arrivals = sorted(heard.get('arrivals') or [])
        if impl == 'an':
            entry['counters'] = r['counters']
            entry['flushed'] = r['flushed']
            entry['leaves_batched'] = r['leaves']
            n_pre = r['warmup_calls'] + sum(1 for c in calls if c[0] < start_done)
            arrived_pre = sum(1 for t in arrivals if t < start_done)
            backlog = n_pre - arrived_pre
            entry['backlog_at_start_app'] = backlog
            after = [t for t in arrivals if t >= start_done]
            if backlog > 0 and len(arrivals) >= n_pre and after:
                drained_at = arrivals[n_pre - 1]
                first = after[0]
                entry['first_event_after_start_s'] = first - start_done
                entry['backlog_at_listener_s'] = drained_at - start_done
                entry['drain_rate'] = backlog / max(1e-3, drained_at - first)
            # the sender's view: when had it handed everything journaled before start_app
            # to the broker (snapshots every 0.25 s)?
            for t, journaled, sent, unsent, down, errors in r['snapshots']:
                if t >= start_done and sent >= n_pre:
                    entry['backlog_sent_s'] = t - start_done
                    break
            drained = entry.get('backlog_at_listener_s')
            if drained is not None:
                entry['after_drain'] = latency(calls, start_done + drained, t_end + 1.0)
                entry['during_drain'] = latency(calls, start_done, start_done + drained)
        out[impl] = entry
    return out


# ---------------------------------------------------------------------------------------
# 3. Streaming memory (child process per variant)
# ---------------------------------------------------------------------------------------

def child_stream(variant: str, size: int) -> dict:
    import psutil
    proc = psutil.Process()
    tmpdir = tempfile.mkdtemp(prefix='bench-stream-')
    topic = 'bench-stream-unused'
    if variant == 'bare':
        app = stream_app
    elif variant == 'an':
        app = make_audit_notifier(stream_app, tmpdir, 'noop', topic, 'an')     # journal mode
    else:
        app = make_keystonemiddleware(stream_app, tmpdir, 'noop', topic, 'km')
    template = base_environ(DOWNLOAD_PATH)

    def download(nbytes, sample_every=0):
        env = template.copy()
        env['wsgi.input'] = io.BytesIO(b'')
        env['bench.size'] = nbytes
        peak = 0
        t0 = time.perf_counter()
        body = app(env, _start_response)
        it = iter(body)
        got = 0
        ttfb = None
        rss_first = None
        i = 0
        try:
            for chunk in it:
                if ttfb is None:
                    ttfb = time.perf_counter() - t0
                    if sample_every:
                        rss_first = proc.memory_info().rss
                        peak = max(peak, rss_first)
                got += len(chunk)
                i += 1
                if sample_every and i % sample_every == 0:
                    peak = max(peak, proc.memory_info().rss)
                del chunk
        finally:
            close = getattr(body, 'close', None)
            if close is not None:
                close()
        total = time.perf_counter() - t0
        return got, ttfb, total, peak, rss_first

    download(4 * 1024 * 1024)                   # warm-up
    if hasattr(app, 'delivery'):
        app.delivery.flush(30)
    gc.collect()
    rss0 = proc.memory_info().rss
    maxrss0 = _peak_rss_bytes()
    got, ttfb, total, peak, rss_first = download(size, sample_every=64)  # every 4 MiB
    rss_end = proc.memory_info().rss
    maxrss1 = _peak_rss_bytes()
    counters = None
    if hasattr(app, 'delivery'):
        app.delivery.flush(30)
        counters = dict(app.delivery.counters)
    shutil.rmtree(tmpdir, ignore_errors=True)
    return {'variant': variant, 'bytes': got, 'expected_bytes': size,
            'ttfb_s': ttfb, 'total_s': total, 'rss_before': rss0,
            'rss_at_first_byte': rss_first, 'rss_peak_sampled': peak, 'rss_after': rss_end,
            'growth_bytes': max(peak, rss_end) - rss0,
            'maxrss_growth_bytes': max(0, maxrss1 - max(rss0, maxrss0)),
            'counters': counters}


def streaming(args) -> dict:
    out = {}
    for variant, size in (('bare', args.stream_bytes), ('an', args.stream_bytes),
                          ('km', args.km_stream_bytes)):
        res = run_child(['--child', 'stream', '--variant', variant, '--size', str(size)],
                        timeout=300)
        out[variant] = res
        print('  %s: %d MiB in %.2f s, RSS +%.1f MiB, first byte after %.2f ms'
              % (variant, res['bytes'] >> 20, res['total_s'], res['growth_bytes'] / 2**20,
                 res['ttfb_s'] * 1000), flush=True)
    return out


# ---------------------------------------------------------------------------------------
# 4. Notifications per second (driver process + listener process)
# ---------------------------------------------------------------------------------------

def child_listen(topic: str, expect: int, idle: float, limit: float, batch: int,
                 conf_file: str | None = None, arrivals: bool = False) -> dict:
    """A real oslo.messaging notification listener (rabbit, threading executor).

    ``batch`` > 0: a batch listener as Ceilometer's notification agent runs it
    (batch_size, short batch_timeout so the last partial batch is not held back).
    ``expect`` 0: the count is not known yet; it comes as a line ``EXPECT <n>`` on stdin
    (until then the listener never gives up for being idle: section 2's outage).
    ``arrivals``: also return the first arrival time of every message_id.
    """
    import oslo_messaging
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    conf(args=[], project='bench-listener',
         default_config_files=[conf_file] if conf_file else [])
    transport = oslo_messaging.get_notification_transport(conf, url=BROKER_URL)
    lock = threading.Lock()
    state = {'count': 0, 'first': None, 'last': None, 'expect': expect,
             'expect_at': time.time() if expect else None}
    ids: dict = {}
    done = threading.Event()
    timeline = []

    def seen(metadatas):
        now = time.time()
        with lock:
            for metadata in metadatas:
                state['count'] += 1
                ids.setdefault(metadata.get('message_id'), now)
            if state['first'] is None:
                state['first'] = now
            state['last'] = now
            if state['expect'] and len(ids) >= state['expect']:
                done.set()

    def read_expect():
        for line in sys.stdin:
            if line.startswith('EXPECT'):
                with lock:
                    state['expect'] = int(line.split()[1])
                    state['expect_at'] = time.time()
                    if len(ids) >= state['expect']:
                        done.set()
                return

    class Endpoint:
        def info(self, ctxt, publisher_id, event_type, payload, metadata):
            seen((metadata,))
        warn = error = info

    class BatchEndpoint:
        def info(self, messages):
            seen([m['metadata'] for m in messages])
        warn = error = info

    targets = [oslo_messaging.Target(topic=topic)]
    if batch:
        listener = oslo_messaging.get_batch_notification_listener(
            transport, targets, [BatchEndpoint()], executor='threading',
            batch_size=batch, batch_timeout=0.2)
    else:
        listener = oslo_messaging.get_notification_listener(
            transport, targets, [Endpoint()], executor='threading')
    listener.start()
    if not expect:
        threading.Thread(target=read_expect, daemon=True).start()
    print('READY', flush=True)
    started = time.time()
    while not done.wait(0.5):
        now = time.time()
        timeline.append((round(now - started, 1), len(ids)))
        ref = state['last']
        if not expect and state['expect_at'] is not None:
            ref = max(ref or 0.0, state['expect_at'])
        if ref is not None and state['expect_at'] is not None and now - ref > idle:
            break
        if now - started > limit:
            break
    listener.stop()
    listener.wait()
    transport.cleanup()
    out = {'received': state['count'], 'unique': len(ids), 'first_t': state['first'],
           'last_t': state['last'], 'expected': state['expect'], 'timeline': timeline}
    if arrivals:
        out['arrivals'] = sorted(round(t, 4) for t in ids.values())
    return out


DRIVE_WARMUP = 10


def child_drive(impl: str, topic: str, n: int, fast: bool) -> dict:
    tmpdir = tempfile.mkdtemp(prefix='bench-drive-')
    app = make_app()
    if impl == 'an':
        mw = make_audit_notifier(app, tmpdir, 'messagingv2', topic, 'an', fast=fast)
    else:
        mw = make_keystonemiddleware(app, tmpdir, 'messagingv2', topic, 'km')
    template = base_environ(AUDITED_PATH)
    paths = IMAGE_PATHS
    npaths = len(paths)
    sr = _start_response
    # Warm-up: both connect to RabbitMQ at their first publish (km in the request thread,
    # audit_notifier's sender in the background); not part of the timed rate.
    for i in range(DRIVE_WARMUP):
        env = template.copy()
        env['PATH_INFO'] = paths[-1 - i]
        env['wsgi.input'] = io.BytesIO(b'')
        call(mw, env)
    if impl == 'an':
        mw.delivery.flush(60)
        sent_before = mw.delivery.counters['sent']
    t_first = time.time()
    for i in range(n):
        env = template.copy()
        env['PATH_INFO'] = paths[i % npaths]
        env['wsgi.input'] = io.BytesIO(b'')
        body = mw(env, sr)
        for _chunk in body:
            pass
        close = getattr(body, 'close', None)
        if close is not None:
            close()
    t_requests = time.time()
    out = {'impl': impl, 'requests': n, 't_first': t_first, 't_requests_done': t_requests}
    if impl == 'an':
        out['flushed'] = mw.delivery.flush(300)
        out['t_published'] = time.time()
        out['counters'] = dict(mw.delivery.counters)
        out['sent_timed'] = out['counters']['sent'] - sent_before
        out['leaves'] = {fmt: leaf.batched for fmt, leaf in mw.delivery.leaves.items()}
        mw.delivery.close(10)
    else:
        out['t_published'] = t_requests          # km publishes in the request thread
    shutil.rmtree(tmpdir, ignore_errors=True)
    return out


class Listener:
    """The listener child process: started, READY, then its JSON result."""

    def __init__(self, topic: str, expect: int, batch: int, conf_file: str | None = None,
                 arrivals: bool = False):
        self.topic = topic
        argv = [sys.executable, os.path.abspath(__file__), '--child', 'listen', '--topic', topic,
                '--expect', str(expect), '--batch', str(batch)]
        if conf_file:
            argv += ['--conf-file', conf_file]
        if arrivals:
            argv.append('--arrivals')
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=_child_env())
        line = self.proc.stdout.readline()
        if line.strip() != 'READY':
            self.kill()
            raise RuntimeError('listener did not start: %s %s'
                               % (line, self.proc.stderr.read()[-2000:]))

    def expect(self, n: int) -> None:
        self.proc.stdin.write('EXPECT %d\n' % n)
        self.proc.stdin.flush()

    def result(self, timeout: float = 600) -> dict:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError('listener failed:\n%s' % stderr[-4000:])
        return json.loads(stdout.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def sample_envelope(run_id: str) -> dict:
    """An envelope shaped like audit_notifier's CADF notification of a GET (~1.3 KB)."""
    env = base_environ(AUDITED_PATH)
    payload = {
        'typeURI': 'http://schemas.dmtf.org/cloud/audit/1.0/event', 'eventType': 'activity',
        'id': str(uuid.uuid4()), 'eventTime': '2026-01-12T09:30:11.123456+0000',
        'action': 'read', 'outcome': 'success',
        'reason': {'reasonType': 'HTTP', 'reasonCode': '200'},
        'initiator': {'typeURI': 'service/security/account/user', 'id': env['HTTP_X_USER_ID'],
                      'name': 'alice', 'domain_id': 'default', 'domain': 'Default',
                      'project_id': env['HTTP_X_PROJECT_ID'], 'project_name': 'demo',
                      'project_domain_id': 'default', 'project_domain_name': 'Default',
                      'identity_status': 'Confirmed', 'roles': ['member', 'reader'],
                      'host': {'address': '10.0.0.5', 'agent': env['HTTP_USER_AGENT']}},
        'target': {'typeURI': 'service/storage/image', 'id': IMAGE_ID},
        'observer': {'typeURI': 'service/storage/image', 'id': str(uuid.uuid4()),
                     'name': 'glance'},
        'requestPath': AUDITED_PATH}
    return {'message_id': str(uuid.uuid4()), 'publisher_id': 'image.bench-' + run_id,
            'event_type': 'audit.image.read', 'priority': 'INFO', 'payload': payload,
            'timestamp': '2026-01-12 09:30:11.123456'}


def listener_capacity(args, run_id: str) -> dict:
    """How fast the listener alone drains a queue already holding M notifications."""
    import kombu
    topic = 'bench-%s-rate-cal' % run_id
    m = args.calibrate_messages
    Listener(topic, 1, args.listener_batch).kill()        # it declares and binds its queues
    try:
        base = sample_envelope(run_id)
        with kombu.Connection(KOMBU_URL) as conn:
            producer = kombu.Producer(conn.channel())
            for _ in range(m):
                base['message_id'] = str(uuid.uuid4())
                producer.publish({'oslo.version': '2.0', 'oslo.message': json.dumps(base)},
                                 exchange='openstack', routing_key=topic + '.info',
                                 serializer='json', delivery_mode=1)
        queued = wait_queue_count(topic + '.info', m)
        listener = Listener(topic, m, args.listener_batch)
        try:
            heard = listener.result()
        finally:
            listener.kill()
    finally:
        delete_queues('%s.%s' % (topic, p) for p in PRIORITIES)
    rate = None
    if heard['last_t'] and heard['first_t'] and heard['last_t'] > heard['first_t']:
        rate = heard['unique'] / (heard['last_t'] - heard['first_t'])
    return {'messages': m, 'queued': queued, 'received': heard['unique'], 'events_per_s': rate,
            'broker_trouble': heard.get('broker_trouble')}


def drive_and_listen(args, run_id, key, impl, n, per_request, fast, attempt) -> dict:
    """One driver process, one listener process.  By default the listener drains the
    queue AFTER the driver is done (its queues are declared before): on 2 cores a
    consuming listener takes most of a core from the process under test.
    ``--concurrent-listener``: it consumes while the driver runs (end-to-end rate)."""
    topic = 'bench-%s-rate-%s-%d' % (run_id, key, attempt)
    expect = (n + DRIVE_WARMUP) * per_request
    concurrent = args.concurrent_listener
    listener = None
    try:
        if concurrent:
            listener = Listener(topic, expect, args.listener_batch)
            time.sleep(0.5)
        else:
            Listener(topic, 1, args.listener_batch).kill()    # declares and binds its queues
        drive = run_child(['--child', 'drive', '--impl', impl, '--topic', topic,
                           '--n', str(n)] + (['--fast'] if fast else []), timeout=600)
        if not concurrent:
            listener = Listener(topic, expect, args.listener_batch)
        heard = listener.result()
        left = queue_count(topic + '.info')
    finally:
        if listener is not None:
            listener.kill()
        delete_queues('%s.%s' % (topic, p) for p in PRIORITIES)
    res = {'requests': n, 'expected_events': expect, 'timed_events': n * per_request,
           'driver': drive, 'listener': heard, 'left_in_queue': left,
           'listener_concurrent': concurrent}
    res['requests_loop_s'] = drive['t_requests_done'] - drive['t_first']
    res['published_s'] = drive['t_published'] - drive['t_first']
    sent = drive['sent_timed'] if impl == 'an' else n * per_request
    res['publish_rate'] = sent / res['published_s'] if res['published_s'] > 0 else None
    if heard['last_t']:
        if concurrent:                  # from the first timed request to the last event
            elapsed = heard['last_t'] - drive['t_first']
            timed = heard['unique'] - DRIVE_WARMUP * per_request
        else:                           # the listener draining the filled queue
            elapsed = heard['last_t'] - heard['first_t']
            timed = heard['unique']
        res['listener_s'] = elapsed
        res['events_per_s'] = timed / elapsed if elapsed > 0 else None
    res['lost'] = expect - heard['unique']
    res['duplicates'] = heard['received'] - heard['unique']
    return res


# (key, impl, fast leaf, label)
RATE_VARIANTS = (('an-fast', 'an', True, 'audit_notifier fast leaf'),
                 ('an-plain', 'an', False, 'audit_notifier plain leaf'),
                 ('km', 'km', False, 'keystonemiddleware'))


def sustained(args, run_id: str) -> dict:
    out = {'listener': 'batch listener, batch_size %d' % args.listener_batch
           if args.listener_batch else 'notification listener',
           'concurrent_listener': args.concurrent_listener}
    if args.concurrent_listener:
        # What the listener alone drains: the bound of any end-to-end rate.
        for attempt in range(3):
            cal = listener_capacity(args, run_id + '-%d' % attempt)
            if not (cal['broker_trouble'] or {}).get('errors') and \
                    cal['received'] == cal['messages']:
                break
            print('  listener calibration disturbed (broker went away?); run again',
                  flush=True)
        out['listener_capacity'] = cal
        print('  the listener alone drains %.0f events/s (%d pre-queued)'
              % (cal['events_per_s'] or 0, cal['messages']), flush=True)
    runs: dict = {key: [] for key, *_rest in RATE_VARIANTS}
    for rep in range(args.rate_repeats):          # variants alternate: fast, plain, km, ...
        for key, impl, fast, _label in RATE_VARIANTS:
            n = args.km_rate_requests if impl == 'km' else args.rate_requests
            per_request = 2 if impl == 'km' else 1
            for attempt in range(3):
                res = drive_and_listen(args, run_id, key, impl, n, per_request, fast,
                                       rep * 10 + attempt)
                trouble = [t for t in (res['driver'].get('broker_trouble'),
                                       res['listener'].get('broker_trouble'))
                           if t and t['errors']]
                if impl == 'an' and res['driver']['counters'].get('send_errors'):
                    trouble.append({'first': 'send_errors %d'
                                    % res['driver']['counters']['send_errors']})
                if not trouble:
                    break
                print('  %s: the broker went away during the run (%s); run again'
                      % (key, trouble[0]['first']), flush=True)
                res.setdefault('discarded_attempts', attempt + 1)
            res['load'] = os.getloadavg()[0]
            runs[key].append(res)
            print('  %s: %d requests, %d/%d events at the listener, handed to the broker at '
                  '%.0f/s (load %.1f)' % (key, n, res['listener']['unique'],
                                          res['expected_events'], res['publish_rate'] or 0,
                                          res['load']), flush=True)
    # Other work on the machine only ever slows a run down: the fastest run of each
    # variant is reported, every run's rate is kept (and printed).
    for key, results in runs.items():
        best = max(results, key=lambda r: r['publish_rate'] or 0)
        best['all_rates'] = [r['publish_rate'] for r in results]
        best['all_lost'] = [r['lost'] for r in results]
        out[key] = best
    return out


# ---------------------------------------------------------------------------------------
# 5. Filter construction (child process per variant)
# ---------------------------------------------------------------------------------------

def child_construct(impl: str, route_map: str, n: int) -> dict:
    """Import time, then ``n`` constructions of the filter (the first one is what a
    service pays at start-up; the others show what is cached per process)."""
    tmpdir = tempfile.mkdtemp(prefix='bench-construct-')
    app = make_app()
    t = time.perf_counter()
    if impl == 'an':
        from audit_notifier.middleware import filter_factory
    else:
        from keystonemiddleware import audit
    import_s = time.perf_counter() - t
    map_file = write_audit_map(tmpdir)
    times = []
    for i in range(n):
        if impl == 'an':
            conf = private_conf(tmpdir, 'an-%d' % i)          # the service's CONF exists
            t = time.perf_counter()
            mw = filter_factory({}, oslo_config_config=conf, formats='cadf',
                                driver='messagingv2', transport_url=BROKER_URL,
                                topics='bench-construct', route_map=route_map,
                                journal_dir=os.path.join(tmpdir, 'journal'))(app)
        else:
            conf = private_conf(tmpdir, 'km-%d' % i, '[audit_middleware_notifications]\n'
                                'driver = messagingv2\ntransport_url = %s\n' % BROKER_URL)
            t = time.perf_counter()
            mw = audit.AuditMiddleware(app, audit_map_file=map_file, oslo_config_config=conf)
        times.append(time.perf_counter() - t)
        del mw
    shutil.rmtree(tmpdir, ignore_errors=True)
    return {'impl': impl, 'route_map': route_map, 'import_s': import_s, 'first_s': times[0],
            'warm_median_s': statistics.median(times[1:]) if n > 1 else None, 'n': n}


CONSTRUCT_VARIANTS = (('an-glance', 'an', 'glance', 'audit_notifier, route_map = glance'),
                      ('an-magnum', 'an', 'magnum', 'audit_notifier, route_map = magnum'),
                      ('km', 'km', 'glance', 'keystonemiddleware, pycadf Glance map'))


def construction(args) -> dict:
    out = {}
    for key, impl, route_map, _label in CONSTRUCT_VARIANTS:
        res = run_child(['--child', 'construct', '--impl', impl, '--route-map', route_map,
                         '--n', str(args.construct_n)], timeout=300)
        out[key] = res
        print('  %s: first %.1f ms, then %.1f ms (import %.0f ms)'
              % (key, res['first_s'] * 1000, (res['warm_median_s'] or 0) * 1000,
                 res['import_s'] * 1000), flush=True)
    return out


# ---------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------

def _child_env() -> dict:
    env = dict(os.environ)
    env['PYTHONWARNINGS'] = 'ignore'
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    return env


def run_child(argv: list, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__)] + argv,
                          capture_output=True, text=True, timeout=timeout, env=_child_env())
    if proc.returncode != 0:
        raise RuntimeError('child %s failed (%d):\n%s' % (' '.join(argv), proc.returncode,
                                                          proc.stderr[-4000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def child_main(args) -> None:
    if args.child == 'stream':
        res = child_stream(args.variant, args.size)
    elif args.child == 'listen':
        res = child_listen(args.topic, args.expect, idle=10.0, limit=600.0, batch=args.batch,
                           conf_file=args.conf_file, arrivals=args.arrivals)
    elif args.child == 'drive':
        res = child_drive(args.impl, args.topic, args.n, args.fast)
    elif args.child == 'outage':
        res = child_outage(args.impl, args.topic, args.exchange, args.rate, args.fast,
                           args.sender)
    elif args.child == 'construct':
        res = child_construct(args.impl, args.route_map, args.n)
    else:
        raise SystemExit('unknown child %s' % args.child)
    res['broker_trouble'] = BROKER_TROUBLE.take()
    print(json.dumps(res), flush=True)
    sys.stdout.flush()
    os._exit(0)          # do not wait for oslo.messaging's non-daemon helper threads


# ---------------------------------------------------------------------------------------
# Profile (optional)
# ---------------------------------------------------------------------------------------

def profile(args, tmpdir: str, run_id: str) -> None:
    """cProfile of the request thread, and the request-path figures with the sender
    publishing concurrently (as in section 1) or idle (its work left for after the
    block), to tell journaling cost from competition with the sender for the GIL."""
    import cProfile
    import pstats
    app = make_app()
    topic = 'bench-%s-profile' % run_id
    template = base_environ(AUDITED_PATH)
    bare = []
    run_block(app, template, 10000, bare, IMAGE_PATHS)
    bare.sort()
    print('bare app: median %.2f us, p99 %.2f us' % (pct(bare, 50), pct(bare, 99)))
    variants = (('journal', 'messagingv2', False), ('journal', 'messagingv2', True),
                ('memory', 'messagingv2', False), ('journal', 'noop', False))
    for mode, driver, fast in variants:
        name = 'profile-%s-%s%s' % (mode, driver, '-fast' if fast else '')
        mw = make_audit_notifier(app, tmpdir, driver, topic, name, mode=mode, fast=fast)
        run_block(mw, template, 2000, [], IMAGE_PATHS)
        mw.delivery.flush(60)
        times = []
        for _ in range(10):
            run_block(mw, template, 1000, times, IMAGE_PATHS)
            mw.delivery.flush(60)
        times.sort()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(10):
            run_block(mw, template, 1000, [], IMAGE_PATHS)
            mw.delivery.flush(60)
        prof.disable()
        print('\n== %s, %s, %s leaf: 10,000 audited requests: median %.2f us, p90 %.2f us, '
              'p99 %.2f us (bare app included) =='
              % (mode, driver, 'fast' if fast else 'plain', pct(times, 50), pct(times, 90),
                 pct(times, 99)))
        pstats.Stats(prof).sort_stats('tottime').print_stats(14)
        mw.delivery.close(10)
    delete_queues([topic + '.info'])


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return 'PASS' if ok else 'MISS'


def fmt_us(v: float | None) -> str:
    if v is None:
        return '-'
    return '%.1f' % v if abs(v) < 100 else '{:,.0f}'.format(v)


def fmt_lat(us: float | None) -> str:
    """A latency in us or ms, whichever reads better."""
    if us is None:
        return '-'
    if us >= 10000:
        return '{:,.1f} s'.format(us / 1e6) if us >= 1e6 else '%.1f ms' % (us / 1000)
    return fmt_us(us) + ' us'


def trouble_note(w, trouble) -> None:
    if trouble and trouble.get('errors'):
        w('   NOTE: the broker went away during this section (%d oslo.messaging errors, first: '
          '%s): its figures measure an outage, run again' % (trouble['errors'], trouble['first']))


AN_LABELS = {'an-journal': 'journal, messagingv2', 'an-memory': 'memory, messagingv2',
             'an-noop': 'journal, noop'}


def report_request(w, rp: dict, res: dict) -> None:
    a = rp['added']
    w('')
    w('1. Request-path cost: time ADDED to the bare app, microseconds (median of %d rounds; '
      'per round %d requests per variant for the bare app and audit_notifier, %d for '
      'keystonemiddleware noop, %d for keystonemiddleware messagingv2)'
      % (len(rp['rounds']), a['an-journal/audited']['requests_per_round'],
         a['km-noop/audited']['requests_per_round'], a['km-msg/audited']['requests_per_round']))
    w('   bare app itself: %.2f us (GET /v2/images/<uuid>), %.2f us (GET /v2/schemas/image); '
      'plain leaf (rabbit_batch_publish = false) unless said'
      % (rp['bare_us']['audited']['median'], rp['bare_us']['unaudited']['median']))
    w('')
    hdr = ('%-30s %-22s %-22s %-24s %-8s'
           % ('request', 'audit_notifier', 'ours med / p90 / p99', 'keystonemw med/p90/p99',
              'km/ours'))
    w(hdr)
    w('-' * len(hdr))

    def trip(e):
        return '%s / %s / %s' % (fmt_us(e['added_median']), fmt_us(e['added_p90']),
                                 fmt_us(e['added_p99']))
    for path, label in (('audited', 'GET /v2/images/<uuid> (aud.)'),
                        ('unaudited', 'GET /v2/schemas/image (not)')):
        for i, key in enumerate(AN_SERIES):
            ours = a['%s/%s' % (key, path)]
            km = a['km-%s/%s' % ('noop' if AN_SERIES[key][1] == 'noop' else 'msg', path)]
            our_med = ours['added_median']
            ratio = (('%.0fx' % (km['added_median'] / our_med)) if our_med >= 0.1
                     else '>%.0fx' % (km['added_median'] / 0.1))
            w('%-30s %-22s %-22s %-24s %-8s'
              % (label if i == 0 else '', AN_LABELS[key], trip(ours),
                 trip(km) + (' (noop)' if AN_SERIES[key][1] == 'noop' else ''), ratio))
    w('   (keystonemiddleware audits every path: it sends its 2 events for '
      '/v2/schemas/image too)')
    d = rp['delivery']
    w('')
    w('   Events of the messagingv2 variants (all rounds incl. warm-up):')
    for key in AN_SERIES:
        e = d[key]
        c = e['counters']
        w('   audit_notifier %-21s %d audited calls -> %d events expected; sent %s, dropped %s%s'
          ' -> %s' % (AN_LABELS[key] + ':', e['audited_requests'], e['audited_requests'],
                      c.get('sent'), c.get('dropped'),
                      '; in the broker queue: %s' % e['on_broker'] if 'on_broker' in e else '',
                      'n/a' if d.get('broker_restarted') else verdict(e['ok'])))
    km = d['km-msg']
    w('   keystonemiddleware messagingv2:  %d calls -> %d events expected; in the broker queue: '
      '%s -> %s' % (km['requests'], km['expected_events'], km['on_broker'],
                    'n/a' if d.get('broker_restarted') else verdict(km['ok'])))
    if d.get('broker_restarted'):
        w('   NOTE: the broker was stopped by something else during this section (its '
          'non-durable queues were deleted): the queue counts are not comparable; '
          '%d round(s) discarded and run again' % len(rp.get('discarded', [])))
    w('   audit_notifier\'s senders needed %s s per round to publish after the timed blocks '
      '(outside the timed region)'
      % ', '.join('%s %.1f' % (key.split('-')[1], statistics.median(
          r['an_flush_seconds'][key] for r in rp['rounds'])) for key in AN_SERIES))
    trouble_note(w, res.get('broker_trouble', {}).get('request'))


def report_outage(w, ou: dict) -> None:
    w('')
    if ou.get('skipped'):
        w('2. Broker outage: skipped (%s)' % ou['skipped'])
        return
    w('2. Broker outage: rabbitmqctl stop_app, start_app %.0f s later (the broker refused '
      'connections for %.1f s); %.0f audited calls/s per middleware, in process, one thread, '
      'own process each; durable queues; in-process call latency'
      % (ou['outage_seconds'], ou['broker_down_s'], ou['rate']))
    hdr = ('%-19s %-6s %-7s %-5s %-4s %-36s %-28s %s'
           % ('variant', 'calls', 'events', 'lost', 'dup', 'p99 before / during / after',
              'median before / during / after', 'calls made during outage'))
    w(hdr)
    w('-' * len(hdr))
    for impl, label in (('an', 'audit_notifier'), ('km', 'keystonemiddleware')):
        e = ou.get(impl)
        if not e:
            continue
        w('%-19s %-6d %-7d %-5d %-4d %-36s %-28s %s'
          % (label, e['calls'], e['expected_events'], e['lost'], e['duplicates'],
             ' / '.join(fmt_lat(e[k]['p99_us']) for k in ('before', 'during', 'after')),
             ' / '.join(fmt_lat(e[k]['median_us']) for k in ('before', 'during', 'after')),
             '%d of %d slots' % (e['calls_started_during'], e['slots_during'])))
    an = ou['an']
    w('   (the bare app, paced the same way in the same processes: median %s, p99 %s: calls '
      '%.1f ms apart run with cold caches, hence the gap to section 1\'s figures)'
      % (fmt_lat(an['bare_paced']['median_us']), fmt_lat(an['bare_paced']['p99_us']),
         1000.0 / ou['rate']))
    if an.get('backlog_at_listener_s') is not None:
        w('   audit_notifier: %d events waited in the journal at start_app; first event at the '
          'listener %.1f s later, all of them %.1f s later: drained at %.0f events/s (the '
          'sender had handed them to RabbitMQ %s s after start_app)'
          % (an['backlog_at_start_app'], an['first_event_after_start_s'],
             an['backlog_at_listener_s'], an['drain_rate'],
             '%.1f' % an['backlog_sent_s'] if an.get('backlog_sent_s') is not None else '?'))
        w('   (%s%s leaf; durable queues: every message is persistent%s)'
          % ('sender = external: an audit-notifier send process at low priority sends; '
             if ou.get('sender') == 'external' else '',
             'fast' if ou.get('fast_leaf') else 'plain',
             ', committed 100 per AMQP transaction' if ou.get('fast_leaf') else
             ', and the plain leaf waits for the broker\'s confirm of each one'))
        w('   audit_notifier request p99 while the backlog drained: %s (%d calls); after it: %s'
          % (fmt_lat(an['during_drain']['p99_us']), an['during_drain']['n'],
             fmt_lat(an['after_drain']['p99_us'])))
    w('   audit_notifier counters: %s' % an.get('counters'))
    km = ou.get('km')
    if km:
        w('   keystonemiddleware publishes in the request thread (oslo.messaging retries a '
          'notification forever by default): longest call %s; %d paced slots skipped while '
          'a call was blocked%s' % (fmt_lat(max(km[k]['max_us'] or 0 for k in
                                                ('before', 'during', 'after'))),
                                    km['skipped_slots'],
                                    '; a call was still blocked %.0f s when the load stopped'
                                    % km['still_in_call_s'] if km.get('still_in_call_s') else ''))
    if ou.get('answered_early_s') is not None:
        w('   NOTE: the broker answered %.1f s after stop_app, before this script started it '
          '(another process on this machine started it): the outage was cut short'
          % ou['answered_early_s'])


def report_stream(w, st: dict) -> None:
    w('')
    w('3. Streaming download from a generator app (start_response called lazily, 64 KiB '
      'chunks), fresh process each, driver noop, audit_notifier in journal mode')
    hdr = ('%-20s %-9s %-14s %-16s %-12s %-10s %s'
           % ('variant', 'body', 'RSS growth', 'first byte', 'total', 'throughput',
              'streams (growth < %g MiB)' % TARGET_STREAM_GROWTH_MIB))
    w(hdr)
    w('-' * len(hdr))
    for key, label in (('bare', 'bare app'), ('an', 'audit_notifier'),
                       ('km', 'keystonemiddleware')):
        r = st[key]
        growth = r['growth_bytes'] / 2**20
        w('%-20s %-9s %-14s %-16s %-12s %-10s %s'
          % (label, '%d MiB' % (r['bytes'] >> 20), '+%.1f MiB' % growth,
             '%.2f ms' % (r['ttfb_s'] * 1000), '%.2f s' % r['total_s'],
             '%.2f GiB/s' % (r['bytes'] / 2**30 / r['total_s']),
             verdict(growth < TARGET_STREAM_GROWTH_MIB and r['bytes'] == r['expected_bytes'])))
    if st['km']['expected_bytes'] != st['an']['expected_bytes']:
        w('   (keystonemiddleware capped at %d MiB: it buffers the whole body in memory)'
          % (st['km']['expected_bytes'] >> 20))
    if st['an'].get('counters'):
        w('   audit_notifier counters after the download: %s' % st['an']['counters'])


def report_rate(w, su: dict) -> None:
    cal = su.get('listener_capacity')
    w('')
    concurrent = su.get('concurrent_listener')
    w('4. Notifications handed to RabbitMQ by one process (requests as fast as possible in one '
      'thread; times from the first timed request), counted by a real oslo.messaging %s '
      '(rabbit, messagingv2, threading executor, its own process, unique topic) %s'
      % (su['listener'], 'consuming meanwhile' if concurrent else
         'that drains the queue once the driver is done'))
    hdr = ('%-26s %-9s %-7s %-10s %-22s %-14s %-10s %-12s %-5s'
           % ('variant', 'requests', 'events', 'req. loop', 'handed to RabbitMQ',
              'last received' if concurrent else 'listener', 'events/s', 'received', 'lost'))
    w(hdr)
    w('-' * len(hdr))
    for key, impl, fast, label in RATE_VARIANTS:
        r = su.get(key)
        if not r:
            continue
        heard = r['listener']
        w('%-26s %-9d %-7d %-10s %-22s %-14s %-10.0f %-12s %-5d'
          % (label, r['requests'], r['timed_events'], '%.2f s' % r['requests_loop_s'],
             '%.2f s: %s/s' % (r['published_s'], '{:,.0f}'.format(r['publish_rate'] or 0)),
             '%.2f s' % r.get('listener_s', 0), r.get('events_per_s') or 0,
             '%d/%d' % (heard['unique'], r['expected_events']), r['lost']))
    w('   (after %d warm-up requests, not timed, which open the connections; "received" '
      'counts them too. keystonemiddleware publishes in the request thread: its "handed" '
      'time is its request loop)' % DRIVE_WARMUP)
    keys = [key for key, *_rest in RATE_VARIANTS if key in su]
    every = '; '.join('%s %s' % (key, ', '.join('{:,.0f}/s'.format(x or 0)
                                                for x in su[key].get('all_rates', [])))
                      for key in keys)
    lost = ', '.join('%s %s' % (key, '+'.join(str(x) for x in su[key].get('all_lost', [])))
                     for key in keys)
    w('   (the fastest of %d runs per variant, alternating; every run: %s; lost in every '
      'run: %s)' % (len(su[keys[0]].get('all_rates', [0])), every, lost))
    for key, impl, fast, label in RATE_VARIANTS:
        r = su.get(key)
        if not r:
            continue
        if r['driver'].get('leaves') is not None:
            w('   %s: leaf batched = %s; counters: %s'
              % (label, r['driver']['leaves'].get('cadf'), r['driver'].get('counters')))
        if r['duplicates']:
            w('   %s: %d duplicate deliveries (same message_id)' % (label, r['duplicates']))
        if r['left_in_queue']:
            w('   %s: %s messages still in the queue when the listener gave up'
              % (label, r['left_in_queue']))
        for part in ('driver', 'listener'):
            trouble_note(w, r[part].get('broker_trouble'))
    if cal:
        w('   the listener alone drains %.0f events/s (%d notifications pre-queued): '
          'end-to-end rates near that figure are bounded by the consumer, not the middleware'
          % (cal['events_per_s'] or 0.0, cal['messages']))
    else:
        w('   (events/s: how fast the listener drained the filled queue; with '
          '--concurrent-listener it consumes while the driver runs)')


def report_construct(w, co: dict) -> None:
    w('')
    w('5. Filter construction (fresh process each; driver messagingv2, no connection is made '
      'at construction)')
    hdr = '%-40s %-20s %-22s %s' % ('variant', 'first construction', 'next ones (median)',
                                    'import of the module')
    w(hdr)
    w('-' * len(hdr))
    for key, _impl, _map, label in CONSTRUCT_VARIANTS:
        r = co.get(key)
        if r:
            w('%-40s %-20s %-22s %s' % (label, '%.1f ms' % (r['first_s'] * 1000),
                                        '%.1f ms' % ((r['warm_median_s'] or 0) * 1000),
                                        '%.0f ms' % (r['import_s'] * 1000)))


def goals(res: dict) -> list:
    """[(goal, ours, keystonemiddleware, ratio, target, result)]; result '' = info."""
    rows = []
    rp = res.get('request_path')
    if rp:
        a = rp['added']
        j, m = a['an-journal/audited'], a['an-memory/audited']
        km = a['km-msg/audited']
        rows.append(('audited call added, median (journal, messagingv2)',
                     fmt_us(j['added_median']) + ' us', fmt_us(km['added_median']) + ' us',
                     '%.0fx' % (km['added_median'] / max(0.1, j['added_median'])),
                     '<= %g us' % TARGET_AUDITED_US,
                     verdict(j['added_median'] <= TARGET_AUDITED_US)))
        rows.append(('audited call added, p99 (journal, messagingv2)',
                     fmt_us(j['added_p99']) + ' us', fmt_us(km['added_p99']) + ' us',
                     '%.0fx' % (km['added_p99'] / max(0.1, j['added_p99'])),
                     '<= %g us' % TARGET_AUDITED_P99_US,
                     verdict(j['added_p99'] <= TARGET_AUDITED_P99_US)))
        rows.append(('  memory mode: median / p99',
                     '%s / %s us' % (fmt_us(m['added_median']), fmt_us(m['added_p99'])),
                     '', '', '(info)', ''))
        u = a['an-journal/unaudited']
        ku = a['km-msg/unaudited']
        rows.append(('call not audited added, median',
                     fmt_us(u['added_median']) + ' us', fmt_us(ku['added_median']) + ' us',
                     '%.0fx' % (ku['added_median'] / max(0.1, u['added_median'])),
                     '<= %g us' % TARGET_UNAUDITED_US,
                     verdict(u['added_median'] <= TARGET_UNAUDITED_US)))
    su = res.get('sustained')
    if su:
        km_rate = su['km']['publish_rate'] or 0
        for key, label, goal in (('an-fast', 'notifications/s to RabbitMQ, fast leaf', True),
                                 ('an-plain', '  plain leaf', False)):
            r = su[key]
            rate = r['publish_rate'] or 0
            ok = rate >= TARGET_RATE and not any(r.get('all_lost', [r['lost']])) and \
                bool(r['driver']['leaves']['cadf'])
            rows.append((label, '{:,.0f}/s'.format(rate), '{:,.0f}/s'.format(km_rate),
                         '%.1fx' % (rate / km_rate) if km_rate else '',
                         '>= {:,.0f}/s'.format(TARGET_RATE) if goal else '(info)',
                         verdict(ok) if goal else ''))
    ou = res.get('outage')
    if ou and not ou.get('skipped'):
        an, km = ou['an'], ou.get('km') or {}
        label = '%.0f s outage at %.0f calls/s' % (ou['outage_seconds'], ou['rate'])
        rows.append((label + ': events lost', '%d of %d' % (an['lost'], an['expected_events']),
                     '%d of %d' % (km['lost'], km['expected_events']) if km else '', '', '0',
                     verdict(an['lost'] == 0 and an['duplicates'] >= 0)))
        b, d, f = (an[k]['p99_us'] for k in ('before', 'during', 'after'))
        kmp = ' / '.join(fmt_lat(km[k]['p99_us']) for k in ('before', 'during', 'after')) \
            if km else ''
        ok = None not in (b, d, f) and d <= TARGET_OUTAGE_FACTOR * b and \
            f <= TARGET_OUTAGE_FACTOR * b
        rows.append(('  request p99 before / during / after',
                     '%s / %s / %s' % (fmt_lat(b), fmt_lat(d), fmt_lat(f)), kmp, '',
                     'during, after <= %gx before' % TARGET_OUTAGE_FACTOR, verdict(ok)))
        if an.get('drain_rate'):
            rows.append(('  backlog drain after start_app',
                         '{:,} in {:.1f} s: {:,.0f}/s'.format(an['backlog_at_start_app'],
                                                              an['backlog_at_listener_s'],
                                                              an['drain_rate']),
                         '', '', '(info)', ''))
    st = res.get('streaming')
    if st:
        g = st['an']['growth_bytes'] / 2**20
        kg = st['km']['growth_bytes'] / 2**20
        rows.append(('%d MiB generator download, RSS growth' % (st['an']['bytes'] >> 20),
                     '+%.1f MiB' % g, '+{:,.1f} MiB'.format(kg), '',
                     '< %g MiB' % TARGET_STREAM_GROWTH_MIB,
                     verdict(g < TARGET_STREAM_GROWTH_MIB and
                             st['an']['bytes'] == st['an']['expected_bytes'])))
    co = res.get('construct')
    if co:
        rows.append(('filter construction, glance map (first)',
                     '%.1f ms' % (co['an-glance']['first_s'] * 1000),
                     '%.1f ms' % (co['km']['first_s'] * 1000), '', '(info)', ''))
        rows.append(('  magnum map (first)', '%.1f ms' % (co['an-magnum']['first_s'] * 1000),
                     '', '', '(info)', ''))
        for key, label in (('an-glance', 'filter construction, glance map (later, median)'),
                           ('an-magnum', '  magnum map (later, median)')):
            later = co[key]['warm_median_s']
            if later is not None:
                km = co['km']['warm_median_s'] if key == 'an-glance' else None
                rows.append((label, '%.1f ms' % (later * 1000),
                             '%.1f ms' % (km * 1000) if km is not None else '', '',
                             '<= %g ms' % TARGET_CONSTRUCT_MS,
                             verdict(later * 1000 <= TARGET_CONSTRUCT_MS)))
    return rows


def trail_cost(args, tmpdir: str, run_id: str) -> dict:
    """Section 6: what the integrity trail (trail = true) costs.

    The request path, trail off vs on, in interleaved blocks (journal mode, noop
    driver: the sender chains and digests, nothing is published); and the sender's
    chaining cost per notification (audit_notifier.trail.Chain: canonical JSON and
    SHA-256, the state file once per batch of 100), on envelopes the filter built."""
    from oslo_messaging.notify import _impl_test

    from audit_notifier import trail
    app = make_app()
    stacks = {key: make_audit_notifier(app, tmpdir, 'noop', 'bench-%s-trail' % run_id,
                                       'trail-' + key, trail=value)
              for key, value in (('off', 'false'), ('on', 'true'))}
    template = base_environ(AUDITED_PATH)
    n = max(1000, args.requests // 4)
    blocks = args.blocks
    times: dict = {key: [] for key in stacks}
    for key, mw in stacks.items():                      # warm-up
        run_block(mw, template, min(2000, n), [], IMAGE_PATHS)
        mw.delivery.flush(120)
    for b in range(blocks):
        for key in (('off', 'on') if b % 2 == 0 else ('on', 'off')):
            run_block(stacks[key], template, n // blocks, times[key], IMAGE_PATHS)
        for mw in stacks.values():
            mw.delivery.flush(120)
    chained = stacks['on'].delivery._sender.trail.chained
    for mw in stacks.values():
        mw.delivery.close()
    request = {key: {'median_us': pct(sorted(v), 50), 'p99_us': pct(sorted(v), 99),
                     'n': len(v)} for key, v in times.items()}
    # The sender's cost: real envelopes (the test driver keeps them), chained in
    # batches of 100 as the sender hands them to a leaf, state file included.
    _impl_test.reset()
    capture = make_audit_notifier(app, tmpdir, 'test', 'bench-%s-trail' % run_id,
                                  'trail-capture')
    run_block(capture, template, 1000, [], IMAGE_PATHS)
    capture.delivery.flush(120)
    capture.delivery.close()
    envelopes = [e for _c, e, _p, _r in _impl_test.NOTIFICATIONS]
    _impl_test.reset()
    directory = os.path.join(tmpdir, 'trail-chain')
    os.makedirs(directory, exist_ok=True)
    chain = trail.Chain(trail.TrailConfig(True), 'bench-1-1', directory, 'image.bench')
    rounds = []
    for _ in range(args.rounds):
        t0 = time.perf_counter_ns()
        for start in range(0, len(envelopes), 100):
            chain.assign('cadf', envelopes[start:start + 100])
            chain.published('cadf')
        rounds.append((time.perf_counter_ns() - t0) / 1000.0 / len(envelopes))
    size = sum(len(json.dumps(e)) for e in envelopes) / len(envelopes)
    return {'request': request, 'chained_during_request_run': chained,
            'sender_us_per_notification': sorted(rounds)[len(rounds) // 2],
            'sender_rounds_us': rounds, 'envelope_bytes': size,
            'notifications': len(envelopes)}


def open_loop(app, template: dict, n: int, rate: float) -> list:
    """``n`` calls of ``app`` (a copy of ``template`` each), one due every ``1 / rate``
    seconds from now; how late each ended after it was due (ns): a call that waited
    (for the GIL, behind the one before) is late by that much."""
    late = []
    start = time.monotonic()
    for i in range(n):
        due = start + i / rate
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        call(app, dict(template))
        late.append(int((time.monotonic() - due) * 1e9))
    return late


def _thread_cpu(thread) -> float:
    """CPU seconds of another thread of this process (Linux)."""
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def sender_cpu(args, tmpdir: str, run_id: str) -> dict:
    """Section 7: the CPU an audited call costs its API process, at a live rate.

    Open loop, ``--sender-rate`` calls per second (200) for ``--sender-calls`` calls
    (2,000) of the fake image API's GET, in this process: the bare app, then
    audit_notifier with the plain and the fast leaf (messaging driver, the shared
    RabbitMQ, defaults otherwise: journal, gathering) and keystonemiddleware.audit
    (messaging driver: it sends in the request thread).  Process CPU per call minus
    the bare app's, and audit_notifier's sender-thread CPU per call, after a warm-up
    (connections made, routes loaded); flushed before the clock stops."""
    app = make_app()
    template = base_environ(AUDITED_PATH)
    topic = 'bench-%s-sendercpu' % run_id
    n, rate = args.sender_calls, args.sender_rate
    stacks = {'bare': lambda: app,
              'plain': lambda: make_audit_notifier(app, tmpdir, 'messaging', topic,
                                                   'sender-plain'),
              'fast': lambda: make_audit_notifier(app, tmpdir, 'messaging', topic,
                                                  'sender-fast', fast=True),
              'km': lambda: make_keystonemiddleware(app, tmpdir, 'messaging', topic,
                                                    'sender-km')}
    out = {}
    try:
        for key, make in stacks.items():
            mw = make()
            delivery = getattr(mw, 'delivery', None)
            for _ in range(200):                                  # warm-up
                call(mw, dict(template))
            if delivery is not None:
                delivery.flush(120)
            # The sender thread by its name (the earlier stacks' were closed).
            senders = [t for t in threading.enumerate() if t.name == 'audit-notifier-sender']
            assert len(senders) == (delivery is not None), senders
            sender = senders[0] if senders else None
            cpu0 = time.process_time()
            sender0 = _thread_cpu(sender) if sender is not None else 0.0
            start = time.monotonic()
            open_loop(mw, template, n, rate)
            if delivery is not None:
                delivery.flush(120)
            out[key] = {'process_us_per_call': (time.process_time() - cpu0) / n * 1e6,
                        'sender_us_per_call': (_thread_cpu(sender) - sender0) / n * 1e6
                        if sender is not None else None,
                        'seconds': time.monotonic() - start}
            if delivery is not None:
                delivery.close()
    finally:
        delete_queues([topic + '.info'])
    bare = out['bare']['process_us_per_call']
    for key in ('plain', 'fast', 'km'):
        out[key]['added_us_per_call'] = out[key]['process_us_per_call'] - bare
    out.update(calls=n, rate=rate)
    return out


def report_sender(w, sc: dict) -> None:
    w('')
    w('7. CPU of an audited call to its API process, open loop %d calls/s, %d GET calls, '
      'messaging driver on RabbitMQ (process CPU minus the bare app\'s; sender thread '
      'included)' % (sc['rate'], sc['calls']))
    names = {'plain': 'audit_notifier, plain leaf',
             'fast': 'audit_notifier, fast leaf (default)', 'km': 'keystonemiddleware.audit'}
    km = sc['km']['added_us_per_call']
    for key in ('plain', 'fast', 'km'):
        row = sc[key]
        sender = ('  sender thread %.0f us' % row['sender_us_per_call']
                  if row['sender_us_per_call'] is not None else '')
        ratio = ('  (%.1fx less than keystonemiddleware)' % (km / row['added_us_per_call'])
                 if key != 'km' and row['added_us_per_call'] > 0 else '')
        w('  %-38s added %6.0f us per call%s%s'
          % (names[key], row['added_us_per_call'], sender, ratio))
    w('  bare app: %.0f us of CPU per call' % sc['bare']['process_us_per_call'])


def _cpu_bound(app, seconds: float):
    """``app`` after ``seconds`` of pure-Python CPU work per call: it holds the GIL
    as a real API's request handling does (Glance's GET: about 3.9 ms of CPU here)."""
    def burning(environ, start_response):
        until = time.thread_time() + seconds
        while time.thread_time() < until:
            pass
        return app(environ, start_response)
    return burning


def tail_latency(args, tmpdir: str, run_id: str) -> dict:
    """Section 8: does the filter's background work show in the API's tail latency?

    One request thread, open loop at each of ``--tail-rates`` calls per second (a
    worker's share: 75 and 150 are 150 and 300 calls/s over two workers), an app that
    spends ``--tail-app-ms`` of CPU per call holding the GIL.  Stacks: the bare app
    twice (the second one is the A/A control), audit_notifier (defaults: journal,
    fast leaf, gathering; its sender thread competes for the GIL), audit_notifier
    with ``sender = external`` (an ``audit-notifier send`` process at nice 19 beside
    this one sends) and keystonemiddleware.audit (messaging driver: it sends in the
    request thread).
    Latency of a call: its end minus the time it was due (a call that waits behind
    the sender is late).  ``--tail-rounds`` rounds of ``--tail-calls`` calls per
    stack, order rotating; audit_notifier is flushed after its blocks."""
    base = _cpu_bound(make_app(), args.tail_app_ms / 1000.0)
    template = base_environ(AUDITED_PATH)
    topic = 'bench-%s-tail' % run_id
    stacks = {'off': base, 'off2': base,
              'on': make_audit_notifier(base, tmpdir, args.tail_driver, topic, 'tail',
                                        fast=True),
              'ext': make_audit_notifier(base, tmpdir, args.tail_driver, topic, 'tail-ext',
                                         fast=True, sender='external'),
              'km': make_keystonemiddleware(base, tmpdir, 'messaging', topic, 'tail-km')}
    delivery, external = stacks['on'].delivery, stacks['ext'].delivery
    send_process = start_send_process(tmpdir, send_options(
        topic, True, os.path.join(tmpdir, 'journal-tail-ext'), args.tail_driver))
    out: dict = {'app_ms': args.tail_app_ms, 'calls': args.tail_calls,
                 'rounds': args.tail_rounds, 'rates': {}}
    try:
        for _ in range(200):                                  # warm-up, connections
            for key in ('on', 'ext', 'km'):
                call(stacks[key], dict(template))
        delivery.flush(120)
        external.flush(120)
        for rate in args.tail_rates:
            late: dict = {key: [] for key in stacks}
            order = list(stacks)
            for r in range(args.tail_rounds):
                for key in order[r % len(order):] + order[:r % len(order)]:
                    late[key] += open_loop(stacks[key], template, args.tail_calls, rate)
                    if key in ('on', 'ext'):
                        stacks[key].delivery.flush(120)
            row = {}
            for key, values in late.items():
                values.sort()
                row[key] = {'p50_us': pct(values, 50), 'p90_us': pct(values, 90),
                            'p99_us': pct(values, 99), 'n': len(values)}
            out['rates'][str(rate)] = row
        counters = delivery.counters
        out['audit_notifier'] = {k: counters[k] for k in ('journaled', 'sent', 'dropped',
                                                          'dead_letters')}
        snap = external.snapshot()
        out['audit_notifier_external'] = {'journaled': snap['journaled'],
                                          'unsent': snap['unsent'],
                                          'dropped': snap['dropped']}
    finally:
        delivery.close()
        external.close()
        stop_send_process(send_process, tmpdir)
        delete_queues([topic + '.info'])
    return out


def report_tail(w, tl: dict) -> None:
    w('')
    w('8. Tail latency with a CPU-bound app (%.1f ms of CPU per call, holding the GIL), '
      'one request thread, open loop, %d rounds x %d calls per stack; latency = end of '
      'the call minus when it was due' % (tl['app_ms'], tl['rounds'], tl['calls']))
    names = {'off': 'bare app', 'off2': 'bare app again (A/A)',
             'on': 'audit_notifier (defaults)', 'ext': 'audit_notifier, sender = external',
             'km': 'keystonemiddleware.audit'}
    for rate, row in tl['rates'].items():
        off = row['off']
        w('  %s calls/s:' % rate)
        for key in ('off', 'off2', 'on', 'ext', 'km'):
            if key not in row:                  # results of a run before the ext stack
                continue
            r = row[key]
            added = ('' if key == 'off' else '  added p50 %+.1f %%, p99 %+.1f %%'
                     % ((r['p50_us'] / off['p50_us'] - 1) * 100,
                        (r['p99_us'] / off['p99_us'] - 1) * 100))
            w('    %-28s p50 %7.0f  p90 %7.0f  p99 %7.0f us%s'
              % (names[key], r['p50_us'], r['p90_us'], r['p99_us'], added))
    c = tl['audit_notifier']
    w('  audit_notifier: %d calls journaled, %d notifications sent, %d dropped, %d dead '
      'letters' % (c['journaled'], c['sent'], c['dropped'], c['dead_letters']))
    e = tl.get('audit_notifier_external')
    if e:
        w('  audit_notifier, sender = external: %d calls journaled, %d not confirmed by the '
          'send process, %d dropped' % (e['journaled'], e['unsent'], e['dropped']))


def cold_request_path(args, tmpdir: str, run_id: str) -> dict:
    """Section 9: the request path with cold caches.

    Over HTTP a worker's call starts after other processes used the cores (the client,
    other workers, the broker), and the filter's time there (section 1's few us, warm)
    grows to about 0.2 ms of a Glance GET.  Here each timed call follows a write of
    ``--cold-evict-mib`` MiB (every cache line the call could find warm is evicted), and
    the same calls back to back give the warm figure.  Stacks: the bare app, the filter
    with ``sender = external`` (the request thread only journals: no send process runs,
    the journal is private) and with the sender thread (noop driver: it builds every
    notification and publishes none; flushed after each block, outside the timing).
    The stacks take turns every ``--cold-block`` calls."""
    app = make_app()
    template = base_environ(AUDITED_PATH)
    topic = 'bench-%s-cold' % run_id
    stacks = {'bare': app,
              'floor': _minimal_journal(app),
              'external': make_audit_notifier(app, tmpdir, 'noop', topic, 'cold-ext',
                                              sender='external'),
              'thread': make_audit_notifier(app, tmpdir, 'noop', topic, 'cold-thread')}
    junk = bytearray(args.cold_evict_mib << 20)
    ones = b'\1' * (len(junk) // 64)
    pc = time.perf_counter_ns
    times: dict = {key: {'cold': [], 'warm': []} for key in stacks}
    try:
        for _ in range(200):
            for target in stacks.values():
                call(target, dict(template))
        for b in range(args.cold_calls // args.cold_block):
            keys = list(stacks)
            for key in keys[b % len(keys):] + keys[:b % len(keys)]:
                target = stacks[key]
                envs = [dict(template) for _ in range(2 * args.cold_block)]
                for env in envs[:args.cold_block]:
                    junk[::64] = ones                 # evict
                    t0 = pc()
                    call(target, env)
                    times[key]['cold'].append(pc() - t0)
                for env in envs[args.cold_block:]:
                    t0 = pc()
                    call(target, env)
                    times[key]['warm'].append(pc() - t0)
                if key == 'thread':
                    target.delivery.flush(60)
        journaled = stacks['external'].delivery.snapshot()['journaled']
        built = stacks['thread'].delivery.counters['built']
    finally:
        for key in ('external', 'thread'):
            stacks[key].delivery.close()
    out = {'evict_mib': args.cold_evict_mib, 'calls': args.cold_calls, 'stacks': {},
           'external_journaled': journaled, 'thread_built': built}
    for key, runs in times.items():
        out['stacks'][key] = {}
        for kind, values in runs.items():
            values.sort()
            out['stacks'][key][kind] = {'p50_us': pct(values, 50),
                                        'p90_us': pct(values, 90),
                                        'n': len(values)}
    return out


def _minimal_journal(app):
    """The least a Python filter can do to keep a call before its response leaves: a
    3-key dict, marshal, CRC and header, a locked copy into a mapped buffer (the
    floor section 9 compares the filter's cold cost with)."""
    buf = mmap.mmap(-1, 64 << 20)
    end = [0]
    lock = threading.Lock()
    header = struct.Struct('<2sII')

    def minimal(environ, start_response):
        body = app(environ, start_response)
        data = marshal.dumps({'p': environ.get('PATH_INFO'), 't': time.time(),
                              'u': environ.get('HTTP_X_USER_ID')})
        data = header.pack(b'AN', len(data), zlib.crc32(data)) + data
        with lock:
            at = end[0] if end[0] + len(data) <= len(buf) else 0
            buf[at:at + len(data)] = data
            end[0] = at + len(data)
        return body
    return minimal


def report_cold(w, co: dict) -> None:
    w('')
    w('9. The request path with cold caches: a GET through each stack after %d MiB were '
      'written (cold) and back to back (warm), %d calls each'
      % (co['evict_mib'], co['calls']))
    bare = co['stacks']['bare']
    for key, label in (('bare', 'bare app'), ('floor', 'a minimal journaling filter'),
                       ('external', 'audit_notifier, sender = external'),
                       ('thread', 'audit_notifier, sender thread')):
        r = co['stacks'][key]
        added = '' if key == 'bare' else '  added p50 cold %+.1f us, warm %+.1f us' % (
            r['cold']['p50_us'] - bare['cold']['p50_us'],
            r['warm']['p50_us'] - bare['warm']['p50_us'])
        w('  %-34s cold p50 %6.1f  p90 %6.1f us   warm p50 %5.1f  p90 %5.1f us%s' % (
            label, r['cold']['p50_us'], r['cold']['p90_us'], r['warm']['p50_us'],
            r['warm']['p90_us'], added))
    w('  sender = external: %d calls journaled (no send process: kept, not sent); sender '
      'thread: %d notifications built (noop driver)'
      % (co['external_journaled'], co['thread_built']))


def report_trail(w, tr: dict) -> None:
    w('')
    w('6. Integrity trail (trail = true): request path, trail off vs on (journal, noop '
      'driver, interleaved blocks), and the sender\'s chaining cost')
    for key in ('off', 'on'):
        r = tr['request'][key]
        w('  request path, trail %-3s  median %.1f us  p99 %.1f us  (%d requests)'
          % (key, r['median_us'], r['p99_us'], r['n']))
    w('  sender: %.1f us per notification to chain (canonical JSON + SHA-256, state file '
      'per 100), %d CADF envelopes of %.0f bytes; %d chained during the request run'
      % (tr['sender_us_per_notification'], tr['notifications'], tr['envelope_bytes'],
         tr['chained_during_request_run']))


def report(res: dict, args) -> str:
    lines = []
    w = lines.append
    if res.get('request_path'):
        report_request(w, res['request_path'], res)
    if res.get('policy_patch'):
        report_policy(w, res['policy_patch'])
    if res.get('outage'):
        report_outage(w, res['outage'])
    if res.get('streaming'):
        report_stream(w, res['streaming'])
    if res.get('sustained'):
        report_rate(w, res['sustained'])
    if res.get('construct'):
        report_construct(w, res['construct'])
    if res.get('trail'):
        report_trail(w, res['trail'])
    if res.get('sender'):
        report_sender(w, res['sender'])
    if res.get('tail'):
        report_tail(w, res['tail'])
    if res.get('cold'):
        report_cold(w, res['cold'])
    rows = goals(res)
    if rows:
        w('')
        w('Goals (issue 7): audit_notifier with delivery_mode = journal and the plain leaf '
          '(rabbit_batch_publish = false) unless the row says otherwise; '
          'keystonemiddleware.audit %s in the same run'
          % res['versions'].get('keystonemiddleware'))
        head = ('goal', 'audit_notifier', 'keystonemiddleware', 'ratio', 'target', 'result')
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(6)]
        fmt = '  '.join('%%-%ds' % wd for wd in widths)
        w(fmt % head)
        w('-' * (sum(widths) + 10))
        for r in rows:
            w((fmt % r).rstrip())
    w('')
    w('total run time %.0f s; load average (1 min) per section: %s; results in %s'
      % (res['seconds'], ', '.join('%s %.1f' % kv for kv in res['load'].items()),
         os.path.relpath(RESULTS)))
    if max(res['load'].values()) > 1.5:
        w('NOTE: other processes were busy on this %s-core machine during the run: the figures '
          'are noisier than usual' % res['versions']['cpus'])
    return '\n'.join(lines)


# ---------------------------------------------------------------------------------------

def versions() -> dict:
    from importlib.metadata import version
    out = {'python': platform.python_version(), 'cpus': os.cpu_count(),
           'host': socket.gethostname(), 'platform': platform.platform()}
    try:
        out['git_head'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=REPO,
                                         capture_output=True, text=True).stdout.strip()
        out['audit_notifier_modified_files'] = subprocess.run(
            ['git', 'status', '--porcelain', 'audit_notifier'], cwd=REPO,
            capture_output=True, text=True).stdout.count('\n')
    except OSError:
        pass
    for dist in ('keystonemiddleware', 'pycadf', 'oslo.messaging', 'WebOb', 'kombu', 'amqp',
                 'audit-notifier'):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = None
    return out


SECTIONS = ('request', 'outage', 'stream', 'rate', 'construct', 'trail', 'sender',
            'tail', 'cold')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='small counts and a 10 s outage, for trying it out (~2-3 minutes)')
    p.add_argument('--profile', action='store_true',
                   help='cProfile audit_notifier\'s request path and exit')
    p.add_argument('--only', choices=SECTIONS, action='append',
                   help='run only these sections (repeatable)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--blocks', type=int, default=20, help='interleaved blocks per round')
    p.add_argument('--requests', type=int, default=20000,
                   help='requests per round for the bare app and each audit_notifier variant')
    p.add_argument('--km-noop-requests', type=int, default=5000,
                   help='requests per round for keystonemiddleware noop')
    p.add_argument('--km-msg-requests', type=int, default=2000,
                   help='requests per round for keystonemiddleware messagingv2')
    p.add_argument('--outage-seconds', type=float, default=30.0,
                   help='how long the broker stays stopped (stop_app .. start_app)')
    p.add_argument('--outage-rate', type=float, default=OUTAGE_RATE,
                   help='audited calls/s per middleware during the outage scenario')
    p.add_argument('--outage-before', type=float, default=20.0,
                   help='seconds of load before stop_app')
    p.add_argument('--outage-after', type=float, default=20.0,
                   help='seconds of load after start_app returned')
    p.add_argument('--outage-no-km', action='store_true',
                   help='run the outage scenario without the keystonemiddleware process')
    p.add_argument('--outage-fast-leaf', action='store_true',
                   help='audit_notifier with rabbit_batch_publish = true in the outage '
                        'scenario (default: the plain leaf)')
    p.add_argument('--outage-sender', choices=['thread', 'external'], default='thread',
                   help='audit_notifier\'s sender in the outage scenario: its thread '
                        '(default), or external: an audit-notifier send process at nice 19 '
                        'beside the driver process')
    p.add_argument('--send-sched', choices=['nice19', 'idle'], default='nice19',
                   help='CPU priority of the audit-notifier send processes (outage and tail '
                        'sections): nice 19 (its systemd unit\'s), or SCHED_IDLE')
    p.add_argument('--stream-bytes', type=int, default=1 << 30)
    p.add_argument('--km-stream-bytes', type=int, default=1 << 30)
    p.add_argument('--rate-requests', type=int, default=20000)
    p.add_argument('--km-rate-requests', type=int, default=5000)
    p.add_argument('--calibrate-messages', type=int, default=10000,
                   help='notifications pre-queued to measure what the listener alone drains')
    p.add_argument('--listener-batch', type=int, default=0,
                   help='use a batch notification listener with this batch_size '
                        '(as Ceilometer does); default: the plain notification listener')
    p.add_argument('--rate-repeats', type=int, default=2,
                   help='section 4: runs of each variant (alternating); the fastest is '
                        'reported, all are printed')
    p.add_argument('--concurrent-listener', action='store_true',
                   help='section 4: the listener consumes while the driver runs (end-to-end '
                        'rate; on 2 cores it takes CPU from the process under test); default: '
                        'it drains the queue afterwards')
    p.add_argument('--construct-n', type=int, default=10,
                   help='constructions per variant in section 5')
    p.add_argument('--sender-calls', type=int, default=2000,
                   help='calls per stack in the sender section (2000)')
    p.add_argument('--sender-rate', type=float, default=200.0,
                   help='calls per second in the sender section (200)')
    p.add_argument('--tail-rates', type=lambda v: [float(x) for x in v.split(',')],
                   default=[75.0, 150.0], help='section 8: calls per second, comma-separated')
    p.add_argument('--tail-calls', type=int, default=600, help='section 8: calls per block')
    p.add_argument('--tail-rounds', type=int, default=4, help='section 8: rounds')
    p.add_argument('--tail-driver', choices=['messaging', 'noop'], default='messaging',
                   help='section 8: audit_notifier\'s driver (both senders); noop: they '
                        'build every notification and publish none, so that the local '
                        'broker\'s work on the same cores is out of the figures')
    p.add_argument('--tail-app-ms', type=float, default=3.9,
                   help='section 8: CPU per call of the app, ms')
    p.add_argument('--cold-calls', type=int, default=1200,
                   help='section 9: timed calls per stack, cold and warm each (1200)')
    p.add_argument('--cold-block', type=int, default=100,
                   help='section 9: calls per turn of a stack (100)')
    p.add_argument('--cold-evict-mib', type=int, default=48,
                   help='section 9: MiB written before each cold call (48)')
    p.add_argument('--output', default=RESULTS)
    # child processes
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--impl', help=argparse.SUPPRESS)
    p.add_argument('--topic', help=argparse.SUPPRESS)
    p.add_argument('--exchange', help=argparse.SUPPRESS)
    p.add_argument('--rate', type=float, help=argparse.SUPPRESS)
    p.add_argument('--route-map', help=argparse.SUPPRESS)
    p.add_argument('--conf-file', help=argparse.SUPPRESS)
    p.add_argument('--arrivals', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--size', type=int, help=argparse.SUPPRESS)
    p.add_argument('--expect', type=int, help=argparse.SUPPRESS)
    p.add_argument('--n', type=int, help=argparse.SUPPRESS)
    p.add_argument('--batch', type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument('--fast', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--sender', default='thread', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.child:                  # children inherit it with the environment
        os.environ['BENCH_SEND_SCHED'] = args.send_sched    # read in the send processes
    if args.quick:
        args.requests, args.km_noop_requests, args.km_msg_requests = 4000, 500, 200
        args.stream_bytes = args.km_stream_bytes = 128 << 20
        args.rate_requests, args.km_rate_requests = 4000, 500
        args.calibrate_messages = 2000
        args.outage_seconds, args.outage_before, args.outage_after = 10.0, 6.0, 8.0
        args.construct_n = 5
        args.sender_calls = 600
        args.tail_calls, args.tail_rounds = 200, 2
        args.cold_calls = 300
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    # keystonemiddleware warns that audit_map_file, its own documented paste key, "is not
    # known" (it only type-checks options of its oslo.config group): noise, silenced.
    logging.getLogger('keystonemiddleware._common.config').setLevel(logging.ERROR)
    install_broker_trouble()
    if args.child:
        child_main(args)
        return 0
    global RESULTS
    RESULTS = args.output
    ensure_broker()
    run_id = uuid.uuid4().hex[:8]
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix='audit-bench-') as tmpdir:
        if args.profile:
            profile(args, tmpdir, run_id)
            return 0
        sections = args.only or list(SECTIONS)
        res = {'run_id': run_id, 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
               'versions': versions(), 'args': {k: v for k, v in vars(args).items()
                                                if v is not None and k != 'output'}}
        res['load'] = {'start': os.getloadavg()[0]}
        res['broker_trouble'] = {}
        BROKER_TROUBLE.take()
        if 'request' in sections:
            print('1. request-path cost ...', flush=True)
            res['request_path'] = request_path_cost(args, tmpdir, run_id)
            print('1b. audit policy levels: PATCH ...', flush=True)
            res['policy_patch'] = policy_patch_cost(args, tmpdir)
            res['load']['request'] = os.getloadavg()[0]
            res['broker_trouble']['request'] = BROKER_TROUBLE.take()
        if 'outage' in sections:
            print('2. broker outage under load ...', flush=True)
            res['outage'] = outage(args, tmpdir, run_id)
            res['load']['outage'] = os.getloadavg()[0]
            BROKER_TROUBLE.take()                     # the outage's own errors
        if 'stream' in sections:
            print('3. streaming ...', flush=True)
            res['streaming'] = streaming(args)
            res['load']['stream'] = os.getloadavg()[0]
        if 'rate' in sections:
            print('4. notifications per second ...', flush=True)
            res['sustained'] = sustained(args, run_id)
            res['load']['rate'] = os.getloadavg()[0]
            res['broker_trouble']['rate'] = BROKER_TROUBLE.take()
        if 'construct' in sections:
            print('5. filter construction ...', flush=True)
            res['construct'] = construction(args)
            res['load']['construct'] = os.getloadavg()[0]
        if 'trail' in sections:
            print('6. integrity trail ...', flush=True)
            res['trail'] = trail_cost(args, tmpdir, run_id)
            res['load']['trail'] = os.getloadavg()[0]
        if 'sender' in sections:
            print('7. CPU per audited call at a live rate ...', flush=True)
            res['sender'] = sender_cpu(args, tmpdir, run_id)
            res['load']['sender'] = os.getloadavg()[0]
        if 'tail' in sections:
            print('8. tail latency with a CPU-bound app ...', flush=True)
            res['tail'] = tail_latency(args, tmpdir, run_id)
            res['load']['tail'] = os.getloadavg()[0]
        if 'cold' in sections:
            print('9. the request path with cold caches ...', flush=True)
            res['cold'] = cold_request_path(args, tmpdir, run_id)
            res['load']['cold'] = os.getloadavg()[0]
    res['seconds'] = time.time() - t0
    with open(RESULTS, 'w') as f:
        json.dump(res, f, indent=2, sort_keys=True)
    text = report(res, args)
    res['table'] = text
    with open(RESULTS, 'w') as f:
        json.dump(res, f, indent=2, sort_keys=True)
    print(text, flush=True)
    return 0


if __name__ == '__main__':
    try:
        code = main()
    except SystemExit as exc:                 # --help, argparse errors, a signal handler
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    finally:
        if BROKER_SWITCH is not None:         # os._exit skips atexit: start it here too
            BROKER_SWITCH.ensure_running()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)       # oslo.messaging/kombu helper threads must not keep us alive
