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

"""The audit filter under load while the RabbitMQ node it publishes to is stopped
(issue 7, item 6), on the private three-node cluster (``tests/support/rabbit_cluster.py``).

One scenario, run with both leaves (the default plain oslo.messaging leaf and
``rabbit_batch_publish = true``):

1. the filter (``filter_factory({}, **paste_keys)``, ``messagingv2``, a transport
   URL naming the three nodes, ``retry = 0``, quorum queues through
   ``[oslo_messaging_rabbit] rabbit_quorum_queue = true``) wraps a trivial image
   app served in-process by a threaded WSGI server; a few warm-up calls make the
   sender connect, and the brokers tell which node its connection is on (the
   connection whose ``connection_name`` holds this process's pid);
2. a real oslo.messaging notification listener (child process, one worker,
   quorum queues) consumes from the two OTHER nodes;
3. a paced load loop (3 threads, ~120 calls/s, a unique request id per call,
   echoed by the app as ``X-Openstack-Request-Id``, so the CADF event's
   ``initiator.request_id`` names its call) runs for ~20 s; ~5 s in, the node the
   filter publishes to is stopped (``stop_app``) and the load goes on;
4. with the node still down: ``flush()`` must return True and the filter's
   connection must be on another node; every answered call must have exactly
   one CADF event at the listener (duplicates only as redeliveries of the same
   message_id), in call order per image; ``dropped`` and ``dead_letters`` 0;
5. the node is started again and a few more calls must arrive as well.

Measured figures (duplicates, failover time, longest blocking publish call,
request latency while the node was down, counters) are printed in the terminal
summary ("filter on a cluster").  Timings come from a wrapper around the
leaves' ``publish_many`` and from this process's own sockets
(``tests/support/proc_sockets.py``: when its connection to the stopped node
closed, when the one to another node opened); none is asserted.
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import os
import socketserver
import threading
import time
import uuid
import wsgiref.simple_server

import kombu
import oslo_messaging.opts
import pytest
from oslo_config import cfg

from audit_notifier.middleware import filter_factory
from tests.support.listener_process import ListenerProcess
from tests.support.proc_sockets import PortTimeline
from tests.support.rabbit_cluster import HOST
from tests.support.wait import wait_until

THREADS = 3
RATE_PER_THREAD = 40.0          # calls/s per thread: ~120 calls/s in all
IMAGES_PER_THREAD = 2
LOAD_SECONDS = 20.0             # the whole load phase, at least
STOP_AFTER = 5.0                # load seconds before the filter's node is stopped
LOAD_AFTER_STOP = 8.0           # load seconds at least after the node is down
WARMUP_CALLS = 6
TAIL_CALLS = 30                 # after the node is back
GENEROUS = 120.0                # deadline of every condition poll

EVENT_TYPE = 'audit.image.deactivate'
IDENTITY = {'X-Identity-Status': 'Confirmed', 'X-User-Id': 'u-cluster',
            'X-User-Name': 'cluster-user', 'X-Project-Id': 'p-cluster',
            'X-Roles': 'member,reader'}
#: the listener reconnects quickly (it is not under test)
LISTENER_RABBIT = {'rabbit_quorum_queue': 'true', 'rabbit_retry_interval': '1',
                   'rabbit_retry_backoff': '0', 'rabbit_interval_max': '1',
                   'kombu_reconnect_delay': '0.1'}
_WATCHED_LOGGERS = ('audit_notifier', 'oslo_messaging', 'oslo.messaging', 'kombu', 'amqp')

REPORT: dict = {}
_SUMMARY = 'audit-notifier-filter-on-a-cluster-summary'


class _Summary:
    """Prints :data:`REPORT` in pytest's terminal summary."""

    def pytest_terminal_summary(self, terminalreporter):
        if not REPORT:
            return
        terminalreporter.section('filter on a cluster (tests/cluster/test_filter_on_a_cluster.py)')
        for name, values in REPORT.items():
            terminalreporter.write_line('%s: %s' % (name, json.dumps(values, sort_keys=True,
                                                                     default=str)))


@pytest.fixture(scope='module', autouse=True)
def _report(request):
    manager = request.config.pluginmanager
    if not manager.has_plugin(_SUMMARY):
        manager.register(_Summary(), _SUMMARY)
    yield


# -- the filter, the app, the server ------------------------------------------------------
def _filter_conf(exchange: str) -> cfg.ConfigOpts:
    """A fresh ConfigOpts (never the global CONF) with oslo.messaging's options,
    quorum queues on, and a control exchange of this test's own."""
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        conf.register_opts(opts, group=group)
    conf([], project='audit_notifier_cluster_tests', default_config_files=[])
    conf.set_override('control_exchange', exchange)
    conf.set_override('rabbit_quorum_queue', True, group='oslo_messaging_rabbit')
    return conf


def _image_app(environ, start_response):
    """POST /v2/images/<id>/actions/deactivate -> 204, the request id echoed."""
    request_id = environ.get('HTTP_X_TEST_REQUEST_ID') or 'req-%s' % uuid.uuid4()
    length = int(environ.get('CONTENT_LENGTH') or 0)
    if length:
        environ['wsgi.input'].read(length)
    start_response('204 No Content', [('X-Openstack-Request-Id', request_id)])
    return [b'']


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, wsgiref.simple_server.WSGIServer):
    daemon_threads = True


class _QuietHandler(wsgiref.simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass


class AppServer:
    """The filtered app on a loopback port, served by threads of this process."""

    def __init__(self, app):
        self.httpd = wsgiref.simple_server.make_server(
            HOST, 0, app, server_class=_ThreadingWSGIServer, handler_class=_QuietHandler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,),
                                       daemon=True, name='cluster-test-wsgi')

    def start(self) -> 'AppServer':
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


# -- the load ------------------------------------------------------------------------------
class Load:
    """Paced HTTP calls from a few threads; each thread owns its images, so the
    calls on one image are sequential and their order is known."""

    def __init__(self, port: int):
        self.port = port
        self.images = [['img-%d-%d-%s' % (t, k, uuid.uuid4().hex[:8])
                        for k in range(IMAGES_PER_THREAD)] for t in range(THREADS)]
        self.lock = threading.Lock()
        self.answered: dict = {}                       # request id -> image
        self.per_image = collections.defaultdict(list)  # image -> request ids, call order
        self.errors: list = []
        self.statuses = collections.Counter()
        self.latencies: list = []                      # (began, seconds) per answered call
        self._stop = threading.Event()
        self._threads: list = []
        self.started_at = None

    def call(self, image: str) -> None:
        request_id = 'req-%s' % uuid.uuid4()
        headers = dict(IDENTITY, **{'X-Test-Request-Id': request_id,
                                    'Content-Length': '0'})
        conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
        began = time.monotonic()
        try:
            conn.request('POST', '/v2/images/%s/actions/deactivate' % image, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            seconds = time.monotonic() - began
        except Exception as exc:                 # no response: not expected at all
            with self.lock:
                self.errors.append('%s: %s: %s' % (request_id, type(exc).__name__, exc))
            return
        finally:
            conn.close()
        with self.lock:
            self.statuses[status] += 1
            self.latencies.append((began, seconds))
            self.answered[request_id] = image
            self.per_image[image].append(request_id)

    def sequential(self, n: int) -> None:
        flat = [img for imgs in self.images for img in imgs]
        for i in range(n):
            self.call(flat[i % len(flat)])

    def _run(self, images) -> None:
        interval = 1.0 / RATE_PER_THREAD
        next_at = time.monotonic()
        i = 0
        while not self._stop.is_set():
            self.call(images[i % len(images)])
            i += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)           # the paced loop
            else:
                next_at = time.monotonic()       # behind: no catch-up burst

    def start(self) -> None:
        self.started_at = time.monotonic()
        for t, images in enumerate(self.images):
            thread = threading.Thread(target=self._run, args=(images,), daemon=True,
                                      name='cluster-test-load-%d' % t)
            thread.start()
            self._threads.append(thread)

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at if self.started_at else 0.0

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(90)
        assert not any(t.is_alive() for t in self._threads), 'a load thread hangs'


# -- what the filter's sender did ----------------------------------------------------------
class PublishLog:
    """Every ``publish_many`` of the delivery's leaves: (began, ended, n, error)."""

    def __init__(self, delivery):
        self.calls: list = []
        self.lock = threading.Lock()
        factory = delivery.leaf_factory

        def recording_factory():
            leaves = factory()
            for leaf in leaves.values():
                def publish_many(envelopes, *rest, _inner=leaf.publish_many, **kw):
                    envelopes = list(envelopes)
                    began = time.monotonic()
                    try:
                        _inner(envelopes, *rest, **kw)
                    except BaseException as exc:
                        with self.lock:
                            self.calls.append((began, time.monotonic(), len(envelopes),
                                               '%s: %s' % (type(exc).__name__,
                                                           ' '.join(str(exc).split())[:300])))
                        raise
                    with self.lock:
                        self.calls.append((began, time.monotonic(), len(envelopes), None))
                leaf.publish_many = publish_many
            return leaves
        delivery.leaf_factory = recording_factory      # before the first call

    def snapshot(self) -> list:
        with self.lock:
            return list(self.calls)


class LogRecords(logging.Handler):
    """INFO and above of audit_notifier, oslo.messaging, kombu and amqp, with the
    thread that logged them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list = []
        self._levels = {}

    def emit(self, record):
        self.records.append('%.3f %s %s %s %s' % (
            record.created, record.threadName, record.name, record.levelname,
            ' '.join(record.getMessage().split())[:300]))

    def __enter__(self):
        for name in _WATCHED_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        for name, level in self._levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(level)


def _our_connections(cluster, pid: int) -> dict:
    """{node: [connection_name, ...]} of the AMQP connections of process ``pid``
    (oslo.messaging's and the fast leaf's names are ``<argv0>:<pid>:<uuid>``), per
    running node (``cluster.connections(i)``: those that reached node i's port)."""
    mark = ':%d:' % pid
    found: dict = {}
    for i in range(cluster.size):
        if not cluster.is_running(i):
            continue
        for conn in cluster.connections(i):
            name = conn['connection_name'] or ''
            if mark in name and name not in found.get(cluster.nodes[i], []):
                found.setdefault(cluster.nodes[i], []).append(name)
    return found


def _url_of(cluster, indexes) -> str:
    return 'rabbit://%s/' % ','.join('guest:guest@%s:%d' % (HOST, cluster.ports[i])
                                     for i in indexes)


def _delete(cluster, queues, exchange) -> list:
    """Delete the durable quorum queues and the exchange of one test (they would
    outlive it); the names of queues still there afterwards."""
    left = []
    with kombu.Connection(cluster.kombu_url(), connect_timeout=5) as conn:
        conn.ensure_connection(max_retries=2 * cluster.size)

        def on_channel(action) -> bool:
            """``action(channel)`` on a fresh channel; False on a channel error
            (404: not, or no longer, there)."""
            channel = conn.channel()
            try:
                action(channel)
                return True
            except conn.channel_errors:
                return False
            finally:
                try:
                    channel.close()
                except Exception:
                    pass
        for name in queues:
            on_channel(lambda ch: ch.queue_delete(name))
            if on_channel(lambda ch: ch.queue_declare(name, passive=True)):
                left.append(name)                   # still there
        on_channel(lambda ch: ch.exchange_delete(exchange))
    return left


def _queues(cluster, names) -> dict:
    """{name: {'messages': ready + unacknowledged, 'leader': node}} of the named
    queues that exist, in ONE ``list_queues`` call (the cluster-wide list) of the
    first running node (``RabbitCluster.queue_message_count`` makes one call per
    queue).  Empty when no running node answers."""
    names = set(names)
    for i in range(cluster.size):
        if not cluster.is_running(i):
            continue
        try:
            rows = cluster._ctl_json(i, 'list_queues', 'name', 'messages', 'leader')
        except Exception:
            continue
        return {r['name']: {'messages': int(r.get('messages') or 0),
                            'leader': r.get('leader')}
                for r in rows if r.get('name') in names}
    return {}


# -- the test -------------------------------------------------------------------------------
def _figures(s: dict, publishes: PublishLog, items: list, logs: LogRecords,
             timeline: PortTimeline, latencies: list) -> dict:
    """The measured figures of one run, from whatever phase it reached."""
    out = {k: v for k, v in s.items() if not k.startswith('_')}
    calls = publishes.snapshot()
    began = s.get('_stop_began')
    if calls:
        out['publish_calls'] = len(calls)
        longest = max(calls, key=lambda c: c[1] - c[0])
        out['longest_publish_call_s'] = round(longest[1] - longest[0], 3)
        if began is not None:
            out['longest_publish_call_began_after_stop_s'] = round(longest[0] - began, 2)
    if began is not None:
        failed = [c for c in calls if c[3] is not None and c[1] >= began]
        out['failed_publish_calls_after_stop'] = len(failed)
        out['failed_publish_calls_before_stop'] = len(
            [c for c in calls if c[3] is not None and c[1] < began])
        if failed:
            out['first_failure'] = {
                'began_after_stop_s': round(failed[0][0] - began, 2),
                'blocked_s': round(failed[0][1] - failed[0][0], 3), 'error': failed[0][3]}
            out['last_failure_after_stop_s'] = round(failed[-1][1] - began, 2)
            out['failures_sample'] = sorted({c[3] for c in failed})[:4]
        old, new = s.get('_old', frozenset()), s.get('_new', frozenset())
        out['filter_sockets_before_stop'] = sorted(old)
        out['filter_sockets_after_load'] = sorted(new)
        gone = timeline.first(lambda state: not (old & state), since=began) if old else None
        reached = timeline.first(lambda state: bool(new & state), since=began) \
            if new and not (new & old) else None
        out['old_connection_closed_after_s'] = round(gone - began, 2) if gone else None
        out['new_connection_open_after_s'] = round(reached - began, 2) if reached else None
        # the first publish confirmed after the old connection was gone and the new
        # one was there: it went through the new node
        via_new = [c for c in calls if c[3] is None and gone and reached and
                   c[1] >= max(gone, reached)]
        out['published_through_another_node_after_s'] = \
            round(via_new[0][1] - began, 2) if via_new else None
        if via_new and gone:
            out['published_through_another_node_after_connection_lost_s'] = \
                round(via_new[0][1] - gone, 2)
        # how long the sender published nothing while the node went away (the
        # load kept the journal busy: every gap between two publishes of the load
        # that ends after the stop began)
        load_done = s.get('_load_done', float('inf'))
        ok_ends = [c[1] for c in calls if c[3] is None and c[1] <= load_done]
        gaps = [b - a for a, b in zip(ok_ends, ok_ends[1:]) if b >= began]
        out['longest_publish_pause_after_stop_s'] = round(max(gaps), 2) if gaps else None
        before = [b - a for a, b in zip(ok_ends, ok_ends[1:]) if b < began and
                  a >= began - STOP_AFTER + 1.0]
        out['longest_publish_pause_before_stop_s'] = round(max(before), 3) if before else None
    if items:
        ids = [i['message_id'] for i in items]
        out['events_received'] = len(items)
        out['unique_message_ids'] = len(set(ids))
        out['duplicates'] = len(ids) - len(set(ids))
    if began is not None and latencies:
        window = sorted(d for t, d in latencies
                        if began <= t <= s.get('_load_done', float('inf')))
        if window:
            out['request_ms_from_stop_to_end_of_load'] = {
                'n': len(window), 'p50': round(1000 * window[len(window) // 2], 1),
                'p99': round(1000 * window[int(len(window) * 0.99)], 1),
                'max': round(1000 * window[-1], 1)}
    out['log_warnings'] = [r for r in logs.records
                           if ' WARNING ' in r or ' ERROR ' in r][:10]
    return out


@pytest.mark.parametrize('leaf', ['plain', 'batch'])
def test_filter_keeps_every_event_when_its_node_is_stopped(cluster, tmp_path, leaf):
    tag = uuid.uuid4().hex[:8]
    exchange = 'an_cluster_%s_%s' % (leaf, tag)
    topic = 'audit_cluster_%s_%s' % (leaf, tag)
    pid = os.getpid()
    keys = {'oslo_config_config': _filter_conf(exchange), 'driver': 'messagingv2',
            'transport_url': cluster.transport_url(), 'formats': 'cadf', 'topics': topic,
            'journal_dir': str(tmp_path / 'journal'), 'retry': '0', 'stats_interval': '0'}
    keys['rabbit_batch_publish'] = 'true' if leaf == 'batch' else 'false'
    mw = filter_factory({}, **keys)(_image_app)
    publishes = PublishLog(mw.delivery)
    server = AppServer(mw).start()
    load = Load(server.port)
    listener = None
    stopped = None
    s: dict = {}                # what each phase found (the report)
    logs = LogRecords()
    timeline = PortTimeline(watched=cluster.ports).start()
    try:
        with logs:
            # 1. warm-up: the sender connects; which node is it on?
            load.sequential(WARMUP_CALLS)
            assert mw.delivery.flush(GENEROUS), mw.delivery.snapshot()
            assert mw.delivery.leaves['cadf'].batched == (leaf == 'batch')
            before = wait_until(lambda: _our_connections(cluster, pid), timeout=GENEROUS,
                                message='no connection of this process on any node')
            s['publishing_node_before'] = sorted(before)
            assert len(before) == 1, 'connections of the filter on several nodes: %s' % before
            node = next(iter(before))
            index = cluster.nodes.index(node)
            others = [i for i in range(cluster.size) if i != index]

            # 2. the listener, on the two other nodes
            listener = ListenerProcess(_url_of(cluster, others), exchange, [topic],
                                       rabbit=LISTENER_RABBIT,
                                       log_path=tmp_path / 'listener.log').start(GENEROUS)
            listener.wait_until(lambda items: len(items) >= WARMUP_CALLS, GENEROUS,
                                'the warm-up events')

            # 3. load; the filter's node stopped under it; the load goes on
            load.start()
            wait_until(lambda: load.elapsed() >= STOP_AFTER, timeout=GENEROUS)
            s['calls_before_stop'] = len(load.answered)
            s['queue_leader_before_stop'] = _queues(cluster, ['%s.info' % topic]).get(
                '%s.info' % topic, {}).get('leader')
            # the filter's connection to the node, as this process's sockets show it
            s['_old'] = frozenset(c for c in timeline.sample()
                                  if c[1] == cluster.ports[index])
            assert s['_old'], 'no socket of this process to %s: %s' % (node, timeline.changes)
            s['_stop_began'] = time.monotonic()
            stopped = cluster.stop_node(index)
            s['_stop_done'] = time.monotonic()
            s['stop_node_seconds'] = round(s['_stop_done'] - s['_stop_began'], 2)
            at_stop_done = len(load.answered)
            assert stopped == node and not cluster.is_running(index)
            wait_until(lambda: load.elapsed() >= LOAD_SECONDS and
                       time.monotonic() - s['_stop_done'] >= LOAD_AFTER_STOP,
                       timeout=GENEROUS)
            load.stop()
            s['_load_done'] = time.monotonic()
            # the filter's connection(s) now (no other client of this process is open)
            s['_new'] = frozenset(timeline.sample())
            s['load_seconds'] = round(load.elapsed(), 1)
            during = dict(load.answered)
            s['calls_answered_while_node_down'] = len(during) - at_stop_done
            s['calls_answered_by_end_of_load'] = len(during)
            s['load_rate_per_s'] = round((len(during) - WARMUP_CALLS) / load.elapsed(), 1)

            # 4. only two nodes run: everything flushed, through another node
            assert not cluster.is_running(index)
            flush_began = time.monotonic()
            flushed = mw.delivery.flush(GENEROUS)
            s['flush_seconds'] = round(time.monotonic() - flush_began, 2)
            s['flushed_with_node_down'] = flushed
            s['snapshot_after_flush'] = {k: v for k, v in mw.delivery.snapshot().items()
                                         if k not in ('pid',)}
            assert flushed, 'flush() with %s down: %s' % (node, mw.delivery.snapshot())
            assert not cluster.is_running(index), 'the stopped node came back by itself'
            after = wait_until(lambda: _our_connections(cluster, pid), timeout=GENEROUS,
                               message='no connection of this process on a running node')
            s['publishing_nodes_after'] = sorted(after)
            assert node not in after, (node, after)
            listener.wait_until(
                lambda got: set(during) <= {i['request_id'] for i in got}, GENEROUS,
                'the events of all %d calls answered during the load' % len(during))
            s['listener_nodes'] = sorted(_our_connections(cluster, listener.pid))
            assert node not in s['listener_nodes']
            assert not cluster.is_running(index)

            # 5. the node back; the filter goes on
            cluster.start_node(index)
            stopped = None
            load.sequential(TAIL_CALLS)
            assert mw.delivery.flush(GENEROUS), mw.delivery.snapshot()
            expected = dict(load.answered)
            listener.wait_until(lambda got: set(expected) <= {i['request_id'] for i in got},
                                GENEROUS, 'the events of the calls after the restart')
            # what was delivered was acknowledged: nothing left to be redelivered

            def drained():
                qs = _queues(cluster, listener.queue_names())
                return qs if qs and not any(q['messages'] for q in qs.values()) else None
            queues = wait_until(drained, timeout=GENEROUS,
                                message='messages left in the quorum queues')
            s['queue_leaders_end'] = sorted({q['leader'] for q in queues.values()})
            s['publishing_nodes_end'] = sorted(_our_connections(cluster, pid))
            counters = dict(mw.delivery.counters)
            s['counters'] = {k: counters[k] for k in (
                'journaled', 'built', 'sent', 'dropped', 'dead_letters', 'send_errors',
                'build_errors')}
            s['outages'] = mw.delivery.snapshot().get('outages')
    finally:
        timeline.stop()
        try:
            load.stop()
        except AssertionError:
            pass
        server.stop()
        mw.delivery.close(10.0)
        items = listener.items if listener is not None else []
        if listener is not None:
            listener.stop()
        if stopped is not None:
            cluster.start_node(stopped)
        try:
            s['queues_left'] = _delete(
                cluster, ListenerProcess('', exchange, [topic]).queue_names(), exchange)
        except Exception as exc:                      # the session ends the cluster anyway
            s['cleanup_error'] = repr(exc)
        s['calls_answered'] = len(load.answered)
        s['statuses'] = dict(load.statuses)
        s['request_errors'] = load.errors[:3]
        REPORT[leaf] = _figures(s, publishes, items, logs, timeline, list(load.latencies))

    # -- assertions on what the listener received ---------------------------------------
    assert not load.errors, load.errors[:5]
    assert s['calls_answered_while_node_down'] > 0, s
    assert dict(load.statuses) == {204: len(expected)}, load.statuses
    assert counters['dropped'] == 0 and counters['dead_letters'] == 0, counters
    assert counters['build_errors'] == 0, counters
    assert REPORT[leaf]['published_through_another_node_after_s'] is not None, REPORT[leaf]
    assert not s['queues_left'], s['queues_left']

    # exactly one CADF event per answered call (a duplicate is the same message_id)
    by_request = collections.defaultdict(set)
    for item in items:
        by_request[item['request_id']].add(item['message_id'])
        assert item['event_type'] == EVENT_TYPE, item
        assert item['target_id'] == expected.get(item['request_id'], item['target_id'])
    unknown = set(by_request) - set(expected)
    assert not unknown, 'events of calls that were never made: %s' % sorted(unknown)[:5]
    missing = set(expected) - set(by_request)
    assert not missing, '%d answered calls have no event' % len(missing)
    several = {r: m for r, m in by_request.items() if len(m) != 1}
    assert not several, 'calls with more than one distinct event: %s' % list(several.items())[:5]

    # in call order per image (first arrival of each message)
    seen: set = set()
    arrival = collections.defaultdict(list)
    for item in items:
        if item['message_id'] in seen:
            continue
        seen.add(item['message_id'])
        arrival[item['target_id']].append(item['request_id'])
    assert set(arrival) == set(load.per_image)
    for image, request_ids in load.per_image.items():
        assert arrival[image] == request_ids, 'order of %s differs' % image
