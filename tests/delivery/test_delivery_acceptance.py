"""Issue 4 acceptance: delivery through outages, restarts, forks and a full spool.

Everything runs against the REAL RabbitMQ on 127.0.0.1:5672 (``broker`` mark; with
``CI=true`` an unreachable broker fails the tests instead of skipping them).  The
filter is served by cheroot or gunicorn in a subprocess (``delivery_server.py``),
driven by a paced HTTP load (``delivery_harness.Load``) and observed by a real
oslo.messaging notification listener.  Every event is matched to its HTTP call by the
CADF ``initiator.request_id`` (the app echoes the client's ``X-Test-Request-Id``).

Measured numbers (latencies, spooled/replayed counts, drain times, duplicates) are
collected in ``delivery_harness.REPORT`` and printed in pytest's terminal summary.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import time

import pytest

import delivery_harness as dh

pytestmark = pytest.mark.broker

PUBLISHER = 'image.delivery-test'


def _paste(topic: str, **extra) -> dict:
    keys = {'driver': 'messagingv2', 'topics': topic, 'formats': 'cadf',
            'publisher_id': PUBLISHER, 'retry': '0', 'stats_interval': '0'}
    keys.update({k: str(v) for k, v in extra.items()})
    return keys


def _server(tmp_path, broker, names, spool_dir=None, kind='cheroot', gunicorn_args=(),
            **paste) -> dh.Server:
    exchange, topic = names
    return dh.Server(tmp_path, {
        'spool_dir': spool_dir or str(tmp_path / 'spool'), 'exchange': exchange,
        'transport_url': broker.transport_url, 'rabbit': dh.SERVER_RABBIT,
        'paste': _paste(topic, **paste)}, kind=kind, gunicorn_args=gunicorn_args)


def _report(name: str, **values) -> None:
    dh.REPORT.setdefault(name, {}).update(values)
    print('\n[%s] %s' % (name, json.dumps(values, sort_keys=True, default=str)))


def _log_lines(text: str, pattern: str) -> list[str]:
    rx = re.compile(pattern)
    return [line for line in text.splitlines() if rx.search(line)]


def _missing(calls, listener) -> list:
    return [c for c in calls if c.ok and c.request_id not in listener.request_ids]


# ---------------------------------------------------------------------------------------
# 1. a 30 s outage under steady load
# ---------------------------------------------------------------------------------------
OUTAGE_SECONDS = 30.0
RATE = 150.0


def test_outage_under_load_loses_nothing_and_keeps_latency(tmp_path, broker, names,
                                                           listener, servers, outage):
    problems = []          # checks that do not stop the scenario; asserted at the end
    spool_dir = str(tmp_path / 'spool')
    server = _server(tmp_path, broker, names, spool_dir)
    servers.append(server.start())
    load = dh.Load(server.port, rate=RATE, threads=4).start()
    loaded = time.monotonic()
    time.sleep(6.0)

    stop_began, stop_done = outage.stop_app()
    outage_at = time.monotonic()
    # mid-outage: the stats file (rewritten every few seconds) shows the backlog
    time.sleep(OUTAGE_SECONDS * 0.6)
    during_snap = None
    try:
        during = dh.wait_stats(spool_dir, lambda f: any(
            s['spooled_unsent'] > 0 and s['bus_down'] for s in f.values()),
            max(1.0, OUTAGE_SECONDS - 3 - (time.monotonic() - outage_at)),
            'a backlog while the bus is down')
        during_snap = list(during.values())[0]
    except AssertionError as exc:
        problems.append('mid-outage stats file: %s' % exc)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_at)))
    start_began, start_done = outage.start_app()
    time.sleep(10.0)
    calls = load.stop()
    load_end = time.monotonic()
    outage.check_outage(OUTAGE_SECONDS - 1.0)

    ok = [c for c in calls if c.ok]
    assert len(ok) == len(calls), 'calls failed: %s' % [(c.method, c.status, c.error)
                                                        for c in calls if not c.ok][:5]
    drained = listener.wait_for_requests({c.request_id for c in ok}, 60.0)
    listener.quiet(1.0)
    received = listener.snapshot()

    # every event (one CADF event per call) arrived, at least once
    assert not _missing(calls, listener)
    ours = [r for r in received if r.publisher_id == PUBLISHER]
    unique = {r.message_id for r in ours}
    assert len(unique) == len(ok), (len(unique), len(ok))
    # ... in the order of the calls, per resource
    assert dh.order_violations(calls, received) == []

    # request latency: during the outage not more than a few ms above before it
    before = [c for c in calls if loaded + 1.0 <= c.started < stop_began]
    in_outage = [c for c in calls if stop_began <= c.started <= start_done]
    after = [c for c in calls if c.started > start_done]
    lat_before = dh.latency_summary(before)
    lat_during = dh.latency_summary(in_outage)
    lat_after = dh.latency_summary(after)

    # delivery after the bus came back: when had every event of a call made before
    # start_app returned arrived?
    first_arrival = {}
    for r in received:
        first_arrival.setdefault(r.request_id, r.arrived)
    backlog = [c for c in ok if c.started <= start_done]
    drain_after_start = max(first_arrival[c.request_id] for c in backlog) - start_done

    # stats (the running process's stats file): everything spooled was replayed
    stats = None
    try:
        final = dh.wait_stats(spool_dir, lambda f: any(
            s['queued'] == len(ok) and s['replayed'] == s['spooled'] and
            s['spooled_unsent'] == 0 and s['queue_depth'] == 0 for s in f.values()),
            12.0, 'the final counters, replayed == spooled')
        stats = [s for s in final.values() if s['queued'] == len(ok)][0]
    except AssertionError as exc:
        problems.append('stats file while running: %s' % exc)
    server.stop(signal.SIGTERM)
    leftover = dh.spool_segments(spool_dir)
    log = server.log()
    outage_warnings = _log_lines(log, r'WARNING audit_notifier.*unreachable')
    back_lines = _log_lines(log, r'audit_notifier.*is back after')
    problem_lines = _log_lines(log, r' (WARNING|ERROR|CRITICAL) ')

    _report('outage', rate_per_s=round(len(calls) / (load_end - loaded), 1),
            calls=len(calls), received=len(received), unique=len(unique),
            duplicates=len(received) - len(unique),
            stop_app_s=round(stop_done - stop_began, 2),
            start_app_s=round(start_done - start_began, 2),
            latency_before=lat_before, latency_during=lat_during, latency_after=lat_after,
            stats_mid_outage=during_snap and {k: during_snap[k] for k in (
                'queued', 'sent', 'spooled', 'spooled_unsent', 'send_errors', 'queue_depth',
                'oldest_unsent_age', 'bus_down')},
            stats_final=stats and {k: stats[k] for k in (
                'queued', 'built', 'sent', 'spooled', 'replayed', 'dropped', 'send_errors',
                'queue_depth', 'spooled_unsent', 'oldest_unsent_age', 'outages')},
            backlog_delivered_s_after_start_app=round(drain_after_start, 2),
            waited_for_listener_s=round(drained, 2),
            log_outage_warnings=len(outage_warnings), log_back_lines=len(back_lines),
            log_warning_or_error_lines=len(problem_lines))

    assert lat_during['median_ms'] < lat_before['median_ms'] + 5, (lat_before, lat_during)
    assert lat_during['p99_ms'] < lat_before['p99_ms'] + 20, (lat_before, lat_during)

    assert leftover == [], 'spool segments left after a clean stop: %s' % leftover
    if stats is not None:
        assert stats['spooled'] > 0
        assert stats['replayed'] == stats['spooled']
        assert stats['dropped'] == 0
        assert stats['queued'] == len(ok) and stats['built'] == len(ok)
        assert stats['sent'] == len(ok)
        assert stats['spooled_unsent'] == 0 and stats['queue_depth'] == 0
        assert stats['oldest_unsent_age'] == 0
        assert stats['send_errors'] >= 1 and 1 <= stats['outages'] <= 2
    if during_snap is not None:
        assert during_snap['bus_down'] is True and during_snap['send_errors'] >= 1
        assert during_snap['oldest_unsent_age'] >= OUTAGE_SECONDS * 0.4, during_snap

    # one warning when the outage starts, one line when it ends: not one per event
    assert 1 <= len(outage_warnings) <= 2, outage_warnings
    assert 1 <= len(back_lines) <= 2, back_lines
    assert len(problem_lines) < max(20, len(ok) // 40), problem_lines[:40]
    assert not problems, problems


# ---------------------------------------------------------------------------------------
# 2. SIGTERM (queue mode) and SIGKILL (write_ahead mode) mid-load, restart on the spool
# ---------------------------------------------------------------------------------------
def _kill_and_restart(server, sig) -> dict:
    began = time.monotonic()
    code = server.stop(sig, timeout=20)
    stopped = time.monotonic()
    server.start()
    return {'signal': signal.Signals(sig).name, 'exit_s': round(stopped - began, 2),
            'restart_s': round(time.monotonic() - stopped, 2), 'exit_code': code}


def _restart_scenario(tmp_path, broker, names, listener, servers, outage, mode, sig):
    spool_dir = str(tmp_path / 'spool')
    server = _server(tmp_path, broker, names, spool_dir, delivery_mode=mode)
    servers.append(server.start())
    load = dh.Load(server.port, rate=RATE, threads=4).start()
    steps = []
    time.sleep(2.0)
    steps.append(_kill_and_restart(server, sig))           # the bus is up
    time.sleep(1.5)
    outage.stop_app()                                       # events now queue and spool
    time.sleep(1.5)
    steps.append(_kill_and_restart(server, sig))           # ... and the process dies
    time.sleep(1.5)
    outage.start_app()
    time.sleep(2.0)
    calls = load.stop()
    ok = [c for c in calls if c.ok]
    failed = [c for c in calls if not c.ok]
    try:
        waited = listener.wait_for_requests({c.request_id for c in ok}, 30.0)
    except AssertionError:
        waited = None
    listener.quiet(1.0)
    received = listener.snapshot()
    live_pid = server.proc.pid
    try:          # the last process's counters (its stats file, rewritten every few s)
        files = dh.wait_stats(spool_dir, lambda f: any(
            st['pid'] == live_pid and st['spooled_unsent'] == 0 and st['queue_depth'] == 0
            and st['replayed'] >= st['spooled'] for st in f.values()), 7.0,
            'the restarted process drained')
        live = [st for st in files.values() if st['pid'] == live_pid][0]
    except AssertionError as exc:
        files, live = dh.stats_files(spool_dir), {'problem': str(exc)}
    dead = [st for st in files.values() if st['pid'] != live_pid]
    server.stop(signal.SIGTERM)
    missing = _missing(calls, listener)
    unique = {r.message_id for r in received}
    _report('restart_%s_%s' % (mode, signal.Signals(sig).name), calls=len(calls),
            ok=len(ok), failed_calls=len(failed), received=len(received),
            unique=len(unique), duplicates=len(received) - len(unique),
            missing=len(missing), waited_for_listener_s=waited and round(waited, 2),
            processes=server.pids, steps=steps,
            stats={name: {k: st[k] for k in ('queued', 'sent', 'spooled', 'replayed',
                                              'dropped', 'spooled_unsent')}
                   for name, st in files.items()},
            live_stats=live,
            leftover_segments=[os.path.basename(p) for p in dh.spool_segments(spool_dir)])
    assert len(server.pids) == 3
    assert not missing, ('%d of %d successful calls have no event at the listener; '
                         'first: %s' % (len(missing), len(ok), [
                             (round(c.started - calls[0].started, 3), c.method,
                              c.request_id) for c in missing[:10]]))
    assert len(unique) >= len(ok)
    assert dh.order_violations(calls, received) == []
    for name, st in files.items():
        assert st['dropped'] == 0, (name, st)
    assert dh.spool_segments(spool_dir) == [], 'spool segments left after a clean stop'
    assert 'problem' not in live, live['problem']
    if mode == 'queue':
        # the SIGTERMed processes left their backlog on the spool; the next process
        # claimed it (and removed their stale stats files): it replayed its own spooled
        # records plus the adopted ones
        assert dead == [], 'stats files of dead processes left after adoption: %s' % dead
        assert live['replayed'] > live['spooled'], live
    return files


def test_sigterm_mid_load_queue_mode_loses_no_acknowledged_event(
        tmp_path, broker, names, listener, servers, outage):
    _restart_scenario(tmp_path, broker, names, listener, servers, outage, 'queue',
                      signal.SIGTERM)


def test_sigkill_mid_load_write_ahead_loses_nothing(tmp_path, broker, names, listener,
                                                     servers, outage):
    _restart_scenario(tmp_path, broker, names, listener, servers, outage, 'write_ahead',
                      signal.SIGKILL)


# ---------------------------------------------------------------------------------------
# 3. a forking server: gunicorn, 2 sync workers
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize('preload', [True, False], ids=['preload', 'no_preload'])
def test_gunicorn_workers_all_deliver(tmp_path, broker, names, listener, servers, preload):
    spool_dir = str(tmp_path / 'spool')
    args = ('-w', '2', '-k', 'sync') + (('--preload',) if preload else ())
    server = _server(tmp_path, broker, names, spool_dir, kind='gunicorn', gunicorn_args=args)
    servers.append(server.start())
    load = dh.Load(server.port, rate=100.0, threads=4, keepalive=False).start()
    time.sleep(3.0)
    calls = load.stop()
    ok = [c for c in calls if c.ok]
    assert len(ok) == len(calls), [(c.status, c.error) for c in calls if not c.ok][:5]
    workers = {c.worker for c in ok}
    waited = listener.wait_for_requests({c.request_id for c in ok}, 30.0)
    per_worker = {w: sum(1 for c in ok if c.worker == w) for w in workers}
    # each worker has its own spool owner and stats file (rewritten every few seconds)
    try:
        files = dh.wait_stats(spool_dir, lambda f: {
            st['pid']: st['sent'] for st in f.values()} == per_worker, 7.0,
            'one stats file per worker with its sent count')
    except AssertionError as exc:
        files = {'problem': str(exc)}
    server.stop(signal.SIGTERM)                      # graceful: workers exit normally
    received = listener.snapshot()
    delivered = {w: sum(1 for c in ok if c.worker == w and c.request_id in
                        listener.request_ids) for w in workers}
    by_pid = {st['pid']: st for st in files.values() if isinstance(st, dict)}
    _report('gunicorn_%s' % ('preload' if preload else 'no_preload'),
            master=server.pids[0], workers=sorted(workers), calls_per_worker=per_worker,
            delivered_per_worker=delivered, received=len(received),
            waited_for_listener_s=round(waited, 2),
            stats={pid: {k: st[k] for k in ('queued', 'sent', 'spooled', 'dropped')}
                   for pid, st in by_pid.items()})
    assert len(workers) == 2 and server.pids[0] not in workers, workers
    assert delivered == per_worker
    assert len({r.message_id for r in received}) == len(ok)
    assert set(by_pid) == workers, files
    for pid in workers:
        assert by_pid[pid]['queued'] == per_worker[pid], (pid, by_pid[pid])
        assert by_pid[pid]['sent'] == per_worker[pid], (pid, by_pid[pid])
        assert by_pid[pid]['dropped'] == 0
    assert 'Process forked after connection established' not in server.log()


# ---------------------------------------------------------------------------------------
# in-process filters (tests 4, 5 and the shutdown race)
# ---------------------------------------------------------------------------------------
CLOSED_PORT_URL = 'rabbit://guest:guest@127.0.0.1:1/'     # the bus is down, RabbitMQ untouched


def _filter(spool_dir, transport_url, names, **paste):
    import delivery_server
    exchange, topic = names
    return delivery_server.build({'exchange': exchange, 'spool_dir': spool_dir,
                                  'transport_url': transport_url, 'rabbit': dh.SERVER_RABBIT,
                                  'paste': _paste(topic, **paste)})


def _post(app, rid):
    app.post('/v2/images', '{"name": "x"}', content_type='application/json',
             headers={'X-Test-Request-Id': rid, 'X-User-Id': 'u-load'})


def _spooled_request_ids(spool_dir) -> list[str]:
    """Request ids of the records in the spool segments, oldest first."""
    out = []
    for path in sorted(dh.spool_segments(spool_dir),
                       key=lambda p: (p.rsplit('-', 2)[-2], p)):
        with open(path, 'rb') as f:
            for line in f.read().split(b'\n')[:-1]:
                rec = json.loads(line)
                out.append(rec['envelope']['payload']['initiator']['request_id'])
    return out


def _wait_snapshot(dispatcher, predicate, timeout, what) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        snap = dispatcher.snapshot()
        if predicate(snap):
            return snap
        if time.monotonic() >= deadline:
            raise AssertionError('snapshot: waited %.0f s for %s; have %s'
                                 % (timeout, what, snap))
        time.sleep(0.05)


def _wait_settled(dispatcher, n, timeout) -> dict:
    """All ``n`` notifications built and handed to the spool or dropped: queues empty
    and the counters unchanged for 0.3 s."""
    keys = ('built', 'sent', 'spooled', 'dropped', 'queue_depth', 'spooled_unsent')
    last = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = dispatcher.snapshot()
        key = tuple(snap[k] for k in keys)
        if snap['built'] == n and snap['queue_depth'] == 0 and key == last:
            return snap
        last = key
        time.sleep(0.3)
    raise AssertionError('snapshot did not settle in %.0f s: %s' % (timeout, snap))


def _messages(caplog, text) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


# ---------------------------------------------------------------------------------------
# 4. the spool cap and each overflow policy
# ---------------------------------------------------------------------------------------
SPOOL_CAP = 64 * 1024
BLOCK_SECONDS = 0.2


@pytest.mark.parametrize('policy', ['drop_oldest', 'drop_newest', 'block'])
def test_spool_cap_and_overflow_policy(tmp_path, broker, names, listener, caplog, policy):
    import webtest
    caplog.set_level(logging.INFO, logger='audit_notifier')
    spool_dir = str(tmp_path / 'spool')
    # a CADF record is ~790 bytes: ~82 fit.  block: enough overflow (~18 x
    # spool_block_seconds) that the shard is still waiting when `mid` is taken
    n = 100 if policy == 'block' else 110
    mw = _filter(spool_dir, CLOSED_PORT_URL, names, sender_threads=1,
                 spool_max_bytes=SPOOL_CAP, spool_overflow=policy,
                 spool_block_seconds=BLOCK_SECONDS)
    dispatcher = mw.dispatcher
    mw2 = None
    try:
        app = webtest.TestApp(mw)
        tag = os.urandom(3).hex()
        rids = ['req-cap-%s-%04d' % (tag, i) for i in range(n)]
        began = time.monotonic()
        for rid in rids:
            _post(app, rid)
        calls_s = time.monotonic() - began
        time.sleep(0.1)
        mid = dispatcher.snapshot()      # block: the shard waits, the rest queues up
        snap = _wait_settled(dispatcher, n, 30.0)
        handled_s = time.monotonic() - began - 0.3
        kept_rids = _spooled_request_ids(spool_dir)
        kept = len(kept_rids)
        spool_bytes = sum(os.path.getsize(p) for p in dh.spool_segments(spool_dir))
        overflow_lines = _messages(caplog, 'spool is full')
        down_lines = _messages(caplog, 'message bus is unreachable')
        _report('overflow_%s' % policy, submitted=n, kept=kept, spool_bytes=spool_bytes,
                cap=SPOOL_CAP, calls_s=round(calls_s, 3), handled_s=round(handled_s, 2),
                snapshot={k: snap[k] for k in ('queued', 'built', 'sent', 'spooled',
                                               'dropped', 'send_errors', 'spooled_unsent')},
                queue_depth_mid=mid['queue_depth'],
                overflow_log_lines=overflow_lines, kept_first=kept_rids[:1],
                kept_last=kept_rids[-1:])
        assert 0 < kept < n
        assert spool_bytes <= SPOOL_CAP
        assert snap['queued'] == n and snap['built'] == n
        assert snap['sent'] == 0 and snap['replayed'] == 0 and snap['send_errors'] >= 1
        assert snap['spooled_unsent'] == kept
        assert snap['dropped'] == n - kept
        if policy == 'drop_oldest':
            assert snap['spooled'] == n
            assert kept_rids == rids[-kept:], 'drop_oldest must keep the NEWEST records'
        else:
            assert snap['spooled'] == kept
            assert kept_rids == rids[:kept], '%s must keep the OLDEST records' % policy
            assert SPOOL_CAP - spool_bytes < 900, 'the spool was not filled up to its cap'
        if policy == 'block':
            assert mid['queue_depth'] > 0, mid
            # each overflowing notification waited about spool_block_seconds
            assert handled_s >= (n - kept) * BLOCK_SECONDS * 0.9
            assert handled_s <= (n - kept) * BLOCK_SECONDS + 5.0
        assert len(overflow_lines) == 1, overflow_lines
        assert len(down_lines) == 1, down_lines
        assert calls_s < 5.0                      # the request path never waited

        # the bus is back (another process, a reachable transport): the kept records
        # are adopted and delivered in order, before the new call's event
        dispatcher.close(2.0)
        mw2 = _filter(spool_dir, broker.transport_url, names, sender_threads=1)
        trigger = 'req-cap-%s-trigger' % tag
        _post(webtest.TestApp(mw2), trigger)
        listener.wait_for_requests(set(kept_rids) | {trigger}, 30.0)
        listener.quiet(0.5)
        order = []
        for r in listener.snapshot():
            if r.request_id not in order:
                order.append(r.request_id)
        assert order == kept_rids + [trigger]
        snap2 = _wait_snapshot(mw2.dispatcher, lambda s: s['spooled_unsent'] == 0, 10.0,
                               'the adopted spool sent')
        # (the new call's event may queue behind the adopted backlog: spooled 0 or 1)
        assert snap2['replayed'] == kept + snap2['spooled'] and snap2['sent'] == kept + 1
        assert snap2['dropped'] == 0
    finally:
        dispatcher.close(2.0)
        if mw2 is not None:
            mw2.dispatcher.close(5.0)


# ---------------------------------------------------------------------------------------
# 5. the counters through an outage
# ---------------------------------------------------------------------------------------
def test_stats_counters_through_an_outage(tmp_path, broker, names, listener, outage):
    import webtest
    spool_dir = str(tmp_path / 'spool')
    mw = _filter(spool_dir, broker.transport_url, names, sender_threads=2)
    d = mw.dispatcher
    app = webtest.TestApp(mw)
    zero = {'queued': 0, 'built': 0, 'sent': 0, 'spooled': 0, 'replayed': 0, 'dropped': 0,
            'send_errors': 0, 'build_errors': 0, 'queue_depth': 0, 'spooled_unsent': 0,
            'oldest_unsent_age': 0.0}
    try:
        snap0 = d.snapshot()
        assert {k: snap0[k] for k in zero} == zero
        tag = os.urandom(3).hex()
        first = ['req-st-%s-a%02d' % (tag, i) for i in range(20)]
        for rid in first:
            _post(app, rid)
        assert d.flush(10.0)
        snap1 = d.snapshot()
        assert {k: snap1[k] for k in zero} == dict(zero, queued=20, built=20, sent=20)
        assert snap1['bus_down'] is False

        outage.stop_app()
        down_at = time.time()
        second = ['req-st-%s-b%02d' % (tag, i) for i in range(30)]
        for rid in second:
            _post(app, rid)
        _wait_snapshot(d, lambda s: s['spooled'] == 30, 20.0, '30 spooled')
        time.sleep(2.0)
        snap2 = d.snapshot()
        age_bound = time.time() - down_at + 1.5
        expected2 = dict(zero, queued=50, built=50, sent=20, spooled=30, spooled_unsent=30,
                         send_errors=snap2['send_errors'],
                         oldest_unsent_age=snap2['oldest_unsent_age'])
        assert {k: snap2[k] for k in zero} == expected2
        assert snap2['send_errors'] >= 1 and snap2['bus_down'] is True
        assert 2.0 <= snap2['oldest_unsent_age'] <= age_bound, snap2
        stats_file_problem = None
        try:      # the same values in <spool_dir>/<process>.stats.json (every few seconds)
            dh.wait_stats(spool_dir, lambda f: any(
                s['spooled_unsent'] == 30 and s['bus_down'] and s['queued'] == 50 and
                s['sent'] == 20 and s['spooled'] == 30 for s in f.values()), 7.0,
                          'spooled_unsent == 30 in the stats file')
        except AssertionError as exc:
            stats_file_problem = str(exc)

        began, back_at = outage.start_app()
        snap3 = _wait_snapshot(d, lambda s: s['replayed'] == 30 and s['spooled_unsent'] == 0,
                               20.0, 'the backlog replayed')
        replay_s = time.monotonic() - back_at
        listener.wait_for_requests(set(first + second), 20.0)
        assert {k: snap3[k] for k in zero} == dict(
            zero, queued=50, built=50, sent=50, spooled=30, replayed=30,
            send_errors=snap3['send_errors'])
        assert snap3['send_errors'] >= snap2['send_errors']
        assert snap3['bus_down'] is False and snap3['outages'] == 1
        _report('stats', before=snap1, during=snap2, after=snap3,
                replayed_s_after_start_app=round(replay_s, 2),
                stats_file_problem=stats_file_problem)
        assert stats_file_problem is None, stats_file_problem
    finally:
        d.close(5.0)


# ---------------------------------------------------------------------------------------
# the shutdown race behind SIGTERM: calls answered while close() runs
# ---------------------------------------------------------------------------------------
def test_calls_answered_during_close_are_not_lost(tmp_path, broker, names, listener,
                                                  monkeypatch):
    """cheroot (like most threaded servers) keeps answering calls on its worker threads
    while the SIGTERM handler runs close(): their events must reach the bus or the
    spool, never vanish.  A slow bus (each publish takes 50 ms) makes close() last ~1 s."""
    import threading
    import webtest
    spool_dir = str(tmp_path / 'spool')
    mw = _filter(spool_dir, broker.transport_url, names, sender_threads=1)
    d = mw.dispatcher
    from audit_notifier.delivery import drivers
    publish_many = drivers.Publisher.publish_many

    def slow(self, envelopes):        # shards publish in batches: 50 ms per notification
        envelopes = list(envelopes)
        time.sleep(0.05 * len(envelopes))
        publish_many(self, envelopes)
    monkeypatch.setattr(drivers.Publisher, 'publish_many', slow)
    app = webtest.TestApp(mw)
    tag = os.urandom(3).hex()
    before = ['req-close-%s-a%02d' % (tag, i) for i in range(20)]
    during = ['req-close-%s-b%02d' % (tag, i) for i in range(10)]
    try:
        for rid in before:
            _post(app, rid)
        closer = threading.Thread(target=d.close, args=(10.0,))
        closer.start()
        time.sleep(0.1)
        for rid in during:
            _post(app, rid)
        assert closer.is_alive(), 'close() was too quick for this test'
        closer.join(15)
        spooled = set(_spooled_request_ids(spool_dir))
        try:
            listener.wait_for_requests(set(before + during) - spooled, 10.0)
        except AssertionError:
            pass
        lost = [rid for rid in before + during
                if rid not in listener.request_ids and rid not in spooled]
        _report('close_race', lost=len(lost), spooled=len(spooled),
                delivered=len(set(before + during) & listener.request_ids))
        assert not lost, '%d calls answered 2xx have no event on the bus nor in the spool: ' \
                         '%s' % (len(lost), lost)
    finally:
        d.close(5.0)
