"""One publisher thread, its in-memory FIFO and its spool backlog.

Notifications about one resource always go to the same shard (a stable hash of the
resource id), and a shard handles its notifications strictly in order: its spool
holds the older ones, its FIFO the newer ones.  While the spool has records, new
notifications are appended behind them; the bus is tried again with the oldest one,
after a growing pause, so an outage costs one fast failing publish per pause and
nothing on the request path.  Several shards publish in parallel, which is what
lifts throughput above one publisher's ~2,000 messages/s.
"""

from __future__ import annotations

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

    def start(self) -> None:
        self.thread.start()

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            timeout = None
            if self.spool.records > 0:
                timeout = max(0.0, self._retry_at - time.monotonic())
            try:
                item = self.fifo.get(timeout=timeout) if timeout != 0.0 else \
                    self.fifo.get_nowait()
            except queue.Empty:
                item = None
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
                    self._send_or_spool(item)
            if self.spool.records > 0 and time.monotonic() >= self._retry_at:
                self._drain()

    def _send_or_spool(self, item) -> None:
        fmt, envelope = item
        if self._publish(fmt, envelope):
            self.stats.add('sent')
        else:
            self._to_spool(item)

    def _publish(self, fmt: str, envelope: dict) -> bool:
        try:
            self.publishers[fmt].publish(envelope)
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
            record, position = head
            if not self._publish(record['fmt'], record['envelope']):
                if deadline is None or time.monotonic() >= deadline:
                    return
                # Wait out the back-off (as the loop does), not a fixed short pause.
                time.sleep(max(0.0, min(self._retry_at, deadline) - time.monotonic()))
                continue
            self.spool.advance(position)
            self.stats.add('replayed')
            self.stats.add('sent')

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
        while True:
            try:
                item = self.fifo.get_nowait()
            except queue.Empty:
                break
            if item is STOP or (isinstance(item, tuple) and item[0] is FLUSH):
                if item is not STOP:
                    item[1].set()
                continue
            if self.spool.records > 0:
                self._to_spool(item)
            else:
                self._send_or_spool(item)
        if self.spool.records > 0:
            self._drain()
        self.spool.close()
