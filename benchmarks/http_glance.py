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

"""The real Glance 33 API over HTTP, with and without audit_notifier (issue 11, part 2).

Process layout (all on 127.0.0.1):

* this process: set-up, orchestration, figures; it starts everything below and stops it;
* gunicorn servers, each ``--workers 2 --worker-class gthread --threads 4``, serving the real
  Glance paste app (SQLite db in WAL mode, file store, one temp dir shared by all servers)
  through :func:`gunicorn_app`, a factory that runs in EACH worker (no ``--preload``): it
  installs ``keystonemiddleware.fixture.AuthTokenFixture`` (the static token ``admin-token``),
  then calls ``glance.common.wsgi_app.init_app()``.  The pipeline is the one of
  tests/functional/glance_app.py: ``cors http_proxy_to_wsgi versionnegotiation osprofiler
  authtoken [audit] context rootapp`` with keystonemiddleware's real ``auth_token`` filter.
  One server without the filter ("off") and one with it ("on") run at the same time on two
  ports; measurements alternate between them (off, on, off, on ...).  The side-by-side
  section starts new servers every round (off, on, the A/A control off2; with
  ``--sender both`` also ext), all of one round with the same hash seed, and sends one
  client's requests to each in turn.  Its servers have two CPU probe filters around where
  the filter goes (``authtoken cpuprobe_above [audit] cpuprobe_below context``): each
  worker measures the request thread's CPU between them per call (the filter's own
  request-path work; on the servers without it, the probes alone) and writes it at exit;
  the sender threads' CPU is read from /proc by their OS name (``audit-sender``);
* one client process (its own GIL) that drives keep-alive ``http.client`` connections from
  threads, closed loop (C clients back to back) or open loop (a fixed schedule, latency from
  the scheduled send time);
* one kombu consumer process per broker that counts the CADF events (distinct message_id)
  arriving on the run's topic; it is paused while a timed segment runs, so its CPU does not
  land on either server's figures, and then drains the queue (deadline poll) to prove that
  every audited call arrived;
* for the outage section a private one-node RabbitMQ (tests/support/rabbit_cluster.py) that
  is stopped (``stop_app``) and started again under load; the shared broker is never touched.

Run from the repository root: ``python benchmarks/http_glance.py [--quick]``.  See
benchmarks/README.md for what is measured.
"""

import argparse
import atexit
import ctypes
import glob
import http.client
import itertools
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
import uuid

import run                              # benchmarks/run.py: the send process's priority
from audit_notifier.delivery import os_thread   # (run.py put the working tree on sys.path)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, 'http_results.json')
SCRATCH = '/tmp/httpbench'
SHARED_URL = os.environ.get('BENCH_TRANSPORT_URL', 'rabbit://guest:guest@127.0.0.1:5672/')
TOKEN = 'admin-token'
WORKERS = 2
THREADS = 4
WORKER_CLASS = 'gthread'
DOWNLOAD_BYTES = 1024 * 1024
PATCH_IMAGES = 8
WORKLOADS = ('get', 'download', 'patch')
PATCH_CT = 'application/openstack-images-v2.1-json-patch'

TARGET_ADDED_MEDIAN_PCT = 1.0
TARGET_ADDED_P99_PCT = 2.0
TARGET_SAT_RATIO = 0.99
TARGET_OUTAGE_FACTOR = 2.0
TARGET_DRAIN_RATIO = 5.0


# ---------------------------------------------------------------------------------------
# gunicorn side: the app factory (runs in each worker process)
# ---------------------------------------------------------------------------------------

def gunicorn_app():
    """``gunicorn 'http_glance:gunicorn_app()'``: fixture tokens, then the Glance app."""
    glance_app().install_auth_fixture()   # for the life of the worker
    from glance.common import wsgi_app
    app = wsgi_app.init_app()        # reads $OS_GLANCE_CONFIG_DIR/glance-api.conf
    ready = os.environ.get('HTTPBENCH_READY_DIR')
    if ready:
        open(os.path.join(ready, 'ready-%d' % os.getpid()), 'w').close()
    return app


# CPU probes (side-by-side servers): two paste filters, one just above where the audit
# filter goes and one just below it, measure in each worker the CPU time of the request
# thread between them per call: the filter's own request-path work (plus the probes'
# own, which the servers without the filter show).  Its work while a server iterates a
# streamed body (a download's chunks) happens after the probes returned: not in it.
PROBE_BELOW = 'httpbench.below_ns'
PROBE_SKIP = 20                     # first calls of each kind in a worker: warm-up
_PROBED: dict = {}                  # kind of call -> CPU ns between the probes, per call


def _probe_kind(environ):
    path = environ.get('PATH_INFO', '')
    return environ.get('REQUEST_METHOD', '') + (' file' if path.endswith('/file') else '')


def _write_probes(path):
    with open(path, 'w') as f:
        json.dump(_PROBED, f)


def probe_above_factory(global_conf, **local_conf):
    """paste filter: CPU ns of what runs below it minus what runs below the lower probe
    (the thread's CPU clock), per call, written at the worker's exit."""
    directory = os.environ.get('OS_GLANCE_CONFIG_DIR')
    atexit.register(_write_probes, os.path.join(directory, 'cpuprobe-%d.json' % os.getpid()))

    def make(app):
        def above(environ, start_response):
            environ[PROBE_BELOW] = 0
            start = time.thread_time_ns()
            try:
                return app(environ, start_response)
            finally:
                _PROBED.setdefault(_probe_kind(environ), []).append(
                    time.thread_time_ns() - start - environ[PROBE_BELOW])
        return above
    return make


def probe_below_factory(global_conf, **local_conf):
    """paste filter: adds the CPU ns of the rest of the pipeline to the call's
    ``PROBE_BELOW`` (not for the filter's record look-ups: they have no such key)."""
    def make(app):
        def below(environ, start_response):
            if PROBE_BELOW not in environ:
                return app(environ, start_response)
            start = time.thread_time_ns()
            try:
                return app(environ, start_response)
            finally:
                environ[PROBE_BELOW] += time.thread_time_ns() - start
        return below
    return make


def read_probes(etc):
    """{kind: [CPU us per call]} of a stopped server's workers, warm-up left out."""
    out: dict = {}
    for path in glob.glob(os.path.join(etc, 'cpuprobe-*.json')):
        try:
            with open(path) as f:
                probed = json.load(f)
        except (OSError, ValueError):
            continue
        for kind, values in probed.items():
            out.setdefault(kind, []).extend(v / 1000.0 for v in values[PROBE_SKIP:])
    return out


# ---------------------------------------------------------------------------------------
# configuration files
# ---------------------------------------------------------------------------------------

def glance_app():
    """The test suite's real-Glance harness module (tests/functional/glance_app.py),
    whose paste pipeline and store settings the servers here use."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tests.functional import glance_app as harness
    return harness


def rabbit_cluster():
    """tests/support/rabbit_cluster.py: the private RabbitMQ node and free_port."""
    glance_app()                        # the repository root on sys.path
    from tests.support import rabbit_cluster as module
    return module


def paste_ini(audit_filter, probes=False):
    """The test suite's paste file, flavor ``bench``: ``... authtoken [audit] context
    rootapp``; ``probes``: the CPU probes around where the filter goes."""
    text = glance_app()._paste_ini(audit_filter, flavor='bench')
    if not probes:
        return text
    where = ' authtoken audit context ' if audit_filter is not None else ' authtoken context '
    assert text.count(where) == 1, 'the bench pipeline changed: ' + where
    text = text.replace(where, ' authtoken cpuprobe_above %scpuprobe_below context ' % (
        'audit ' if audit_filter is not None else ''))
    return text + textwrap.dedent('''
        [filter:cpuprobe_above]
        paste.filter_factory = http_glance:probe_above_factory

        [filter:cpuprobe_below]
        paste.filter_factory = http_glance:probe_below_factory
        ''')


def glance_conf(base, etc, port, exchange, durable):
    sections = {
        'DEFAULT': {
            'debug': 'False', 'use_stderr': 'False',
            'log_file': os.path.join(etc, 'glance-api.log'),
            'enabled_backends': 'fs:file',
            'worker_self_reference_url': 'http://127.0.0.1:%d' % port,
            'image_cache_dir': os.path.join(base, 'cache'),
            'enabled_import_methods': '[glance-direct,web-download]',
            'control_exchange': exchange,
        },
        'database': {'connection': 'sqlite:///%s' % os.path.join(base, 'glance.sqlite')},
        **glance_app().store_sections(base),
        'paste_deploy': {'flavor': 'bench',
                         'config_file': os.path.join(etc, 'glance-api-paste.ini')},
        # Glance's own notifications: off (only the filter publishes)
        'oslo_messaging_notifications': {'driver': 'noop'},
        'oslo_messaging_rabbit': {
            'amqp_durable_queues': 'true' if durable else 'false',
            # reconnect quickly once the broker is back (oslo's backoff reaches 30 s)
            'rabbit_retry_interval': '1', 'rabbit_retry_backoff': '0',
            'rabbit_interval_max': '1', 'kombu_reconnect_delay': '0.1',
        },
        'keystone_authtoken': {
            # never contacted: fetch_token is replaced by AuthTokenFixture
            'www_authenticate_uri': 'http://127.0.0.1:5000/v3',
            'auth_url': 'http://127.0.0.1:5000/v3', 'auth_type': 'password',
            'username': 'glance', 'password': 'unused', 'project_name': 'service',
            'user_domain_name': 'Default', 'project_domain_name': 'Default',
        },
        'oslo_policy': {'policy_file': os.path.join(base, 'policy.yaml'),
                        'enforce_new_defaults': 'True', 'enforce_scope': 'True'},
    }
    out = ['# generated by benchmarks/http_glance.py']
    for section, values in sections.items():
        out.append('[%s]' % section)
        out.extend('%s = %s' % kv for kv in values.items())
        out.append('')
    return '\n'.join(out)


try:        # resolved here, not in a forked child
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _pdeathsig():
    """preexec_fn: SIGTERM the gunicorn master if this benchmark dies (even by SIGKILL)."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM, 0, 0, 0)            # PR_SET_PDEATHSIG


def _niced_pdeathsig():
    _pdeathsig()
    run.send_process_priority()


def _orphaned(parent):
    return os.getppid() != parent


# ---------------------------------------------------------------------------------------
# servers
# ---------------------------------------------------------------------------------------

class Server:
    """One gunicorn master with WORKERS gthread workers serving one Glance pipeline."""

    def __init__(self, name, base, audit_filter=None, exchange='glance', durable=False,
                 env=None, probes=False):
        self.name = name
        self.extra_env = env or {}
        self.base = base
        self.audit_filter = audit_filter
        self.port = rabbit_cluster().free_port()
        self.etc = os.path.join(base, 'etc-' + name)
        self.exchange = exchange
        self.durable = durable
        self.proc = None
        self.journal_dir = (audit_filter or {}).get('journal_dir')
        os.makedirs(self.etc, exist_ok=True)
        with open(os.path.join(self.etc, 'glance-api-paste.ini'), 'w') as f:
            f.write(paste_ini(audit_filter, probes))
        self.conf = os.path.join(self.etc, 'glance-api.conf')
        # sender = external: audit-notifier send runs beside gunicorn and reads the
        # filter's options from the [audit_notifier] section, as an operator sets them
        self.external = (audit_filter or {}).get('sender') == 'external'
        self.sender = None
        with open(self.conf, 'w') as f:
            f.write(glance_conf(base, self.etc, self.port, exchange, durable))
            if self.external:
                f.write('[audit_notifier]\n%s\n' % '\n'.join(
                    '%s = %s' % kv for kv in audit_filter.items()))

    def start(self, timeout=180.0):
        ready = os.path.join(self.etc, 'ready')
        shutil.rmtree(ready, ignore_errors=True)
        os.makedirs(ready)
        env = dict(os.environ)
        env.update({'OS_GLANCE_CONFIG_DIR': self.etc, 'HTTPBENCH_READY_DIR': ready,
                    'PYTHONPATH': os.pathsep.join([HERE, ROOT, env.get('PYTHONPATH', '')]),
                    'PYTHONWARNINGS': 'ignore'})
        env.update(self.extra_env)
        argv = [sys.executable, '-m', 'gunicorn', '--workers', str(WORKERS),
                '--worker-class', WORKER_CLASS, '--threads', str(THREADS),
                '--keep-alive', '120', '--timeout', '300', '--graceful-timeout', '15',
                '--bind', '127.0.0.1:%d' % self.port, '--log-level', 'warning',
                '--chdir', self.base, 'http_glance:gunicorn_app()']
        self._log = open(os.path.join(self.etc, 'gunicorn.log'), 'ab')
        self.proc = subprocess.Popen(argv, env=env, stdout=self._log, stderr=self._log,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=_pdeathsig)
        _STARTED.append(self)
        deadline = time.monotonic() + timeout
        while len(os.listdir(ready)) < WORKERS:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('gunicorn %s did not start; see %s/gunicorn.log and '
                                   'glance-api.log' % (self.name, self.etc))
            time.sleep(0.2)
        self.worker_pids = sorted(int(n.split('-')[1]) for n in os.listdir(ready))
        if self.external:
            # at Nice=19, as etc/audit_notifier/audit-notifier-send.service runs it
            self.sender = subprocess.Popen(
                [sys.executable, '-m', 'audit_notifier.cli', 'send', '--config-file',
                 self.conf], env=env, stdout=self._log, stderr=self._log,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_niced_pdeathsig)
            # started (imports, its pipeline: about 2 s of CPU) before anything is timed,
            # or that lands in the first segment's CPU per call
            from audit_notifier.delivery.external import sender_running
            while not sender_running(self.journal_dir):
                if self.sender.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError('audit-notifier send for %s did not start; see '
                                       '%s/gunicorn.log' % (self.name, self.etc))
                time.sleep(0.1)
        while True:
            try:
                st, _ = http_call(self.port, 'GET', '/healthcheck')
                if st == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError('gunicorn %s: no healthcheck' % self.name)
            time.sleep(0.2)
        return self

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        for proc in (self.proc, self.sender):      # the sender last: it ends the journals
            if proc is None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait(10)
        self._log.close()

    def cpu_seconds(self):
        """user + system CPU of the workers (and of the send process) so far."""
        parts = self.cpu_parts()
        return parts['workers'] + parts['sender']

    def cpu_parts(self):
        """CPU seconds so far of the workers (user + system), of it the system part and
        the filter's sender threads' (the threads the OS lists as ``audit-sender``:
        delivery/os_thread.py), and of the send process (0 without one), from one
        reading of each process."""
        workers = [proc_cpu_times(pid) or (0.0, 0.0) for pid in self.worker_pids]
        sender = (proc_cpu_times(self.sender.pid) if self.sender is not None else None) \
            or (0.0, 0.0)
        return {'workers': sum(u + s for u, s in workers),
                'system': sum(s for _u, s in workers), 'sender': sum(sender),
                'thread': sum(named_threads_cpu(pid, os_thread.SENDER)
                              for pid in self.worker_pids)}

    def stats(self):
        """Sum of the filter's stats files (one per worker; written every 5 s)."""
        out = {'unsent': 0, 'files': 0, 'sent': 0, 'journaled': 0, 'time': None}
        for path in glob.glob(os.path.join(self.journal_dir or '/nonexistent',
                                           '*.stats.json')):
            try:
                with open(path) as f:
                    snap = json.load(f)
            except (OSError, ValueError):
                continue
            out['files'] += 1
            for k in ('unsent', 'sent', 'journaled'):
                out[k] += int(snap.get(k) or 0)
            out['time'] = max(out['time'] or 0, snap.get('time') or 0)
        return out


_STARTED = []


def _stat(path):
    """(name, user CPU seconds, system CPU seconds) from a /proc ``stat`` file of a
    process or a thread, or None when it is gone."""
    try:
        with open(path) as f:
            head, tail = f.read().rsplit(')', 1)
    except (OSError, TypeError):
        return None
    fields = tail.split()
    tick = os.sysconf('SC_CLK_TCK')
    return head.split('(', 1)[1], int(fields[11]) / tick, int(fields[12]) / tick


def proc_cpu_times(pid):
    """(user, system) CPU seconds of a process so far (/proc/<pid>/stat), or None."""
    stat = _stat('/proc/%d/stat' % pid) if pid is not None else None
    return None if stat is None else stat[1:]


def named_threads_cpu(pid, name):
    """user + system CPU seconds so far of the threads of process ``pid`` the OS
    names ``name`` (/proc/<pid>/task/<tid>/comm); 0 when there are none."""
    try:
        tids = os.listdir('/proc/%d/task' % pid)
    except OSError:
        return 0.0
    stats = [_stat('/proc/%d/task/%s/stat' % (pid, tid)) for tid in tids]
    return sum(user + system for thread, user, system in filter(None, stats)
               if thread == name)


def proc_cpu_seconds(pid):
    """user + system CPU of a process so far, or None."""
    times = proc_cpu_times(pid)
    return None if times is None else sum(times)


def http_call(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        h = {'Accept': 'application/json', 'X-Auth-Token': TOKEN}
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------
# the client process
# ---------------------------------------------------------------------------------------

class Conn:
    def __init__(self, port):
        self.port = port
        self.c = None
        self.retries = 0

    def do(self, method, path, body, headers):
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=120)
            try:
                self.c.request(method, path, body=body, headers=headers)
                r = self.c.getresponse()
                r.read()
                if r.will_close:
                    self.c.close()
                    self.c = None
                return r.status
            except (http.client.HTTPException, OSError):
                self.c.close()
                self.c = None
                if attempt:
                    raise
                self.retries += 1

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def request_maker(job):
    ids = job['ids']
    base = {'Accept': 'application/json', 'X-Auth-Token': TOKEN}
    wl = job['workload']
    tag = job.get('tag', 'x')
    if wl == 'get':
        path = '/v2/images/%s' % ids['get']
        return lambda i: ('GET', path, None, base), 200
    if wl == 'download':
        path = '/v2/images/%s/file' % ids['download']
        return lambda i: ('GET', path, None, base), 200
    hdrs = dict(base)
    hdrs['Content-Type'] = PATCH_CT
    paths = ['/v2/images/%s' % i for i in ids['patch']]

    def make(i):
        body = json.dumps([{'op': 'replace', 'path': '/name',
                            'value': 'hb-%s-%d' % (tag, i)}])
        return 'PATCH', paths[i % len(paths)], body, hdrs
    return make, 200


def _closed_loop(job, ports, orders=None):
    """C clients back to back; each client's i-th request goes to every port of
    ``ports`` in turn (in the order ``orders[i]``, default: as listed).  Latencies per
    port, the time from the first counted call to the last, non-OK statuses and the
    connections' retries."""
    make, ok = request_maker(job)
    c, n, warm = job['clients'], job['n'], job['warmup']
    k = len(ports)
    conns = [[Conn(port) for port in ports] for _ in range(c)]
    lat = [[0.0] * n for _ in ports]
    bad = []
    counter = itertools.count()
    barrier = threading.Barrier(c + 1)
    pc = time.perf_counter
    in_turn = list(range(k))

    def worker(j):
        mine = conns[j]
        try:
            for w in range(warm):
                for conn in mine:
                    conn.do(*make(-1 - w - j * warm))
        finally:
            barrier.wait()
        while True:
            i = next(counter)
            if i >= n:
                return
            req = make(i)
            for idx in (orders[i] if orders else in_turn):
                t0 = pc()
                st = mine[idx].do(*req)
                lat[idx][i] = (pc() - t0) * 1000.0
                if st != ok:
                    bad.append(st)

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(c)]
    for t in threads:
        t.start()
    barrier.wait()
    t_start = pc()
    for t in threads:
        t.join()
    secs = pc() - t_start
    for mine in conns:
        for conn in mine:
            conn.close()
    return lat, secs, bad, sum(x.retries for mine in conns for x in mine)


def run_closed(job):
    lat, secs, bad, retries = _closed_loop(job, [job['port']])
    n = job['n']
    return {'lat_ms': lat[0], 'seconds': secs, 'rate': n / secs, 'bad': len(bad),
            'bad_status': sorted(set(bad))[:5], 'calls': n + job['clients'] * job['warmup'],
            'retries': retries}


def run_open(job):
    """A fixed schedule (t0 + i/rate), K connections; latency from the scheduled time."""
    make, ok = request_maker(job)
    rate, k = float(job['rate']), job['conns']
    n = int(round(rate * job['seconds']))
    max_lag = job.get('max_lag') or float('inf')
    conns = [Conn(job['port']) for _ in range(k)]
    lat = [float('nan')] * n
    lag = [0.0] * n
    done_wall = [0.0] * n
    status = [0] * n
    counter = itertools.count()
    barrier = threading.Barrier(k + 1)
    pc = time.perf_counter
    box = {}

    def worker(j):
        conn = conns[j]
        try:
            conn.do(*make(-1 - j))         # opens the connection (one warm-up call each)
        finally:
            barrier.wait()
        barrier.wait()
        t0 = box['t0']
        off = box['off']
        while True:
            i = next(counter)
            if i >= n:
                return
            ts = t0 + i / rate
            d = ts - pc()
            if d > 0:
                time.sleep(d)
            elif -d > max_lag:
                status[i] = -1              # not sent: the server is that far behind
                continue
            sent = pc()
            st = conn.do(*make(i))
            now = pc()
            lat[i] = (now - ts) * 1000.0
            lag[i] = (sent - ts) * 1000.0
            done_wall[i] = now + off
            status[i] = st

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(k)]
    for t in threads:
        t.start()
    barrier.wait()
    off = time.time() - pc()
    if job.get('t0_wall'):
        box['t0'] = job['t0_wall'] - off
    else:
        box['t0'] = pc() + 0.05
    box['off'] = off
    barrier.wait()
    for t in threads:
        t.join()
    end = max(done_wall) - off if n else box['t0']
    for conn in conns:
        conn.close()
    bad = [s for s in status if s not in (ok, -1)]
    sent = n - status.count(-1)
    out = {'lat_ms': lat, 'n': n, 'rate_asked': rate, 'seconds': end - box['t0'],
           'achieved': sent / max(1e-9, end - box['t0']), 'bad': len(bad),
           'bad_status': sorted(set(bad))[:5], 'calls': sent + k, 'skipped': n - sent,
           'late_1ms': sum(1 for x in lag if x > 1.0), 'max_send_lag_ms': max(lag or [0]),
           'retries': sum(x.retries for x in conns), 't0_wall': box['t0'] + off}
    if job.get('timeline'):
        out['sched_wall'] = [box['t0'] + off + i / rate for i in range(n)]
        out['done_wall'] = done_wall
    return out


def run_interleaved(job):
    """Closed loop over several servers at once: each client sends its i-th request to
    every server in turn (in a random order), so the servers' i-th calls are made
    within one round trip of each other (tens of ms) and whatever slows the host down (other VMs,
    frequency, the broker) slows all of them alike; segments of one server after another
    compare different minutes of the host instead."""
    ports = job['ports']
    k = len(ports)
    # a new order for each i: every server follows every other equally often (what
    # runs just before a call, a sender publishing say, is on the same cores)
    rng = random.Random(job['tag'])
    orders = [rng.sample(range(k), k) for _ in range(job['n'])]
    lat, secs, bad, retries = _closed_loop(job, ports, orders)
    return {'lat_ms': lat, 'seconds': secs, 'bad': len(bad), 'bad_status': sorted(set(bad))[:5],
            'calls': [job['n'] + job['clients'] * job['warmup']] * k, 'retries': retries}


def run_slices(job):
    """Saturation on several servers, taken in turns: ``slices`` times, each server in
    turn (in a random order) gets a closed-loop segment of ``n`` calls from
    ``clients`` clients alone.  Short turns, so the host's speed changes between two
    servers' turns less than between two long segments; per server the calls and the
    time of all its turns, and the latencies."""
    ports = job['ports']
    k = len(ports)
    lat = [[] for _ in ports]
    secs = [0.0] * k
    calls = [0] * k
    done = [0] * k
    bad = 0
    rng = random.Random(job['tag'])
    for _turn in range(job['slices']):
        for idx in rng.sample(range(k), k):
            res = run_closed(dict(job, port=ports[idx]))
            lat[idx].extend(res['lat_ms'])
            secs[idx] += res['seconds']
            calls[idx] += res['calls']
            done[idx] += job['n']
            bad += res['bad']
    return {'lat_ms': lat, 'seconds': secs, 'rate': [d / t for d, t in zip(done, secs)],
            'calls': calls, 'bad': bad}


CLIENT_MODES = {'closed': run_closed, 'open': run_open, 'interleaved': run_interleaved,
                'slices': run_slices}


def client_main(pipe):
    while True:
        try:
            job = pipe.recv()
        except EOFError:                 # the benchmark is gone
            return
        if job is None:
            return
        try:
            res = CLIENT_MODES[job['mode']](job)
        except Exception as exc:         # reported to the parent, which raises
            res = {'error': repr(exc)}
        pipe.send(res)


# ---------------------------------------------------------------------------------------
# the consumer process (counts CADF events by message_id)
# ---------------------------------------------------------------------------------------

# shared counters: 0 cadf unique, 1 glance unique, 2 other unique, 3 duplicates,
# 4 last arrival (time.time()), 5 connected, 6 connection errors, 7 messages
def consumer_main(url, exchange, topic, durable, arr, consume, stop):
    import kombu
    ex = kombu.Exchange(exchange, type='topic', durable=durable, auto_delete=False)
    queues = [kombu.Queue('%s.%s' % (topic, p), ex, routing_key='%s.%s' % (topic, p),
                          durable=durable, auto_delete=False)
              for p in ('info', 'warn', 'error')]
    seen = set()
    parent = os.getppid()

    def on_message(body, message):
        if isinstance(body, (bytes, str)):
            body = json.loads(body)
        inner = json.loads(body['oslo.message']) if 'oslo.message' in body else body
        mid = inner.get('message_id')
        if mid in seen:
            arr[3] += 1
        else:
            seen.add(mid)
            et = inner.get('event_type') or ''
            arr[0 if et.startswith('audit.') else 1 if et.startswith('image.') else 2] += 1
        arr[4] = time.time()
        arr[7] += 1
        message.ack()

    while not stop.is_set() and not _orphaned(parent):
        try:
            with kombu.Connection(url, heartbeat=0, connect_timeout=2) as conn:
                conn.connect()
                consumer = kombu.Consumer(conn.channel(), queues=queues,
                                          callbacks=[on_message], prefetch_count=200,
                                          accept=['json'])
                consumer.consume()
                arr[5] = 1
                while not stop.is_set() and not _orphaned(parent):
                    if consume.value:
                        try:
                            conn.drain_events(timeout=0.1)
                        except socket.timeout:
                            pass
                    else:
                        time.sleep(0.01)
        except Exception:
            arr[5] = 0
            arr[6] += 1
            time.sleep(0.2)


class Consumer:
    def __init__(self, ctx, url, exchange, topic, durable):
        self.arr = ctx.Array('d', 8)
        self.consume = ctx.Value('i', 1)
        self.stop_ev = ctx.Event()
        self.proc = ctx.Process(target=consumer_main, daemon=True,
                                args=(kombu_url(url), exchange, topic, durable, self.arr,
                                      self.consume, self.stop_ev))
        self.proc.start()
        deadline = time.monotonic() + 60
        while not self.arr[5]:
            if time.monotonic() > deadline or not self.proc.is_alive():
                raise RuntimeError('consumer did not connect to %s' % url)
            time.sleep(0.05)

    @property
    def cadf(self):
        return int(self.arr[0])

    def counts(self):
        a = list(self.arr)
        return {'cadf': int(a[0]), 'glance': int(a[1]), 'other': int(a[2]),
                'duplicates': int(a[3]), 'conn_errors': int(a[6]), 'messages': int(a[7])}

    def pause(self, paused=True):
        self.consume.value = 0 if paused else 1

    def wait_for(self, expected, timeout=120.0):
        """Deadline poll until ``expected`` CADF events arrived (or no progress)."""
        self.pause(False)
        deadline = time.monotonic() + timeout
        while self.cadf < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.cadf

    def close(self):
        self.stop_ev.set()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def kombu_url(url):
    # rabbit://u:p@h:port/ -> amqp://u:p@h:port//
    rest = url.split('://', 1)[1].rstrip('/')
    return 'amqp://%s//' % rest.split(',')[0]


# ---------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------

def pct(s, p):
    return s[min(len(s) - 1, int(p * len(s)))] if s else float('nan')


def summary(lat):
    s = sorted(x for x in lat if x == x)
    return {'n': len(s), 'median': statistics.median(s) if s else float('nan'),
            'p90': pct(s, 0.90), 'p99': pct(s, 0.99), 'max': s[-1] if s else float('nan')}


def med(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float('nan')


# The side-by-side section's servers, in the order its figures are printed.
SIDES = ('off', 'on', 'ext', 'off2')

# A goal the A/A control's spread does not let the run decide.
UNRESOLVED = 'unresolved'
UNRESOLVED_OUTAGE = 'unresolved: the control missed it too'
UNRESOLVED_BASELINE = 'unresolved: the run was behind before the outage'


def _at_most(measured, target, noise=None):
    """Is ``measured`` <= ``target``: True, False, or UNRESOLVED when ``noise`` (what
    the A/A control differed by, in the same unit; None: no control) straddles it."""
    if noise is None:
        return measured <= target
    if measured + noise <= target:
        return True
    if measured - noise > target:
        return False
    return UNRESOLVED


def _added(on_rounds, off_rounds, off_fig):
    """Median over rounds of what ``on`` adds to ``off`` in the same round: median and
    p99 (ms, and % of off's), and the throughput ratio on/off."""
    added = {}
    for m in ('median', 'p99'):
        added[m] = med([on['summary'][m] - off['summary'][m]
                        for on, off in zip(on_rounds, off_rounds)])
        added[m + '_pct'] = 100.0 * added[m] / off_fig[m]
    added['rate_ratio'] = med([on.get('rate', on.get('achieved')) /
                               off.get('rate', off.get('achieved'))
                               for on, off in zip(on_rounds, off_rounds)])
    return added


class Bench:
    def __init__(self, args):
        self.args = args
        self.run_id = uuid.uuid4().hex[:8]
        os.makedirs(SCRATCH, exist_ok=True)
        self.base = os.path.join(SCRATCH, 'run-%s' % self.run_id)
        for sub in ('images', 'staging', 'tasks', 'cache', 'journals'):
            os.makedirs(os.path.join(self.base, sub))
        open(os.path.join(self.base, 'policy.yaml'), 'w').close()
        self.exchange = 'httpbench-%s' % self.run_id
        self.broker_pid = None          # the shared RabbitMQ, when local (its CPU)
        self.topic = 'httpbench-%s' % self.run_id
        self.ctx = multiprocessing.get_context('spawn')
        self.results = {'run_id': self.run_id, 'started': time.strftime('%Y-%m-%d %H:%M:%S'),
                        'args': vars(args), 'workers': WORKERS, 'worker_class': WORKER_CLASS,
                        'threads': THREADS, 'sections': {}, 'combos': []}
        self.out_lines = []
        self.expected = 0          # CADF events expected on the shared-broker consumer
        self.losses = []
        self.client = None
        self.consumer = None
        self.cluster = None

    def say(self, line=''):
        print(line, flush=True)
        self.out_lines.append(line)

    # ------------------------------------------------------------------ plumbing
    def start_client(self):
        a, b = self.ctx.Pipe()
        self.client = self.ctx.Process(target=client_main, args=(b,), daemon=True)
        self.client.start()
        self.pipe = a

    def drive(self, job):
        self.pipe.send(job)
        res = self.pipe.recv()
        if 'error' in res:
            raise RuntimeError('client: %s' % res['error'])
        return res

    def filter_conf(self, name, formats, lookups, url=None, topic=None):
        jd = os.path.join(self.base, 'journals', name)
        os.makedirs(jd, mode=0o700)
        conf = {'formats': formats, 'driver': 'messagingv2',
                'transport_url': url or SHARED_URL, 'topics': topic or self.topic,
                'journal_dir': jd, 'record_lookups': 'true' if lookups else 'false'}
        conf['rabbit_batch_publish'] = 'false' if self.args.plain_leaf else 'true'
        if self.args.sender == 'external':
            conf['sender'] = 'external'
        conf.update(self.args.filter_option or ())
        return conf

    def setup_images(self, port):
        def create(name):
            st, body = http_call(port, 'POST', '/v2/images', json.dumps(
                {'name': name, 'disk_format': 'raw', 'container_format': 'bare'}),
                {'Content-Type': 'application/json'})
            assert st == 201, (st, body[:300])
            return json.loads(body)['id']

        def upload(iid, size):
            data = (os.urandom(4096) * (size // 4096 + 1))[:size]
            st, body = http_call(port, 'PUT', '/v2/images/%s/file' % iid, data,
                                 {'Content-Type': 'application/octet-stream'})
            assert st == 204, (st, body[:300])

        ids = {'get': create('hb-get'), 'download': create('hb-download'),
               'patch': [create('hb-patch-%d' % i) for i in range(PATCH_IMAGES)]}
        upload(ids['get'], 1024)
        upload(ids['download'], DOWNLOAD_BYTES)
        for wl, path in (('get', '/v2/images/%s' % ids['get']),
                         ('download', '/v2/images/%s' % ids['download'])):
            st, body = http_call(port, 'GET', path)
            assert st == 200, (wl, st, body[:300])
        st, body = http_call(port, 'GET', '/v2/images/%s' % ids['get'])
        assert json.loads(body)['status'] == 'active'
        self.ids = ids
        self.results['images'] = ids

    def db_sync(self, conf):
        proc = subprocess.run([sys.executable, '-m', 'glance.cmd.manage', '--config-file',
                               conf, 'db_sync'], cwd=self.base, capture_output=True,
                              text=True, timeout=300)
        if proc.returncode:
            raise RuntimeError('db_sync failed: %s' % proc.stderr[-2000:])
        import sqlite3
        c = sqlite3.connect(os.path.join(self.base, 'glance.sqlite'))
        c.execute('PRAGMA journal_mode=WAL').fetchone()
        c.close()

    def segment(self, server, consumer, job, audited):
        """One timed segment; the consumer pauses meanwhile and then proves delivery."""
        job = dict(job, port=server.port, ids=self.ids)
        if audited:
            consumer.pause(True)
        cpu0 = server.cpu_seconds()
        broker0 = proc_cpu_seconds(self.broker_pid)
        res = self.drive(job)
        broker1 = proc_cpu_seconds(self.broker_pid)
        # RabbitMQ's CPU while the segment ran (it shares these cores): what taking
        # the publishes costs it (a few sent after the last call are not counted).
        res['broker_cpu_ms_per_call'] = ((broker1 - broker0) * 1000.0 / res['calls']
                                         if broker0 is not None and broker1 is not None
                                         else None)
        res['load'] = os.getloadavg()[0]
        if audited:
            self.expected += res['calls']
            t0 = time.monotonic()
            got = consumer.wait_for(self.expected, timeout=self.args.deliver_timeout)
            res['delivery_wait_s'] = round(time.monotonic() - t0, 3)
            res['events_expected_total'] = self.expected
            res['events_received_total'] = got
            res['lost_so_far'] = self.expected - got
            if got < self.expected:
                self.losses.append((server.name, job['workload'], self.expected - got))
        # worker CPU per call, after the delivery wait (includes the sender's publishing)
        res['cpu_ms_per_call'] = (server.cpu_seconds() - cpu0) * 1000.0 / res['calls']
        return res

    # ------------------------------------------------------------------ A/B sections
    def ab(self, label, on_server, off_server, specs, rounds, control=None, external=None):
        """specs: list of (key, job) run on off and on (and on the A/A ``control``,
        a second server without the filter, and on ``external``, the filter with
        ``sender = external``, when given), per round, the order rotating from round
        to round."""
        servers = {'off': off_server, 'on': on_server}
        if control is not None:
            servers['off2'] = control
        if external is not None:
            servers['ext'] = external
        sides = list(servers)
        per = {key: {side: [] for side in sides} for key, _ in specs}
        for r in range(rounds):
            for key, job in specs:
                shift = r % len(sides)
                for side in sides[shift:] + sides[:shift]:
                    srv = servers[side]
                    j = dict(job, tag='%s%d%s' % (side, r, key.replace('/', '')))
                    res = self.segment(srv, self.consumer, j, side in ('on', 'ext'))
                    res['summary'] = summary(res.pop('lat_ms'))
                    res['round'] = r
                    per[key][side].append(res)
            self.say('  %s: round %d/%d done (load %.2f, lost so far %d)' % (
                label, r + 1, rounds, os.getloadavg()[0], self.expected - self.consumer.cadf))
        return per

    def report_ab(self, label, per):
        """Print and return the figures of :meth:`ab`; with an A/A control, also
        what the second server without the filter differs from the first by
        (the same figures, measured between two identical servers: the noise)."""
        rows = {}
        self.say()
        self.say('%s: median of per-round figures (ms; cpu/call: CPU ms of the 2 gunicorn '
                 'workers per call, sender (thread or process) included); added = on - off, '
                 'same round' % label)
        self.say('%-22s %-4s %8s %8s %8s %9s %8s %5s  %s' % (
            'workload/mode', 'srv', 'median', 'p90', 'p99', 'calls/s', 'cpu/call', 'bad',
            'extra'))
        for key, sides in per.items():
            fig = {}
            for side in sides:
                rs = sides[side]
                fig[side] = {m: med([x['summary'][m] for x in rs])
                             for m in ('median', 'p90', 'p99')}
                rate_key = 'rate' if 'rate' in rs[0] else 'achieved'
                fig[side]['rate'] = med([x[rate_key] for x in rs])
                fig[side]['cpu_ms_per_call'] = med([x['cpu_ms_per_call'] for x in rs])
                broker = [x['broker_cpu_ms_per_call'] for x in rs
                          if x.get('broker_cpu_ms_per_call') is not None]
                fig[side]['broker_cpu_ms_per_call'] = med(broker) if broker else None
                bad = sum(x['bad'] for x in rs)
                extra = ''
                if 'late_1ms' in rs[0]:
                    n_all = sum(x['n'] for x in rs)
                    skipped = sum(x['skipped'] for x in rs)
                    extra = 'sent >1 ms late: %d of %d' % (
                        sum(x['late_1ms'] for x in rs), n_all)
                    if skipped:
                        extra += ', not sent (>%.0f s behind): %d' % (self.args.open_max_lag,
                                                                      skipped)
                    if fig[side]['rate'] < 0.95 * rs[0]['rate_asked']:
                        extra += '  OVERLOADED'
                        fig[side]['overloaded'] = True
                self.say('%-22s %-4s %8.2f %8.2f %8.2f %9.1f %8.2f %5d  %s' % (
                    key, side, fig[side]['median'], fig[side]['p90'], fig[side]['p99'],
                    fig[side]['rate'], fig[side]['cpu_ms_per_call'], bad, extra))
            if fig['on']['broker_cpu_ms_per_call'] is not None:
                self.say('%-22s      RabbitMQ CPU per call %s' % (key, ', '.join(
                    '%s %.3f ms' % (side, fig[side]['broker_cpu_ms_per_call'])
                    for side in sides)))
            added = _added(sides['on'], sides['off'], fig['off'])
            self._say_added(key, 'added', 'on/off', added)
            rows[key] = {side: fig[side] for side in sides}
            rows[key].update(added=added, rounds=dict(sides))
            if 'ext' in sides:
                rows[key]['external'] = ext = _added(sides['ext'], sides['off'], fig['off'])
                self._say_added(key, 'sender = external (ext - off):', 'ext/off', ext)
            if 'off2' in sides:
                rows[key]['control'] = control = _added(sides['off2'], sides['off'], fig['off'])
                self._say_added(key, 'A/A control (off2 - off):', 'off2/off', control)
        return rows

    def _say_added(self, key, label, ratio, added):
        self.say('%-22s      %s median %+.3f ms (%+.1f %%), p99 %+.3f ms (%+.1f %%), '
                 'throughput %s %.3f' % (key, label, added['median'], added['median_pct'],
                                         added['p99'], added['p99_pct'], ratio,
                                         added['rate_ratio']))

    def main_sections(self):
        a = self.args
        only = set(a.only or [])
        workloads = [w for w in WORKLOADS if not only & set(WORKLOADS) or w in only]
        modes = []
        if not only & {'open', 'closed'} or 'closed' in only:
            modes += [('closed', {'mode': 'closed', 'clients': a.clients}),
                      ('sat', {'mode': 'closed', 'clients': a.sat_clients})]
        if not only & {'open', 'closed'} or 'open' in only:
            modes += [('open%d' % r, {'mode': 'open', 'rate': r, 'conns': a.open_conns,
                                      'seconds': a.open_seconds}) for r in a.rates]
        if only and not only & {'open', 'closed'} and (
                'interleaved' in only or not only & set(WORKLOADS)):
            return                      # e.g. --only outage, --only interleaved --only get
        self.ensure_consumer()
        off = self.off_server
        variants = [('cadf', True)] + [v for v in (('cadf', False), ('cadf,glance', True),
                                                   ('cadf,glance', False))
                                       if not a.no_variants]
        if a.sender == 'external':      # refused: the send process makes no look-ups
            variants = [v for v in variants if v != ('cadf,glance', True)]
        for vi, (formats, lookups) in enumerate(variants):
            primary = vi == 0
            vname = '%s/lookups %s' % (formats, 'on' if lookups else 'off')
            specs = []
            for wl in workloads:
                for mname, mjob in modes:
                    if not primary and mname != 'closed':
                        continue
                    n = a.requests if primary else a.variant_requests
                    job = dict(mjob, workload=wl, n=n, warmup=a.warmup)
                    if wl == 'patch':
                        # SQLite: concurrent writes from 2 processes fail ("database is
                        # locked", 500), so PATCH runs from ONE client, closed loop only
                        if mname != 'closed':
                            continue
                        job.update(clients=a.patch_clients, n=a.patch_requests
                                   if primary else a.patch_requests // 2)
                    if job['mode'] == 'open':
                        job['max_lag'] = a.open_max_lag
                    specs.append(('%s/%s' % (wl, mname), job))
            if not specs:
                continue
            srv_name = 'on-%s-%s' % (formats.replace(',', '+'), 'lk' if lookups else 'nolk')
            t0 = time.monotonic()
            on = Server(srv_name, self.base,
                        self.filter_conf(srv_name, formats, lookups), self.exchange).start()
            self.say('filtered server %s up on :%d in %.1f s (workers %s)' % (
                srv_name, on.port, time.monotonic() - t0, on.worker_pids))
            control = None
            if primary and not a.no_control:
                t0 = time.monotonic()
                control = Server('off2', self.base, None, self.exchange).start()
                self.say('A/A control: a second server without the filter up on :%d in '
                         '%.1f s (workers %s)' % (control.port, time.monotonic() - t0,
                                                  control.worker_pids))
            external = None
            if primary and a.sender == 'both':
                conf = dict(self.filter_conf('on-ext', formats, lookups), sender='external')
                external = Server('ext', self.base, conf, self.exchange).start()
                self.say('the same filter with sender = external up on :%d (workers %s)' % (
                    external.port, external.worker_pids))
            before = self.consumer.counts()
            rounds = a.rounds if primary else a.variant_rounds
            try:
                per = self.ab(vname, on, off, specs, rounds, control, external)
            finally:
                for srv in (on, control, external):
                    if srv is not None:
                        srv.stop()
            after = self.consumer.counts()
            rows = self.report_ab('Variant %s (formats %s, record_lookups %s)%s' % (
                vname, formats, lookups, ' [primary]' if primary else ''), per)
            self.say('  delivery: CADF events expected %d, received %d (lost %d); glance-format '
                     '%d, duplicates %d' % (
                         self.expected, after['cadf'], self.expected - after['cadf'],
                         after['glance'] - before['glance'],
                         after['duplicates'] - before['duplicates']))
            self.results['sections'][vname] = {'formats': formats, 'record_lookups': lookups,
                                               'rounds': rounds, 'rows': rows,
                                               'consumer': after}
            self.results['combos'].append({'variant': vname, 'workloads': sorted(
                {k.split('/')[0] for k, _ in specs}), 'modes': sorted(
                {k.split('/')[1] for k, _ in specs}), 'rounds': rounds})
            self.save()

    # ------------------------------------------------------------------ side by side
    def side_by_side_section(self):
        """The filter, the same Glance without it and the A/A control, side by side:
        one client sends its requests to each server in turn (no queueing: what a call
        costs, not how calls wait for each other).  Every round starts new servers, all
        of them with one hash seed (a new one each round): two processes of the same
        server differ by 1-3 % in speed for as long as they live (dict and set layouts,
        where their memory lies), so one pair of processes cannot tell a 1 % effect;
        many rounds of new ones average it out."""
        a = self.args
        only = set(a.only or [])
        if only and 'interleaved' not in only:
            return
        # PATCH is left out: the servers share one SQLite database, which takes one
        # writer at a time ("database is locked" when two servers write at once)
        workloads = [w for w in ('get', 'download') if not only & set(WORKLOADS) or w in only]
        self.ensure_consumer()
        sides = [side for side in SIDES if side != 'ext' or a.sender == 'both']
        if a.no_control:
            sides.remove('off2')
        self.say()
        self.say('Side by side: %d rounds of new servers %s; per round and workload (%s): %d '
                 'requests to each from one client, interleaved, then %d turns of %d calls '
                 'from %d clients on each (saturation)' % (
                     a.interleaved_rounds, ', '.join(sides), ', '.join(workloads),
                     a.interleaved_requests, a.sat_turns, a.sat_turn_requests, a.sat_clients))
        per, probed = {}, {}
        seeds = random.Random(self.run_id).sample(range(1, 2 ** 31), a.interleaved_rounds)
        for r, seed in enumerate(seeds):
            servers = {}
            # a random start order (and place in the client's lists) each round: two
            # servers without the filter differed by 1 % in CPU per call by place alone
            order = random.Random(seed).sample(sides, len(sides))
            try:
                for side in order:
                    name = 'sbs%d-%s' % (r, side)
                    conf = None
                    if side in ('on', 'ext'):
                        conf = self.filter_conf(name, 'cadf', True)
                        if side == 'ext':
                            conf['sender'] = 'external'
                    servers[side] = Server(name, self.base, conf, self.exchange,
                                           env={'PYTHONHASHSEED': str(seed)},
                                           probes=True).start()
                for wl in workloads:
                    for mode, job in (
                            ('interleaved', {'mode': 'interleaved', 'clients': 1,
                                             'n': a.interleaved_requests,
                                             'warmup': a.interleaved_warmup}),
                            ('sat', {'mode': 'slices', 'clients': a.sat_clients,
                                     'n': a.sat_turn_requests, 'slices': a.sat_turns,
                                     'warmup': 1})):
                        job.update(workload=wl, tag='sbs%d' % r)
                        per.setdefault('%s/%s' % (wl, mode), []).append(
                            self.joint_segment(servers, job))
            finally:
                for srv in servers.values():
                    srv.stop()
            for side, srv in servers.items():   # kept (with their logs) if the round failed
                for kind, values in read_probes(srv.etc).items():
                    probed.setdefault(side, {}).setdefault(kind, []).extend(values)
                shutil.rmtree(srv.etc, ignore_errors=True)
            self.say('  side by side: round %d/%d done (hash seed %d, load %.2f, lost so far '
                     '%d)' % (r + 1, a.interleaved_rounds, seed, os.getloadavg()[0],
                              self.expected - self.consumer.cadf))
        self.results['sections']['side_by_side'] = self.report_side_by_side(per)
        self.results['filter_cpu'] = self.report_probes(probed)
        self.save()

    def report_probes(self, probed):
        """The filter's own CPU per call in the workers (the CPU probes around it), by
        kind of call, against the probes alone on the servers without it."""
        self.say()
        self.say('The filter\'s own CPU per call in the workers (us of the request thread '
                 'between two probe filters around it, all calls of all rounds but each '
                 'worker\'s first %d of a kind; off, off2: the probes alone; a download\'s '
                 'per-chunk work is not in it)' % PROBE_SKIP)
        self.say('%-10s %-4s %7s %8s %8s %8s %8s  %s' % ('call', 'srv', 'calls', 'p10', 'median',
                                                         'p90', 'mean', 'median - off'))
        out = {}
        for kind in sorted({k for by_kind in probed.values() for k in by_kind}):
            base = probed.get('off', {}).get(kind)
            base_median = statistics.median(base) if base else None
            for side in SIDES:
                values = sorted(probed.get(side, {}).get(kind, []))
                if len(values) < 10:
                    continue
                fig = {'calls': len(values), 'p10': pct(values, 0.10),
                       'median': statistics.median(values), 'p90': pct(values, 0.90),
                       'mean': statistics.fmean(values)}
                out.setdefault(kind, {})[side] = fig
                self.say('%-10s %-4s %7d %8.1f %8.1f %8.1f %8.1f  %s' % (
                    kind, side, fig['calls'], fig['p10'], fig['median'], fig['p90'],
                    fig['mean'], '' if side == 'off' or base_median is None
                    else '%+.1f' % (fig['median'] - base_median)))
        return out

    def ensure_consumer(self):
        if self.consumer is not None:
            return
        self.consumer = Consumer(self.ctx, SHARED_URL, self.exchange, self.topic, False)
        broker = urllib.parse.urlsplit(SHARED_URL.split(',')[0])
        if broker.hostname in ('127.0.0.1', 'localhost'):
            glance_app()                # the repository root on sys.path
            from tests.support import proc_sockets
            self.broker_pid = proc_sockets.listening_pid(broker.port or 5672)

    def joint_segment(self, servers, job):
        """One job over all ``servers`` at once; per server: its latencies, calls and
        CPU seconds of the workers and of the send process (taken after the consumer
        saw every audited call, so the sending is in)."""
        sides = list(servers)
        job = dict(job, ports=[servers[side].port for side in sides], ids=self.ids)
        self.consumer.pause(True)
        cpu0 = {side: servers[side].cpu_parts() for side in sides}
        res = self.drive(job)
        out = {'bad': res['bad']}
        for idx, side in enumerate(sides):
            out[side] = {'lat_ms': res['lat_ms'][idx], 'calls': res['calls'][idx],
                         'external': servers[side].external}
            if 'rate' in res:
                out[side].update(rate=res['rate'][idx], seconds=res['seconds'][idx])
            if servers[side].audit_filter:
                self.expected += res['calls'][idx]
        got = self.consumer.wait_for(self.expected, timeout=self.args.deliver_timeout)
        if got < self.expected:
            self.losses.append(('side by side', job['workload'], self.expected - got))
        for side in sides:
            cpu1 = servers[side].cpu_parts()
            for key, part in (('cpu_s', 'workers'), ('system_cpu_s', 'system'),
                              ('sender_cpu_s', 'sender'), ('thread_cpu_s', 'thread')):
                out[side][key] = cpu1[part] - cpu0[side][part]
        return out

    def report_side_by_side(self, per):
        """Figures of all rounds pooled, what each server adds to ``off``, and the
        noise the A/A control shows: the larger of what it differed by in all and
        twice the standard error of its per-round differences (or of the measured
        server's, if larger)."""
        rows = {}
        self.say()
        self.say('Side by side (all rounds pooled; ms; cpu/call: CPU ms of the 2 gunicorn '
                 'workers per call, the sender thread\'s included, "of it sys" the system '
                 'part, "sender thr." the sender threads\' (OS thread name audit-sender); '
                 'send proc.: CPU ms per call of the audit-notifier send process, at nice '
                 '19; capacity: off\'s cpu/call over the server\'s)')
        self.say('%-16s %-4s %8s %8s %8s %8s %8s %9s %9s %11s %10s' % (
            'workload/mode', 'srv', 'median', 'p90', 'p99', 'max', 'calls/s', 'cpu/call',
            'of it sys', 'sender thr.', 'send proc.'))
        for key, rounds in per.items():
            sides = [side for side in SIDES if side in rounds[0]]
            fig = {}
            for side in sides:
                fig[side] = summary([x for rnd in rounds for x in rnd[side]['lat_ms']])
                fig[side]['external'] = rounds[0][side]['external']
                calls = sum(rnd[side]['calls'] for rnd in rounds)
                for k in ('cpu', 'system_cpu', 'sender_cpu', 'thread_cpu'):
                    fig[side][k + '_ms_per_call'] = 1000.0 * sum(
                        rnd[side][k + '_s'] for rnd in rounds) / calls
                if 'rate' in rounds[0][side]:
                    fig[side]['rate'] = sum(rnd[side]['rate'] * rnd[side]['seconds']
                                            for rnd in rounds) / sum(
                        rnd[side]['seconds'] for rnd in rounds)
                self.say('%-16s %-4s %8.2f %8.2f %8.2f %8.2f %8s %9.3f %9.3f %11s %10s' % (
                    key, side, fig[side]['median'], fig[side]['p90'], fig[side]['p99'],
                    fig[side]['max'], '%.1f' % fig[side]['rate'] if 'rate' in fig[side]
                    else '-', fig[side]['cpu_ms_per_call'],
                    fig[side]['system_cpu_ms_per_call'],
                    '%.3f' % fig[side]['thread_cpu_ms_per_call']
                    if fig[side]['thread_cpu_ms_per_call'] else '',
                    '%.3f' % fig[side]['sender_cpu_ms_per_call']
                    if fig[side]['external'] else ''))
            row = {'figures': fig, 'bad': sum(rnd['bad'] for rnd in rounds),
                   'rounds': len(rounds)}
            for side in sides:
                if side != 'off':
                    row[side] = self._side_added(key, rounds, fig, side)
            if 'off2' in row:
                control = row['off2']
                for side in sides:
                    if side in ('off', 'off2'):
                        continue
                    row[side]['noise'] = {m: max(abs(control[m]), 2 * control[m + '_se'],
                                                 2 * row[side][m + '_se'])
                                          for m in control if m + '_se' in control}
            rows[key] = row
        return rows

    def _side_added(self, key, rounds, fig, side):
        """What ``side`` adds to ``off`` (% of off's): pooled, per round, and the
        standard error of the per-round figures' mean.  ``capacity``: calls served on
        the CPU off needs for 100, less 100; ``throughput``: calls per second in
        saturation turns against off's, less 100."""
        def se(values):
            return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0

        def cpu(rnd, s):
            return rnd[s]['cpu_s'] / rnd[s]['calls']

        added = {}
        for m in ('median', 'p99'):
            base = fig['off'][m]
            added[m] = fig[side][m] - base
            added[m + '_pct'] = 100.0 * added[m] / base
            pcts = []
            for rnd in rounds:
                off_m = summary(rnd['off']['lat_ms'])[m]
                pcts.append(100.0 * (summary(rnd[side]['lat_ms'])[m] - off_m) / off_m)
            added[m + '_pct_rounds'] = pcts
        added['capacity_pct'] = 100.0 * (fig['off']['cpu_ms_per_call'] /
                                         fig[side]['cpu_ms_per_call'] - 1.0)
        added['capacity_pct_rounds'] = [100.0 * (cpu(rnd, 'off') / cpu(rnd, side) - 1.0)
                                        for rnd in rounds]
        shown = ['median', 'p99', 'capacity']
        if 'rate' in fig[side]:
            added['throughput_pct'] = 100.0 * (fig[side]['rate'] / fig['off']['rate'] - 1.0)
            added['throughput_pct_rounds'] = [
                100.0 * (rnd[side]['rate'] / rnd['off']['rate'] - 1.0) for rnd in rounds]
            shown.append('throughput')
        for m in shown:
            added[m + '_pct_se'] = se(added[m + '_pct_rounds'])
        label = {'on': 'added (on - off)', 'ext': 'sender = external (ext - off)',
                 'off2': 'A/A control (off2 - off)'}[side]
        self.say('%-16s      %s: median %+.3f ms (%+.2f %%), p99 %+.3f ms (%+.2f %%), '
                 'capacity %+.2f %%%s' % (
                     key, label, added['median'], added['median_pct'], added['p99'],
                     added['p99_pct'], added['capacity_pct'],
                     ', throughput %+.2f %%' % added['throughput_pct']
                     if 'throughput_pct' in added else ''))
        for m in shown:
            self.say('%-16s        per round %-10s %s' % (key, m, ' '.join(
                '%+.1f' % x for x in added[m + '_pct_rounds'])))
        return added

    # ------------------------------------------------------------------ outage
    def outage_section(self):
        a = self.args
        self.cluster = rabbit_cluster().RabbitCluster(size=1, name_prefix='anchttp')
        t0 = time.monotonic()
        self.cluster.start(timeout=180)
        url = self.cluster.transport_url()
        self.say()
        self.say('private RabbitMQ node %s on :%d up in %.1f s' % (
            self.cluster.nodes[0], self.cluster.ports[0], time.monotonic() - t0))
        out = {}
        for rate in a.rates:
            exchange = '%s-out%d' % (self.exchange, rate)
            topic = '%s-out%d' % (self.topic, rate)
            name = 'outage-%d' % rate
            consumer = Consumer(self.ctx, url, exchange, topic, True)
            srv = Server(name, self.base, self.filter_conf(name, 'cadf', True, url, topic),
                         exchange, durable=True).start()
            try:
                out[rate] = self.one_outage(srv, consumer, rate)
            finally:
                srv.stop()
                consumer.close()
            self.save_outage(out)
            if not a.no_control:
                srv = Server('outage-off-%d' % rate, self.base, None, exchange,
                             durable=True).start()
                try:
                    out[rate]['control'] = self.outage_control(srv, rate)
                finally:
                    srv.stop()
                self.save_outage(out)
        return out

    def save_outage(self, out):
        self.results['sections']['outage'] = {str(k): v for k, v in out.items()}
        self.save()

    def outage_load(self, srv, rate, sample):
        """The outage schedule on ``srv``: open-loop GETs at ``rate`` for
        before + outage + after seconds, the private node stopped after ``before``
        and started again ``outage`` seconds later; ``sample()`` called every 0.1 s
        meanwhile.  Returns the client's result and the times of the steps."""
        a = self.args
        total = a.outage_before + a.outage_seconds + a.outage_after
        t0 = time.time() + 1.0
        job = {'mode': 'open', 'rate': rate, 'conns': a.open_conns, 'seconds': total,
               't0_wall': t0, 'timeline': True, 'workload': 'get', 'port': srv.port,
               'ids': self.ids, 'max_lag': a.open_max_lag}
        self.pipe.send(job)

        def sleep_until(t):
            while time.time() < t:
                sample()
                time.sleep(min(0.1, max(0.0, t - time.time())))

        sleep_until(t0 + a.outage_before)
        marks = {'stop0': time.time(), 'stats_stop': srv.stats()}
        self.cluster.stop_node(0)
        marks['stop1'] = time.time()
        sleep_until(marks['stop0'] + a.outage_seconds)
        marks['stats_heal'] = srv.stats()
        marks['start0'] = time.time()
        self.cluster.start_node(0)
        marks['heal'] = time.time()
        sample()
        while not self.pipe.poll(0.1):
            sample()
        res = self.pipe.recv()
        if 'error' in res:
            raise RuntimeError('client: %s' % res['error'])
        return res, marks

    @staticmethod
    def outage_phases(res, marks, audited=False, t_drained=None):
        """Latency figures of the calls scheduled in each phase of the outage (with
        the filter: also while its backlog drained, and after)."""
        sched, lat = res['sched_wall'], res['lat_ms']

        def phase(lo, hi):
            sel = [x for s, x in zip(sched, lat) if lo <= s < hi]
            out = summary(sel)
            out['not_sent'] = sum(1 for x in sel if x != x)
            return out

        ph = {'before': phase(res['t0_wall'] + 1.0, marks['stop0']),
              'during': phase(marks['stop0'], marks['heal']),
              'down': phase(marks['stop1'], marks['start0']),
              'restarting': phase(marks['start0'], marks['heal']),
              'after': phase(marks['heal'], float('inf'))}
        if audited:
            ph['draining'] = phase(marks['heal'], t_drained or marks['heal'])
            ph['after_drain'] = phase(t_drained or float('inf'), float('inf'))
        return ph

    def say_phases(self, ph):
        a = self.args
        for k in ('before', 'during', 'down', 'restarting', 'after', 'draining',
                  'after_drain'):
            if k not in ph:
                continue
            p = ph[k]
            self.say('  %-12s n=%6d median %7.2f ms  p90 %7.2f  p99 %7.2f  max %8.2f%s' % (
                k, p['n'], p['median'], p['p90'], p['p99'], p['max'],
                '  (not sent, >%.0f s behind: %d)' % (a.open_max_lag, p['not_sent'])
                if p['not_sent'] else ''))

    def outage_warm_up(self, srv):
        """Connections and caches (and, with the filter, its first publish) before an
        outage schedule: the client's result."""
        return self.drive({'mode': 'closed', 'clients': 2, 'n': 20, 'warmup': 2,
                           'workload': 'get', 'port': srv.port, 'ids': self.ids})

    def outage_control(self, srv, rate):
        """The same schedule on a server without the filter: what the broker's stop
        and start (on the same cores) and the load do to the p99 by themselves."""
        self.outage_warm_up(srv)
        res, marks = self.outage_load(srv, rate, lambda: None)
        ph = self.outage_phases(res, marks)
        self.say()
        self.say('Outage control at %d calls/s: the same schedule on a server without the '
                 'filter (achieved %.1f/s, sent >1 ms late %d, non-200 %d):' % (
                     rate, res['achieved'], res['late_1ms'], res['bad']))
        self.say_phases(ph)
        return {'phases': ph, 'achieved': res['achieved'], 'late_1ms': res['late_1ms'],
                'bad': res['bad'], 'overloaded': res['achieved'] < 0.95 * rate}

    def one_outage(self, srv, consumer, rate):
        a = self.args
        warm = self.outage_warm_up(srv)
        got = consumer.wait_for(warm['calls'], 60)
        base_calls = warm['calls']
        base_recv = got
        timeline = []

        def sample():
            timeline.append((time.time(), consumer.cadf))

        res, marks = self.outage_load(srv, rate, sample)
        t_heal = marks['heal']
        calls = base_calls + res['calls']
        # deadline poll until everything arrived (or 300 s without all of it)
        deadline = time.monotonic() + a.deliver_timeout + 180
        while consumer.cadf < calls and time.monotonic() < deadline:
            sample()
            time.sleep(0.05)
        sample()
        received = consumer.cadf
        counts = consumer.counts()
        done = res['done_wall']
        # backlog at heal: audited calls answered before the broker was back - events in
        calls_before_heal = base_calls + a.open_conns + sum(
            1 for d in done if 0 < d < t_heal)
        recv_heal = min((c for t, c in timeline if t >= t_heal), default=received)
        backlog = calls_before_heal - recv_heal
        t_drained = next((t for t, c in timeline if t >= t_heal and c >= calls_before_heal),
                         None)
        drain = None
        if t_drained is not None:
            dt = max(1e-3, t_drained - t_heal)
            delivered = next(c for t, c in timeline if t == t_drained) - recv_heal
            drain = {'seconds': dt, 'delivered': delivered, 'rate': delivered / dt,
                     'ratio': delivered / dt / rate}
        ph = self.outage_phases(res, marks, True, t_drained)
        r = {'rate': rate, 'calls': calls, 'received': received, 'skipped': res['skipped'],
             'lost': calls - received, 'duplicates': counts['duplicates'],
             'consumer_conn_errors': counts['conn_errors'], 'phases': ph,
             'achieved': res['achieved'], 'late_1ms': res['late_1ms'],
             'max_send_lag_ms': res['max_send_lag_ms'], 'bad': res['bad'],
             'bad_status': res['bad_status'],
             't': {'t0': res['t0_wall'], 'stop_app': [marks['stop0'], marks['stop1']],
                   'start_app': [marks['start0'], t_heal], 'drained': t_drained},
             'backlog_at_heal': backlog,
             'recv_before_start_app': max(
                 (c for t, c in timeline if t <= marks['start0']), default=base_recv) - base_recv,
             'stats_at_stop': marks['stats_stop'], 'stats_before_start_app': marks['stats_heal'],
             'drain': drain,
             'timeline': [(round(t - res['t0_wall'], 2), c) for t, c in timeline[::5]]}
        self.say()
        self.say('Outage at %d calls/s (GET /v2/images/<id>, open loop; stop_app for %.0f s; '
                 'filter formats cadf, durable queues):' % (rate, t_heal - marks['stop0']))
        self.say('  calls %d (achieved %.1f/s, sent >1 ms late %d, non-200 %d); CADF events '
                 'received %d; lost %d; duplicates %d' % (
                     calls, res['achieved'], res['late_1ms'], res['bad'], received,
                     calls - received, counts['duplicates']))
        self.say_phases(ph)
        if res['achieved'] < 0.95 * rate:
            r['overloaded'] = True
            self.say('  OVERLOADED: %.1f calls/s served of %d asked; this machine cannot serve '
                     'the rate (see the saturation figures), so the phases compare queues, '
                     'not the filter' % (res['achieved'], rate))
        self.say('  stop_app took %.1f s, start_app %.1f s; backlog at heal %d (stats files: '
                 'unsent %d just before start_app, written every 5 s)' % (
                     marks['stop1'] - marks['stop0'], t_heal - marks['start0'], backlog,
                     marks['stats_heal']['unsent']))
        if drain:
            self.say('  drained %d events in %.1f s after heal: %.0f/s = %.1fx the arrival '
                     'rate' % (drain['delivered'], drain['seconds'], drain['rate'],
                               drain['ratio']))
        else:
            self.say('  backlog NOT drained within the deadline')
        return r

    # ------------------------------------------------------------------ goals
    def goals(self):
        rows = self.side_by_side_goals()
        # The A/B sections' segments compare long-lived servers minutes apart: their A/A
        # control differs by 5-20 %, one sample of it is no measure of their noise, so
        # they inform; the side-by-side section judges the latency and saturation goals.
        prim = self.results['sections'].get('cadf/lookups on', {}).get('rows', {})
        for wl in WORKLOADS:
            c = prim.get('%s/closed' % wl)
            nc = self.args.patch_clients if wl == 'patch' else self.args.clients
            if c:
                ad, ct = c['added'], c.get('control')
                rows.append(('%s C=%d: added median' % (wl, nc),
                             '%+.3f ms (%+.2f %%)' % (ad['median'], ad['median_pct']),
                             '(info)', None))
                rows.append(('%s C=%d: added p99' % (wl, nc),
                             '%+.3f ms (%+.2f %%)' % (ad['p99'], ad['p99_pct']),
                             '(info)', None))
                if ct:
                    rows.append(('  A/A control: median / p99',
                                 '%+.3f ms (%+.2f %%) / %+.3f ms (%+.2f %%)' % (
                                     ct['median'], ct['median_pct'], ct['p99'],
                                     ct['p99_pct']), '(noise)', None))
            s = prim.get('%s/sat' % wl)
            if s:
                # the rates are medians over rounds; the ratio is the median of each
                # round's on/off (same round), which need not be their quotient
                rows.append(('%s C=%d: saturation on/off' % (wl, self.args.sat_clients),
                             '%.1f / %.1f calls/s; per round %.3f' % (
                                 s['on']['rate'], s['off']['rate'], s['added']['rate_ratio']),
                             '(info)', None))
                cpu_off, cpu_on = s['off']['cpu_ms_per_call'], s['on']['cpu_ms_per_call']
                rows.append(('  worker CPU per call off / on', '%.2f / %.2f ms (%+.1f %%)' % (
                    cpu_off, cpu_on, 100.0 * (cpu_on - cpu_off) / cpu_off),
                    '(what bounds it)', None))
                b_off, b_on = s['off'].get('broker_cpu_ms_per_call'), \
                    s['on'].get('broker_cpu_ms_per_call')
                if b_off is not None and b_on is not None:
                    share = 100.0 * (b_on - b_off) / cpu_off
                    rows.append(('  RabbitMQ CPU per call off / on',
                                 '%.3f / %.3f ms (%+.1f %% of a worker\'s call)' % (
                                     b_off, b_on, share), '(same cores)', None))
                if 'control' in s:
                    rows.append(('  A/A control: off2/off',
                                 '%.1f / %.1f calls/s; per round %.3f' % (
                                     s['off2']['rate'], s['off']['rate'],
                                     s['control']['rate_ratio']), '(noise)', None))
            for r in self.args.rates:
                o = prim.get('%s/open%d' % (wl, r))
                if o:
                    ad = o['added']
                    rows.append(('%s open %d/s%s: added median / p99' % (
                        wl, r, ' OVERLOADED' if o['off'].get('overloaded') or
                        o['on'].get('overloaded') else ''),
                                 '%+.3f ms (%+.1f %%) / %+.3f ms (%+.1f %%)' % (
                                     ad['median'], ad['median_pct'], ad['p99'],
                                     ad['p99_pct']), '(info)', None))
        for key, sec in self.results['sections'].items():
            if key in ('outage', 'side_by_side', 'cadf/lookups on'):
                continue
            for k, row in sec['rows'].items():
                ad = row['added']
                rows.append(('  %s %s: added median / p99' % (key, k),
                             '%+.3f ms (%+.1f %%) / %+.3f ms (%+.1f %%)' % (
                                 ad['median'], ad['median_pct'], ad['p99'], ad['p99_pct']),
                             '(info)', None))
        if any(k != 'outage' for k in self.results['sections']):
            lost = self.expected - (self.consumer.cadf if self.consumer else 0)
            rows.append(('A/B sections: CADF events lost', '%d of %d' % (lost, self.expected),
                         '0', lost == 0))
        for rate, o in sorted(self.results['sections'].get('outage', {}).items(),
                              key=lambda kv: int(kv[0])):
            ph = o['phases']
            b = ph['before']['p99']
            worst = max(ph['during']['p99'], ph['after']['p99'])
            ok = None if o.get('overloaded') else worst <= TARGET_OUTAGE_FACTOR * b
            ctrl = o.get('control')
            if ctrl and ok is not None and not ctrl['overloaded']:
                cph = ctrl['phases']
                c_worst = max(cph['during']['p99'], cph['after']['p99'])
                if ok is False and c_worst > TARGET_OUTAGE_FACTOR * cph['before']['p99']:
                    ok = UNRESOLVED_OUTAGE      # the broker's restart by itself misses it
                elif ok is True and b > TARGET_OUTAGE_FACTOR * cph['before']['p99']:
                    ok = UNRESOLVED_BASELINE    # already far behind before the outage
            rows.append(('outage %s/s%s: p99 before/during/after' % (
                rate, ' OVERLOADED' if o.get('overloaded') else ''),
                         '%.2f / %.2f / %.2f ms' % (b, ph['during']['p99'], ph['after']['p99']),
                         'during, after <= %.0fx before' % TARGET_OUTAGE_FACTOR, ok))
            rows.append(('  median before/during/after', '%.2f / %.2f / %.2f ms' % (
                ph['before']['median'], ph['during']['median'], ph['after']['median']),
                '(info)', None))
            if ctrl:
                cph = ctrl['phases']
                rows.append(('  control without the filter: p99', '%.2f / %.2f / %.2f ms' % (
                    cph['before']['p99'], cph['during']['p99'], cph['after']['p99']),
                    '(the same schedule)', None))
            rows.append(('outage %s/s: lost' % rate, '%d of %d' % (o['lost'], o['calls']),
                         '0', o['lost'] == 0))
            d = o['drain']
            rows.append(('outage %s/s: drain rate' % rate,
                         ('backlog %d, %.0f/s = %.1fx arrival' % (
                             o['backlog_at_heal'], d['rate'], d['ratio'])) if d else
                         'not drained', '>= %.0fx arrival' % TARGET_DRAIN_RATIO,
                         bool(d) and d['ratio'] >= TARGET_DRAIN_RATIO))
        self.say()
        self.say('Goals (issue 11, part 2): real Glance 33 over HTTP, gunicorn %d %s workers x %d '
                 'threads, auth_token + fixture token; filter with formats cadf, '
                 'record_lookups on unless the row says otherwise' % (
                     WORKERS, WORKER_CLASS, THREADS))
        w = max([len(r[0]) for r in rows] + [10])
        w2 = max([len(r[1]) for r in rows] + [10])
        self.say('%-*s  %-*s  %-28s %s' % (w, 'goal', w2, 'measured', 'target', 'result'))
        self.say('-' * (w + w2 + 45))
        for name, val, target, ok in rows:
            verdict = 'PASS' if ok else 'MISS'
            if ok is UNRESOLVED:
                verdict = 'UNRESOLVED (within the A/A noise)'
            elif ok is UNRESOLVED_OUTAGE:
                verdict = 'UNRESOLVED (missed without the filter too)'
            elif ok is UNRESOLVED_BASELINE:
                verdict = 'UNRESOLVED (p99 before > 2x the control\'s)'
            elif ok is None:
                verdict = 'n/a (overloaded)' if 'OVERLOADED' in name and '(info)' not in target \
                    else ''
            self.say('%-*s  %-*s  %-28s %s' % (w, name, w2, val, target, verdict))
        self.results['goals'] = [{'goal': r[0], 'measured': r[1], 'target': r[2],
                                  'pass': r[3]} for r in rows]

    def side_by_side_goals(self):
        """Goal rows of the side-by-side section: the filter (and, with --sender both,
        the send process) against ``off``, judged with the A/A control's noise."""
        rows = []
        for key, row in self.results['sections'].get('side_by_side', {}).items():
            wl, mode = key.split('/')
            fig = row['figures']
            for side in ('on', 'ext'):
                if side not in row:
                    continue
                ad, noise = row[side], row[side].get('noise', {})
                who = '%s %s, %d rounds%s' % (wl, 'interleaved' if mode == 'interleaved'
                                              else 'saturation C=%d' % self.args.sat_clients,
                                              row['rounds'],
                                              ', sender = external'
                                              if fig[side]['external'] else '')
                goals = (('median', TARGET_ADDED_MEDIAN_PCT), ('p99', TARGET_ADDED_P99_PCT))
                for m, target in goals:
                    rows.append(('%s: added %s' % (who, m),
                                 '%+.3f ms (%+.2f %%)' % (ad[m], ad[m + '_pct']),
                                 '<= %.0f %%' % target if mode == 'interleaved' else '(info)',
                                 _at_most(ad[m + '_pct'], target, noise.get(m + '_pct'))
                                 if mode == 'interleaved' else None))
                if mode == 'sat':
                    rows.append(('%s: throughput' % who, '%.1f / %.1f calls/s: %.2f %%' % (
                        fig[side]['rate'], fig['off']['rate'], 100.0 + ad['throughput_pct']),
                        '>= %.0f %%' % (100 * TARGET_SAT_RATIO),
                        _at_most(-ad['throughput_pct'], 100.0 * (1 - TARGET_SAT_RATIO),
                                 noise.get('throughput_pct'))))
                rows.append(('%s: capacity (CPU per call)' % who,
                             '%.3f / %.3f ms: %.2f %%' % (
                                 fig['off']['cpu_ms_per_call'], fig[side]['cpu_ms_per_call'],
                                 100.0 + ad['capacity_pct']),
                             '>= %.0f %%' % (100 * TARGET_SAT_RATIO) if mode == 'sat'
                             else '(info)',
                             _at_most(-ad['capacity_pct'], 100.0 * (1 - TARGET_SAT_RATIO),
                                      noise.get('capacity_pct')) if mode == 'sat' else None))
                if fig[side]['external']:
                    both = fig[side]['cpu_ms_per_call'] + fig[side]['sender_cpu_ms_per_call']
                    rows.append(('  with the send process\'s CPU',
                                 '%.3f / %.3f ms: %.2f %%' % (
                                     fig['off']['cpu_ms_per_call'], both,
                                     100.0 * fig['off']['cpu_ms_per_call'] / both),
                                 '(sustained load)', None))
                if noise:
                    rows.append(('  noise (A/A control, 2 s.e.)', ', '.join(
                        '%s +-%.2f %%' % (m[:-4], noise[m]) for m in (
                            'median_pct', 'p99_pct', 'throughput_pct', 'capacity_pct')
                        if m in noise), '(noise)', None))
        return rows

    def save(self):
        self.results['printed'] = self.out_lines
        with open(RESULTS, 'w') as f:
            json.dump(self.results, f, indent=1, default=str)

    # ------------------------------------------------------------------ run
    def run(self):
        a = self.args
        t_start = time.monotonic()
        self.say('http_glance: run %s, base %s, %d cores, load %.2f at start' % (
            self.run_id, self.base, os.cpu_count(), os.getloadavg()[0]))
        self.start_client()
        self.off_server = Server('off', self.base, None, self.exchange)
        self.db_sync(self.off_server.conf)
        t0 = time.monotonic()
        self.off_server.start()
        self.say('server without the filter up on :%d in %.1f s (gunicorn %d %s workers x %d '
                 'threads, pids %s)' % (self.off_server.port, time.monotonic() - t0, WORKERS,
                                        WORKER_CLASS, THREADS, self.off_server.worker_pids))
        self.setup_images(self.off_server.port)
        only = set(a.only or [])
        try:
            self.side_by_side_section()
            self.main_sections()
            if not only or 'outage' in only:
                self.outage_section()
        finally:
            self.off_server.stop()
        self.goals()
        self.results['seconds'] = time.monotonic() - t_start
        self.results['load_end'] = os.getloadavg()
        self.say()
        self.say('run time %.0f s; load average at the end %.2f' % (
            self.results['seconds'], os.getloadavg()[0]))
        self.save()
        self.say('raw figures: %s' % os.path.relpath(RESULTS))

    def cleanup(self):
        for srv in _STARTED:
            try:
                srv.stop()
            except Exception:
                pass
        if self.consumer is not None:
            self.consumer.close()
        if self.client is not None and self.client.is_alive():
            try:
                self.pipe.send(None)
            except OSError:
                pass
            self.client.join(5)
            if self.client.is_alive():
                self.client.kill()
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        if not self.args.keep:
            shutil.rmtree(self.base, ignore_errors=True)


def _option(text):
    """``KEY=VALUE`` of --filter-option as (key, value)."""
    key, sep, value = text.partition('=')
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError('expected KEY=VALUE, got %r' % text)
    return key.strip(), value.strip()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true',
                   help='small counts, 10 s outage (about 4 minutes)')
    p.add_argument('--only', action='append',
                   choices=['get', 'download', 'patch', 'open', 'closed', 'interleaved',
                            'outage'])
    p.add_argument('--rounds', type=int, help='A/B rounds of the primary variant (6)')
    p.add_argument('--variant-rounds', type=int, help='rounds of the other variants (4)')
    p.add_argument('--requests', type=int, help='requests per closed-loop segment (400)')
    p.add_argument('--variant-requests', type=int,
                   help='requests per segment of the other variants (300)')
    p.add_argument('--interleaved-rounds', type=int,
                   help='rounds of new servers in the side-by-side section (12; quick 2)')
    p.add_argument('--interleaved-requests', type=int,
                   help='requests to each server per round and workload (600; quick 150)')
    p.add_argument('--interleaved-warmup', type=int, default=20,
                   help='warm-up calls to each new server of the side-by-side section (20)')
    p.add_argument('--sat-turns', type=int,
                   help='side by side: saturation turns per server and round (4; quick 2)')
    p.add_argument('--sat-turn-requests', type=int,
                   help='side by side: calls per saturation turn (150; quick 100)')
    p.add_argument('--clients', type=int, default=4, help='closed-loop clients (4)')
    p.add_argument('--sat-clients', type=int, default=8, help='saturation clients (8)')
    p.add_argument('--patch-clients', type=int, default=1,
                   help='closed-loop clients of the PATCH workload (1: SQLite has one writer)')
    p.add_argument('--patch-requests', type=int,
                   help='PATCH requests per segment (150; quick 50; half in other variants)')
    p.add_argument('--open-max-lag', type=float, default=2.0,
                   help='open loop: a call this many seconds behind its schedule is not sent')
    p.add_argument('--open-conns', type=int, default=16,
                   help='connections (threads) of the open loop (16)')
    p.add_argument('--open-seconds', type=float, help='length of an open-loop segment (2.5)')
    p.add_argument('--rates', default='150,300', help='open-loop and outage rates (150,300)')
    p.add_argument('--warmup', type=int, default=5, help='warm-up calls per connection')
    p.add_argument('--outage-seconds', type=float, help='stop_app duration (30; quick 10)')
    p.add_argument('--outage-before', type=float, help='load before stop_app (20; quick 8)')
    p.add_argument('--outage-after', type=float, help='load after start_app (40; quick 15)')
    p.add_argument('--no-variants', action='store_true',
                   help='only the primary variant (formats cadf, record_lookups on)')
    p.add_argument('--no-control', action='store_true',
                   help='no A/A control (a second server without the filter in the '
                        'primary variant\'s rounds; in the outage section, the same '
                        'schedule on a server without the filter)')
    leaf = p.add_mutually_exclusive_group()
    leaf.add_argument('--fast-leaf', action='store_true',
                      help='filter with rabbit_batch_publish = true (the default)')
    leaf.add_argument('--plain-leaf', action='store_true',
                      help='filter with rabbit_batch_publish = false')
    p.add_argument('--filter-option', action='append', metavar='KEY=VALUE', type=_option,
                   help='an [audit_notifier] option for every filtered server, as an '
                        'operator sets it (repeatable), e.g. gather_seconds=0.2')
    p.add_argument('--sender', choices=['thread', 'external', 'both'], default='thread',
                   help='the filter\'s sender option: a thread in each worker (default), or '
                        'external: an audit-notifier send process beside gunicorn, at nice 19 '
                        '(its CPU counts in cpu/call); both: thread, and in the primary '
                        'variant\'s rounds also a server "ext" with sender = external')
    p.add_argument('--sender-sched', choices=['nice19', 'idle'], default='nice19',
                   help='CPU priority of the send process: nice 19 (the systemd unit\'s), or '
                        'the SCHED_IDLE policy (CPUSchedulingPolicy=idle)')
    p.add_argument('--deliver-timeout', type=float, default=120.0,
                   help='deadline for the consumer to see every event of a segment')
    p.add_argument('--keep', action='store_true', help='keep the temp dir')
    a = p.parse_args(argv)
    a.rates = [int(x) for x in a.rates.split(',') if x]
    os.environ['BENCH_SEND_SCHED'] = a.sender_sched            # read in the send process
    q = a.quick
    defaults = {'rounds': 2 if q else 6, 'variant_rounds': 2 if q else 4,
                'interleaved_rounds': 2 if q else 12, 'interleaved_requests': 150 if q else 600,
                'sat_turns': 2 if q else 4, 'sat_turn_requests': 100 if q else 150,

                'requests': 150 if q else 400, 'variant_requests': 100 if q else 300,
                'patch_requests': 50 if q else 150, 'open_seconds': 1.5 if q else 2.5,
                'outage_seconds': 10.0 if q else 30.0,
                'outage_before': 8.0 if q else 20.0, 'outage_after': 15.0 if q else 40.0}
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def main(argv=None):
    args = parse_args(argv)
    bench = Bench(args)
    atexit.register(bench.cleanup)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        bench.run()
    finally:
        bench.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(main())
