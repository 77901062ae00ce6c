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

"""The fast leaf's direct JSON of oslo.messaging's v2 envelope, without a broker: the
bytes kombu's serializer writes, for every message serialize_msg makes, and None (kombu
then) for anything else.  tests/broker/test_batch_publish.py checks the frames on the
wire against oslo.messaging's."""

from __future__ import annotations

import random

import pytest
from kombu.serialization import dumps as kombu_dumps
from oslo_messaging._drivers.common import serialize_msg

from audit_notifier.delivery.rabbit_batch import JSON_CONTENT, envelope_json

# What JSON escapes or leaves alone: quotes, backslashes, controls, DEL, Latin-1,
# the BMP, an astral character (a surrogate pair in JSON), and a lone surrogate.
ALPHABET = ('abc XYZ 019 {}[]:,/<>&\'' '"\\' '\n\r\t\x00\x1f\x7f' '\u00e9\u00ff' '\u20ac\u2603'
            '\U0001f600' '\ud800')


def kombu_bytes(msg: dict) -> bytes:
    content_type, encoding, body = kombu_dumps(msg)
    assert (content_type, encoding) == JSON_CONTENT
    return body.encode(encoding) if isinstance(body, str) else body


def random_text(rnd: random.Random, longest: int) -> str:
    return ''.join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, longest)))


def test_every_serialized_envelope_is_written_as_kombu_writes_it():
    rnd = random.Random(20261203)
    for i in range(3000):
        payload = {random_text(rnd, 6): random_text(rnd, 40) for _ in range(rnd.randint(0, 6))}
        payload['nested'] = [i, 2.5, None, True, {random_text(rnd, 3): [random_text(rnd, 9)]}]
        msg = serialize_msg({'event_type': 'audit.http.request', 'payload': payload,
                             'message_id': str(i), '_unique_id': 'u%d' % i})
        ours = envelope_json(msg)
        assert ours is not None, msg
        assert ours == kombu_bytes(msg), msg


def test_a_cadf_sized_envelope():
    payload = {'typeURI': 'http://schemas.dmtf.org/cloud/audit/1.0/event',
               'initiator': {'name': 'Jos\u00e9 "admin"', 'host': {'agent': 'curl\\8.5'}},
               'requestPath': '/v2/images/%s' % ('a' * 36), 'reason': {'reasonCode': '200'}}
    msg = serialize_msg({'payload': payload, 'priority': 'INFO', 'timestamp': 't'})
    assert envelope_json(msg) == kombu_bytes(msg)
    assert envelope_json(msg).startswith(b'{"oslo.version": "2.0", "oslo.message": "{\\"')


@pytest.mark.parametrize('msg', [
    {'event_type': 'x', 'payload': {}},                             # the v1 format
    {'oslo.message': '{}', 'oslo.version': '2.0'},                  # another key order
    {'oslo.version': '2.0', 'oslo.message': '{}', 'extra': 1},
    {'oslo.version': '2.0'},
    {'oslo.version': 2.0, 'oslo.message': '{}'},                    # not text
    {'oslo.version': '2.0', 'oslo.message': b'{}'},
    {'oslo.version': '2.0', 'oslo.message': '{"a": "\u00e9"}'},     # not ASCII
    {'oslo.version': '2.0', 'oslo.message': '{"a": "\n"}'},         # a control character
    {'oslo.version': '2.0', 'oslo.message': '{"a": "\x7f"}'},
    {'oslo.version': '2.0\t', 'oslo.message': '{}'},
])
def test_anything_else_is_left_to_kombu(msg):
    assert envelope_json(msg) is None
    kombu_bytes(msg)                    # which can still write it
