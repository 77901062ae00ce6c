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

"""sender = external without a broker: the writer's journal (external=True), the
live reader of another process's journal (delivery/live.py), their checkpoint
hand-over and what the writer's reporter says."""

from __future__ import annotations

import glob
import os

import pytest

from audit_notifier.delivery import external as external_mod
from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import live as live_mod
from audit_notifier.delivery import record as record_mod
from audit_notifier.delivery.stats import Stats

SEGMENT = 64 * 1024


def writer(directory, **kw) -> journal_mod.Journal:
    args = dict(max_bytes=1 << 30, max_records=1000, overflow='drop_oldest',
                block_seconds=0.0, fsync=False, stats=Stats(), segment_bytes=SEGMENT,
                external=True)
    args.update(kw)
    return journal_mod.Journal(str(directory), **args)


def rec(i: int, size: int = 0) -> dict:
    return {'t': 'f', 'c': i, 'pad': 'x' * size}


def reader(journal, stats=None) -> live_mod.LiveJournal:
    return live_mod.LiveJournal(journal.directory, journal.owner, stats or Stats(),
                                builder=None)


def calls(items) -> list[int]:
    return [r['c'] for _, r in items]


def written(tmp_path, n: int):
    """A writer with ``n`` records of about 1.3 KB (several segments), and its reader."""
    journal = writer(tmp_path)
    live = reader(journal)
    for i in range(n):
        journal.append(rec(i, 1200))
    return journal, live


def read_at_least(live, n: int) -> list:
    """What ``live`` reads until it has ``n`` records (the segments listed again each
    time, without waiting for the listing interval)."""
    items: list = []
    while len(items) < n:
        live._next_listing = 0.0
        items += live.read(1000)
    return items


def segments(journal) -> list[str]:
    return sorted(glob.glob(os.path.join(journal.directory, journal.owner + '.*.journal')))


def test_the_writer_marks_its_lock_and_the_reader_follows_only_live_marked_writers(tmp_path):
    external = writer(tmp_path)
    own = writer(tmp_path, external=False)
    with open(os.path.join(str(tmp_path), external.owner + '.lock'), 'rb') as f:
        assert f.read() == journal_mod.EXTERNAL_MARK
    with open(os.path.join(str(tmp_path), own.owner + '.lock'), 'rb') as f:
        assert f.read() == b''
    journals = live_mod.LiveJournals(str(tmp_path), Stats(), lambda owner: owner)
    assert journals.scan() is False
    assert [(j.owner, j.builder) for j in journals.sources()] == [
        (external.owner, external.owner)]
    external.append(rec(0))
    external.close(keep=False)
    journals._next_scan = 0.0                  # the next scan is due
    assert journals.scan() is True             # gone: left to the orphan adoption
    assert journals.sources() == []
    assert [o.owner for o in journal_mod.claim_orphans(str(tmp_path))] == [external.owner]
    own.close(keep=False)


def test_records_are_read_in_order_across_segments_while_written(tmp_path):
    journal = writer(tmp_path)
    live = reader(journal)
    assert live.read(100) == []                # nothing written yet
    got = []
    for i in range(300):                       # ~1.3 KB each: several 64 KiB segments
        journal.append(rec(i, 1200))
        if i % 37 == 0:
            got += calls(live.read(1000))
    while True:
        more = live.read(1000)
        if not more and len(got) == 300:
            break
        live._next_listing = 0.0               # list the segments again without waiting
        got += calls(more)
    assert got == list(range(300))
    assert len(segments(journal)) >= 5


def test_commit_writes_position_and_count_and_deletes_earlier_segments(tmp_path):
    journal, live = written(tmp_path, 150)
    items = read_at_least(live, 150)
    before = segments(journal)
    last = items[-1][0]
    live.commit((last[0], last[1] + 1))
    position, confirmed = journal.confirmed()
    assert position == (last[0], last[1] + 1) and confirmed == 150
    assert segments(journal) == [b for b in before if b.endswith('%08d.journal' % last[0])]
    # the writer forgets what was deleted when it needs room (a new segment here)
    bytes_before = journal.disk_bytes
    for i in range(150, 200):
        journal.append(rec(i, 1200))
    assert journal.disk_bytes < bytes_before
    reporter = external_mod.JournalOnly(journal, journal.stats, stats_interval=0)
    assert reporter.unsent() == 50
    # a reader that starts later (the sender restarted) goes on from the checkpoint
    again = reader(journal)
    assert again.confirmed == 150
    rest = []
    while len(rest) < 50:
        again._next_listing = 0.0
        rest += again.read(1000)
    assert calls(rest) == list(range(150, 200))


def test_a_checkpoint_inside_a_frame_resumes_at_the_next_frame(tmp_path):
    journal = writer(tmp_path)
    for i in range(5):
        journal.append(rec(i))
    first = reader(journal)
    items = first.read(2)
    first.commit((items[1][0][0], items[1][0][1] + 1))     # what _send commits
    assert calls(reader(journal).read(10)) == [2, 3, 4]


def half_write(journal, record: dict, keep: int) -> tuple[bytes, int]:
    """Write the first ``keep`` bytes of ``record``'s frame at the writer's tail, as a
    reader may see a frame being copied; returns the frame and its offset."""
    tail = journal._segments[-1]
    frame = record_mod.encode(record)
    tail.mm[tail.size:tail.size + keep] = frame[:keep]
    return frame, tail.size


def test_a_frame_being_written_is_waited_for_not_counted_corrupt(tmp_path, monkeypatch):
    journal = writer(tmp_path)
    stats = Stats()
    live = reader(journal, stats)
    journal.append(rec(0))
    frame, offset = half_write(journal, rec(1, 500), 300)
    assert calls(live.read(10)) == [0]
    assert calls(live.read(10)) == []          # seen twice, nothing follows it: waiting
    monkeypatch.setattr(live_mod, 'SETTLE_SECONDS', 0.0)
    assert calls(live.read(10)) == []          # settled, but no later frame: still waiting
    assert stats.counters['corrupt_records'] == 0
    journal._segments[-1].mm[offset:offset + len(frame)] = b'\0' * len(frame)
    journal.append(rec(1, 500))                # the writer finishes it
    journal.append(rec(2))
    assert calls(live.read(10)) == [1, 2]
    assert stats.counters['corrupt_records'] == 0


def test_a_bad_frame_followed_by_a_good_one_is_corrupt_once_settled(tmp_path, monkeypatch,
                                                                    caplog):
    journal = writer(tmp_path)
    stats = Stats()
    live = reader(journal, stats)
    journal.append(rec(0))
    tail = journal._segments[-1]
    start = tail.size
    journal.append(rec(1, 100))
    tail.mm[start + 20] ^= 0xFF                # damage the payload: the CRC fails
    journal.append(rec(2))
    assert calls(live.read(10)) == [0]         # first sight: maybe half written
    assert stats.counters['corrupt_records'] == 0
    monkeypatch.setattr(live_mod, 'SETTLE_SECONDS', 0.0)
    assert calls(live.read(10)) == [2]
    assert stats.counters['corrupt_records'] == 1
    assert 'corrupt record in %s at byte %d skipped' % (tail.path, start) in caplog.text


def test_a_bad_frame_at_the_end_of_a_finished_segment_is_corrupt_at_once(tmp_path):
    journal = writer(tmp_path)
    stats = Stats()
    live = reader(journal, stats)
    journal.append(rec(0))
    tail = journal._segments[-1]
    half_write(journal, rec(1, 500), 300)      # a frame the writer never finished
    journal._new_disk_segment(0)               # ... and it moved on
    journal.append(rec(2))
    assert tail.mm is None                     # the writer unmapped it when it moved on
    live._next_listing = 0.0
    assert calls(live.read(10)) == [0, 2]
    assert stats.counters['corrupt_records'] == 1


def test_drop_oldest_counts_only_what_the_sender_has_not_confirmed(tmp_path, caplog):
    journal = writer(tmp_path, max_bytes=4 * SEGMENT)
    live = reader(journal)
    n = 0
    while len(segments(journal)) < 4:
        journal.append(rec(n, 1200))
        n += 1
    items = []
    while True:                                # the sender reads and confirms half of
        live._next_listing = 0.0               # the first segment
        more = live.read(10)
        items += more
        if len(items) >= 20:
            break
    live.commit((items[19][0][0], items[19][0][1] + 1))
    first_segment_records = journal._segments[0].records
    while not journal.stats.counters['dropped']:
        journal.append(rec(n, 1200))
        n += 1
    assert journal.stats.counters['dropped'] == first_segment_records - 20
    assert 'overflow policy drop_oldest dropped %d' % (first_segment_records - 20) in caplog.text


def test_without_a_disk_nothing_waits_in_memory_it_is_dropped_and_said(tmp_path, caplog):
    directory = tmp_path / 'gone'
    directory.mkdir()
    journal = writer(directory)
    journal.append(rec(0))
    for path in glob.glob(str(directory / '*')):
        os.unlink(path)
    os.rmdir(str(directory))
    journal._close_writer()                    # the next append needs a new segment
    assert journal.append(rec(1)) is False
    assert journal.append(rec(2)) is False     # within DISK_RETRY: no system call
    assert journal.stats.counters['dropped'] == 2
    assert journal.stats.counters['journal_errors'] == 1
    assert 'with sender = external none is kept in memory' in caplog.text
    assert not any(not s.on_disk for s in journal._segments)


def test_close_keeps_the_files_for_the_sender_unless_nothing_was_journaled(tmp_path):
    journal = writer(tmp_path)
    journal.append(rec(0))
    journal.close(keep=False)
    names = sorted(os.path.basename(p)[len(journal.owner):]
                   for p in glob.glob(os.path.join(str(tmp_path), journal.owner + '.*')))
    assert names == ['.00000001.journal', '.ckpt', '.lock']
    unused = writer(tmp_path)
    unused.close(keep=False)
    assert glob.glob(os.path.join(str(tmp_path), unused.owner + '.*')) == []


def test_flush_waits_for_the_checkpoint(tmp_path):
    journal = writer(tmp_path)
    reporter = external_mod.JournalOnly(journal, journal.stats, stats_interval=0)
    assert reporter.flush(0.0) is True         # nothing appended
    journal.append(rec(0))
    journal.append(rec(1))
    assert reporter.flush(0.05) is False
    live = reader(journal)
    items = live.read(10)
    live.commit((items[0][0][0], items[0][0][1] + 1))
    assert reporter.flush(0.05) is False       # the second is not confirmed yet
    live.commit((items[1][0][0], items[1][0][1] + 1))
    assert reporter.flush(0.05) is True
    snap = reporter.report()
    assert (snap['journaled'], snap['unsent'], snap['sender']) == (2, 0, 'external')
    with open(os.path.join(str(tmp_path), journal.owner + '.stats.json')) as f:
        assert '"unsent": 0' in f.read()


def test_the_reporter_warns_when_no_sender_process_runs(tmp_path, caplog):
    journal = writer(tmp_path)
    external_mod.JournalOnly(journal, journal.stats)
    assert 'no audit-notifier send process serves %s' % tmp_path in caplog.text
    caplog.clear()
    fd = journal_mod.try_lock(os.path.join(str(tmp_path), external_mod.SEND_LOCK))
    try:
        assert external_mod.sender_running(str(tmp_path)) is True
        external_mod.JournalOnly(journal, journal.stats)
        assert 'no audit-notifier send' not in caplog.text
    finally:
        os.close(fd)
    assert external_mod.sender_running(str(tmp_path)) is False


@pytest.mark.parametrize('content, expected', [
    (b'3 120\n', (3, 120, 0)), (b'3 120 42\n', (3, 120, 42)), (b'', (0, 0, 0)),
    (b'x y', (0, 0, 0))])
def test_checkpoint_files_old_and_new(tmp_path, content, expected):
    path = tmp_path / 'a.ckpt'
    path.write_bytes(content)
    assert journal_mod.read_checkpoint_count(str(path)) == expected
    assert journal_mod.read_checkpoint(str(path)) == expected[:2]


def test_count_appended_counts_the_writers_new_frames_across_segments(tmp_path):
    """The send process's arrivals: frames appended since it followed the journal;
    the newest frame of a segment counts once another follows it or the writer
    moved on (its header may be half copied)."""
    journal = writer(tmp_path)
    for i in range(5):
        journal.append(rec(i))
    live = reader(journal)                     # what was there did not arrive now
    assert live.count_appended() == 0
    for i in range(5, 8):
        journal.append(rec(i))
    assert live.count_appended() == 3          # frames 4..6; 7 is the newest
    assert live.count_appended() == 0
    journal.append(rec(8))
    assert live.count_appended() == 1          # frame 7
    for i in range(9, 209):                    # ~1.3 KB each: several 64 KiB segments
        journal.append(rec(i, 1200))
    assert len(segments(journal)) >= 4
    assert live.count_appended() == 200        # 8..207: the finished segments whole
    journal.append(rec(209))
    assert live.count_appended() == 1
    assert calls(read_at_least(live, 210)) == list(range(210))   # reading is separate
    live.close()
    journal.close(keep=False)


def test_count_appended_skips_segments_already_sent_and_deleted(tmp_path):
    journal, live = written(tmp_path, 100)
    got = read_at_least(live, 99)
    live.commit((got[-1][0][0], got[-1][0][1]))   # deletes all but the newest segment
    [newest] = segments(journal)
    # the count had not mapped the deleted segments (none existed when it began):
    # it counts in the newest only
    assert live.count_appended() == journal_mod.count_frames(newest, SEGMENT, 0) - 1
    journals = live_mod.LiveJournals(str(tmp_path), Stats(), lambda owner: None)
    journals.scan()
    assert journals.count_appended() == 0
    for i in range(100, 110):
        journal.append(rec(i))
    assert journals.count_appended() == 10     # frames 99..108 (the first newest is 99)
    assert journals.count_appended() == 10     # a running total for the pacer
    live.close()
    journals.close()
    journal.close(keep=False)
