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

"""The journal and its record frames, without a broker: append, read, commit, torn and
corrupt frames, caps and overflow policies, disk failures, orphans."""

from __future__ import annotations

import errno
import logging
import os

import pytest

from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import record as record_mod
from audit_notifier.delivery.stats import Stats


def make_journal(directory, **kw) -> journal_mod.Journal:
    args = dict(max_bytes=1 << 30, max_records=1000, overflow='drop_oldest',
                block_seconds=0.0, fsync=False, stats=Stats())
    args.update(kw)
    return journal_mod.Journal(str(directory) if directory is not None else None, **args)


def rec(i: int, size: int = 0) -> dict:
    return {'t': 'f', 'c': i, 'pad': 'x' * size}


def read_all(journal, limit=10000):
    return [r for _, r in journal.read(limit)]


# -- frames --------------------------------------------------------------------------------

def test_frames_round_trip_and_stop_before_a_torn_tail():
    data = b''.join(record_mod.encode(rec(i)) for i in range(3))
    frames = list(record_mod.decode_frames(data + record_mod.encode(rec(3))[:-2]))
    assert [r['c'] for _, _, r in frames] == [0, 1, 2]
    assert frames[-1][1] == len(data)


@pytest.mark.parametrize('damage', ['flip_payload', 'flip_magic', 'garbage_between'])
def test_a_corrupt_frame_is_skipped_and_the_next_one_read(damage):
    a, b, c = (record_mod.encode(rec(i)) for i in range(3))
    if damage == 'flip_payload':
        b = b[:-3] + bytes([b[-3] ^ 0xFF]) + b[-2:]
    elif damage == 'flip_magic':
        b = b'\x00' + b[1:]
    else:
        a = a + b'\x00garbage\xff\xfe'
    frames = list(record_mod.decode_frames(a + b + c))
    good = [r['c'] for _, _, r in frames if r is not None]
    assert good == ([0, 2] if damage != 'garbage_between' else [0, 1, 2])
    assert sum(1 for _, _, r in frames if r is None) == 1


def test_a_frame_whose_payload_is_not_a_dict_is_corrupt():
    import marshal
    import struct
    import zlib
    payload = marshal.dumps([1, 2])
    frame = struct.pack('<2sII', record_mod.MAGIC, len(payload), zlib.crc32(payload)) + payload
    frames = list(record_mod.decode_frames(frame + record_mod.encode(rec(7))))
    assert [r for _, _, r in frames] == [None, rec(7)]


# -- append, read, commit ------------------------------------------------------------------

def test_append_read_commit_in_order_and_segments_removed(tmp_path):
    journal = make_journal(tmp_path, segment_bytes=64 * 1024)
    for i in range(300):
        assert journal.append(rec(i, 500))
    segments = sorted(p for p in os.listdir(tmp_path) if p.endswith('.journal'))
    assert len(segments) >= 2
    for p in segments:
        assert os.stat(os.path.join(tmp_path, p)).st_mode & 0o777 == 0o600
    got = journal.read(10000)
    assert [r['c'] for _, r in got] == list(range(300))
    last = got[-1][0]
    journal.commit((last[0], last[1] + 1))
    left = sorted(p for p in os.listdir(tmp_path) if p.endswith('.journal'))
    assert left == segments[-1:]               # the tail segment stays open
    assert journal_mod.read_checkpoint(os.path.join(
        tmp_path, journal.owner + '.ckpt')) == (last[0], last[1] + 1)
    journal.close(keep=False)
    assert os.listdir(tmp_path) == []


def test_read_returns_only_complete_records_and_resumes(tmp_path):
    journal = make_journal(tmp_path)
    for i in range(5):
        journal.append(rec(i))
    assert [r['c'] for _, r in journal.read(3)] == [0, 1, 2]
    journal.append(rec(5))
    assert [r['c'] for _, r in journal.read(10)] == [3, 4, 5]
    assert journal.read(10) == []
    assert journal.unsent() == 0


def test_memory_mode_keeps_order_and_writes_nothing(tmp_path):
    journal = make_journal(None)
    for i in range(5):
        journal.append(rec(i))
    assert journal.unsent() == 5
    assert read_all(journal) == [rec(i) for i in range(5)]
    assert os.listdir(tmp_path) == []


# -- caps and overflow policies --------------------------------------------------------------

def test_drop_oldest_on_disk_drops_whole_old_segments_counted(tmp_path, caplog):
    stats = Stats()
    frame = len(record_mod.encode(rec(0, 1000)))
    journal = make_journal(tmp_path, stats=stats, max_bytes=200 * 1024,
                           segment_bytes=64 * 1024)
    with caplog.at_level(logging.ERROR):
        for i in range(400):
            assert journal.append(rec(i, 1000))
    got = [r['c'] for r in read_all(journal)]
    dropped = stats.counters['dropped']
    assert dropped > 0 and journal.dropped == dropped
    assert got == list(range(dropped, 400))    # the oldest went, the rest in order
    assert journal.disk_bytes <= 200 * 1024 + frame
    assert 'overflow policy drop_oldest dropped' in caplog.text


def test_drop_newest_on_disk_refuses_new_records(tmp_path, caplog):
    stats = Stats()
    journal = make_journal(tmp_path, stats=stats, max_bytes=64 * 1024, overflow='drop_newest')
    kept = sum(journal.append(rec(i, 1000)) for i in range(100))
    assert 0 < kept < 100
    assert stats.counters['dropped'] == 100 - kept
    assert [r['c'] for r in read_all(journal)] == list(range(kept))
    assert 'overflow policy drop_newest dropped 1' in caplog.text


def test_block_waits_for_room_then_drops(tmp_path):
    stats = Stats()
    journal = make_journal(tmp_path, stats=stats, max_bytes=64 * 1024, overflow='block',
                           block_seconds=0.05)
    results = [journal.append(rec(i, 1000)) for i in range(80)]
    kept = sum(results)
    assert results == [True] * kept + [False] * (80 - kept)
    assert stats.counters['dropped'] == 80 - kept
    # Room made by the sender (read + commit) lets the next record in.
    got = journal.read(10000)
    journal.commit((got[-1][0][0], got[-1][0][1] + 1))
    assert journal.append(rec(999, 1000))


@pytest.mark.parametrize('policy,expected', [('drop_oldest', list(range(5, 15))),
                                             ('drop_newest', list(range(10)))])
def test_memory_cap_and_policy(policy, expected):
    stats = Stats()
    journal = make_journal(None, stats=stats, max_records=10, overflow=policy)
    for i in range(15):
        journal.append(rec(i))
    assert [r['c'] for r in read_all(journal)] == expected
    assert stats.counters['dropped'] == 5


# -- disk failures ---------------------------------------------------------------------------

def test_enospc_falls_back_to_memory_and_returns_to_disk(tmp_path, monkeypatch, caplog,
                                                         oslo_log_lines):
    """A full disk shows when a segment is allocated (never as a SIGBUS on a write
    into its map): the records go to memory, in order, until the disk has room."""
    stats = Stats()
    journal = make_journal(tmp_path, stats=stats, segment_bytes=64 * 1024)
    journal.append(rec(0, 1000))
    real = os.posix_fallocate
    full = {'on': True}

    def fallocate(fd, offset, length):
        if full['on']:
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real(fd, offset, length)
    monkeypatch.setattr(journal_mod.os, 'posix_fallocate', fallocate)
    with caplog.at_level(logging.ERROR):
        for i in range(1, 100):                  # past the first 64 KiB segment
            assert journal.append(rec(i, 1000))
    assert stats.counters['journal_errors'] >= 1
    assert 'No space left on device' in caplog.text and 'kept in memory' in caplog.text
    # in the service's log the cause is said once (oslo.log appends an active exception)
    line, = [x for x in oslo_log_lines() if 'cannot create a journal segment' in x]
    assert line.count('No space left on device') == 1, line
    in_memory = journal.unsent_on_disk_and_in_memory()[1]
    assert 0 < in_memory < 100
    full['on'] = False
    monkeypatch.setattr(journal_mod, 'DISK_RETRY', 0.0)
    journal._disk_retry_at = 0.0
    assert journal.append(rec(100, 1000))
    assert journal.unsent_on_disk_and_in_memory()[1] == in_memory   # back on disk
    assert [r['c'] for r in read_all(journal)] == list(range(101))
    segments = sorted(p for p in os.listdir(tmp_path) if p.endswith('.journal'))
    assert len(segments) == 2 and stats.counters['dropped'] == 0


def test_journal_dir_replaced_by_a_file_keeps_delivering_from_memory(tmp_path, monkeypatch):
    directory = tmp_path / 'journal'
    directory.mkdir()
    stats = Stats()
    journal = make_journal(directory, stats=stats, segment_bytes=64 * 1024)
    journal.append(rec(0, 100))
    for name in os.listdir(directory):
        os.unlink(directory / name)
    directory.rmdir()
    directory.write_text('not a directory')
    monkeypatch.setattr(journal_mod, 'DISK_RETRY', 0.0)
    for i in range(1, 700):                   # past a segment: a new one cannot be made
        assert journal.append(rec(i, 100))
    assert stats.counters['journal_errors'] >= 1
    assert [r['c'] for r in read_all(journal)] == list(range(700))


# -- orphans ---------------------------------------------------------------------------------

def test_orphans_are_claimed_once_oldest_first_from_their_checkpoint(tmp_path):
    older = make_journal(tmp_path)
    newer = make_journal(tmp_path)
    for i in range(4):
        older.append(rec(i))
        newer.append(rec(10 + i))
    got = older.read(2)
    older.commit((got[-1][0][0], got[-1][0][1] + 1))     # 0 and 1 were confirmed
    live = make_journal(tmp_path)
    assert journal_mod.claim_orphans(str(tmp_path), exclude=live.owner) == []  # all alive
    older.close(keep=True)
    newer.close(keep=True)
    claimed = journal_mod.claim_orphans(str(tmp_path), exclude=live.owner)
    assert [o.owner for o in claimed] == [older.owner, newer.owner]
    assert journal_mod.claim_orphans(str(tmp_path), exclude=live.owner) == []  # locked
    stats = Stats()
    assert [r['c'] for _, r in claimed[0].records(stats)] == [2, 3]
    assert [r['c'] for _, r in claimed[1].records(stats)] == [10, 11, 12, 13]
    for orphan in claimed:
        orphan.finish()
    left = sorted(os.listdir(tmp_path))
    assert all(name.startswith(live.owner) for name in left), left


def test_an_unreadable_orphan_segment_is_kept_logged_and_counted(
        tmp_path, monkeypatch, caplog):
    dead = make_journal(tmp_path)
    dead.append(rec(1))
    dead.close(keep=True)
    segment = [p for p in os.listdir(tmp_path) if p.endswith('.journal')][0]
    real_open = open

    def deny(path, *args, **kwargs):
        if str(path).endswith(segment):
            raise PermissionError(errno.EACCES, 'Permission denied')
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr('builtins.open', deny)
    stats = Stats()
    (orphan,) = journal_mod.claim_orphans(str(tmp_path))
    with caplog.at_level(logging.ERROR):
        assert list(orphan.records(stats)) == []
    orphan.finish()
    assert stats.counters['journal_errors'] == 1
    assert 'cannot read the journal segment' in caplog.text and segment in caplog.text
    assert os.path.exists(tmp_path / segment)


def test_corrupt_records_in_an_orphan_are_counted_and_the_rest_read(tmp_path, caplog):
    dead = make_journal(tmp_path)
    for i in range(3):
        dead.append(rec(i))
    dead.close(keep=True)
    segment = tmp_path / [p for p in os.listdir(tmp_path) if p.endswith('.journal')][0]
    data = segment.read_bytes()
    frame = len(record_mod.encode(rec(0)))
    data = data[:frame + 12] + b'\xff' + data[frame + 13:] + b'\xa7\x1d\x10'   # + torn tail
    segment.write_bytes(data)
    stats = Stats()
    (orphan,) = journal_mod.claim_orphans(str(tmp_path))
    with caplog.at_level(logging.ERROR):
        got = [r['c'] for _, r in orphan.records(stats)]
    assert got == [0, 2]
    assert stats.counters['corrupt_records'] == 1
    assert 'corrupt record in' in caplog.text
    orphan.finish()


@pytest.mark.parametrize('policy', ['drop_newest', 'block'])
def test_a_full_journal_takes_records_again_once_what_it_held_was_sent(tmp_path, policy):
    stats = Stats()
    journal = make_journal(tmp_path, stats=stats, max_bytes=64 * 1024, overflow=policy,
                           block_seconds=0.0)
    kept = sum(journal.append(rec(i, 1000)) for i in range(100))
    assert kept < 100
    got = journal.read(10000)
    assert len(got) == kept
    journal.commit((got[-1][0][0], got[-1][0][1] + 1))
    assert journal.disk_bytes == 0               # the tail, all sent, was removed
    assert all(journal.append(rec(1000 + i, 1000)) for i in range(10))
    assert [r['c'] for r in read_all(journal)] == list(range(1000, 1010))


def test_drop_oldest_never_drops_the_segment_being_read(tmp_path, monkeypatch):
    """A record the sender is reading is never also counted as dropped."""
    stats = Stats()
    journal = make_journal(tmp_path, stats=stats, max_bytes=256 * 1024)
    for i in range(100):
        journal.append(rec(i, 1000))
    real = journal._read_frames

    def read_while_the_journal_overflows(*args):
        out = real(*args)
        for j in range(300):                      # request threads fill it meanwhile
            journal.append(rec(500 + j, 1000))
        return out
    monkeypatch.setattr(journal, '_read_frames', read_while_the_journal_overflows)
    first = journal.read(10)
    monkeypatch.setattr(journal, '_read_frames', real)
    rest = journal.read(100000)
    delivered = len(first) + len(rest)
    assert [r['c'] for _, r in first] == list(range(10))
    assert delivered + stats.counters['dropped'] == 400
    assert journal.unsent() == 0


def test_close_never_removes_a_record_appended_before_it(tmp_path):
    journal = make_journal(tmp_path)
    journal.append(rec(1))
    got = journal.read(10)
    journal.commit((got[-1][0][0], got[-1][0][1] + 1))
    journal.append(rec(2))                        # a call answered during shutdown
    assert journal.close(keep=False) == (1, 0)
    (orphan,) = journal_mod.claim_orphans(str(tmp_path))
    assert [r['c'] for _, r in orphan.records(Stats())] == [2]
    orphan.finish()
