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

"""The sender: journal records in, notifications on the bus, positions committed.

One thread per :class:`~audit_notifier.delivery.handoff.Delivery`, one ordered
stream: it first sends what processes that are gone left in the journal directory
(oldest process first, calls they never finished reported as incomplete), then
its own journal.  Per slice of up to ``BATCH`` records it builds the envelopes
(:mod:`.builder`), hands each run of one format to its leaf's ``publish_many``,
and commits the journal position the bus confirmed (never past a call still open).

Errors are told apart:

* :class:`~audit_notifier.delivery.leaves.BusUnavailable`: the bus is down.  The
  batch is kept and tried again after a growing pause (0.5 s to 5 s); one warning
  when the outage starts, one line when it ends; records wait in the journal.
* anything else from a leaf is a bug: logged at ERROR with its traceback, counted
  (``send_errors``); the envelopes of the failed run are tried one by one, and one
  that fails ``dead_letter_after`` times is moved to the dead letters.
* a record the builder cannot use (corrupt, unknown route, a builder bug): logged,
  counted (``build_errors``), dead-lettered at once; the records after it flow.

Nothing here raises out of the loop: an unexpected error is logged and the loop
goes on after a pause.

While requests arrive and records wait, the sender works in slices and rests
between them (:mod:`.pacing`): its own journal, a dead process's journal and import
follows all yield to the request threads, never slower than five times the arrival
rate.  Without a backlog, while requests arrive, it gathers what is appended
within ``gather_seconds`` (1 s) into one publish, building each record as it
comes (:meth:`Sender._gather`).  In the ``audit-notifier send`` process
(``sender = external``) the same loop also reads the journals API processes write
now (:mod:`.live`), every ``gather_seconds`` while requests arrive (200 ms
otherwise) or at once after a full slice, paced with their appends as the arrival
rate (:meth:`Sender._send_live`).

With ``trail = true`` the sender also keeps the integrity trail
(:mod:`audit_notifier.trail`): each run of envelopes gets its chain fields once,
just before its first publish attempt, in publish order; digests are published
every N notifications or T seconds and at a clean shutdown.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import legacy_spool
from audit_notifier.delivery import live as live_mod
from audit_notifier.delivery import stats as stats_mod
from audit_notifier.delivery.builder import Builder
from audit_notifier.delivery.leaves import BusUnavailable
from audit_notifier.delivery.pacing import BATCH, GATHER, Pacer

LOG = logging.getLogger(__name__)

RETRY_FIRST = 0.5
RETRY_MAX = 5.0
STATS_EVERY = 5.0
ORPHAN_SCAN_EVERY = 60.0


class Sender:
    """Runs in its own thread (:meth:`run`); everything else is called by others."""

    def __init__(self, journal, emitter, route_for, leaves: dict, dead_letters, stats, *,
                 dead_letter_after: int = 3, stats_interval: float = 60.0,
                 trail=None, follower=None, max_rate: float = 0.0, live=None,
                 gather_seconds: float = GATHER):
        self.journal = journal
        # sender = external (audit-notifier send): the journals API processes write
        # now (delivery/live.py), read after this process's own; None in an API process.
        self.live = live
        self._live_read_at = 0.0        # when the live journals are read next
        # Slice sizes and rests (the load: the journal's append counter, or the API
        # processes' appends to the live journals).
        self.pacer = Pacer(live.count_appended if live is not None else
                           lambda: journal.appended, max_rate, shares_gil=live is None,
                           gather_seconds=gather_seconds)
        self.emitter = emitter
        self.route_for = route_for
        self.leaves = leaves
        self.dead_letters = dead_letters
        self.stats = stats
        self.dead_letter_after = max(1, dead_letter_after)
        # Import follows (delivery/follow.py), or None when they are off.
        self.follower = follower
        self.builder = Builder(emitter, route_for, journal.owner, self._watch())
        # The integrity trail (audit_notifier.trail.Chain), or None when it is off.
        self.trail = trail
        self.wake = threading.Event()
        self.idle = False
        # Gathering records for one publish (_gather): only calls that need a prompt
        # build wake the sender then.
        self.gathering = False
        self.hurry = 0                  # flush() callers waiting: a gathering ends at once
        self.stopping = False
        self.stop_deadline = 0.0
        self.done = threading.Condition()
        self.processed = 0              # own journal records fully handled
        self._retry_wait = RETRY_FIRST
        self._next_stats = 0.0
        self._reporter = stats_mod.Reporter(
            self._stats_path() if journal.directory is not None else None, stats_interval)
        self._next_orphan_scan = 0.0
        self.sent_everything = False    # set when the loop ended with nothing unsent
        self._holding_since = None      # time of the oldest record read and not yet sent
        self._held = 0                  # records read but not sent when the loop stopped
        self._held_in_memory = 0        # ... of which were kept in memory only
        self._in_hand = 0               # own records read and not yet handled
        self._skip: set = set()         # dead owners with an unreadable segment

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> None:
        while not (self.stopping and time.monotonic() >= self.stop_deadline):
            try:
                if self._step():
                    continue
                if self.stopping:
                    break
                self.idle = True
                if self._step():                  # a record appended meanwhile
                    self.idle = False
                    continue
                self.wake.wait(self._idle_wait())
                self.wake.clear()
                self.idle = False
            except Exception:
                self.stats.limited(logging.ERROR, 'sender-loop', 'audit_notifier: unexpected '
                                   'error in the sender; it goes on', exc_info=True)
                if self._pause(1.0):
                    break
        self._shutdown()

    def _watch(self):
        return self.follower.watch if self.follower is not None else None

    def _idle_wait(self) -> float:
        """Seconds to wait for work: 1 s, less when an import follow is due sooner;
        the live journals' poll interval in the external sender (appends in other
        processes do not wake it)."""
        if self.live is not None:
            return min(live_mod.POLL_SECONDS,
                       max(0.005, self._live_read_at - time.monotonic()))
        due = self.follower.next_due() if self.follower is not None else None
        if due is None:
            return 1.0
        return min(1.0, max(0.01, due - time.monotonic()))

    def _follow(self) -> bool:
        """Poll the import follows that are due and publish the notifications of
        those that ended (sender thread; bounded by follow.POLL_BATCH); True when
        some ended.  Not while stopping: the follows stay for the next process."""
        follower = self.follower
        if follower is None or self.stopping:
            return False
        due = follower.next_due()
        if due is None or due > time.monotonic():
            return False
        started = self._clocks()
        ended, built = follower.poll()
        if ended and self.publish(self._runs(built)):
            follower.finished(ended)
        self._rest(0, started)
        return bool(ended)

    def _step(self) -> bool:
        """One unit of work; False when there was nothing to do."""
        now = time.monotonic()
        if now >= self._next_stats:
            self._next_stats = now + STATS_EVERY
            self.report()
        if self.live is not None and self.live.scan():
            self._next_orphan_scan = now         # a writer is gone: its journal is an orphan
        if self.journal.directory is not None and now >= self._next_orphan_scan and \
                not self.stopping:
            self._next_orphan_scan = now + ORPHAN_SCAN_EVERY
            if self.follower is not None:
                self.follower.adopt()
            for orphan in journal_mod.claim_orphans(
                    self.journal.directory, exclude={self.journal.owner} | self._skip):
                if not self.send_orphan(orphan) and orphan.unreadable:
                    self._skip.add(orphan.owner)     # logged once; replay takes it later
            legacy_spool.send(self.journal.directory, self)
        if self.trail is not None and not self.stopping:
            for fmt in self.trail.due():
                self._publish_digest(fmt)
        followed = self._follow()
        if self.live is not None:
            followed = self._send_live() or followed
        started = self._clocks()
        wanted = self.pacer.slice()
        items = self.journal.read(wanted)
        if not items:
            return followed
        drained = len(items) < wanted
        self._in_hand = len(items)
        rec = items[0][1]
        self._holding_since = rec.get('z') or rec.get('a') or time.time()
        try:
            gather = self.pacer.gather() if drained and not self.stopping else 0.0
            if not self._send(items, self.builder, self.journal, gather):
                self._held = len(items)           # stopping with the bus down
                self._held_in_memory = sum(1 for p, _ in items if self.journal.in_memory(p))
                return True
        except Exception as exc:
            # Not expected (every known failure is handled below): the records
            # read are not lost silently, they become dead letters.
            self.stats.limited(logging.ERROR, 'sender-step', 'audit_notifier: unexpected '
                               'error while sending %d journal record(s); they are moved to '
                               'the dead letters', len(items), exc_info=True)
            for _, rec in items:
                self.dead_letters.add('send', '%s: %s' % (type(exc).__name__, exc),
                                      record=rec)
        self._holding_since = None
        with self.done:
            self._in_hand = 0
            self.processed += len(items)
            self.done.notify_all()
        self._rest(len(items), started, drained=drained)
        return True

    def _send_live(self) -> bool:
        """External sender: what each live journal (delivery/live.py) holds, up to
        the pacer's slice shared among them, built and published together (one
        publish per format: a publish costs about as much as building a dozen
        records), then each journal committed and the pacer's rest taken; True when
        some were sent.  A failure other than an outage makes the records dead
        letters, as in :meth:`_step`."""
        now = time.monotonic()
        if now < self._live_read_at and not self.stopping:
            return False
        started = self._clocks()
        sources = self.live.sources()
        share = -(-self.pacer.slice() // max(1, len(sources)))     # rounded up
        groups = []
        for source in sources:
            items = source.read(share)
            if items:
                groups.append((items, source.builder, source))
        # A full share: a backlog, read on after the rest; else what comes meanwhile
        # is gathered for one round (one publish), as the thread's gathering does:
        # for the gathering window while requests arrive.
        full = any(len(g[0]) >= share for g in groups)
        self._live_read_at = now if full else \
            now + max(live_mod.POLL_SECONDS, self.pacer.gather())
        if not groups:
            return False
        try:
            self._send_groups(groups)
        except Exception as exc:
            self.stats.limited(logging.ERROR, 'sender-step', 'audit_notifier: unexpected '
                               'error while sending %d journal record(s) of %d process(es); '
                               'they are moved to the dead letters',
                               sum(len(g[0]) for g in groups), len(groups), exc_info=True)
            for items, _builder, _source in groups:
                for _, rec in items:
                    self.dead_letters.add('send', '%s: %s' % (type(exc).__name__, exc),
                                          record=rec)
        self._rest(sum(len(g[0]) for g in groups), started, drained=not full)
        return True

    def _yield_gil(self) -> None:
        """Between two records or two messages (sender thread): let a waiting request
        thread have the GIL (:meth:`Pacer.yield_gil`), except while stopping."""
        if not self.stopping:
            self.pacer.yield_gil()

    @staticmethod
    def _clocks() -> tuple[float, float]:
        return time.thread_time(), time.monotonic()

    def _rest(self, records: int, started: tuple[float, float], drained: bool = False) -> None:
        """Rest as the pacer says after a slice of work begun at ``started``
        (:meth:`_clocks`); never while stopping."""
        if self.stopping:
            return
        cpu, wall = self._clocks()
        rest = self.pacer.pause(records, cpu - started[0], wall - started[1], drained)
        if rest > 0.0:
            self._pause(rest)

    def _send(self, items, builder: Builder, stream, gather: float = 0.0) -> bool:
        """Build one batch of ``stream``'s records, publish it and commit it (never
        past the first record of a call still open); False when stopping with the
        bus down.  ``gather`` (own journal only): seconds to go on reading the records
        appended meanwhile into the same batch (``items`` grows in place)."""
        return self._send_groups([(items, builder, stream)], gather)

    def _send_groups(self, groups: list, gather: float = 0.0) -> bool:
        """:meth:`_send` for batches of several streams ``[(items, builder, stream)]``
        published together (in this order), then each committed.  ``gather``: the
        first group's (own journal only).

        A record that cannot be built is dead-lettered once the batch it came in
        has been sent, just before its position is committed: a batch that is not
        sent now is read again later, and its bad records must not be
        dead-lettered twice."""
        failed: list = []
        runs: list = []
        for index, (items, builder, _stream) in enumerate(groups):
            runs = self._build(items, builder, runs, failed)
            if index == 0 and gather > 0.0:
                runs = self._gather(items, builder, runs, failed, gather)
        if not self.publish(runs):
            return False
        for rec, exc in failed:
            self.dead_letters.add('build', '%s: %s' % (type(exc).__name__, exc),
                                  record=rec if isinstance(rec, dict) else {'value': repr(rec)})
        if self.trail is not None:
            self.trail.save()                   # the chain state next to the journal
        for items, builder, stream in groups:
            position = (items[-1][0][0], items[-1][0][1] + 1)
            oldest = builder.oldest_open()
            stream.commit(min(position, oldest) if oldest is not None else position)
        return True

    def _build(self, items, builder: Builder, runs: list, failed: list) -> list:
        """``runs`` with the envelopes of ``items`` added; a record that cannot be
        built is counted, logged and added to ``failed`` (with its whole call)."""
        for position, rec in items:
            self._yield_gil()
            try:
                built = builder.build(position, rec)
            except Exception as exc:
                self.stats.add('build_errors')
                self.stats.limited(logging.ERROR, 'build-%s' % type(exc).__name__,
                                   'audit_notifier: building notifications from a journal '
                                   'record failed', exc_info=True)
                failed.append((builder.whole_call(rec), exc))
                continue
            runs = self._runs(built, runs)
        return runs

    def _gather(self, items, builder: Builder, runs: list, failed: list,
                seconds: float) -> list:
        """Requests are arriving and the journal was read to its end: wait up to
        ``seconds`` for more records, up to ``BATCH`` in all, so that one publish and
        one commit carry them (a publish costs the sender about as much CPU as
        building a dozen records).  Appends do not wake the sender meanwhile,
        except a call whose events may need a record look-up
        (:meth:`Delivery.submit`): it is built at once, as without gathering,
        since a later look-up would see the resource as the next calls left it.
        A stop or a flush (:meth:`Delivery.flush`) ends the gathering after one last
        read."""
        deadline = time.monotonic() + seconds
        self.idle = False                       # (run() may have set it for this step)
        self.gathering = True
        try:
            while len(items) < BATCH:
                more = self.journal.read(BATCH - len(items))
                if more:
                    runs = self._build(more, builder, runs, failed)
                    items.extend(more)
                    self._in_hand = len(items)
                    continue
                left = deadline - time.monotonic()
                if left <= 0.0 or self.stopping or self.hurry:
                    break
                self.wake.wait(left)
                self.wake.clear()
                self.pacer.resumed()
        finally:
            self.gathering = False
        return runs

    # -- publishing ---------------------------------------------------------------------
    def publish(self, runs: list) -> bool:
        """Publish ``[(fmt, [envelope, ...])]`` in order.  Waits out an outage (but not
        past a stop deadline: then False)."""
        for fmt, envelopes in runs:
            self.stats.add('built', len(envelopes))
            for start in range(0, len(envelopes), BATCH):
                if not self._publish_run(fmt, envelopes[start:start + BATCH]):
                    return False
        return True

    # The outage wait, the one-by-one retry and the dead letter run after the except
    # block, not in it: oslo.log appends the exception being handled to every WARNING
    # and ERROR line, which would repeat what these lines already say.
    def _publish_run(self, fmt: str, envelopes: list) -> bool:
        trail = self.trail
        if trail is None:
            return self._publish_chained(fmt, envelopes, None)
        # Chain fields once, before the first attempt: a retry resends the same ones.
        contexts = trail.assign(fmt, envelopes)
        if not self._publish_chained(fmt, envelopes, contexts):
            return False
        trail.published(fmt, save=False)        # saved once per batch (_send)
        if trail.undigested(fmt) >= trail.config.every:
            self._publish_digest(fmt)
        return True

    def _publish_digest(self, fmt: str, final: bool = False) -> bool:
        """Publish the ``audit.digest`` of ``fmt``'s stream (chained like the rest);
        the final one (clean shutdown) even when nothing came since the last."""
        if self.trail.undigested(fmt) <= 0 and not (final and self.trail.streams[fmt].seq):
            return True
        digest = self.trail.digest(fmt, final)
        contexts = self.trail.assign(fmt, [digest])
        if not self._publish_chained(fmt, [digest], contexts):
            return False
        self.trail.published(fmt)
        return True

    def _publish_chained(self, fmt: str, envelopes: list, contexts: list | None) -> bool:
        """Publish a run, waiting out outages; False when stopping with the bus down
        (then the chain fields of what was not published are rolled back)."""
        while True:
            outage = None
            try:
                self.leaves[fmt].publish_many(envelopes, contexts, between=self._yield_gil)
            except BusUnavailable as exc:
                outage = exc
            except Exception:
                self.stats.add('send_errors')
                self.stats.limited(logging.ERROR, 'send-bug',
                                   'audit_notifier: publishing %d %s notification(s) failed '
                                   'with an error that is not a bus outage; sending them one '
                                   'by one', len(envelopes), fmt, exc_info=True)
            else:
                self._bus_up()
                self.stats.add('sent', len(envelopes))
                return True
            if outage is None:
                return self._publish_one_by_one(fmt, envelopes, contexts)
            if not self._bus_down(outage):
                if contexts:
                    self.trail.rollback(fmt, contexts[0])
                return False

    def _publish_one_by_one(self, fmt: str, envelopes: list, contexts: list | None) -> bool:
        for index, envelope in enumerate(envelopes):
            context = contexts[index] if contexts else None
            if not self._publish_alone(fmt, envelope, context):
                if context is not None:
                    self.trail.rollback(fmt, context)
                return False
        return True

    def _publish_alone(self, fmt: str, envelope: dict, context: dict | None = None) -> bool:
        """Send one notification, waiting out outages; after ``dead_letter_after``
        other errors it goes to the dead letters. False when stopping."""
        failures = 0
        while True:
            outage = error = None
            try:
                self.leaves[fmt].publish_many(
                    [envelope], [context] if context is not None else None)
            except BusUnavailable as exc:
                outage = exc
            except Exception as exc:
                error = exc
                failures += 1
                self.stats.add('send_errors')
                if failures >= self.dead_letter_after:
                    self.stats.limited(logging.ERROR, 'send-dead-letter',
                                       'audit_notifier: %s notification %s failed %d times',
                                       envelope.get('event_type'),
                                       envelope.get('message_id'), failures, exc_info=True)
            else:
                self._bus_up()
                self.stats.add('sent')
                return True
            if outage is not None:
                if not self._bus_down(outage):
                    return False
            elif failures >= self.dead_letter_after:
                self.dead_letters.add('send', '%s: %s' % (type(error).__name__, error),
                                      fmt=fmt, envelope=envelope)
                return True

    def _bus_down(self, exc: BaseException) -> bool:
        """Note the outage and wait before the next try; False when stopping."""
        self.stats.bus_down(exc)
        if time.monotonic() >= self._next_stats:        # the stats file stays current
            self._next_stats = time.monotonic() + STATS_EVERY
            self.report()
        wait, self._retry_wait = self._retry_wait, min(self._retry_wait * 2, RETRY_MAX)
        return not self._pause(wait)

    def _bus_up(self) -> None:
        self._retry_wait = RETRY_FIRST
        self.stats.bus_up()

    def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (woken early by a stop); True when the stop
        deadline has passed."""
        if self.stopping:
            seconds = min(seconds, max(0.0, self.stop_deadline - time.monotonic()))
        self.wake.wait(seconds)
        self.wake.clear()
        return self.stopping and time.monotonic() >= self.stop_deadline

    # -- journals of processes that are gone ---------------------------------------------
    def send_orphan(self, orphan) -> bool:
        """Send what a dead process left after its checkpoint; True when all of it
        went (its files are then removed)."""
        LOG.info('audit_notifier: sending what process %s left in %s', orphan.owner,
                 orphan.directory)
        builder = Builder(self.emitter, self.route_for, orphan.owner, self._watch())
        batch: list = []
        started, wanted = self._clocks(), self.pacer.slice()
        try:
            for item in orphan.records(self.stats):
                batch.append(item)
                if len(batch) >= wanted:
                    if not self._send(batch, builder, orphan):
                        return False
                    self._rest(len(batch), started)
                    batch, started, wanted = [], self._clocks(), self.pacer.slice()
            if batch and not self._send(batch, builder, orphan):
                return False
            if orphan.unreadable:
                return False
            if not self.publish(self._runs(builder.finish_open())):
                return False
            if self.trail is not None:
                self.trail.save()
            orphan.finish()
            return True
        finally:
            orphan.release()

    @staticmethod
    def _runs(built: list, runs: list | None = None) -> list:
        """[(fmt, envelope)] as runs of one format: [(fmt, [envelope, ...])]."""
        runs = [] if runs is None else runs
        for fmt, envelope in built:
            if runs and runs[-1][0] == fmt:
                runs[-1][1].append(envelope)
            else:
                runs.append((fmt, [envelope]))
        return runs

    # -- stopping and reporting -----------------------------------------------------------
    def stop(self, timeout: float) -> None:
        """Ask the loop to send what is left and end (within ``timeout`` seconds)."""
        self.stop_deadline = time.monotonic() + timeout
        self.stopping = True
        self.wake.set()

    def _shutdown(self) -> None:
        self._final_digests()
        if self.live is not None:
            self.live.close()
        held_on_disk = len(self.builder.open) + self._held - self._held_in_memory
        # Closed first, under the journal's lock: what a request thread appends
        # up to this moment is counted below, never removed with the files.
        on_disk, in_memory = self.journal.close(keep=held_on_disk > 0)
        on_disk += held_on_disk
        in_memory += self._held_in_memory
        self._in_hand = self._held - self._held_in_memory   # those in memory are lost
        if self.journal.directory is None:
            in_memory, on_disk = in_memory + on_disk, 0
        self.sent_everything = not (on_disk or in_memory)
        if in_memory:
            self.stats.add('dropped', in_memory)
            LOG.error('audit_notifier: %d notification record(s) kept in memory could not '
                      'be sent before shutdown and are lost', in_memory)
        if on_disk:
            LOG.warning('audit_notifier: %d notification record(s) not sent before shutdown '
                        'stay in the journal in %s; the next process sends them', on_disk,
                        self.journal.directory)
        self.report()
        if self.sent_everything and self.journal.directory is not None:
            try:
                os.unlink(self._stats_path())
            except OSError:
                pass
        for leaf in self.leaves.values():
            try:
                leaf.close()
            except Exception:
                LOG.debug('audit_notifier: closing a leaf failed', exc_info=True)
        with self.done:
            self.done.notify_all()

    def _final_digests(self) -> None:
        """At shutdown, in the sender thread: the final digest of each stream that
        published something (one try each); skipped while the bus is down.  Never
        raises."""
        if self.trail is None:
            return
        for fmt, stream in list(self.trail.streams.items()):
            if not stream.seq:
                continue
            if self.stats.bus_is_down:
                LOG.warning('audit_notifier: the bus is down: no final trail digest for '
                            'stream %s (a successor names where it ended)', stream.name)
                continue
            try:
                if not self._publish_digest(fmt, final=True):
                    LOG.warning('audit_notifier: the final trail digest of stream %s could '
                                'not be published before shutdown', stream.name)
            except Exception:
                LOG.error('audit_notifier: publishing the final trail digest of stream %s '
                          'failed', stream.name, exc_info=True)

    def _stats_path(self) -> str:
        return os.path.join(self.journal.directory, self.journal.owner + '.stats.json')

    def snapshot(self) -> dict:
        since = self._holding_since
        self.stats.counters['journaled'] = self.journal.appended
        follows = {} if self.follower is None else dict(
            self.follower.counters, follows=len(self.follower.follows))
        return self.stats.snapshot(**follows, **self.pacer.gauges(),
                                   unsent=self.journal.unsent() + self._in_hand,
                                   open_calls=len(self.builder.open),
                                   journal_bytes=self.journal.disk_bytes,
                                   oldest_unsent_age=round(max(0.0, time.time() - since), 3)
                                   if since else 0.0)

    def report(self) -> dict:
        return self._reporter(self.snapshot())
