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

"""What a filter adds to a real Glance call, in CPU instructions counted by callgrind.

    python benchmarks/instructions.py                           # GET, ~17 minutes on 2 cores
    python benchmarks/instructions.py --workload get --workload backlog --workload download
    python benchmarks/instructions.py --calls 30 --repeats 1    # ~3 minutes, to try it

Time on a shared 2-core machine moves by 5-50 % between identical runs (the A/A control
of benchmarks/http_glance.py); instructions do not.  Each variant runs in its own process
under ``valgrind --tool=callgrind``: the real Glance 33 API in process
(tests/functional/glance_app.py: SQLite, the file store, keystonemiddleware's real
auth_token with fixture tokens), then ``--calls`` audited calls of each ``--workload``
(``GET /v2/images/<id>``, a 1 KiB download, a PATCH) from one thread, after ``--warmup``
calls that are not counted.  Variants: no filter, audit_notifier (formats ``cadf``, and
``cadf,glance``; every other option at its default: the journal, the fast leaf, the
sender thread; and ``cadf`` with ``sender = external``: the API process only journals,
an ``audit-notifier send`` process, not counted, sends) and keystonemiddleware.audit
(pycadf's Glance map, messagingv2), all publishing to the local RabbitMQ.  Printed per
call: the request thread's instructions (until the last response), the other threads'
(audit_notifier's sender, until its ``flush()`` returned, or until the send process
confirmed everything; oslo.messaging's), their sum, what each filter adds against the
unfiltered Glance, and the garbage collections in the counted stretch (a full one walks
every object of the process; the collector is run before each stretch).  The
``backlog`` workload counts the sender's batched path per record: ``--calls`` GETs
journaled by a process that died with the bus down, sent by the next one (the difference
with an empty journal; not for ``sender = external``: its sender is another process).
``--repeats`` runs every variant again, alternating.

Not counted: RabbitMQ (another process: 0.08-0.14 ms of CPU per notification on this
machine, see http_glance.py), the kernel (system calls, socket writes), and the HTTP
server; instructions are not time (cache misses, the GIL hand-over), so this is the
filter's CPU share of a saturated worker, not its latency.  The sender gathers what
arrives within 200 ms into one publish once 5 calls per second arrive: under callgrind
(about 20x slower) they do not, so the live workloads' sender figure is the unbatched one
and the backlog's the batched one.

The counted stretch is marked from Python: the request thread's with callgrind's client
requests (a tiny C library built here with gcc from valgrind's ``callgrind.h``; they
reach only the calling thread), the other threads' with ``callgrind_control`` (it
reaches every thread, but costs the calling thread a subprocess).  What the other
threads do without calls (timers, heartbeats: measured for up to ``--idle`` seconds
after the counted stretch, per second) is subtracted from theirs.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import glob
import json
import os
import re
import shutil
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
    sys.path.insert(0, REPO)                # the working tree's audit_notifier and tests

import run  # noqa: E402  (benchmarks/run.py: its helpers; after the path is set)

BROKER_URL = os.environ.get('BENCH_TRANSPORT_URL', 'rabbit://guest:guest@127.0.0.1:5672/')
VARIANTS = ('bare', 'audit_notifier', 'audit_notifier_external', 'audit_notifier_glance',
            'keystonemiddleware')
LABELS = {
    'bare': 'Glance, no filter',
    'audit_notifier': 'audit_notifier (cadf)',
    'audit_notifier_external': 'audit_notifier (cadf) external',
    'audit_notifier_glance': 'audit_notifier (cadf,glance)',
    'keystonemiddleware': 'keystonemiddleware.audit',
}
SHIM_C = r'''
#include <valgrind/callgrind.h>
void start(void) { CALLGRIND_START_INSTRUMENTATION; }
void zero(void) { CALLGRIND_ZERO_STATS; }
void dump(const char *label) { CALLGRIND_DUMP_STATS_AT(label); }
'''
WORKLOADS = {
    'get': 'GET /v2/images/<id>',
    'download': 'GET /v2/images/<id>/file (1 KiB)',
    'patch': 'PATCH /v2/images/<id> (name)',
    'backlog': 'GET /v2/images/<id> (404) journaled in an outage, sent by the next process',
}
DATA = bytes(range(256)) * 4
IMAGE_ID = '6f1c2a9e-4b7d-4e3a-9c58-0d2e7b1a4f63'
PATCH_CT = 'application/openstack-images-v2.1-json-patch'
REQUEST_THREAD = 'request-thread'     # dump labels
OTHER_THREADS = 'other-threads'
IDLE = 'idle'


def build_shim(tmpdir: str) -> str:
    """The client-request library; fails with one line if gcc or the header is missing."""
    src = os.path.join(tmpdir, 'cgshim.c')
    lib = os.path.join(tmpdir, 'cgshim.so')
    with open(src, 'w') as f:
        f.write(SHIM_C)
    proc = subprocess.run(['gcc', '-O1', '-shared', '-fPIC', '-o', lib, src],
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit('instructions.py needs gcc and valgrind\'s headers '
                 '(Debian: apt-get install valgrind gcc): %s' % proc.stderr.strip())
    return lib


# ---------------------------------------------------------------------------------------
# the child: one variant, under callgrind
# ---------------------------------------------------------------------------------------

def audit_filter(variant: str, tmpdir: str, topic: str, journal_dir: str | None = None,
                 transport_url: str = BROKER_URL) -> dict | None:
    if variant == 'bare':
        return None
    if variant == 'keystonemiddleware':
        return {'paste.filter_factory': 'keystonemiddleware.audit:filter_factory',
                'audit_map_file': run.write_audit_map(tmpdir),
                'driver': 'messagingv2', 'transport_url': BROKER_URL, 'topics': topic}
    settings = {'formats': 'cadf,glance' if variant == 'audit_notifier_glance' else 'cadf',
                'driver': 'messagingv2', 'transport_url': transport_url, 'topics': topic,
                'journal_dir': journal_dir or os.path.join(tmpdir, 'journal')}
    if variant == 'audit_notifier_external':
        settings['sender'] = 'external'
    return settings


def child(args) -> None:
    workload = (args.workload or ['get'])[0]
    if workload == 'backlog':
        return child_backlog(args)
    from tests.functional import glance_app as harness
    shim = ctypes.CDLL(args.shim)
    # Under the parent's temp dir, which the parent removes: Glance logs there until exit.
    tmpdir = tempfile.mkdtemp(prefix=args.child + '-', dir=os.path.dirname(args.out))
    topic = 'instr_%s_%d' % (args.child, os.getpid())
    sending = None
    try:
        settings = audit_filter(args.child, tmpdir, topic)
        env = harness.GlanceEnv().start(os.path.join(tmpdir, 'glance'),
                                        audit_filter=settings)
        if args.child == 'audit_notifier_external':
            # it reads the journal from its start: the two calls below are sent too
            sending = run.start_send_process(tmpdir, settings)
        made = env.request('POST', '/v2/images', body={    # the same id in every run
            'id': IMAGE_ID, 'name': 'instr', 'disk_format': 'raw', 'container_format': 'bare'})
        assert made.status == 201, made.text
        path = '/v2/images/%s' % made.json['id']
        stored = env.request('PUT', path + '/file', body=DATA,
                             content_type='application/octet-stream')
        assert stored.status == 204, stored.text
        ours = None
        if args.child.startswith('audit_notifier'):
            ours = harness.find_audit_middleware(env.app).delivery
        done = [0]

        def call():
            if workload == 'get':
                r = env.request('GET', path)
                assert r.status == 200 and r.json['id'] in path, r.text
            elif workload == 'download':
                r = env.request('GET', path + '/file')
                assert r.status == 200 and r.body == DATA, r.status
            else:
                done[0] += 1
                r = env.request('PATCH', path, content_type=PATCH_CT, body=json.dumps(
                    [{'op': 'replace', 'path': '/name', 'value': 'instr-%d' % done[0]}]))
                assert r.status == 200 and r.json['name'] == 'instr-%d' % done[0], r.text

        def flush():
            if ours is not None:
                assert ours.flush(600.0), 'audit_notifier did not drain'

        shim.start()
        for _ in range(args.warmup):
            call()
        flush()
        count = Count(args, shim)
        for _ in range(args.calls):
            call()
        out = count.finish(flush)
        if sending is not None:
            run.stop_send_process(sending, tmpdir)
        if ours is not None:
            out['counters'] = {k: v for k, v in ours.counters.items() if v}
        if args.child != 'bare':
            # what reached the broker: the image's creation and upload, warm-up and counted
            out['queued'] = queued(topic)
        with open(args.out, 'w') as f:
            json.dump(out, f)
        env.stop()
    finally:
        if sending is not None and sending.poll() is None:    # the child failed
            sending.kill()
            sending.wait()
        if args.child != 'bare':
            queued(topic, delete=True)


def child_backlog(args) -> None:
    """``--calls`` audited GETs journaled while the bus was down by a process that then
    died (made here first, outside callgrind's count), sent by the next process's sender
    (counted): the batched path a sender takes after an outage or at saturation."""
    from tests.functional import glance_app as harness
    shim = ctypes.CDLL(args.shim)
    base = os.path.dirname(args.out)
    journal_dir = os.path.join(base, 'backlog-journal-%s' % args.child)
    if os.environ.get('INSTRUCTIONS_BACKLOG_WRITER') == '1':
        # The process that dies: its filter's bus is a closed port (nothing is sent).
        env = harness.GlanceEnv().start(
            tempfile.mkdtemp(prefix='writer-', dir=base),
            audit_filter=audit_filter(args.child, base, 'instr_unsent', journal_dir,
                                      'rabbit://guest:guest@127.0.0.1:9/'))
        for i in range(args.calls):
            r = env.request('GET', '/v2/images/%s' % uuid.UUID(int=i))
            assert r.status == 404, r.text
        mw = harness.find_audit_middleware(env.app)
        assert mw.delivery.counters['journaled'] == args.calls, mw.delivery.counters
        os._exit(0)                     # as a killed worker: the journal stays behind
    topic = 'instr_backlog_%s_%d' % (args.child, os.getpid())
    try:
        env = harness.GlanceEnv().start(
            tempfile.mkdtemp(prefix='sender-', dir=base),
            audit_filter=audit_filter(args.child, base, topic, journal_dir))
        ours = harness.find_audit_middleware(env.app).delivery

        def flush():
            assert ours.flush(600.0), 'audit_notifier did not drain'

        shim.start()
        count = Count(args, shim)
        # The first audited call starts the sender, which first sends the dead process's
        # journal, then this call.
        r = env.request('GET', '/v2/images/%s' % uuid.UUID(int=1 << 64))
        assert r.status == 404, r.text
        out = count.finish(flush)
        out.update(counters={k: v for k, v in ours.counters.items() if v},
                   queued=queued(topic))
        with open(args.out, 'w') as f:
            json.dump(out, f)
        env.stop()
    finally:
        queued(topic, delete=True)


class Count:
    """The counted stretch, from construction to :meth:`finish`."""

    def __init__(self, args, shim):
        self.args, self.shim = args, shim
        self.collections = Collections()    # every variant starts with a fresh collector
        control('--zero')           # every thread (a client request reaches only this one)
        shim.zero()                 # this thread again, without the line above
        self.began = time.monotonic()

    def finish(self, flush) -> dict:
        """The request thread's count ends first (waiting for the sender is not its
        work), the other threads' once ``flush()`` returned; then what they do idle."""
        self.shim.dump(REQUEST_THREAD.encode())
        flush()
        control('--dump=' + OTHER_THREADS)
        self.collections.stop()
        counted = time.monotonic() - self.began
        idle = min(counted, self.args.idle)
        time.sleep(idle)            # timers, heartbeats: per second of wall time
        control('--dump=' + IDLE)
        return {'variant': self.args.child, 'calls': self.args.calls,
                'counted_seconds': counted, 'idle_seconds': idle,
                'gc': self.collections.seen}


class Collections:
    """Python's garbage collections from here to :meth:`stop`, per generation, in the
    request (main) thread and in the others.  A full collection walks every object of
    the process (a Glance worker's: tens of millions of instructions), so whether one
    falls in the counted stretch moves a variant's figures: the report shows it."""

    def __init__(self):
        gc.collect()                    # the same starting point for every variant
        self.seen = {'request': [0, 0, 0], 'others': [0, 0, 0]}
        gc.callbacks.append(self._count)

    def _count(self, phase: str, info: dict) -> None:
        if phase == 'start':
            main = threading.current_thread() is threading.main_thread()
            self.seen['request' if main else 'others'][info['generation']] += 1

    def stop(self) -> None:
        gc.callbacks.remove(self._count)


def control(command: str) -> None:
    """callgrind_control on this process: unlike a client request it reaches every
    thread (the sender's too).  Outside valgrind (no parent) it does nothing."""
    if os.environ.get('INSTRUCTIONS_UNDER_CALLGRIND') != '1':
        return
    proc = subprocess.run(['callgrind_control', command, str(os.getpid())],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode or 'OK' not in proc.stdout:
        sys.exit('callgrind_control %s: %s %s' % (command, proc.stdout, proc.stderr))


PRIORITIES = ('info', 'audit', 'debug', 'warn', 'error', 'sample', 'critical')


def queued(topic: str, delete: bool = False) -> int | None:
    """Messages in the run's notification queues (nobody reads them); or delete them."""
    import kombu
    total = 0
    try:
        with kombu.Connection(BROKER_URL.replace('rabbit://', 'amqp://', 1),
                              connect_timeout=5) as conn:
            for prio in PRIORITIES:
                name = '%s.%s' % (topic, prio)
                channel = conn.channel()
                try:
                    if delete:
                        channel.queue_delete(name)
                    else:
                        total += channel.queue_declare(name, passive=True).message_count
                except conn.channel_errors:     # no such queue: nothing of that priority
                    pass
                finally:
                    channel.close()
    except Exception as exc:    # say so; a count the run cannot read is printed as '?'
        print('broker: %s: %s' % (topic, exc), file=sys.stderr)
        return None
    return total


# ---------------------------------------------------------------------------------------
# the parent: runs the variants and reads callgrind's files
# ---------------------------------------------------------------------------------------

_SUMMARY = re.compile(rb'^summary:\s+(\d+)', re.M)
_TRIGGER = re.compile(rb'^desc: Trigger: (?:Client Request: |dump )(\S+)', re.M)


def thread_totals(prefix: str, labels=(REQUEST_THREAD, OTHER_THREADS)) -> dict:
    """{thread number: instructions} in the counted stretch: the request thread (1) from
    its client-request dump, the others from callgrind_control's dump (``labels``)."""
    out = {}
    for path in glob.glob(prefix + '.*-*'):          # <prefix>.<dump>-<thread>
        with open(path, 'rb') as f:
            text = f.read()
        trigger = _TRIGGER.search(text)
        summary = _SUMMARY.search(text)
        if not trigger or not summary:
            continue
        thread = int(path.rsplit('-', 1)[1])
        label = trigger.group(1).decode()
        if (label == labels[0]) == (thread == 1) and label in labels:
            out[thread] = int(summary.group(1))
    return out


def run_variant(args, workload: str, variant: str, repeat: int, tmpdir: str,
                shim: str) -> dict:
    """Instructions per call of one variant: one counted run; for the backlog, the
    difference between a backlog of ``--calls`` and an empty one, per record."""
    started = time.monotonic()
    if workload != 'backlog':
        out = counted_run(args, workload, variant, '%d' % repeat, args.calls, tmpdir, shim)
    else:
        full, empty = (counted_run(args, workload, variant, '%d.%d' % (repeat, n), n,
                                   tmpdir, shim) for n in (args.calls, 0))
        out = dict(full, **{k: (full[k] - empty[k]) / args.calls
                            for k in ('request', 'others', 'others_raw')})
    out.update(total=out['request'] + out['others'], seconds=time.monotonic() - started)
    return out


def counted_run(args, workload: str, variant: str, tag: str, calls: int, tmpdir: str,
                shim: str) -> dict:
    """One child under callgrind: the counted stretch's instructions (totals, not per
    call), the other threads' without what they do idle."""
    prefix = os.path.join(tmpdir, 'cg.%s.%s.%s' % (workload, variant, tag))
    result = prefix + '.json'
    child_args = [sys.executable, os.path.abspath(__file__), '--child', variant,
                  '--workload', workload, '--calls', str(calls), '--warmup', str(args.warmup),
                  '--idle', str(args.idle), '--shim', shim, '--out', result]
    env = dict(os.environ, PYTHONHASHSEED='0')
    if workload == 'backlog':           # first, natively, the process that dies
        proc = subprocess.run(child_args, capture_output=True, text=True, cwd=HERE,
                              env=dict(env, INSTRUCTIONS_BACKLOG_WRITER='1'))
        if proc.returncode:
            sys.exit('backlog writer failed (%d):\n%s' % (proc.returncode,
                                                          proc.stderr[-4000:]))
    cmd = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--separate-threads=yes',
           '--callgrind-out-file=' + prefix] + child_args
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE,
                          env=dict(env, INSTRUCTIONS_UNDER_CALLGRIND='1'))
    if proc.returncode or not os.path.exists(result):
        sys.exit('%s failed (%d):\n%s' % (variant, proc.returncode, proc.stderr[-4000:]))
    with open(result) as f:
        out = json.load(f)
    threads = thread_totals(prefix)
    if 1 not in threads:
        sys.exit('%s: no counted dump in %s.*' % (variant, prefix))
    idle = thread_totals(prefix, (None, IDLE))
    idle_rate = sum(idle.values()) / out['idle_seconds'] if out['idle_seconds'] else 0.0
    others = sum(v for k, v in threads.items() if k != 1)
    out.update(request=float(threads[1]),
               others=max(0.0, others - idle_rate * out['counted_seconds']),
               others_raw=float(others), idle_per_second=idle_rate, threads=len(threads))
    if workload != 'backlog':
        for key in ('request', 'others', 'others_raw'):
            out[key] /= calls
    return out


def report(results: dict, args) -> str:
    lines = []
    get = results.get('get', {}).get('bare')
    for workload, runs in results.items():
        if workload == 'backlog':
            lines += report_backlog(runs, args, min(r['total'] for r in get) if get else None)
        else:
            lines += report_workload(workload, runs, args)
        lines.append('')
    lines += ['added = sum - the lowest unfiltered sum; of Glance = added / that sum. '
              'RabbitMQ and the kernel are not counted.']
    return '\n'.join(lines)


FMT = '%-30s %12s %12s %12s %10s %10s'


def _row(label: str, r: dict, added: float | None, reference: float | None) -> str:
    return FMT % (label, '{:,.0f}'.format(r['request']), '{:,.0f}'.format(r['others']),
                  '{:,.0f}'.format(r['total']),
                  '' if added is None else '{:+,.0f}'.format(added),
                  '' if added is None or not reference else
                  '{:+.1f} %'.format(100.0 * added / reference))


def _broker_line(r: dict, calls: int) -> str:
    return '%30s %s notifications on the broker for %d calls %s' % (
        '', '?' if r.get('queued') is None else r['queued'], calls,
        json.dumps(r.get('counters', {}), sort_keys=True))


def _gc_line(r: dict) -> str:
    seen = r.get('gc') or {}
    return '%30s garbage collections (generation 0/1/2): request thread %s, others %s' % (
        '', '/'.join(map(str, seen.get('request', ()))),
        '/'.join(map(str, seen.get('others', ()))))


def report_workload(workload: str, runs: dict, args) -> list:
    lines = ['Instructions per audited %s, real Glance 33 in process (callgrind; %d calls '
             'per run after %d warm-up calls; %d run(s) per variant)'
             % (WORKLOADS[workload], args.calls, args.warmup, args.repeats), '',
             FMT % ('variant', 'request thr', 'other thr', 'sum', 'added', 'of Glance')]
    bare = min(r['total'] for r in runs['bare'])
    for variant in VARIANTS:
        for r in runs.get(variant, ()):
            if variant == 'bare':
                lines += [_row(LABELS[variant], r, None, None), _gc_line(r)]
                continue
            lines.append(_row(LABELS[variant], r, r['total'] - bare, bare))
            # the image's creation and upload, the warm-up and the counted calls
            lines += [_broker_line(r, args.calls + args.warmup + 2), _gc_line(r)]
    return lines


def report_backlog(runs: dict, args, get_bare: float | None) -> list:
    lines = ['Instructions per record of a backlog: %d audited GET /v2/images/<id> (404) '
             'journaled by a process that died with the bus down, sent by the next '
             "process's sender (a backlog of %d minus an empty one; %d run(s) per variant)"
             % (args.calls, args.calls, args.repeats), '',
             FMT % ('variant', 'request thr', 'other thr', 'sum', 'added', 'of GET')]
    for variant in VARIANTS:
        for r in runs.get(variant, ()):
            lines.append(_row(LABELS[variant], r, r['total'], get_bare))
            lines += [_broker_line(r, args.calls + 1), _gc_line(r)]
    if get_bare is None:
        lines.append('(of GET: run --workload get too, for an unfiltered GET to compare with)')
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--calls', type=int, default=200, help='counted calls per run (200)')
    p.add_argument('--warmup', type=int, default=20, help='calls before counting (20)')
    p.add_argument('--repeats', type=int, default=2, help='runs per variant (2)')
    p.add_argument('--idle', type=float, default=20.0,
                   help='at most this long idle after the counted calls, to measure what '
                        'the other threads do without calls (20 s)')
    p.add_argument('--variant', choices=VARIANTS, action='append',
                   help='run only these variants (repeatable; bare always runs)')
    p.add_argument('--workload', choices=tuple(WORKLOADS), action='append',
                   help='calls to count (repeatable; default get)')
    p.add_argument('--child', choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument('--shim', help=argparse.SUPPRESS)
    p.add_argument('--out', help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        return child(args)
    if shutil.which('valgrind') is None:
        sys.exit('instructions.py needs valgrind (Debian: apt-get install valgrind)')
    variants = ['bare'] + [v for v in VARIANTS[1:] if not args.variant or v in args.variant]
    tmpdir = tempfile.mkdtemp(prefix='instructions-')
    try:
        shim = build_shim(tmpdir)
        runs = {}
        for workload in args.workload or ['get']:
            for repeat in range(args.repeats):
                # sender = external has no sender in the API process to count
                order = variants if workload != 'backlog' else [
                    v for v in variants if v.startswith('audit_notifier')
                    and v != 'audit_notifier_external']
                order = order if repeat % 2 == 0 else order[::-1]
                for variant in order:
                    r = run_variant(args, workload, variant, repeat, tmpdir, shim)
                    print('  %s %s run %d: %.0f s' % (workload, variant, repeat + 1,
                                                      r['seconds']), flush=True)
                    runs.setdefault(workload, {}).setdefault(variant, []).append(r)
        text = report(runs, args)
        print(text)
        with open(os.path.join(HERE, 'instructions.json'), 'w') as f:
            json.dump({'runs': runs, 'text': text, 'args': vars(args)}, f, indent=1)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == '__main__':
    main()
