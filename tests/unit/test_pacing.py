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

"""The sender's pacing (delivery/pacing.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from audit_notifier.delivery import pacing
from tests.support.clock import Clock


class Load:
    """The journal's append counter, moved by the test."""

    def __init__(self):
        self.appended = 0

    def __call__(self):
        return self.appended


@pytest.fixture
def clock(monkeypatch):
    """The pacer's monotonic clock, moved by the test."""
    fake = Clock()
    monkeypatch.setattr(pacing, 'monotonic', fake)
    return fake


@pytest.fixture
def make(clock):
    def make(max_rate=0.0, **kwargs):
        load = Load()
        return pacing.Pacer(load, max_rate, **kwargs), clock, load
    return make


def _arrive(clock, load, rate, seconds=pacing.WINDOW):
    """``rate`` records per second for ``seconds``."""
    clock.now += seconds
    load.appended += int(rate * seconds)


def test_idle_api_no_rest_and_whole_batches(make):
    pacer, clock, load = make()
    assert pacer.slice() == pacing.BATCH
    assert pacer.pause(100, cpu=0.05, wall=0.06) == 0.0
    clock.now += 5
    assert pacer.slice() == pacing.BATCH and not pacer.busy
    assert pacer.limit() is None
    assert pacer.gauges() == {'arrival_rate': 0.0, 'send_rate_limit': 0.0,
                              'paced_seconds': 0.0}


def test_busy_api_sender_takes_its_share_in_small_slices(make):
    pacer, clock, load = make()
    pacer.pause(100, cpu=0.01, wall=0.012)        # 100 us of CPU per record
    _arrive(clock, load, 100)                     # 100 records/s: floor 500/s
    assert pacer.slice() == int(pacing.SLICE_CPU / 0.0001)       # 10 records
    rest = pacer.pause(10, cpu=0.001, wall=0.0015)
    assert rest == pytest.approx(0.001 * (1 / pacing.BUSY_SHARE - 1))
    # the rate this aims at: a quarter of a CPU at 100 us per record
    assert pacer.limit() == pytest.approx(pacing.BUSY_SHARE / 0.0001)
    assert pacer.gauges()['arrival_rate'] == 100.0
    assert pacer.gauges()['paced_seconds'] == pytest.approx(rest)


def test_floor_wins_over_the_share(make):
    """Costly records (look-ups): the share would allow 125 records/s; arrivals at
    300/s need 1,500/s (aimed at: 1,800/s), so the sender does not rest at all."""
    pacer, clock, load = make()
    pacer.pause(10, cpu=0.02, wall=0.02)          # 2 ms per record
    _arrive(clock, load, 300)
    assert pacer.slice() == 1
    assert pacer.floor() == 5 * 300
    assert pacer.limit() == pytest.approx(1500 * pacing.FLOOR_AIM)
    assert pacer.pause(1, cpu=0.002, wall=0.002) == 0.0


def test_floor_bounds_the_rest(make):
    """A rest never takes a slice below five times the arrival rate (it aims at
    six times)."""
    pacer, clock, load = make()
    pacer.pause(10, cpu=0.0005, wall=0.0005)      # 50 us per record
    _arrive(clock, load, 100)                     # floor 500/s, aim 600/s
    aimed = 10 / (500 * pacing.FLOOR_AIM)         # 10 records in 16.7 ms
    share_rest = 0.004 * (1 / pacing.BUSY_SHARE - 1)          # 12 ms
    assert pacer.pause(10, cpu=0.004, wall=0.012) == pytest.approx(aimed - 0.012)
    assert share_rest > aimed - 0.012


def test_cap_limits_an_idle_api_too(make):
    pacer, clock, load = make(max_rate=200)
    assert pacer.slice() == int(200 * pacing.MAX_PAUSE)       # 50 records
    assert pacer.limit() == 200
    # 50 records at 200/s take 0.25 s: the slice took 0.01 s
    assert pacer.pause(50, cpu=0.005, wall=0.01) == pytest.approx(0.24)
    assert pacer.gauges()['send_rate_limit'] == 200.0


def test_cap_never_below_the_floor(make):
    pacer, clock, load = make(max_rate=200)
    pacer.pause(10, cpu=0.0001, wall=0.0001)
    _arrive(clock, load, 100)                     # floor 500/s above the cap
    pacer.slice()
    assert pacer.limit() == pytest.approx(500 * pacing.FLOOR_AIM)
    rest = pacer.pause(10, cpu=0.0001, wall=0.001)
    assert rest == pytest.approx(10 / (500 * pacing.FLOOR_AIM) - 0.001)


def test_rest_is_bounded(make):
    pacer, clock, load = make(max_rate=1)
    assert pacer.slice() == 1
    assert pacer.pause(1, cpu=0.0, wall=0.0) == pacing.MAX_PAUSE


def test_other_work_rests_by_share_only(make):
    """Import follows (no records): the share while busy, nothing while idle."""
    pacer, clock, load = make(max_rate=10)
    assert pacer.pause(0, cpu=0.004, wall=0.004) == 0.0
    _arrive(clock, load, 50)
    assert pacer.pause(0, cpu=0.004, wall=0.004) == pytest.approx(0.012)


def test_arrival_rate_is_the_last_whole_window(make):
    pacer, clock, load = make()
    _arrive(clock, load, 400)
    pacer.slice()
    assert pacer.arrival_rate == 400
    clock.now += pacing.WINDOW / 2               # half a window: the rate stays
    pacer.slice()
    assert pacer.arrival_rate == 400
    clock.now += pacing.WINDOW                   # a window without appends: idle
    pacer.slice()
    assert pacer.arrival_rate == 0 and not pacer.busy


def test_busy_and_drained_no_rest(make):
    """Everything sent while calls arrive: no rest, so the next call's events and
    its look-up are not delayed; with a backlog the floor bounds the rest."""
    pacer, clock, load = make(max_rate=10)
    pacer.pause(1, cpu=0.0001, wall=0.0001)
    _arrive(clock, load, 1000)                    # floor 5,000/s
    pacer.slice()
    assert pacer.pause(2, cpu=0.0002, wall=0.001, drained=True) == 0.0
    # with a backlog: 2 records at 5,000/s (aimed at: 6,000/s)
    assert pacer.pause(2, cpu=0.0002, wall=0.0001) == pytest.approx(
        2 / (5000 * pacing.FLOOR_AIM) - 0.0001)


def test_gather_only_when_another_record_is_expected_in_time(make):
    """After a slice that read the journal to its end the sender gathers for
    GATHER seconds only if, at the arrival rate, one more record comes by then."""
    pacer, clock, load = make()
    assert pacing.GATHER == 1.0                               # gather_seconds' default
    assert pacer.gather() == 0.0                              # idle: publish at once
    just_enough = 1.0 / pacing.GATHER                         # 1 record/s
    _arrive(clock, load, just_enough / 2, seconds=2.0)        # 0.5/s: none expected
    assert pacer.gather() == 0.0
    _arrive(clock, load, just_enough, seconds=2.0)
    assert pacer.gather() == pacing.GATHER
    _arrive(clock, load, 300)
    assert pacer.gather() == pacing.GATHER
    clock.now += 3 * pacing.WINDOW                            # requests stopped
    assert pacer.gather() == 0.0


def test_gather_window_is_the_option(make):
    """gather_seconds sets the window (and the rate from which it is used); 0
    turns gathering off at any rate."""
    pacer, clock, load = make(gather_seconds=0.25)
    _arrive(clock, load, 2, seconds=2.0)                      # 2/s: none in 0.25 s
    assert pacer.gather() == 0.0
    _arrive(clock, load, 4, seconds=2.0)                      # 4/s: one expected
    assert pacer.gather() == 0.25
    off, clock, load = make(gather_seconds=0.0)
    _arrive(clock, load, 300)
    assert off.gather() == 0.0


@pytest.fixture
def sleeps(monkeypatch, clock):
    """The pacer's sleeps, recorded; each moves the test's clock."""
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        clock.now += seconds
    monkeypatch.setattr(pacing, 'sleep', sleep)
    return slept


def test_yield_gil_after_a_run_of_work_while_requests_arrive(make, sleeps):
    pacer, clock, load = make()
    _arrive(clock, load, 150)
    pacer.slice()                                  # work starts: the clock of the run
    clock.now += pacing.YIELD_EVERY / 2
    pacer.yield_gil()
    assert sleeps == []                            # a short run: no yield
    clock.now += pacing.YIELD_EVERY
    pacer.yield_gil()
    assert sleeps == [pacing.YIELD_REST]
    pacer.yield_gil()
    assert sleeps == [pacing.YIELD_REST]           # the run starts again after a yield
    assert pacer.rested == pytest.approx(pacing.YIELD_REST)
    clock.now += pacing.YIELD_EVERY
    pacer.resumed()                                # after a wait: a new run
    pacer.yield_gil()
    assert sleeps == [pacing.YIELD_REST]


def test_no_yield_while_no_requests_arrive(make, sleeps):
    pacer, clock, load = make()
    pacer.slice()
    clock.now += 10 * pacing.YIELD_EVERY
    pacer.yield_gil()
    assert sleeps == [] and not pacer.busy


def test_yields_count_as_the_slices_rest(make, sleeps):
    """A busy slice's rest (3x its CPU) is shortened by what it yielded meanwhile, so
    that yielding does not slow a backlog's drain; the next slice starts afresh."""
    pacer, clock, load = make()
    _arrive(clock, load, 150)
    pacer.slice()
    for _ in range(3):
        clock.now += pacing.YIELD_EVERY
        pacer.yield_gil()
    assert sleeps == [pacing.YIELD_REST] * 3
    rest = pacer.pause(30, cpu=0.003, wall=0.0042)
    assert rest == pytest.approx(0.009 - 3 * pacing.YIELD_REST)
    pacer.slice()
    assert pacer.pause(30, cpu=0.003, wall=0.003) == pytest.approx(0.009)


def test_a_sender_beside_no_request_threads_takes_whole_batches_rests_and_never_yields(
        clock, sleeps):
    """The external send process: same share, floor and cap as the thread, but
    whole batches (the kernel preempts it) and no GIL yields."""
    load = Load()
    pacer = pacing.Pacer(load, 0.0, shares_gil=False)
    pacer.pause(100, cpu=0.01, wall=0.012)        # 100 us of CPU per record
    _arrive(clock, load, 100)
    assert pacer.slice() == pacing.BATCH and pacer.busy
    clock.now += 10 * pacing.YIELD_EVERY
    pacer.yield_gil()
    assert sleeps == []
    rest = pacer.pause(100, cpu=0.01, wall=0.011)
    assert rest == pytest.approx(0.01 * (1 / pacing.BUSY_SHARE - 1))
    assert pacer.limit() == pytest.approx(pacing.BUSY_SHARE / 0.0001)
    capped = pacing.Pacer(load, 50.0, shares_gil=False)
    assert capped.slice() == int(50.0 * pacing.MAX_PAUSE)
