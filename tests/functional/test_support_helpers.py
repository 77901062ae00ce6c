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

"""The shared test helpers themselves (tests/support): they must reject what
pycadf / Ceilometer reject, or the Glance tests that rely on them prove nothing.
No Glance needed."""

from __future__ import annotations

import copy

import pytest

from tests.support import cadf, ceilometer

GOOD = {
    'typeURI': 'http://schemas.dmtf.org/cloud/audit/1.0/event',
    'eventType': 'activity',
    'id': 'f201d38a-51e0-48cc-86f3-65017fa565b9',
    'eventTime': '2026-11-23T14:23:06.118757+0000',
    'action': 'update',
    'outcome': 'success',
    'reason': {'reasonType': 'HTTP', 'reasonCode': '204'},
    'initiator': {'typeURI': 'service/security/account/user', 'id': 'u-admin',
                  'name': 'u-admin', 'project_id': 'p-demo', 'roles': ['admin'],
                  'host': {'address': '127.0.0.1', 'agent': 'curl'}},
    'target': {'typeURI': 'service/storage/image/tag',
               'id': 'bfec0b9e-e04d-40b3-9645-c8ca054155bf',
               'attachments': [{'typeURI': 'mime:text/plain', 'name': 'tag',
                                'content': 'x'}]},
    'observer': {'typeURI': 'service/storage/image',
                 'id': '501cd203-b0c4-522b-86ba-8491a183e00a', 'name': 'glance'},
    'measurements': [{'result': 10, 'metric': {
        'metricId': 'a7bd996c-7da3-50d8-bc74-33354f6e2668', 'unit': 'B',
        'name': 'bytes_received'}}],
    'requestPath': '/v2/images/bfec0b9e-e04d-40b3-9645-c8ca054155bf/tags/x',
}


def test_cadf_accepts_a_complete_event():
    event = cadf.assert_valid(copy.deepcopy(GOOD))
    assert event.is_valid()
    assert event.initiator.project_id == 'p-demo'       # extension kept


def _set(path, value):
    def mutate(d):
        *parents, last = path
        for key in parents:
            d = d[key]
        if value is KeyError:
            del d[last]
        else:
            d[last] = value
    return mutate


@pytest.mark.parametrize('path,value', [
    (('action',), 'list'),                        # not in the taxonomy (read/list is)
    (('outcome',), 'ok'),
    (('eventType',), 'bogus'),
    (('id',), 'not-a-uuid'),
    (('eventTime',), '2026-11-23 14:23:06'),
    (('typeURI',), 'http://example.com/event'),
    (('observer',), KeyError),                    # observer XOR observerId
    (('target', 'typeURI'), 'image'),              # not a CADF resource type
    (('initiator', 'typeURI'), KeyError),
    (('initiator', 'credential'), {'token': 'abcd xxxx'}),
    (('initiator', 'host', 'port'), 80),
    (('reason', 'reasonCode'), 204),               # must be a string
    (('target', 'attachments'), [{'name': 'tag', 'content': 'x'}]),
    (('unknown_key',), 1),
    (('measurements',), [{'result': 1, 'metric': {'unit': 'B', 'name': 'x'}}]),
])
def test_cadf_rejects(path, value):
    payload = copy.deepcopy(GOOD)
    _set(path, value)(payload)
    with pytest.raises(cadf.InvalidCADF):
        cadf.assert_valid(payload)


def _envelope(event_type, payload, priority='INFO'):
    return {'message_id': 'm-1', 'publisher_id': 'image.test', 'event_type': event_type,
            'priority': priority, 'payload': payload,
            'timestamp': '2026-11-23 14:23:06.205952'}


SEND = {'bytes_sent': 100, 'image_id': 'img', 'owner_id': 'p-owner',
        'receiver_tenant_id': 'p-recv', 'receiver_user_id': 'u-recv',
        'destination_ip': '10.0.0.1'}


def test_ceilometer_meters_from_image_send():
    assert ceilometer.samples(_envelope('image.send', SEND)) == [
        {'name': 'image.download', 'type': 'delta', 'unit': 'B', 'volume': 100,
         'resource_id': 'img', 'user_id': 'u-recv', 'project_id': 'p-recv'},
        {'name': 'image.serve', 'type': 'delta', 'unit': 'B', 'volume': 100,
         'resource_id': 'img', 'user_id': None, 'project_id': 'p-owner'}]
    assert ceilometer.samples(_envelope('image.send', SEND, 'ERROR')) == []
    assert ceilometer.samples(_envelope('image.prepare', {'size': 1, 'id': 'x'})) == []


def test_ceilometer_event_traits():
    traits = ceilometer.event(_envelope('image.send', SEND))['traits']
    assert traits == {'service': 'image.test', 'receiver_project': 'p-recv',
                      'receiver_user': 'u-recv', 'user_id': 'p-owner', 'image_id': 'img',
                      'destination_ip': '10.0.0.1', 'bytes_sent': 100}
    image = {'id': 'img', 'owner': 'p', 'name': 'n', 'status': 'active', 'size': '5',
             'created_at': '2026-11-23T14:22:28Z', 'deleted_at': None}
    traits = ceilometer.event(_envelope('image.upload', image))['traits']
    assert traits['size'] == 5 and traits['created_at'].isoformat() == '2026-11-23T14:22:28'
    assert 'deleted_at' not in traits
    assert ceilometer.event(_envelope('image.member.create', {'image_id': 'x'})) is None
    assert ceilometer.event(_envelope('image.send', SEND, priority='WARN')) is None
    assert ceilometer.event(_envelope('image.send', SEND, priority='ERROR')) is not None
    with pytest.raises(ValueError):     # Ceilometer cannot convert it either
        ceilometer.event(_envelope('image.upload', dict(image, size='big')))


def test_proc_sockets_tell_a_listener_and_a_connection_apart():
    """proc_sockets: the pid listening on a port (the HTTP benchmark finds RabbitMQ's
    by it), None for a port nobody listens on; the connection to it is ESTABLISHED
    in this process, from its own local port to the listener's."""
    import os
    import socket

    from tests.support import proc_sockets

    server = socket.socket()
    server.bind(('127.0.0.1', 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(('127.0.0.1', port))
    try:
        assert proc_sockets.listening_pid(port) == os.getpid()
        local = client.getsockname()[1]
        assert (local, port) in proc_sockets.established()
        spare = socket.socket()
        spare.bind(('127.0.0.1', 0))
        unused = spare.getsockname()[1]          # bound, not listening
        assert proc_sockets.listening_pid(unused) is None
        spare.close()
    finally:
        client.close()
        server.close()
