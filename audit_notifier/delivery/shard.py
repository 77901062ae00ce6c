"""One publisher thread, its in-memory FIFO and its spool backlog.

Notifications about one resource always go to the same shard (a stable hash of the
resource id), and a shard handles its notifications strictly in order: its spool
holds the older ones, its FIFO the newer ones.  While the spool has records, new
notifications are appended behind them; the bus is tried again with the oldest one,
after a growing pause, so an outage costs one fast failing publish per pause and
nothing on the request path.  Several shards publish in parallel.

A shard publishes in batches: when its spool is empty, it takes the next
notification and up to ``BATCH - 1`` more that are already queued (under load,
after a pause of ``LINGER`` for more to arrive; stopping at a flush or stop
request, which is handled right after), and hands each run of consecutive
notifications of one format to ``Publisher.publish_many`` (one AMQP transaction
over RabbitMQ).  A batch that fails goes to the spool whole, in
order, behind nothing newer; one failed call counts one send error.  The spool
is re-sent in batches too, oldest first, each batch from one spool segment and
of one format.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from audit_notifier.delivery import spool as spool_mod

LOG = logging.getLogger(__name__)

FLUSH = object()      # marker: answer a flush request
STOP = object()

_RETRY_FIRST = 0.5
_RETRY_MAX = 5.0

BATCH = 100           # notifications per publish_many call
LINGER = 0.002        # seconds a shard under load waits for its batch to fill
_READ_AHEAD_BYTES = 256 * 1024    # spool bytes read at once when re-sending


def _is_control(item) -> bool:
    return item is STOP or (isinstance(item, tuple) and item[0] is FLUSH)


class ShardWorker:
    def __init__(self, index: int, publishers: dict, spool: spool_mod.ShardSpool,
                 stats, overflow: str, block_seconds: float, spill_at: int):
        self.index = index
        self.publishers = publishers
        self.spool = spool
        self.stats = stats
        self.overflow = overflow
        self.block_seconds = block_seconds
        self.spill_at = spill_at
        self.fifo: queue.SimpleQueue = queue.SimpleQueue()
        self._retry_at = 0.0
        self._retry_wait = _RETRY_FIRST
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name='audit-notifier-shard-%d' % index)
        self.flushed_clean = True          # did the last flush leave nothing unsent?
        self._pending = None               # a control item met while taking a batch
        self._streaming = False            # the last batch had more than one item

    def start(self) -> None:
        self.thread.start()

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._next()
            if item is STOP:
                self._final_flush()
                return
            if isinstance(item, tuple) and item[0] is FLUSH:
                self._drain(deadline=time.monotonic() + item[2])
                self.flushed_clean = self.spool.records <= 0
                item[1].set()
                continue
            if item is not None:
                if self.fifo.qsize() > self.spill_at:
                    self._to_spool(item)             # memory high-water: spill, keep order
                    self._spill_fifo()
                elif self.spool.records > 0:
                    self._to_spool(item)             # behind the backlog, to keep order
                else:
                    self._send_or_spool(self._take_batch(item))
            if self.spool.records > 0 and time.monotonic() >= self._retry_at:
                self._drain()

    def _next(self):
        """The next FIFO item (a control item held back by _take_batch first), or None
        when the wait for the next retry of the spool is over."""
        if self._pending is not None:
            item, self._pending = self._pending, None
            return item
        timeout = None
        if self.spool.records > 0:
            timeout = max(0.0, self._retry_at - time.monotonic())
        try:
            return self.fifo.get(timeout=timeout) if timeout != 0.0 else \
                self.fifo.get_nowait()
        except queue.Empty:
            return None

    def _take_batch(self, first) -> list:
        """``first`` and up to BATCH - 1 notifications already queued behind it; a
        flush or stop request ends the batch and is handled next.

        Under load (the previous batch had more than one notification) the shard
        first sleeps LINGER seconds, so that the batch fills: shards that keep up
        with the builder would otherwise commit a few messages at a time and be
        woken for each one (a commit, and a thread switch under the GIL, cost as
        much CPU as several messages)."""
        if self._streaming and self.fifo.qsize() < BATCH - 1:
            time.sleep(LINGER)
        batch = [first]
        get = self.fifo.get_nowait
        while len(batch) < BATCH:
            try:
                item = get()
            except queue.Empty:
                break
            if item is None:
                continue                  # a wake-up: the loop checks the spool anyway
            if _is_control(item):
                self._pending = item
                break
            batch.append(item)
        self._streaming = len(batch) > 1
        return batch

    def _send_or_spool(self, batch: list) -> None:
        """Publish ``batch`` (fmt, envelope) items in order, one publish_many per run
        of one format; from the first failure on, the rest goes to the spool."""
        start, n = 0, len(batch)
        while start < n:
            fmt = batch[start][0]
            end = start + 1
            while end < n and batch[end][0] == fmt:
                end += 1
            if not self._publish_many(fmt, [envelope for _, envelope in batch[start:end]]):
                for item in batch[start:]:
                    self._to_spool(item)
                return
            self.stats.add('sent', end - start)
            start = end

    def _publish(self, fmt: str, envelope: dict) -> bool:
        return self._publish_many(fmt, [envelope])

    def _publish_many(self, fmt: str, envelopes: list) -> bool:
        """One publish_many call: True when all of them reached the bus."""
        try:
            self.publishers[fmt].publish_many(envelopes)
        except Exception as exc:
            self.stats.bus_down(exc)
            self._retry_at = time.monotonic() + self._retry_wait
            self._retry_wait = min(self._retry_wait * 2, _RETRY_MAX)
            return False
        self._retry_wait = _RETRY_FIRST
        self.stats.bus_up()
        return True

    def _drain(self, deadline: float | None = None) -> None:
        """Send spooled records oldest first until none is left or the bus fails."""
        while True:
            head = self.spool.peek()
            if head is None:
                return
            batch = self._spooled_batch(head)
            fmt = batch[0][0]['fmt']
            if not self._publish_many(fmt, [record['envelope'] for record, _ in batch]):
                if deadline is None or time.monotonic() >= deadline:
                    return
                # Wait out the back-off (as the loop does), not a fixed short pause.
                time.sleep(max(0.0, min(self._retry_at, deadline) - time.monotonic()))
                continue
            for _, position in batch:
                self.spool.advance(position)
            self.stats.add('replayed', len(batch))
            self.stats.add('sent', len(batch))

    def _spooled_batch(self, head) -> list:
        """The spool's head record and up to BATCH - 1 complete records after it in
        the same segment and of the same format: [(record, position), ...].

        The spool only hands out its head (``peek``); the records after it are read
        here from the head segment, from the head's end on (its path is the spool's
        read path after ``peek``).  A torn or corrupt record ends the batch: the next
        ``peek`` deals with it.
        """
        batch = [head]
        record, position = head
        # Under the spool's lock: write-ahead appends and drop_oldest_segment (request
        # threads) change the spool under it.
        with self.spool.lock:
            path = getattr(self.spool, '_read_path', None)
            unsent = self.spool.records
            if path is None or unsent <= 1:
                return batch
            try:
                with open(path, 'rb') as f:
                    f.seek(position)
                    data = f.read(_READ_AHEAD_BYTES)
            except OSError:
                return batch
        fmt = record.get('fmt')
        start = 0
        while len(batch) < BATCH and len(batch) < unsent:
            end = data.find(b'\n', start)
            if end < 0:
                break                                  # torn, or beyond what was read
            try:
                nxt = json.loads(data[start:end + 1])
            except ValueError:
                break
            if not isinstance(nxt, dict) or nxt.get('fmt') != fmt:
                break
            start = end + 1
            batch.append((nxt, position + start))
        return batch

    def _to_spool(self, item, drain: bool = True) -> None:
        fmt, envelope = item
        record = spool_mod.encode(fmt, envelope)
        if self.spool.append(record):
            self.stats.add('spooled')
            return
        # The spool is at its cap: the configured overflow policy decides.
        if self.overflow == 'drop_oldest':
            dropped = self.spool.drop_oldest_segment()
            self.stats.add('dropped', dropped)
            if dropped:
                self.stats.overflow('drop_oldest', dropped)
            if self.spool.append(record):
                self.stats.add('spooled')
                return
        elif self.overflow == 'block':
            until = time.monotonic() + self.block_seconds
            while time.monotonic() < until:
                time.sleep(0.05)
                if drain:                      # only the shard's own thread drains
                    self._drain()
                if self.spool.append(record):
                    self.stats.add('spooled')
                    return
        self.stats.add('dropped')
        self.stats.overflow(self.overflow, 1)

    def _spill_fifo(self) -> None:
        while True:
            try:
                item = self.fifo.get_nowait()
            except queue.Empty:
                return
            if item is STOP or (isinstance(item, tuple) and item[0] is FLUSH):
                self.fifo.put(item)       # keep control items for the loop
                return
            self._to_spool(item)

    def _final_flush(self) -> None:
        """Shutdown: everything still in memory goes to the bus, else to the spool."""
        items = []
        pending, self._pending = self._pending, None      # only ever a control item
        if pending is not None and pending is not STOP:
            pending[1].set()
        while True:
            try:
                item = self.fifo.get_nowait()
            except queue.Empty:
                break
            if item is None:
                continue
            if _is_control(item):
                if item is not STOP:
                    item[1].set()
                continue
            items.append(item)
        for start in range(0, len(items), BATCH):
            batch = items[start:start + BATCH]
            if self.spool.records > 0:
                for item in batch:
                    self._to_spool(item)
            else:
                self._send_or_spool(batch)
        if self.spool.records > 0:
            self._drain()
        self.spool.close()
