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

"""The integrity trail through a REAL RabbitMQ: filter -> messagingv2 (oslo.messaging's
path and the batched fast path) -> a real oslo.messaging notification listener that
stores each notification with its context as JSON lines -> ``audit-notifier verify``
(a subprocess) accepts the trail, and reports the gap when one line is removed.
``verify --config-file`` reads the bus itself, from a private queue."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
import webob

import broker_helpers as bh
import fake_image_api as fake
from audit_notifier.middleware import filter_factory
from tests.support import identity
from tests.support.wait import wait_until

pytestmark = pytest.mark.broker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NEW_ID = fake.NEW_IDS[0]
WAIT = 60.0          # generous deadlines: a safety net, not a measurement
KEY = b'trail-broker-test-key-%s' % uuid.uuid4().hex.encode()


def _environ(user_id: str) -> dict:
    return {'HTTP_X_IDENTITY_STATUS': 'Confirmed', 'HTTP_X_USER_ID': user_id,
            'HTTP_X_USER_NAME': 'name-' + user_id, 'HTTP_X_PROJECT_ID': fake.OWNER,
            'HTTP_X_ROLES': 'member,reader', 'REMOTE_ADDR': '10.1.2.3',
            **identity.confirmed(user_id, fake.OWNER)}


def call(mw, method: str, path: str, body=None) -> None:
    req = webob.Request.blank(path, method=method)
    req.environ.update(_environ('u-trail'))
    if body is not None:
        data = json.dumps(body).encode()
        req.environ.update({'wsgi.input': io.BytesIO(data), 'CONTENT_TYPE':
                            'application/json', 'CONTENT_LENGTH': str(len(data))})
    result = mw(req.environ, lambda status, headers, exc_info=None: None)
    try:
        b''.join(result)
    finally:
        getattr(result, 'close', lambda: None)()
    # One batch per call: where the digests fall does not depend on timing.
    assert mw.delivery.flush(WAIT), 'the sender did not drain its queue'


def three_calls(mw) -> None:
    """Three audited writes, all successful: one CADF notification (INFO) each."""
    call(mw, 'POST', '/v2/images', {'name': 'trail-a'})
    call(mw, 'PATCH', '/v2/images/%s' % NEW_ID,
         [{'op': 'replace', 'path': '/name', 'value': 'trail-b'}])
    call(mw, 'DELETE', '/v2/images/%s' % NEW_ID)


class Bus:
    """One test's exchange and topic, a signing key, the clean-up."""

    def __init__(self, broker, tmp_path):
        tag = uuid.uuid4().hex[:8]
        self.broker = broker
        self.tmp_path = tmp_path
        self.exchange = broker.name('trail_x_%s' % tag)
        self.topic = broker.name('trail_audit_%s' % tag)
        self.key_file = tmp_path / 'trail.key'
        self.key_file.write_bytes(KEY)
        self.conf_file = tmp_path / 'glance-api.conf'
        self.conf_file.write_text(
            '[DEFAULT]\ncontrol_exchange = %s\n\n[audit_notifier]\ndriver = messagingv2\n'
            'transport_url = %s\nformats = cadf\ncadf_topics = %s\n'
            % (self.exchange, broker.transport_url, self.topic))
        self.filters: list = []

    def filter(self, **keys):
        keys = {'oslo_config_config': bh.private_conf(self.exchange), 'driver': 'messagingv2',
                'journal_dir': str(self.tmp_path / 'journal'), 'retry': '0',
                'transport_url': self.broker.transport_url, 'formats': 'cadf',
                'cadf_topics': self.topic, 'publisher_id': 'image.trail-test',
                'trail': 'true', 'trail_digest_every': '2', 'trail_digest_interval': '3600',
                'trail_hmac_key_file': str(self.key_file), **keys}
        mw = filter_factory({}, **keys)(fake.FakeImageAPI())
        self.filters.append(mw)
        return mw

    def close(self) -> None:
        for mw in self.filters:
            mw.delivery.stop()
        admin = bh.AmqpAdmin(self.broker.amqp_url)
        admin.delete_queues('%s.%s' % (self.topic, p) for p in bh.PRIORITIES)
        admin.delete_exchange(self.exchange)


@pytest.fixture
def bus(broker, tmp_path):
    os.mkdir(tmp_path / 'journal')
    bus = Bus(broker, tmp_path)
    yield bus
    bus.close()


def stored(received) -> str:
    """A notification as a consumer's listener endpoint stores it: the envelope
    fields (priority: the endpoint method's name, upper case) and its context."""
    return json.dumps({'message_id': received['message_id'],
                       'publisher_id': received['publisher_id'],
                       'event_type': received['event_type'],
                       'priority': received['priority'].upper(),
                       'payload': received['payload'], 'timestamp': received['timestamp'],
                       'context': received['ctxt']})


def verify(*args, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'audit_notifier.cli', 'verify', *args],
                          input=stdin, capture_output=True, text=True, timeout=WAIT * 2,
                          cwd=ROOT)


def verified_ten(items, tmp_path, bus) -> list[str]:
    """The ten notifications a listener got (6 calls, a digest after every 2 and the
    final one), stored as a consumer stores them: in sequence, and ``audit-notifier
    verify`` says the trail is complete and unaltered.  Returns the stored lines."""
    lines = [stored(item) for item in items]
    assert [json.loads(line)['context']['audit_seq'] for line in lines] == list(range(1, 11))
    trail_file = tmp_path / 'trail.jsonl'
    trail_file.write_text('\n'.join(lines) + '\n')
    proc = verify(str(trail_file), '--key-file', str(bus.key_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stream = json.loads(lines[0])['context']['audit_stream']
    assert proc.stdout.splitlines() == [
        'stream %s: 10 notification(s), seq 1-10, 4 digest(s): OK' % stream,
        'verify: 1 stream(s), 10 notification(s), 0 problem(s): the trail is complete and '
        'unaltered']
    return lines


@pytest.mark.parametrize('batch', ['false', 'true'], ids=['oslo-path', 'batched-path'])
def test_a_trail_captured_by_a_listener_verifies(bus, broker, tmp_path, batch):
    with bh.NotificationListener(broker.transport_url, bh.private_conf(bus.exchange),
                                 [bus.topic]) as listener:
        mw = bus.filter(rabbit_batch_publish=batch)
        for _ in range(2):
            three_calls(mw)
        assert mw.delivery.leaves['cadf'].batched == (batch == 'true')
        mw.delivery.close()
        published = mw.delivery._sender.trail.streams['cadf'].seq
        assert mw.delivery._sender.trail.chained == published
        # 6 calls, a digest after every 2, and the final one
        assert published == 6 + 3 + 1
        items = listener.wait_for(published, WAIT)
    assert len(items) == published
    lines = verified_ten(items, tmp_path, bus)
    stream = json.loads(lines[0])['context']['audit_stream']
    # one notification lost on the way: exactly that gap
    gap = tmp_path / 'gap.jsonl'
    gap.write_text('\n'.join(lines[:4] + lines[5:]) + '\n')
    proc = verify(str(gap), '--key-file', str(bus.key_file))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[:2] == [
        'stream %s: seq 5 missing' % stream,
        'stream %s: 9 notification(s), seq 1-10, 4 digest(s): 1 problem(s)' % stream]
    assert KEY.decode() not in proc.stdout + proc.stderr


def test_a_trail_kept_by_the_external_send_process_verifies(bus, broker, tmp_path):
    """sender = external: the API process only journals; ``audit-notifier send`` (a real
    process, options from the service's conf file) chains, signs and publishes, and
    writes the final digest when stopped with SIGTERM."""
    journal_dir = tmp_path / 'journal'
    conf = tmp_path / 'send.conf'
    conf.write_text(bus.conf_file.read_text() + (
        'publisher_id = image.trail-test\nsender = external\njournal_dir = %s\n'
        'trail = true\ntrail_digest_every = 2\ntrail_digest_interval = 3600\n'
        'trail_hmac_key_file = %s\n' % (journal_dir, bus.key_file)))
    log = tmp_path / 'send.log'
    with bh.NotificationListener(broker.transport_url, bh.private_conf(bus.exchange),
                                 [bus.topic]) as listener, open(log, 'wb') as out:
        sender = subprocess.Popen(
            [sys.executable, '-m', 'audit_notifier.cli', 'send', '--config-file', str(conf)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            mw = bus.filter(sender='external')
            for _ in range(2):
                three_calls(mw)                  # each call flushed: its checkpoint
            # the chain's state is the send process's, not the API process's
            owner = mw.delivery._journal.owner
            states = [p.name for p in journal_dir.glob('*.trail')]
            assert len(states) == 1 and not states[0].startswith(owner), states
            sender.send_signal(signal.SIGTERM)
            assert sender.wait(WAIT) == 0, log.read_text()
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait(10)
        items = listener.wait_for(6 + 3 + 1, WAIT)     # a digest after every 2, the final
    assert len(items) == 10, log.read_text()
    verified_ten(items, tmp_path, bus)
    assert KEY.decode() not in log.read_text()


def test_verify_reads_its_own_queue(bus, broker):
    proc = subprocess.Popen(
        [sys.executable, '-m', 'audit_notifier.cli', 'verify', '--config-file',
         str(bus.conf_file), '--key-file', str(bus.key_file), '--count', '5'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONUNBUFFERED='1'))
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any('private queue' in line for line in err) or
                   proc.poll() is not None, timeout=WAIT,
                   message='verify never bound its queue')
        assert proc.poll() is None, err
        mw = bus.filter(trail_digest_every='1000')
        three_calls(mw)
        call(mw, 'POST', '/v2/images', {'name': 'trail-c'})
        mw.delivery.close()                      # 4 notifications and the final digest
        out, _ = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    reader.join(10)
    assert proc.returncode == 0, out + ''.join(err)
    stream = mw.delivery._journal.owner + '/cadf'
    assert out.splitlines() == [
        'stream %s: 5 notification(s), seq 1-5, 1 digest(s): OK' % stream,
        'verify: 1 stream(s), 5 notification(s), 0 problem(s): the trail is complete and '
        'unaltered']
