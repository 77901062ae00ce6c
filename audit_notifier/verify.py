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

"""``audit-notifier verify``: is a captured trail complete and unaltered?

Reads notifications as a consumer stores them (JSON lines: an AMQP message body
of messagingv2 or messaging, or an envelope with its context as ``_context_<key>``
keys or under ``"context"``), groups them by stream (:mod:`audit_notifier.trail`)
and reports, one line per problem: gaps, duplicates (identical: a resend; or
different versions of one sequence number), reordering, altered notifications,
digests that do not match the chain, bad or missing signatures, and lines that
are not chained notifications.  Pure functions over the lines read; no bus
unless the command reads its own queue.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import hmac
from typing import Iterable

from audit_notifier import trail
from audit_notifier.stored import oslo_message

_ALGORITHMS = ('hmac-sha256', 'ed25519')


@dataclasses.dataclass
class Item:
    """One chained notification as read."""
    line: int
    envelope: dict
    context: dict
    hash: str

    @property
    def seq(self) -> int:
        return self.context['audit_seq']

    @property
    def is_digest(self) -> bool:
        return self.envelope.get('event_type') == trail.DIGEST_EVENT


@dataclasses.dataclass
class Keys:
    """What signatures are checked with (either may be None)."""
    hmac_key: bytes | None = None
    ed25519_public: object | None = None

    @property
    def any(self) -> bool:
        return self.hmac_key is not None or self.ed25519_public is not None


@dataclasses.dataclass
class Report:
    lines: list[str] = dataclasses.field(default_factory=list)     # every output line
    problems: int = 0
    notifications: int = 0
    streams: int = 0

    def problem(self, text: str) -> None:
        self.problems += 1
        self.lines.append(text)

    def note(self, text: str) -> None:
        self.lines.append('note: ' + text)


# -- reading --------------------------------------------------------------------------

def parse(text: str) -> tuple[dict, dict]:
    """(envelope, context) of one stored notification; ValueError if it is none."""
    inner = oslo_message(text)
    context = {}
    for key in ('context', 'ctxt'):
        if isinstance(inner.get(key), dict):
            context.update(inner[key])
    context.update((k[len('_context_'):], v) for k, v in inner.items()
                   if k.startswith('_context_'))
    envelope = {k: inner.get(k) for k in trail.HASHED_FIELDS}
    return envelope, context


def _chain_context(context: dict) -> dict | None:
    chain = {k: context[k] for k in trail.CHAIN_KEYS if k in context}
    if not isinstance(chain.get('audit_stream'), str) or \
            not isinstance(chain.get('audit_seq'), int) or \
            isinstance(chain.get('audit_seq'), bool) or chain['audit_seq'] < 1 or \
            not isinstance(chain.get('audit_prev'), str):
        return None
    return chain


def read(lines: Iterable[str], report: Report) -> dict[str, list[Item]]:
    """Chained notifications by stream, in the order read; what is not one is a
    problem line."""
    streams: dict[str, list[Item]] = {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            envelope, context = parse(text)
        except (ValueError, TypeError) as exc:
            report.problem('line %d: not an oslo.messaging notification (%s)'
                           % (number, ' '.join(str(exc).split())[:120]))
            continue
        chain = _chain_context(context)
        if chain is None:
            report.problem('line %d: %s %s carries no chain fields (audit_stream, '
                           'audit_seq, audit_prev)' % (number, envelope.get('event_type'),
                                                       envelope.get('message_id')))
            continue
        report.notifications += 1
        item = Item(number, envelope, chain, trail.notification_hash(envelope, chain))
        streams.setdefault(chain['audit_stream'], []).append(item)
    return streams


# -- checking -------------------------------------------------------------------------

def _out_of_order(seqs: list[int]) -> list[int]:
    """Indexes of ``seqs`` outside one longest increasing subsequence: the fewest
    notifications that, moved, would put the stream in order."""
    tails: list[int] = []          # seqs[tail index] of the best run of each length
    tail_at: list[int] = []
    parent = [-1] * len(seqs)
    for i, seq in enumerate(seqs):
        k = bisect.bisect_left(tails, seq)
        if k == len(tails):
            tails.append(seq)
            tail_at.append(i)
        else:
            tails[k] = seq
            tail_at[k] = i
        parent[i] = tail_at[k - 1] if k else -1
    keep = set()
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        keep.add(i)
        i = parent[i]
    return [i for i in range(len(seqs)) if i not in keep]


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and out[-1][1] == n - 1:
            out[-1] = (out[-1][0], n)
        else:
            out.append((n, n))
    return out


def check_signature(payload: dict, keys: Keys) -> str | None:
    """None when the digest's signature checks (or cannot be checked: no key of
    its kind), else the problem."""
    algorithm = payload.get('algorithm')
    signature = payload.get('signature')
    if algorithm is None or signature is None:
        return 'unsigned' if keys.any else None
    if algorithm not in _ALGORITHMS or not isinstance(signature, str):
        return 'unknown signature algorithm %r' % (algorithm,)
    data = trail.signed_part(payload)
    if algorithm == 'hmac-sha256':
        if keys.hmac_key is None:
            return 'signed with hmac-sha256 but no --key-file given' if keys.any else None
        good = hmac.new(keys.hmac_key, data, hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(good.encode(), signature.encode('utf-8')) \
            else 'bad signature'
    if keys.ed25519_public is None:
        return 'signed with ed25519 but no --public-key given' if keys.any else None
    from cryptography.exceptions import InvalidSignature
    try:
        keys.ed25519_public.verify(base64.b64decode(signature, validate=True), data)
    except (InvalidSignature, ValueError):
        return 'bad signature'
    return None


class _Stream:
    def __init__(self, name: str, items: list[Item]):
        self.name = name
        self.items = items
        self.by_seq: dict[int, Item] = {}
        for item in items:
            self.by_seq.setdefault(item.seq, item)
        self.last = max(self.by_seq)
        self.expected_last = self.last      # a successor may name a later seq


def check(streams: dict[str, list[Item]], keys: Keys, report: Report,
          allow_resends: bool = False, ignore_order: bool = False) -> None:
    """Every problem of every stream, one line each."""
    checked = {name: _Stream(name, items) for name, items in streams.items()}
    follows = _check_follows(checked, report)
    report.streams = len(checked)
    for name in sorted(checked):
        _check_stream(checked[name], keys, report, allow_resends, ignore_order,
                      follows.get(name))
    _note_resends(checked, report)


def _check_follows(streams: dict[str, _Stream], report: Report) -> dict[str, str]:
    """Successor links: the named predecessor's notification must have the named
    hash; a predecessor that ends before the named seq has a gap at its end."""
    names = {}
    for name, stream in sorted(streams.items()):
        first = stream.by_seq.get(1)
        link = first.context.get('audit_follows') if first else None
        if not isinstance(link, dict):
            continue
        other = link.get('stream')
        names[name] = str(other)
        before = streams.get(other)
        seq = link.get('seq')
        if before is None or not isinstance(seq, int):
            continue
        before.expected_last = max(before.expected_last, seq)
        item = before.by_seq.get(seq)
        if item is not None and item.hash != link.get('hash'):
            report.problem('stream %s: its seq %d is not the notification stream %s says '
                           'it follows (altered)' % (other, seq, name))
    return names


def _check_stream(stream: _Stream, keys: Keys, report: Report, allow_resends: bool,
                  ignore_order: bool, follows: str | None) -> None:
    name = stream.name
    before = report.problems

    def problem(text):
        report.problem('stream %s: %s' % (name, text))

    # Duplicates: identical (a resend) or different versions of one seq.
    seen: dict[int, list[Item]] = {}
    for item in stream.items:
        seen.setdefault(item.seq, []).append(item)
    for seq in sorted(seen):
        copies = seen[seq]
        if len(copies) < 2:
            continue
        if len({c.hash for c in copies}) == 1:
            text = 'seq %d received %d times, identical (a resend)' % (seq, len(copies))
            if allow_resends:
                report.note('stream %s: %s' % (name, text))
            else:
                problem(text)
        else:
            problem('seq %d received in %d different versions (lines %s)' % (
                seq, len({c.hash for c in copies}), ', '.join(str(c.line) for c in copies)))
    # Order: the first copy of each seq, in the order read.
    firsts = []
    for item in stream.items:
        if stream.by_seq[item.seq] is item:
            firsts.append(item)
    for index in _out_of_order([i.seq for i in firsts]):
        item = firsts[index]
        previous = firsts[index - 1].seq if index else None
        text = 'seq %d out of order (line %d%s)' % (
            item.seq, item.line, ', after seq %d' % previous if previous else ', first')
        if ignore_order:
            report.note('stream %s: %s' % (name, text))
        else:
            problem(text)
    # Gaps.
    missing = [s for s in range(1, stream.expected_last + 1) if s not in stream.by_seq]
    for low, high in _ranges(missing):
        if low == high:
            problem('seq %d missing' % low)
        else:
            problem('seq %d-%d missing (%d notifications)' % (low, high, high - low + 1))
    # Links: each notification's audit_prev is the hash of the one before.
    failed = []
    first = stream.by_seq.get(1)
    if first is not None and first.context['audit_prev'] != trail.ZERO_HASH:
        failed.append(0)
    for seq in sorted(stream.by_seq):
        after = stream.by_seq.get(seq + 1)
        if after is not None and after.context['audit_prev'] != stream.by_seq[seq].hash:
            failed.append(seq)
    altered = set()
    index = 0
    while index < len(failed):
        # Link n->n+1 and n+1->n+2 both broken: n+1 itself (its audit_prev) changed.
        if index + 1 < len(failed) and failed[index + 1] == failed[index] + 1:
            altered.add(failed[index] + 1)
            index += 2
        else:
            altered.add(max(failed[index], 1))
            index += 1
    for seq in sorted(altered):
        problem('seq %d altered (its hash is not the audit_prev of seq %d)' % (seq, seq + 1)
                if seq + 1 in stream.by_seq else 'seq %d altered' % seq)
    # Digests.
    digests = [stream.by_seq[s] for s in sorted(stream.by_seq) if stream.by_seq[s].is_digest]
    previous = 0
    for digest in digests:
        for text in _digest_problems(digest, stream, previous, altered, keys):
            problem('digest seq %d: %s' % (digest.seq, text))
        previous = digest.seq
    if keys.any and not digests:
        problem('no digest: nothing signed covers this stream')
    # Summary.
    found = report.problems - before
    last_digest = digests[-1].seq if digests else 0
    report.lines.append('stream %s: %d notification(s), seq 1-%d, %d digest(s)%s: %s' % (
        name, len(stream.by_seq), stream.last, len(digests),
        ', follows %s' % follows if follows else '',
        '%d problem(s)' % found if found else 'OK'))
    if stream.last > last_digest:
        report.note('stream %s: seq %d-%d come after its last digest (no digest covers '
                    'them yet)' % (name, last_digest + 1, stream.last))


def _digest_problems(digest: Item, stream: _Stream, previous: int, altered: set,
                     keys: Keys) -> list[str]:
    payload = digest.envelope.get('payload')
    if not isinstance(payload, dict):
        return ['its payload is not an object']
    out = []
    expected = {'stream': stream.name, 'first_seq': previous + 1, 'last_seq': digest.seq - 1,
                'count': digest.seq - 1 - previous}
    for key, value in expected.items():
        if payload.get(key) != value:
            out.append('%s is %r, the chain says %r' % (key, payload.get(key), value))
    covered = stream.by_seq.get(digest.seq - 1)
    if covered is not None and covered.seq not in altered and \
            payload.get('last_hash') != covered.hash:
        out.append('last_hash is not the hash of seq %d' % covered.seq)
    signature = check_signature(payload, keys)
    if signature is not None:
        out.append(signature)
    return out


def _note_resends(streams: dict[str, _Stream], report: Report) -> None:
    """A message_id in two streams: a resend by the next process after a crash
    (at-least-once), told apart from tampering: not a problem."""
    where: dict[str, list[str]] = {}
    for name, stream in streams.items():
        for item in stream.by_seq.values():
            if not item.is_digest:
                where.setdefault(item.envelope.get('message_id'), []).append(name)
    pairs: dict[tuple, int] = {}
    for names in where.values():
        if len(names) > 1:
            key = tuple(sorted(set(names)))
            pairs[key] = pairs.get(key, 0) + 1
    for names, count in sorted(pairs.items()):
        report.note('%d notification(s) appear in streams %s with the same message_id '
                    '(sent again after a restart: at-least-once delivery, not a problem)'
                    % (count, ', '.join(names)))


def verify(lines: Iterable[str], keys: Keys | None = None, allow_resends: bool = False,
           ignore_order: bool = False) -> Report:
    """The report on a captured trail (``report.problems`` 0: complete and intact)."""
    report = Report()
    keys = keys or Keys()
    streams = read(lines, report)
    check(streams, keys, report, allow_resends, ignore_order)
    report.lines.append('verify: %d stream(s), %d notification(s), %d problem(s)%s' % (
        report.streams, report.notifications, report.problems,
        '' if report.problems else ': the trail is complete and unaltered'))
    return report


# -- keys -----------------------------------------------------------------------------

def load_keys(key_file: str | None, public_key: str | None) -> Keys:
    """The verification keys; ValueError (one line, never the key) when unusable."""
    keys = Keys()
    if key_file:
        try:
            with open(key_file, 'rb') as f:
                data = f.read().strip()
        except OSError as exc:
            raise ValueError('cannot read --key-file %s: %s' % (key_file, exc.strerror))
        if not data:
            raise ValueError('--key-file %s is empty' % key_file)
        keys.hmac_key = data
    if public_key:
        try:
            with open(public_key, 'rb') as f:
                data = f.read()
        except OSError as exc:
            raise ValueError('cannot read --public-key %s: %s' % (public_key, exc.strerror))
        try:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ed25519
        except ImportError:
            raise ValueError('--public-key needs the cryptography library')
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise ValueError('--public-key %s is not a PEM public key' % public_key)
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError('--public-key %s is not an Ed25519 key' % public_key)
        keys.ed25519_public = key
    return keys


# -- the command ----------------------------------------------------------------------

def run(path: str | None, key_file: str | None = None, public_key: str | None = None,
        allow_resends: bool = False, ignore_order: bool = False,
        config_files: list[str] | None = None,
        count: int | None = None, timeout: float | None = None, out=None, err=None) -> int:
    """``audit-notifier verify``: 0 when the trail is complete and unaltered, 1 when a
    problem was found, 2 when it could not be read (one line on stderr)."""
    import sys
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        keys = load_keys(key_file, public_key)
    except ValueError as exc:
        print('audit-notifier verify: error: %s' % exc, file=err)
        return 2
    if config_files:
        try:
            lines = _from_bus(config_files, count, timeout, err)
        except ValueError as exc:
            print('audit-notifier verify: error: %s' % exc, file=err)
            return 2
    elif path in (None, '-'):
        lines = sys.stdin.read().splitlines()
    else:
        try:
            with open(path, encoding='utf-8') as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            print('audit-notifier verify: error: cannot read %s: %s'
                  % (path, getattr(exc, 'strerror', None) or exc), file=err)
            return 2
    report = verify(lines, keys, allow_resends, ignore_order)
    for line in report.lines:
        print(line, file=out)
    return 1 if report.problems else 0


def _from_bus(config_files: list[str], count: int | None, timeout: float | None,
              err) -> list[str]:
    """The message bodies a private queue on the filter's exchange receives, until
    ``count`` notifications or ``timeout`` seconds (ValueError on a bus error)."""
    import time

    from audit_notifier.delivery.private_queue import (BusReadError, PrivateQueue,
                                                       source_from_config)
    if count is None and timeout is None:
        raise ValueError('reading from the bus needs --count or --timeout')
    bodies: list[str] = []

    def take(body, _routing_key) -> bool:
        bodies.append(body.decode('utf-8', 'replace') if isinstance(body, bytes) else body)
        return count is None or len(bodies) < count

    listener = None
    try:
        source = source_from_config(list(config_files))
        listener = PrivateQueue(source)
        listener.open()
        print('audit-notifier verify: reading %s from %s, exchange %s (private queue %s)'
              % ('%d notification(s)' % count if count else 'for %g s' % timeout,
                 source.shown, source.exchange, listener.queue), file=err, flush=True)
        listener.consume(take, time.monotonic() + timeout if timeout else None)
    except BusReadError as exc:
        raise ValueError(str(exc))
    finally:
        if listener is not None:
            listener.close()
    return bodies
