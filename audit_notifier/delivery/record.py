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

"""Journal records: the facts of one API call phase, and their on-disk frames.

A record is a small dict of plain values (str, int, float, bytes, lists, dicts),
written by the request path and turned back into an
:class:`~audit_notifier.exchange.Exchange` by the sender, which builds the
notifications from it.  Keys:

``t``  kind: ``s`` an upload started, ``r`` a streamed response is about to send its
       first byte, ``f`` the call finished, ``b`` notifications built outside an API
       call (``n``: their fields)
``c``  call number, unique within the journal that holds it
the first record of a call also has ``k`` (route key), ``p`` (path parameters),
``q`` (request facts: the values of an allow-list of environ keys,
:data:`~audit_notifier.exchange.FACT_KEYS`, never a token), ``a`` (start
time), ``pre`` (a record fetched before the call, for deletes); ``r`` and ``f``
have ``st`` (status line) and ``h`` (the response headers event building reads);
``f`` has ``z`` (end time), ``bs``/``br`` (bytes sent/received), ``us`` (upload
started), ``ok`` (body completed), ``x`` (exception name) and ``bd`` (a small
response body, when the route needs it or the call failed).

Audit policy levels (:mod:`audit_notifier.policy`): the first record has ``lv``
(the level, when not metadata); ``f`` has ``rqn`` (bytes of the JSON request body
the app read), ``rq`` (those bytes, redacted, when they fit ``capture_limit``) or
``rqw`` (withheld: a secret redaction could not mask in place), and at level
request_response ``rs`` (the redacted JSON response, at most ``capture_limit``
bytes), ``rsn`` (its size, when larger) or ``rsw`` (withheld).  Redacting them runs
on the request path, bounded by ``capture_limit`` (about 3 us for a 124-byte patch).

A frame is ``MAGIC, length (u32 LE), crc32 (u32 LE), marshal(record)``: encoding
costs ~1.5 us (JSON: ~5 us), the length and checksum detect torn and corrupt
frames (the reader resynchronises on the next MAGIC), so ``marshal.loads`` only
ever reads bytes this module wrote.
"""

from __future__ import annotations

import marshal
import struct
import zlib
from typing import Iterator

from audit_notifier.exchange import FINISHED, RESPONDED, STARTED, Exchange
from audit_notifier.redaction import (DEFAULT as DEFAULT_REDACTOR, Redactor, captured_body,
                                      redact_bytes)

MAGIC = b'\xa7\x1d'
# What the journal keeps of an error body: events quote at most 256 characters of its
# explanation, and redacting it runs on the request path (~1 us per 100 bytes).
ERROR_BODY_LIMIT = 4096
HEADER = struct.Struct('<2sII')
HEADER_SIZE = HEADER.size
MAX_RECORD = 8 * 1024 * 1024          # far above any record the filter writes

# Response headers event building reads (plus the route map's header sources).
BASE_HEADERS = frozenset({'content-type', 'content-length', 'content-range', 'location',
                          'content-location', 'x-openstack-request-id',
                          'x-compute-request-id'})


class CorruptRecord(ValueError):
    """A frame whose checksum or content is wrong."""


def encode(record: dict) -> bytes:
    payload = marshal.dumps(record)
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_frames(data: bytes, offset: int = 0) -> Iterator[tuple[int, int, dict | None]]:
    """(start, end, record) for each frame in ``data`` from ``offset``; ``record`` is
    None for a corrupt stretch (``start``..``end`` skipped up to the next MAGIC).
    Stops before a torn (incomplete) last frame."""
    size = len(data)
    pos = offset
    while pos + HEADER_SIZE <= size:
        magic, length, crc = HEADER.unpack_from(data, pos)
        if magic == b'\0\0' and length == 0 and crc == 0:
            return                                  # never written (a segment's tail)
        end = pos + HEADER_SIZE + length
        if magic == MAGIC and length <= MAX_RECORD:
            if end > size:
                return                                  # torn, or still being written
            payload = data[pos + HEADER_SIZE:end]
            if zlib.crc32(payload) == crc:
                try:
                    record = marshal.loads(payload)  # our own CRC-checked frames  # nosec B302
                except (ValueError, EOFError, TypeError):
                    record = None
                if isinstance(record, dict):
                    yield pos, end, record
                    pos = end
                    continue
        # Corrupt: skip to the next frame start.
        nxt = data.find(MAGIC, pos + 1)
        if nxt < 0:
            # Keep the last bytes: they may be the start of a frame being written.
            nxt = max(pos + 1, size - HEADER_SIZE + 1)
            yield pos, nxt, None
            return
        yield pos, nxt, None
        pos = nxt


# -- request path: Exchange -> record ---------------------------------------------------

KINDS = {STARTED: 's', RESPONDED: 'r', FINISHED: 'f'}
PHASES = {v: k for k, v in KINDS.items()}


def of_phase(phase: str, exchange: Exchange, first: bool, headers: frozenset,
             redactor: Redactor = DEFAULT_REDACTOR) -> dict:
    """The record of one phase of ``exchange`` (request path: ~1-2 us).

    The call's first record carries what the request was; later ones only what
    became known since.  ``headers``: lower-case names of the response headers
    to keep; ``redactor``: what an error body may not keep of what it quotes."""
    record = {'t': KINDS[phase], 'c': exchange.call}
    if first:
        route = exchange.route
        record['k'] = [route.method, route.path]
        record['p'] = exchange.params
        record['q'] = exchange.facts
        record['a'] = exchange.started_at
        if exchange.prefetched is not None:
            record['pre'] = exchange.prefetched
        if exchange.level != 1:
            record['lv'] = exchange.level
    if phase != STARTED and exchange.status is not None:
        record['st'] = exchange.status
        if exchange.headers:
            record['h'] = [[k, v] for k, v in exchange.headers if k.lower() in headers]
    if phase == FINISHED:
        record['z'] = exchange.finished_at
        record['bs'] = exchange.bytes_sent
        if exchange.upload_started:
            record['us'] = True
            record['br'] = exchange.bytes_received
        if exchange.completed:
            record['ok'] = True
        if exchange.raised is not None:
            record['x'] = exchange.raised
        if exchange.body:
            code = exchange.status_code
            body = b''.join(c if isinstance(c, bytes) else bytes(c) for c in exchange.body)
            if code is not None and code < 400:
                captured = exchange.capture and exchange.level >= _RESPONSE_LEVEL
                if captured:
                    _capture_response(record, exchange, body, redactor)
                # kept for the route's own sources (not only for the capture)
                if not captured or exchange.route.wants_body:
                    record['bd'] = redact_bytes(body)
            else:
                record['bd'] = redactor.error_body(body[:ERROR_BODY_LIMIT])
        elif (exchange.capture and exchange.level >= _RESPONSE_LEVEL and
              (exchange.response_size or exchange.bytes_sent) and _json(exchange) and
              exchange.route.observe != 'download' and (exchange.status_code or 500) < 400):
            # too large to keep: its size only
            record['rsn'] = exchange.response_size or exchange.bytes_sent
        if exchange.capture and exchange.captured_size:
            _capture_request(record, exchange, redactor)
    return record


# policy.REQUEST_RESPONSE
_RESPONSE_LEVEL = 3


def _json(exchange: Exchange) -> bool:
    return 'json' in (exchange.header('Content-Type') or '').lower()


def _capture_request(record: dict, exchange: Exchange, redactor: Redactor) -> None:
    """``rqn`` the size of the request body the app read; ``rq`` its redacted bytes
    when it fit capture_limit; ``rqw`` when redaction withheld it."""
    record['rqn'] = exchange.captured_size
    if exchange.captured is not None:
        kept = captured_body(redactor, bytes(exchange.captured))
        if kept is None:
            record['rqw'] = True
        else:
            record['rq'] = kept


def _capture_response(record: dict, exchange: Exchange, body: bytes,
                      redactor: Redactor) -> None:
    """Level request_response: ``rs`` the redacted JSON response (at most
    capture_limit bytes), or ``rsn`` its size when it is larger; ``rsw`` withheld."""
    if not _json(exchange):
        return
    if len(body) > exchange.capture:
        record['rsn'] = len(body)
        return
    kept = captured_body(redactor, body)
    if kept is None:
        record['rsw'] = True
    else:
        record['rs'] = kept


# -- sender: record -> Exchange ---------------------------------------------------------

def new_exchange(record: dict, route_for) -> Exchange:
    """The Exchange a call's first record describes; ``route_for(key)`` resolves
    its route.  Raises CorruptRecord when the record cannot describe a call."""
    try:
        key = tuple(record['k'])
        params = dict(record.get('p') or {})
        facts = list(record.get('q') or ())
        started_at = float(record['a'])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptRecord('not the first record of a call (%s)' % exc) from None
    route = route_for(key)
    if route is None:
        raise CorruptRecord('route %s %s is not in the route map' % key)
    exchange = Exchange(route, params, facts, started_at)
    exchange.call = record.get('c')
    exchange.prefetched = record.get('pre')
    exchange.level = record.get('lv', 1)
    return exchange


def apply(exchange: Exchange, record: dict) -> None:
    """Fold a later record of the call into its Exchange."""
    if 'st' in record:
        exchange.status = record['st']
        exchange.headers = [tuple(h) for h in record.get('h') or ()]
    if record.get('t') == 'f':
        exchange.finished_at = record.get('z') or exchange.started_at
        exchange.bytes_sent = record.get('bs') or 0
        exchange.bytes_received = record.get('br') or 0
        exchange.upload_started = bool(record.get('us'))
        exchange.completed = bool(record.get('ok'))
        exchange.raised = record.get('x')
        body = record.get('bd')
        if isinstance(body, str):                # a dead letter's record, from JSON
            body = body.encode('utf-8')
        exchange.body = [body] if body else None
        exchange.captured = record.get('rq')
        exchange.captured_size = record.get('rqn') or 0
        exchange.response = b'{"withheld": true}' if record.get('rsw') else record.get('rs')
        exchange.withheld = bool(record.get('rqw'))
        if record.get('rsn'):
            exchange.response_size = record['rsn']
