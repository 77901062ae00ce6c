#!/usr/bin/env python
"""audit_notifier vs keystonemiddleware.audit: one run, same machine, same app, same requests.

    python benchmarks/run.py            # full run, ~2-3 minutes; writes benchmarks/results.json
    python benchmarks/run.py --quick    # smaller counts, for trying the script out
    python benchmarks/run.py --profile  # cProfile of audit_notifier's request path, then exit

Sections (see benchmarks/README.md for the method):

1. Request-path cost, in process: time added to ``GET /v2/images/<uuid>`` (audited) and
   ``GET /v2/schemas/image`` (not in our route map) by keystonemiddleware.audit (pycadf Glance
   map) and audit_notifier (formats cadf), each with driver messagingv2 to the local RabbitMQ
   and with driver noop.  Variants are interleaved block by block so they share noise;
   median of 3 rounds.  audit_notifier's background sender is flushed after each of its
   blocks, outside the timed region; the events counters and the broker queue are checked.
2. (Broker outage: covered by other tests, not here.)
3. Streaming memory and time to first byte for a 1 GiB download from a generator app that
   calls start_response lazily, one fresh subprocess per variant.
4. Sustained delivery rate to a real oslo.messaging notification listener (rabbit,
   messagingv2, threading executor, its own process, a unique topic per run).

Only ``AuditMiddleware.dispatcher.flush()`` and ``.dispatcher.counters`` of audit_notifier's
internals are used.  The script exits 0 unless something crashed; PASS/FAIL is informational.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings

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
# Requests cycle through many images, as a real cloud's do: audit_notifier shards its
# publishing by resource id, so a single hot image would exercise one publisher only.
IMAGE_PATHS = tuple('/v2/images/%s' % uuid.UUID(int=(0x3f2a8c519b7e4d0c8a612b5e7c9d0000 + i))
                    for i in range(1000))
DOWNLOAD_PATH = '/v2/images/%s/file' % IMAGE_ID
CHUNK = 64 * 1024
PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample')

# Targets printed next to the figures (informational).
TARGET_AUDITED_US = 10.0
TARGET_UNAUDITED_US = 2.0
TARGET_RATE = 5000.0
TARGET_STREAM_GROWTH_MIB = 16.0

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
        'owner': '9a1d3f6c2b7e4d8f8c1b2a3d4e5f6a7b', 'checksum': 'c8fc807773e5354afe61636071771906',
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


def make_audit_notifier(app, tmpdir: str, driver: str, topic: str, name: str):
    from audit_notifier.middleware import filter_factory
    from audit_notifier.opts import list_opts
    conf = private_conf(tmpdir, name)
    extra = {}
    known = {opt.dest for _group, opts in list_opts() for opt in opts}
    if 'spool_dir' in known:
        # A private spool: never adopt (or leave) segments in the shared default directory.
        extra['spool_dir'] = os.path.join(tmpdir, 'spool-' + name)
    return filter_factory({}, oslo_config_config=conf, formats='cadf', driver=driver,
                          transport_url=BROKER_URL, topics=topic, **extra)(app)


def make_keystonemiddleware(app, tmpdir: str, driver: str, topic: str, name: str):
    from keystonemiddleware import audit
    map_file = os.path.join(tmpdir, 'glance_api_audit_map.conf')
    if not os.path.exists(map_file):
        with open(map_file, 'w') as f:
            f.write(GLANCE_AUDIT_MAP)
    conf = private_conf(tmpdir, name, '[audit_middleware_notifications]\n'
                        'driver = %s\ntransport_url = %s\ntopics = %s\n'
                        % (driver, BROKER_URL, topic))
    return audit.AuditMiddleware(app, audit_map_file=map_file, oslo_config_config=conf)


def _start_response(status, headers, exc_info=None):
    return _write


def _write(data):
    pass


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


def _broker_up() -> bool:
    import kombu
    try:
        with kombu.Connection(KOMBU_URL, connect_timeout=3) as conn:
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


def delete_queues(names) -> None:
    names = list(names)

    def delete(conn):
        for name in names:
            try:
                conn.channel().queue_delete(queue=name)
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


class BrokerTrouble(logging.Handler):
    """Counts oslo.messaging's connection errors (the broker went away during a section).

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


def request_path_cost(args, tmpdir: str, run_id: str) -> dict:
    app = make_app()
    an_topic, km_topic = 'bench-%s-an' % run_id, 'bench-%s-km' % run_id
    stacks = {
        'bare': app,
        'an-noop': make_audit_notifier(app, tmpdir, 'noop', an_topic, 'an-noop'),
        'an-msg': make_audit_notifier(app, tmpdir, 'messagingv2', an_topic, 'an-msg'),
        'km-noop': make_keystonemiddleware(app, tmpdir, 'noop', km_topic, 'km-noop'),
        'km-msg': make_keystonemiddleware(app, tmpdir, 'messagingv2', km_topic, 'km-msg'),
    }
    an_msg = stacks['an-msg']
    templates = {'audited': base_environ(AUDITED_PATH),
                 'unaudited': base_environ(UNAUDITED_PATH)}
    paths = {'audited': IMAGE_PATHS, 'unaudited': None}
    blocks = args.blocks
    per_block = {'bare': args.requests // blocks, 'an-noop': args.requests // blocks,
                 'an-msg': args.requests // blocks,
                 'km-noop': max(1, args.km_noop_requests // blocks),
                 'km-msg': max(1, args.km_msg_requests // blocks)}
    series = [(v, p) for p in ('audited', 'unaudited') for v in stacks]
    issued = {s: 0 for s in series}

    # Warm-up: imports, connections (the first km publish connects in the request thread,
    # audit_notifier's sender connects in the background), caches.
    print('  warm-up ...', flush=True)
    for variant, path in series:
        n = min(2000, per_block[variant] * 4)
        run_block(stacks[variant], templates[path], n, [], paths[path])
        issued[(variant, path)] += n
        an_msg.dispatcher.flush(120)

    rounds = []
    discarded = []
    # A broker stop (stop_app) deletes the non-durable queues: counts then not comparable.
    broker_lost = bool(BROKER_TROUBLE.take()['errors'])
    attempt = 0
    while len(rounds) < args.rounds:
        attempt += 1
        r = len(rounds)
        t_round = time.perf_counter()
        times = {s: [] for s in series}
        flush_s = 0.0
        for b in range(blocks):
            k = b % len(series)
            for variant, path in series[k:] + series[:k]:    # rotate: no fixed position
                n = per_block[variant]
                run_block(stacks[variant], templates[path], n, times[(variant, path)],
                          paths[path])
                issued[(variant, path)] += n
                if variant == 'an-msg':
                    t = time.perf_counter()
                    if not an_msg.dispatcher.flush(120):       # outside the timed region
                        print('  warning: flush timed out', flush=True)
                    flush_s += time.perf_counter() - t
        stats = {}
        for (variant, path), ns in times.items():
            ns.sort()
            stats['%s/%s' % (variant, path)] = {
                'n': len(ns), 'median': pct(ns, 50), 'p90': pct(ns, 90), 'p99': pct(ns, 99)}
        this = {'stats': stats, 'seconds': time.perf_counter() - t_round,
                'an_flush_seconds': flush_s, 'broker_trouble': BROKER_TROUBLE.take()}
        if this['broker_trouble']['errors']:
            broker_lost = True
            discarded.append(this)
            print('  round %d: the broker went away (%s); round discarded'
                  % (r + 1, this['broker_trouble']['first']), flush=True)
            if attempt >= args.rounds + 2:
                print('  giving up on a quiet broker: keeping the troubled round', flush=True)
                rounds.append(this)
            continue
        rounds.append(this)
        print('  round %d: %.1f s (of which %.1f s waiting for audit_notifier\'s sender)'
              % (r + 1, rounds[-1]['seconds'], flush_s), flush=True)

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
    bare = {path: statistics.median(rd['stats']['bare/' + path]['median'] for rd in rounds)
            for path in templates}

    # Did every event reach the broker?
    an_msg.dispatcher.flush(120)
    counters = dict(an_msg.dispatcher.counters)
    an_expected = issued[('an-msg', 'audited')]          # one CADF event per audited call
    km_expected = 2 * (issued[('km-msg', 'audited')] + issued[('km-msg', 'unaudited')])
    an_queue, km_queue = an_topic + '.info', km_topic + '.info'
    an_on_broker = wait_queue_count(an_queue, an_expected)
    km_on_broker = wait_queue_count(km_queue, km_expected)
    if BROKER_TROUBLE.take()['errors']:
        broker_lost = True
    delete_queues([an_queue, km_queue])
    delivery = {
        'audit_notifier': {
            'audited_requests': an_expected, 'counters': counters,
            'on_broker': an_on_broker,
            'ok': (counters.get('sent') == an_expected and not counters.get('dropped')
                   and not counters.get('build_errors') and an_on_broker == an_expected)},
        'keystonemiddleware': {
            'requests': km_expected // 2, 'expected_events': km_expected,
            'on_broker': km_on_broker, 'ok': km_on_broker == km_expected},
        'broker_restarted': broker_lost,
    }
    return {'bare_median_us': bare, 'added': summary, 'rounds': rounds, 'discarded': discarded,
            'delivery': delivery, 'per_block': per_block, 'blocks': blocks}


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
        app = make_audit_notifier(stream_app, tmpdir, 'noop', topic, 'an')
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
    if hasattr(app, 'dispatcher'):
        app.dispatcher.flush(30)
    gc.collect()
    rss0 = proc.memory_info().rss
    maxrss0 = _peak_rss_bytes()
    got, ttfb, total, peak, rss_first = download(size, sample_every=64)  # every 4 MiB
    rss_end = proc.memory_info().rss
    maxrss1 = _peak_rss_bytes()
    counters = None
    if hasattr(app, 'dispatcher'):
        app.dispatcher.flush(30)
        counters = dict(app.dispatcher.counters)
    import shutil
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
# 4. Sustained delivery rate (driver process + listener process)
# ---------------------------------------------------------------------------------------

def child_listen(topic: str, expect: int, idle: float, limit: float, batch: int) -> dict:
    """A real oslo.messaging notification listener (rabbit, threading executor).

    ``batch`` > 0: a batch listener as Ceilometer's notification agent runs it
    (batch_size, short batch_timeout so the last partial batch is not held back).
    """
    import oslo_messaging
    from oslo_config import cfg
    conf = cfg.ConfigOpts()
    conf(args=[], project='bench-listener', default_config_files=[])
    transport = oslo_messaging.get_notification_transport(conf, url=BROKER_URL)
    lock = threading.Lock()
    state = {'count': 0, 'first': None, 'last': None}
    ids = set()
    done = threading.Event()
    timeline = []

    def seen(metadatas):
        now = time.time()
        with lock:
            for metadata in metadatas:
                state['count'] += 1
                ids.add(metadata.get('message_id'))
            if state['first'] is None:
                state['first'] = now
            state['last'] = now
            if len(ids) >= expect:
                done.set()

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
    print('READY', flush=True)
    started = time.time()
    while not done.wait(0.5):
        now = time.time()
        timeline.append((round(now - started, 1), len(ids)))
        last = state['last']
        if last is not None and now - last > idle:
            break
        if now - started > limit:
            break
    listener.stop()
    listener.wait()
    transport.cleanup()
    return {'received': state['count'], 'unique': len(ids), 'first_t': state['first'],
            'last_t': state['last'], 'expected': expect, 'timeline': timeline}


def child_drive(impl: str, topic: str, n: int, hot: bool) -> dict:
    tmpdir = tempfile.mkdtemp(prefix='bench-drive-')
    app = make_app()
    if impl == 'an':
        mw = make_audit_notifier(app, tmpdir, 'messagingv2', topic, 'an')
    else:
        mw = make_keystonemiddleware(app, tmpdir, 'messagingv2', topic, 'km')
    template = base_environ(AUDITED_PATH)
    paths = (AUDITED_PATH,) if hot else IMAGE_PATHS
    npaths = len(paths)
    sr = _start_response
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
        out['flushed'] = mw.dispatcher.flush(300)
        out['t_published'] = time.time()
        out['counters'] = dict(mw.dispatcher.counters)
    else:
        out['t_published'] = t_requests          # km publishes in the request thread
    import shutil
    shutil.rmtree(tmpdir, ignore_errors=True)
    return out


class Listener:
    """The listener child process: started, READY, then its JSON result."""

    def __init__(self, topic: str, expect: int, batch: int):
        self.topic = topic
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), '--child', 'listen', '--topic', topic,
             '--expect', str(expect), '--batch', str(batch)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
        line = self.proc.stdout.readline()
        if line.strip() != 'READY':
            self.kill()
            raise RuntimeError('listener did not start: %s %s'
                               % (line, self.proc.stderr.read()[-2000:]))

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


def drive_and_listen(args, run_id, key, impl, n, per_request, hot, attempt) -> dict:
    topic = 'bench-%s-rate-%s-%d' % (run_id, key, attempt)
    expect = n * per_request
    listener = Listener(topic, expect, args.listener_batch)
    try:
        time.sleep(0.5)
        drive = run_child(['--child', 'drive', '--impl', impl, '--topic', topic,
                           '--n', str(n)] + (['--hot'] if hot else []), timeout=600)
        heard = listener.result()
        left = queue_count(topic + '.info')
    finally:
        listener.kill()
        delete_queues('%s.%s' % (topic, p) for p in PRIORITIES)
    res = {'requests': n, 'expected_events': expect, 'driver': drive, 'listener': heard,
           'left_in_queue': left}
    res['requests_loop_s'] = drive['t_requests_done'] - drive['t_first']
    res['published_s'] = drive['t_published'] - drive['t_first']
    sent = drive.get('counters', {}).get('sent', expect) if impl == 'an' else expect
    res['publish_rate'] = sent / res['published_s'] if res['published_s'] > 0 else None
    if heard['last_t']:
        elapsed = heard['last_t'] - drive['t_first']
        res['seconds_to_last_event'] = elapsed
        res['events_per_s'] = heard['unique'] / elapsed if elapsed > 0 else None
    res['lost'] = expect - heard['unique']
    res['duplicates'] = heard['received'] - heard['unique']
    return res


def sustained(args, run_id: str) -> dict:
    out = {'listener': 'batch listener, batch_size %d' % args.listener_batch
           if args.listener_batch else 'notification listener'}
    for attempt in range(3):
        cal = listener_capacity(args, run_id + '-%d' % attempt)
        if not (cal['broker_trouble'] or {}).get('errors') and cal['received'] == cal['messages']:
            break
        print('  listener calibration disturbed (broker went away?); run again', flush=True)
    out['listener_capacity'] = cal
    print('  the listener alone drains %.0f events/s (%d pre-queued)'
          % (cal['events_per_s'] or 0, cal['messages']), flush=True)
    variants = [('an', 'an', args.rate_requests, 1, False),
                ('km', 'km', args.km_rate_requests, 2, False)]
    if args.rate_hot_image:
        variants.append(('an-hot', 'an', args.rate_requests, 1, True))
    for key, impl, n, per_request, hot in variants:
        for attempt in range(3):
            res = drive_and_listen(args, run_id, key, impl, n, per_request, hot, attempt)
            trouble = [t for t in (res['driver'].get('broker_trouble'),
                                   res['listener'].get('broker_trouble')) if t and t['errors']]
            if not trouble:
                break
            print('  %s: the broker went away during the run (%s); run again'
                  % (key, trouble[0]['first']), flush=True)
            res.setdefault('discarded_attempts', attempt + 1)
        out[key] = res
        print('  %s: %d requests, %d/%d events at the listener, %.0f events/s end to end, '
              'published at %.0f/s' % (key, n, res['listener']['unique'], res['expected_events'],
                                       res.get('events_per_s') or 0, res['publish_rate'] or 0),
              flush=True)
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
        res = child_listen(args.topic, args.expect, idle=10.0, limit=300.0, batch=args.batch)
    elif args.child == 'drive':
        res = child_drive(args.impl, args.topic, args.n, args.hot)
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
    import cProfile
    import pstats
    app = make_app()
    topic = 'bench-%s-profile' % run_id
    for driver in ('noop', 'messagingv2'):
        mw = make_audit_notifier(app, tmpdir, driver, topic, 'profile-' + driver)
        template = base_environ(AUDITED_PATH)
        run_block(mw, template, 2000, [], IMAGE_PATHS)
        mw.dispatcher.flush(60)
        prof = cProfile.Profile()
        times = []
        prof.enable()
        for _ in range(10):
            run_block(mw, template, 1000, times, IMAGE_PATHS)
            mw.dispatcher.flush(60)
        prof.disable()
        print('\n== cProfile of the request thread, audit_notifier driver %s, 10,000 audited '
              'requests ==' % driver)
        pstats.Stats(prof).sort_stats('tottime').print_stats(18)
    delete_queues([topic + '.info'])


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return 'PASS' if ok else 'FAIL'


def fmt_us(v: float) -> str:
    return '%.1f' % v if abs(v) < 100 else '%.0f' % v


def trouble_note(w, trouble) -> None:
    if trouble and trouble.get('errors'):
        w('   NOTE: the broker went away during this section (%d oslo.messaging errors, first: '
          '%s): its figures measure an outage, run again' % (trouble['errors'], trouble['first']))


def report(res: dict, args) -> str:
    lines = []
    w = lines.append
    rp = res.get('request_path')
    if rp:
        a = rp['added']
        w('')
        w('1. Request-path cost: time ADDED to the bare app, microseconds (median of %d rounds; '
          'per round %d requests per variant for the bare app and audit_notifier, %d for '
          'keystonemiddleware noop, %d for keystonemiddleware messagingv2)'
          % (len(rp['rounds']), a['an-msg/audited']['requests_per_round'],
             a['km-noop/audited']['requests_per_round'], a['km-msg/audited']['requests_per_round']))
        w('   bare app itself: %.2f us (GET /v2/images/<uuid>), %.2f us (GET /v2/schemas/image)'
          % (rp['bare_median_us']['audited'], rp['bare_median_us']['unaudited']))
        w('')
        hdr = ('%-34s %-12s %-23s %-23s %-9s %-8s %s'
               % ('request', 'driver', 'audit_notifier med/p90/p99', 'keystonemw med/p90/p99',
                  'km/ours', 'target', 'result'))
        w(hdr)
        w('-' * len(hdr))
        for path, label in (('audited', 'GET /v2/images/<uuid> (audited)'),
                            ('unaudited', 'GET /v2/schemas/image (not aud.)')):
            for drv, dlabel in (('msg', 'messagingv2'), ('noop', 'noop')):
                ours = a['an-%s/%s' % (drv, path)]
                km = a['km-%s/%s' % (drv, path)]
                trip = lambda e: '%s / %s / %s' % (fmt_us(e['added_median']),
                                                   fmt_us(e['added_p90']), fmt_us(e['added_p99']))
                our_med = ours['added_median']
                ratio = (('%.0fx' % (km['added_median'] / our_med)) if our_med >= 0.1
                         else '>%.0fx' % (km['added_median'] / 0.1))
                target = TARGET_AUDITED_US if path == 'audited' else TARGET_UNAUDITED_US
                w('%-34s %-12s %-23s %-23s %-9s %-8s %s'
                  % (label, dlabel, trip(ours), trip(km), ratio, '<= %g' % target,
                     verdict(our_med <= target)))
        w('   (keystonemiddleware audits every path: it sends its 2 events for '
          '/v2/schemas/image too)')
        d = rp['delivery']
        an, km = d['audit_notifier'], d['keystonemiddleware']
        c = an['counters']
        w('')
        w('   Events of the messagingv2 variants (all rounds incl. warm-up):')
        w('   audit_notifier:     %d audited calls -> %d events expected; sent %s, dropped %s; '
          'in the broker queue: %s -> %s'
          % (an['audited_requests'], an['audited_requests'], c.get('sent'), c.get('dropped'),
             an['on_broker'], 'n/a' if d.get('broker_restarted') else verdict(an['ok'])))
        w('                       counters: %s' % c)
        w('   keystonemiddleware: %d calls -> %d events expected; in the broker queue: %s -> %s'
          % (km['requests'], km['expected_events'], km['on_broker'],
             'n/a' if d.get('broker_restarted') else verdict(km['ok'])))
        if d.get('broker_restarted'):
            w('   NOTE: the broker was stopped by something else during this section (its '
              'non-durable queues were deleted): the queue counts are not comparable; '
              '%d round(s) discarded and run again' % len(rp.get('discarded', [])))
        w('   audit_notifier\'s sender needed %.1f s per round to publish after the timed blocks '
          '(outside the timed region)'
          % statistics.median(r['an_flush_seconds'] for r in rp['rounds']))
        trouble_note(w, res.get('broker_trouble', {}).get('request'))
    st = res.get('streaming')
    if st:
        w('')
        w('3. Streaming download from a generator app (start_response called lazily, 64 KiB '
          'chunks), fresh process each, driver noop')
        hdr = ('%-20s %-9s %-14s %-16s %-12s %-10s %s'
               % ('variant', 'body', 'RSS growth', 'first byte', 'total', 'throughput',
                  'streams (growth <= %g MiB)' % TARGET_STREAM_GROWTH_MIB))
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
                 verdict(growth <= TARGET_STREAM_GROWTH_MIB and r['bytes'] == r['expected_bytes'])))
        if st['km']['expected_bytes'] != st['an']['expected_bytes']:
            w('   (keystonemiddleware capped at %d MiB: it buffers the whole body in memory)'
              % (st['km']['expected_bytes'] >> 20))
        if st['an'].get('counters'):
            w('   audit_notifier counters after the download: %s' % st['an']['counters'])
    su = res.get('sustained')
    if su:
        cal = su['listener_capacity']
        w('')
        w('4. Sustained delivery to a real oslo.messaging %s (rabbit, messagingv2, threading '
          'executor, its own process, unique topic); one driving process, requests as fast as '
          'possible; times from the first request' % su['listener'])
        hdr = ('%-20s %-9s %-7s %-10s %-14s %-14s %-11s %-12s %-5s %-9s %s'
               % ('variant', 'requests', 'events', 'req. loop', 'all published',
                  'last received', 'events/s', 'received', 'lost', 'target', 'result'))
        w(hdr)
        w('-' * len(hdr))
        keys = [(k, label) for k, label in (('an', 'audit_notifier'),
                                            ('an-hot', 'audit_notifier 1 img'),
                                            ('km', 'keystonemiddleware')) if k in su]
        for key, label in keys:
            r = su[key]
            heard = r['listener']
            rate = r.get('events_per_s') or 0.0
            ours = key.startswith('an')
            ok = rate >= TARGET_RATE and r['lost'] == 0
            w('%-20s %-9d %-7d %-10s %-14s %-14s %-11.0f %-12s %-5d %-9s %s'
              % (label, r['requests'], r['expected_events'], '%.2f s' % r['requests_loop_s'],
                 '%.2f s (%.0f/s)' % (r['published_s'], r['publish_rate'] or 0),
                 '%.2f s' % r.get('seconds_to_last_event', 0), rate,
                 '%d/%d' % (heard['unique'], r['expected_events']), r['lost'],
                 '>= %d/s' % TARGET_RATE if ours else '(ref.)',
                 verdict(ok) if ours else ('no loss' if r['lost'] == 0 else 'LOSS')))
        w('   (requests cycle through 1,000 image ids%s)'
          % ('; "1 img": all on one image' if 'an-hot' in su else ''))
        for key, label in keys:
            r = su[key]
            if r['driver'].get('counters'):
                w('   %s counters: %s' % (label, r['driver']['counters']))
            if r['duplicates']:
                w('   %s: %d duplicate deliveries (same message_id)' % (label, r['duplicates']))
            if r['left_in_queue']:
                w('   %s: %s messages still in the queue when the listener gave up'
                  % (label, r['left_in_queue']))
        an = su['an']
        cap = cal['events_per_s'] or 0.0
        w('   the listener alone drains %.0f events/s (%d notifications pre-queued): '
          'end-to-end rates near that figure are bounded by the consumer, not the middleware'
          % (cap, cal['messages']))
        w('   audit_notifier handed its events to the broker at %.0f/s: %s against %d/s'
          % (an['publish_rate'] or 0, verdict((an['publish_rate'] or 0) >= TARGET_RATE),
             TARGET_RATE))
        for key, _label in keys:
            for part in ('driver', 'listener'):
                trouble_note(w, su[key][part].get('broker_trouble'))
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
    for dist in ('keystonemiddleware', 'pycadf', 'oslo.messaging', 'WebOb', 'kombu',
                 'audit-notifier'):
        try:
            out[dist] = version(dist)
        except Exception:
            out[dist] = None
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='small counts, for trying it out')
    p.add_argument('--profile', action='store_true',
                   help='cProfile audit_notifier\'s request path and exit')
    p.add_argument('--only', choices=['request', 'stream', 'rate'], action='append',
                   help='run only these sections (repeatable)')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--blocks', type=int, default=20, help='interleaved blocks per round')
    p.add_argument('--requests', type=int, default=20000,
                   help='requests per round for the bare app and audit_notifier')
    p.add_argument('--km-noop-requests', type=int, default=5000,
                   help='requests per round for keystonemiddleware noop')
    p.add_argument('--km-msg-requests', type=int, default=2000,
                   help='requests per round for keystonemiddleware messagingv2')
    p.add_argument('--stream-bytes', type=int, default=1 << 30)
    p.add_argument('--km-stream-bytes', type=int, default=1 << 30)
    p.add_argument('--rate-requests', type=int, default=20000)
    p.add_argument('--km-rate-requests', type=int, default=5000)
    p.add_argument('--rate-hot-image', action='store_true',
                   help='section 4 also drives audit_notifier with every request on ONE image '
                        '(its publishing is sharded by resource id)')
    p.add_argument('--calibrate-messages', type=int, default=10000,
                   help='notifications pre-queued to measure what the listener alone drains')
    p.add_argument('--listener-batch', type=int, default=0,
                   help='use a batch notification listener with this batch_size '
                        '(as Ceilometer does); default: the plain notification listener')
    p.add_argument('--output', default=RESULTS)
    # child processes
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--variant', help=argparse.SUPPRESS)
    p.add_argument('--impl', help=argparse.SUPPRESS)
    p.add_argument('--topic', help=argparse.SUPPRESS)
    p.add_argument('--size', type=int, help=argparse.SUPPRESS)
    p.add_argument('--expect', type=int, help=argparse.SUPPRESS)
    p.add_argument('--n', type=int, help=argparse.SUPPRESS)
    p.add_argument('--batch', type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument('--hot', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.km_noop_requests, args.km_msg_requests = 4000, 500, 200
        args.stream_bytes = args.km_stream_bytes = 128 << 20
        args.rate_requests, args.km_rate_requests = 4000, 500
        args.calibrate_messages = 2000
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
        sections = args.only or ['request', 'stream', 'rate']
        res = {'run_id': run_id, 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
               'versions': versions(), 'args': {k: v for k, v in vars(args).items()
                                                if v is not None and k != 'output'}}
        res['load'] = {'start': os.getloadavg()[0]}
        res['broker_trouble'] = {}
        BROKER_TROUBLE.take()
        if 'request' in sections:
            print('1. request-path cost ...', flush=True)
            res['request_path'] = request_path_cost(args, tmpdir, run_id)
            res['load']['request'] = os.getloadavg()[0]
            res['broker_trouble']['request'] = BROKER_TROUBLE.take()
        if 'stream' in sections:
            print('3. streaming ...', flush=True)
            res['streaming'] = streaming(args)
            res['load']['stream'] = os.getloadavg()[0]
        if 'rate' in sections:
            print('4. sustained delivery rate ...', flush=True)
            res['sustained'] = sustained(args, run_id)
            res['load']['rate'] = os.getloadavg()[0]
            res['broker_trouble']['rate'] = BROKER_TROUBLE.take()
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
    except BaseException:
        import traceback
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)       # oslo.messaging/kombu helper threads must not keep us alive
