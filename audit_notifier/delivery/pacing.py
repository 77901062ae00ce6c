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

"""How fast the sender works while the API is serving requests.

The sender shares the process, and so the GIL, with the request threads.  A thread
holding the GIL keeps it until it blocks or another thread has waited for the switch
interval (5 ms): a sender building and publishing a backlog a hundred records at a
time makes a request wait up to 5 ms each time it needs the GIL back, several times
per request (measured before pacing: p99 5.6 ms before a 30 s outage at 150 calls/s,
48.8 ms while its backlog was sent).  Record look-ups, import follows and a dead
process's journal are the same kind of work.

So the sender works in slices and rests between them (:class:`Pacer`, used by the
sender thread only; a few clock reads and float operations per slice, a clock
read per record and per message):

* while requests arrive (journal appends seen in the last ``WINDOW`` seconds) and
  records wait (a backlog), the sender takes at most ``BUSY_SHARE`` of a CPU:
  after a slice that cost it ``c`` seconds of CPU it rests
  ``c * (1 / BUSY_SHARE - 1)``, less what it yielded in the slice (below); a slice
  is about
  ``SLICE_CPU`` of CPU (a number of records from the measured cost per record), so
  no request waits behind a long run of sender work;
* within a slice, while requests arrive, the sender lets go of the GIL between two
  records and between two messages of a publish once it has worked ``YIELD_EVERY``
  (0.3 ms) since it last did (:meth:`Pacer.yield_gil`): it sleeps ``YIELD_REST``
  (0.1 ms), long enough for a request thread waiting for the GIL to take it (a
  thread that releases the GIL and asks for it again at once usually gets it back
  before a waiting thread has woken up).  A request that comes while the sender
  works waits at most that long, not for a whole slice or publish (in process,
  an app holding the GIL 3.9 ms per call, 150 calls/s: the p99 the filter adds
  went from +82-128 % to +36-50 % in three quiet runs, the p90 from +28-33 % to
  +9 % in two noisy ones; benchmarks/README.md, section 8);
* ``background_max_rate`` (records per second, 0: none) caps the rate further;
* neither ever takes the rate below ``MIN_DRAIN_FACTOR`` times the arrival rate:
  a backlog always shrinks, at five times the rate calls add to it or faster; the
  rests aim ``FLOOR_AIM`` above that (six times), since time outside the slices
  (a reconnection, a slice's start) also counts;
* once a slice has left nothing to read, and requests arrive often enough that
  another record is expected within the gathering window (option
  ``gather_seconds``, 1 s; ``GATHER``), the sender goes on reading what is
  appended until then, up to ``BATCH`` records, and publishes them together: one
  publish, one commit and few wake-ups instead of one each per call (a publish
  costs the sender about as much as building a dozen records); calls that may
  need a record look-up are still built at once (sender._gather).  The external
  send process reads the live journals at that interval while requests arrive;
* once a slice has left nothing to read the sender does not rest: it keeps up,
  and a rest would only delay the next call's events and its record look-up (a
  look-up made later sees the resource as later calls left it);
* with no requests arriving and no cap the sender does not rest;
* a stopping sender does not rest (the sender asks :meth:`Pacer.pause` only while
  it is not stopping).

The external send process (``sender = external``: :mod:`.service`) is paced by the
same rules, with all the API processes' appends as its arrivals (counted in their
journals' maps: :meth:`.live.LiveJournals.count_appended`).  It competes with the
workers for the cores, not for a GIL: it takes whole batches (the kernel preempts
it; the unit runs it at nice 19) and does not yield, and while requests arrive it
rests so as to take at most ``BUSY_SHARE`` of a CPU, never below the floor; the cap
applies.

CPU time is the sender thread's (``time.thread_time``); under eventlet, where the
sender is a green thread of the one OS thread, that includes the requests' time, so
the sender rests more, down to the floor rate; a GIL yield is then a green sleep
(eventlet patches ``time.sleep`` before this module is imported), during which the
request green threads run.
"""

from __future__ import annotations

from time import monotonic, sleep

# Share of one CPU the sender may take while requests arrive.
BUSY_SHARE = 0.25
# Target CPU time of one slice of sender work while requests arrive (seconds).
SLICE_CPU = 0.003
# A backlog is sent at least this many times faster than records arrive.
MIN_DRAIN_FACTOR = 5.0
# The rests aim this much above that floor: resting down to the floor exactly drained
# a backlog at 4.97-5.0x the arrival rate (in process, 300 calls/s, fast leaf).
FLOOR_AIM = 1.2
# Arrival rate window (seconds): the rate is that of the last complete window.
WINDOW = 0.5
# Longest single rest (seconds): a cap change or a stop is never waited on longer.
MAX_PAUSE = 0.25
# Records of a slice when nothing limits the sender (the sender's batch).
BATCH = 100
# Longest wait for more records to publish with those read, while requests arrive
# (seconds; the default of option gather_seconds): what a notification may be held
# back to share a publish.  At 150-300 calls/s, 200 ms took a fifth to a third off the
# sender's CPU per call against 50 ms (fewer publishes, commits and wake-ups); 1 s took
# another 13 % off at 200 calls/s and 36 % at 35 calls/s (the rate of one Glance
# worker in the HTTP benchmark), in process (benchmarks/run.py --only sender).
GATHER = 1.0
# While requests arrive: the sender's longest run of work between two records or two
# messages before it lets go of the GIL (seconds), and how long it lets go.  A yield
# costs the sender about 50 us of CPU (the sleep, the GIL hand-over, colder caches
# after it): about 15 us per call at 200 calls/s (0.3 yields per call).  Yielding
# after 0.6 ms of work took about half as much off the p99 (in process, CPU-bound
# app); sleeping 20 us instead of 100 us cost as much CPU.
YIELD_EVERY = 0.0003
YIELD_REST = 0.0001


class Pacer:
    """Slice sizes and rests of one sender.  ``arrivals`` returns the number of
    records appended so far (the journal's counter, read without a lock; the
    external sender's count of the API processes' appends).  ``shares_gil``: the
    sender runs beside request threads (False in the external send process: no
    GIL yields, no short slices; its rests, cap and floor are the same).
    ``gather_seconds``: the gathering window (0: none)."""

    def __init__(self, arrivals, max_rate: float = 0.0, shares_gil: bool = True,
                 gather_seconds: float = GATHER):
        self._arrivals = arrivals
        self.max_rate = float(max_rate or 0.0)
        self.shares_gil = shares_gil
        self.gather_seconds = float(gather_seconds)
        self._window_start = monotonic()
        self._window_count = arrivals()
        self.arrival_rate = 0.0          # records per second in the last window
        self._cost = None                # CPU seconds per record (moving average)
        self.rested = 0.0                # seconds rested in all (yields included)
        self._working_since = monotonic()  # when the sender last had to take the GIL
        self._yielded = 0.0              # seconds yielded since the slice began

    # -- what the request load is ---------------------------------------------------------
    def _observe(self) -> None:
        now = monotonic()
        elapsed = now - self._window_start
        if elapsed < WINDOW:
            return
        count = self._arrivals()
        self.arrival_rate = max(0, count - self._window_count) / elapsed
        self._window_start, self._window_count = now, count

    @property
    def busy(self) -> bool:
        """Are requests arriving (in the last window)?"""
        return self.arrival_rate > 0.0

    def floor(self) -> float:
        """The slowest rate the sender may go (records per second): 0 when idle."""
        return MIN_DRAIN_FACTOR * self.arrival_rate

    def limit(self) -> float | None:
        """The rate the sender aims at, records per second; None: no limit (idle,
        no cap).  The CPU share is applied as rests, the rate from its cost."""
        limits = []
        if self.busy and self._cost:
            limits.append(BUSY_SHARE / self._cost)
        if self.max_rate:
            limits.append(self.max_rate)
        if not limits:
            return None
        return max(self.floor() * FLOOR_AIM, min(limits))

    # -- what the sender asks --------------------------------------------------------------
    def slice(self) -> int:
        """How many records to take now (the sender's work starts again)."""
        self._observe()
        self.resumed()
        self._yielded = 0.0
        size = BATCH
        if self.busy and self._cost and self.shares_gil:
            size = min(size, int(SLICE_CPU / self._cost))
        if self.max_rate:
            size = min(size, int(self.max_rate * MAX_PAUSE))
        return max(1, size)

    def gather(self) -> float:
        """Seconds to go on collecting records for one publish after a slice that
        read the journal to its end: the gathering window when at least one more
        record is expected in it (by the arrival rate), else 0 (publish at once)."""
        self._observe()
        window = self.gather_seconds
        return window if window > 0.0 and self.arrival_rate * window >= 1.0 else 0.0

    def resumed(self) -> None:
        """The sender works again after a wait or a rest (it had let go of the GIL)."""
        self._working_since = monotonic()

    def yield_gil(self) -> None:
        """Between two records or two messages (sender thread; a clock read when it
        does not yield): while requests arrive, once the sender has worked
        ``YIELD_EVERY`` since it last let go of the GIL, sleep ``YIELD_REST`` so that a
        request thread waiting for it takes it."""
        if self.arrival_rate <= 0.0 or not self.shares_gil:
            return
        now = monotonic()
        if now - self._working_since < YIELD_EVERY:
            return
        sleep(YIELD_REST)
        self.rested += YIELD_REST
        self._yielded += YIELD_REST
        self._working_since = monotonic()

    def pause(self, records: int, cpu: float, wall: float, drained: bool = False) -> float:
        """Seconds to rest after a slice of ``records`` records (0: other background
        work, a poll of import follows) that took ``cpu`` seconds of the sender's CPU
        and ``wall`` seconds in all; ``drained``: nothing was left to read."""
        self._observe()
        if records > 0:
            cost = cpu / records
            self._cost = cost if self._cost is None else 0.8 * self._cost + 0.2 * cost
        rest = 0.0
        if self.busy:
            # The slice's GIL yields were rests already.
            rest = cpu * (1.0 / BUSY_SHARE - 1.0) - self._yielded
        if records > 0:
            if self.max_rate:
                rest = max(rest, records / self.max_rate - wall)
            floor = self.floor() * FLOOR_AIM
            if drained:
                rest = 0.0
            elif floor:
                rest = min(rest, records / floor - wall)
        rest = min(max(0.0, rest), MAX_PAUSE)
        self.rested += rest
        return rest

    def gauges(self) -> dict:
        """For the stats: the arrival rate seen, the rate aimed at (0: no limit), and
        the seconds rested so far."""
        limit = self.limit()
        return {'arrival_rate': round(self.arrival_rate, 1),
                'send_rate_limit': round(limit, 1) if limit is not None else 0.0,
                'paced_seconds': round(self.rested, 3)}
