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

"""The REAL Glance 33 API with the audit filter (driver messagingv2, formats
cadf,glance) publishing to a REAL RabbitMQ.

Glance runs in a child process (glance_child.py; Glance's config is process-global
and tests/functional owns this process's Glance) through the functional harness:
GlanceEnv.start + load_app with our filter after authtoken.  Two images: A is
created, uploaded (1 MiB), downloaded, renamed (PATCH) and deleted; B is created
and deleted in between.  A real oslo.messaging listener and a raw tap queue must
receive exactly the expected Glance-format and CADF notifications, in order per
image, and Glance-format ones must match what Glance itself sent.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import sys
import uuid

import pytest

import broker_helpers as bh

pytestmark = pytest.mark.broker

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'functional'))
import glance_app  # noqa: E402

PUBLISHER = 'image.broker-glance'
UPLOAD_SIZE = 1024 * 1024
TIMESTAMP = re.compile(r'\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?')

GLANCE_A = ['image.create',
            'image.update', 'image.prepare', 'image.upload', 'image.activate', 'image.update',
            'image.send',
            'image.update',
            'image.delete']
GLANCE_B = ['image.create', 'image.delete']
CADF_A = [('audit.image.create', 'create', '201'), ('audit.image.upload', 'update', '204'),
          ('audit.image.download', 'read', '200'), ('audit.image.update', 'update', '200'),
          ('audit.image.delete', 'delete', '204')]
CADF_B = [('audit.image.create', 'create', '201'), ('audit.image.delete', 'delete', '204')]
# compared with Glance's own notification field by field
IMAGE_FIELDS = ('id', 'name', 'status', 'size', 'checksum', 'owner', 'visibility',
                'is_public', 'disk_format', 'container_format', 'protected', 'tags',
                'min_disk', 'min_ram', 'deleted')
SEND_FIELDS = ('bytes_sent', 'image_id', 'owner_id', 'receiver_tenant_id',
               'receiver_user_id')


@pytest.fixture(scope='module')
def run(broker, tmp_path_factory):
    base = tmp_path_factory.mktemp('glance-broker')
    exchange = broker.name('glance')
    topics = {'cadf': broker.name('audit'), 'glance': broker.name('notifications')}
    spec = {
        'audit_filter': {
            'driver': 'messagingv2', 'transport_url': broker.transport_url,
            'formats': 'cadf,glance', 'cadf_topics': topics['cadf'],
            'glance_topics': topics['glance'], 'publisher_id': PUBLISHER, 'retry': '0',
            'journal_dir': str(base / 'spool')},
        # Glance's CONF is the filter's conf: the exchange is its control_exchange
        'conf_overrides': {'DEFAULT': {'control_exchange': exchange}},
        'upload_size': UPLOAD_SIZE,
    }
    spec_file, out_file = base / 'spec.json', base / 'result.json'
    spec_file.write_text(json.dumps(spec))
    listener = bh.NotificationListener(broker.transport_url, bh.private_conf(exchange),
                                       list(topics.values()))
    tap = bh.Tap(broker.amqp_url, exchange, list(topics.values()))
    admin = bh.AmqpAdmin(broker.amqp_url)
    child_env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    try:
        listener.start()
        tap.start()
        proc = subprocess.run(
            [sys.executable, os.path.join(HERE, 'glance_child.py'), str(base / 'glance'),
             str(spec_file), str(out_file)],
            capture_output=True, text=True, timeout=180, env=child_env, cwd=str(base))
        result = json.loads(out_file.read_text()) if out_file.exists() else {}
        assert proc.returncode == 0 and 'error' not in result, (
            'glance child failed (rc %d)\n%s\n%s\nglance-api.log: %s' % (
                proc.returncode, result.get('error', ''), proc.stderr[-3000:],
                base / 'glance' / 'glance-api.log'))
        n = len(result['envelopes'])
        tapped = tap.wait_for(n, 30.0)
        received = listener.wait_for(n, 30.0)
    finally:
        listener.stop()
        tap.stop()
        leftover = admin.delete_queues(listener.queue_names())
        if not broker.isolated:
            admin.delete_exchange(exchange)
    result.update(tapped=tapped, received=received, leftover=leftover, topics=topics,
                  exchange=exchange)
    return result


def _glance_for(items, image_id):
    return [i for i in items if bh.fmt_of(i['event_type']) == 'glance'
            and bh.image_of(i['event_type'], i['payload']) == image_id]


def _tapped(run, fmt, image_id):
    return [i for i in run['tapped'] if bh.fmt_of(i['event_type']) == fmt and
            bh.image_of(i['event_type'], i['message']['payload']) == image_id]


def test_glance_answered(run):
    assert [(s['step'], s['status']) for s in run['steps']] == [
        ('create_a', 201), ('create_b', 201), ('upload_a', 204), ('download_a', 200),
        ('patch_a', 200), ('delete_b', 204), ('delete_a', 204)]
    assert run['steps'][3]['length'] == UPLOAD_SIZE
    assert run['flushed'] is True
    counters = run['counters']
    n = len(GLANCE_A) + len(GLANCE_B) + len(CADF_A) + len(CADF_B)
    assert (counters['sent'], counters['send_errors'], counters['dropped'],
            counters['dead_letters'], counters['build_errors']) == (n, 0, 0, 0, 0)
    assert len(run['envelopes']) == n


def test_filter_used_the_listeners_exchange(run):
    assert run['control_exchange'] == run['exchange']
    # every transport that published used the listener's exchange
    assert run['exchanges'] and set(run['exchanges']) == {run['exchange']}
    assert {i['exchange'] for i in run['tapped']} == {run['exchange']}


def test_glance_format_sequence_per_image(run):
    for image_id, expected in ((run['image_a'], GLANCE_A), (run['image_b'], GLANCE_B)):
        got = [(i['routing_key'], i['event_type'], i['message']['priority'])
               for i in _tapped(run, 'glance', image_id)]
        assert got == [(run['topics']['glance'] + '.info', et, 'INFO') for et in expected]


def test_cadf_sequence_per_image(run):
    for image_id, expected in ((run['image_a'], CADF_A), (run['image_b'], CADF_B)):
        items = _tapped(run, 'cadf', image_id)
        assert [(i['routing_key'], i['message']['priority']) for i in items] == \
               [(run['topics']['cadf'] + '.info', 'INFO')] * len(expected)
        got = [(i['event_type'], i['message']['payload']['action'],
                i['message']['payload']['reason']['reasonCode'],
                i['message']['payload']['outcome'],
                i['message']['payload']['initiator']['id'],
                i['message']['payload']['initiator']['project_id'])
               for i in items]
        assert got == [e + ('success', 'u-admin', 'p-demo') for e in expected]
    payloads = {i['event_type']: i['message']['payload']
                for i in _tapped(run, 'cadf', run['image_a'])}
    assert payloads['audit.image.upload']['measurements'][0]['result'] == UPLOAD_SIZE
    assert payloads['audit.image.download']['measurements'][0]['result'] == UPLOAD_SIZE
    assert payloads['audit.image.create']['target']['typeURI'] == 'service/storage/image'


def test_nothing_else_arrived(run):
    assert len(run['tapped']) == len(run['envelopes']) == len(run['received'])
    assert sorted(i['message']['message_id'] for i in run['tapped']) == \
           sorted(e['message_id'] for e in run['envelopes']) == \
           sorted(r['message_id'] for r in run['received'])
    for key in ('info', 'warn', 'error'):
        for topic in run['topics'].values():
            assert run['leftover']['%s.%s' % (topic, key)] == 0


def test_listener_view_matches_envelopes(run):
    envelopes = {e['message_id']: e for e in run['envelopes']}
    for r in run['received']:
        sent = envelopes[r['message_id']]
        assert (r['publisher_id'], r['event_type'], r['priority'], r['payload'],
                r['timestamp']) == (PUBLISHER, sent['event_type'], 'info', sent['payload'],
                                    sent['timestamp'])
    # one queue (info) per topic: the listener delivers in publish order per image
    for image_id in (run['image_a'], run['image_b']):
        assert [r['message_id'] for r in _glance_for(run['received'], image_id)] == \
               [e['message_id'] for e in _glance_for(run['envelopes'], image_id)]


def test_glance_format_matches_glances_own(run):
    """Same event types, priorities and key fields as Glance's own notifications."""
    for image_id in (run['image_a'], run['image_b']):
        ours = [i['message'] for i in _tapped(run, 'glance', image_id)]
        own = _glance_for(run['glance_own'], image_id)
        assert [(m['event_type'], m['priority']) for m in ours] == \
               [(m['event_type'], m['priority']) for m in own]
        for mine, theirs in zip(ours, own):
            fields = SEND_FIELDS if mine['event_type'] == 'image.send' else IMAGE_FIELDS
            assert {f: mine['payload'].get(f) for f in fields} == \
                   {f: theirs['payload'].get(f) for f in fields}, mine['event_type']
    a = [i['message']['payload'] for i in _tapped(run, 'glance', run['image_a'])]
    assert [p.get('status') for p in a] == ['queued', 'saving', 'saving', 'active', 'active',
                                            'active', None, 'active', 'deleted']
    assert a[3]['size'] == UPLOAD_SIZE and a[3]['checksum'] == run['upload_md5']
    assert a[7]['name'] == 'broker-a2' and a[8]['deleted'] is True


def test_envelope_contract(run):
    ids = set()
    for item in run['tapped']:
        message = item['message']
        assert item['outer']['oslo.version'] == '2.0'
        assert set(message) == {'message_id', 'publisher_id', 'event_type', 'priority',
                                'payload', 'timestamp', '_unique_id'}
        assert TIMESTAMP.fullmatch(message['timestamp']), message['timestamp']
        datetime.datetime.fromisoformat(message['timestamp'])
        assert str(uuid.UUID(message['message_id'])) == message['message_id']
        ids.add(message['message_id'])
    assert len(ids) == len(run['tapped'])


def test_no_token_anywhere(run):
    everything = json.dumps([i['raw'] for i in run['tapped']]) + \
        json.dumps(run['received'], default=str)
    for token in glance_app.TOKENS:
        assert token not in everything
    assert 'guest:guest' not in everything
