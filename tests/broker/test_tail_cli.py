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

"""``audit-notifier tail`` as an operator runs it (a subprocess), against a REAL RabbitMQ.

The audit filter around a small WSGI app publishes with ``messagingv2`` (formats
cadf,glance, each on its own topic, the exchange from ``control_exchange``);
``tail`` reads the same service conf file.  What it prints must be exactly what the
filter sent, while a real oslo.messaging notification listener on the same topics
(the Ceilometer stand-in, in its own process) still receives every notification:
tail's queue is its own, and gone once tail exits.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import amqp.exceptions
import kombu
import oslo_messaging
import pytest
import webob

import broker_helpers as bh
import fake_image_api as fake
from audit_notifier.middleware import filter_factory
from audit_notifier.render import describe
from tests.support import identity
from tests.support.listener_process import ListenerProcess
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.broker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PUBLISHER = 'image.tail-test'
TOKEN = 'gAAAAAB-tail-secret-%s' % uuid.uuid4().hex
NEW_ID = fake.NEW_IDS[0]
WAIT = 60.0          # generous deadlines: a safety net, not a measurement


def _identity(user_id: str) -> dict:
    return {'HTTP_X_AUTH_TOKEN': TOKEN, 'HTTP_X_IDENTITY_STATUS': 'Confirmed',
            'HTTP_X_USER_ID': user_id, 'HTTP_X_USER_NAME': 'name-' + user_id,
            'HTTP_X_PROJECT_ID': fake.OWNER, 'HTTP_X_ROLES': 'member,reader',
            'REMOTE_ADDR': '10.1.2.3', **identity.confirmed(user_id, fake.OWNER)}


class Bus:
    """One test's exchange and topics, the filter publishing there, the conf file
    tail reads, and the clean-up."""

    def __init__(self, broker, tmp_path):
        tag = uuid.uuid4().hex[:8]
        self.broker = broker
        self.exchange = broker.name('tail_x_%s' % tag)
        self.topics = {'cadf': broker.name('tail_audit_%s' % tag),
                       'glance': broker.name('tail_notifications_%s' % tag)}
        self.conf_file = tmp_path / 'glance-api.conf'
        self.conf_file.write_text(
            '[DEFAULT]\ncontrol_exchange = %s\n\n[audit_notifier]\ndriver = messagingv2\n'
            'transport_url = %s\nformats = cadf,glance\ncadf_topics = %s\n'
            'glance_topics = %s\n' % (self.exchange, broker.transport_url,
                                      self.topics['cadf'], self.topics['glance']))
        keys = {'oslo_config_config': bh.private_conf(self.exchange), 'driver': 'messagingv2',
                'journal_dir': str(tmp_path / 'journal'), 'retry': '0',
                'transport_url': broker.transport_url, 'formats': 'cadf,glance',
                'cadf_topics': self.topics['cadf'], 'glance_topics': self.topics['glance'],
                'publisher_id': PUBLISHER}
        os.mkdir(tmp_path / 'journal')
        self.filter = filter_factory({}, **keys)(fake.FakeImageAPI())
        self.sent = bh.record_envelopes(self.filter.delivery)

    def call(self, user_id: str, method: str, path: str, body=None) -> list[dict]:
        """One API call; returns the notifications the filter sent for it (all
        published, hence routed: oslo.messaging waits for the broker's confirm)."""
        before = len(self.sent)
        req = webob.Request.blank(path, method=method)
        req.environ.update(_identity(user_id))
        if body is not None:
            data = json.dumps(body).encode()
            req.environ.update({'wsgi.input': io.BytesIO(data), 'CONTENT_TYPE':
                                'application/json', 'CONTENT_LENGTH': str(len(data))})
        result = self.filter(req.environ, lambda status, headers, exc_info=None: None)
        try:
            b''.join(result)
        finally:
            getattr(result, 'close', lambda: None)()
        assert self.filter.delivery.flush(WAIT), 'the sender did not drain its queue'
        return self.sent[before:]

    def close(self) -> None:
        self.filter.delivery.stop()
        admin = bh.AmqpAdmin(self.broker.amqp_url)
        admin.delete_queues('%s.%s' % (t, p) for t in self.topics.values()
                            for p in bh.PRIORITIES)
        admin.delete_exchange(self.exchange)


@pytest.fixture
def bus(broker, tmp_path):
    bus = Bus(broker, tmp_path)
    yield bus
    bus.close()


class Tail:
    """``audit-notifier tail`` in a subprocess; its output lines as they come."""

    def __init__(self, conf_file, *args):
        self.proc = subprocess.Popen(
            [sys.executable, '-m', 'audit_notifier.cli', 'tail', '--config-file',
             str(conf_file), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, cwd=ROOT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [threading.Thread(target=self._read, args=(s, lines), daemon=True)
                         for s, lines in ((self.proc.stdout, self.out),
                                          (self.proc.stderr, self.err))]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.append(line.rstrip('\n'))

    def wait_listening(self) -> str:
        """The private queue's name, once tail's queue is bound."""
        prefix = 'audit-notifier tail: listening on '
        deadline = time.monotonic() + WAIT
        while True:
            for line in self.err:
                if line.startswith(prefix):
                    return line.split('(private queue ', 1)[1].split(';', 1)[0]
            assert self.proc.poll() is None, 'tail exited: %s' % self.err
            assert time.monotonic() < deadline, 'tail is not listening: %s' % self.err
            time.sleep(0.05)

    def wait(self) -> int:
        try:
            rc = self.proc.wait(WAIT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
        for thread in self._threads:
            thread.join(10)
        return rc


def _queue_state(amqp_url: str, name: str) -> str:
    """'exclusive' (another connection owns it), 'gone', or 'open'."""
    with kombu.Connection(amqp_url, connect_timeout=5) as conn:
        channel = conn.channel()
        try:
            channel.queue_declare(queue=name, passive=True)
            return 'open'
        except amqp.exceptions.ResourceLocked:
            return 'exclusive'
        except amqp.exceptions.NotFound:
            return 'gone'


def _by_id(envelopes) -> dict:
    return {e['message_id']: json.loads(json.dumps(e)) for e in envelopes}


def test_tail_shows_every_notification_and_takes_none_from_ceilometer(bus, broker,
                                                                      tmp_path):
    with ListenerProcess(broker.transport_url, exchange=bus.exchange,
                         topics=list(bus.topics.values()),
                         log_path=tmp_path / 'listener.log') as ceilometer:
        tail = Tail(bus.conf_file, '--json', '--count', '9')
        try:
            queue = tail.wait_listening()
            assert queue.startswith('amq.gen-')
            assert _queue_state(broker.amqp_url, queue) == 'exclusive'
            sent = (bus.call('u-one', 'POST', '/v2/images', {'name': 'tail-a'}) +
                    bus.call('u-one', 'GET', '/v2/images/%s/file' % fake.ACTIVE_ID) +
                    bus.call('u-one', 'PATCH', '/v2/images/%s' % NEW_ID,
                             [{'op': 'replace', 'path': '/name', 'value': 'x'}]) +
                    bus.call('u-one', 'DELETE', '/v2/images/%s' % NEW_ID))
            # Glance's own notifier on the same topic, its request context (with the
            # caller's token) packed into the message as oslo.messaging does
            transport = oslo_messaging.get_notification_transport(
                bh.private_conf(bus.exchange), url=broker.transport_url)
            try:
                oslo_messaging.Notifier(
                    transport, publisher_id='image.own', driver='messagingv2',
                    topics=[bus.topics['glance']]).info(
                        {'auth_token': TOKEN, 'user_id': 'u-one'}, 'image.own',
                        {'id': NEW_ID, 'name': 'own'})
            finally:
                transport.cleanup()
            rc = tail.wait()
        finally:
            if tail.proc.poll() is None:
                tail.proc.kill()
        received = ceilometer.wait_until(lambda items: len(items) >= 9, WAIT,
                                         'the listener to receive 9 notifications')
    assert rc == 0, tail.err
    assert len(sent) == 8
    printed = [json.loads(line) for line in tail.out]
    own = [p for p in printed if p['event_type'] == 'image.own']
    assert [(o['publisher_id'], o['priority'], o['payload']) for o in own] == [
        ('image.own', 'INFO', {'id': NEW_ID, 'name': 'own'})]
    # exactly the envelopes the filter sent, field for field
    assert _by_id(p for p in printed if p not in own) == _by_id(sent)
    assert all(set(p) == {'message_id', 'publisher_id', 'event_type', 'priority',
                          'payload', 'timestamp'} for p in printed)
    # the Ceilometer stand-in got every one of them too
    assert sorted(r['message_id'] for r in received) == sorted(p['message_id']
                                                               for p in printed)
    text = '\n'.join(tail.out + tail.err)
    assert TOKEN not in text and 'guest' not in text     # no token, no credentials
    assert _queue_state(broker.amqp_url, queue) == 'gone'


def test_tail_filters_by_user_resource_and_format(bus, broker):
    # Nothing declared the exchange yet: tail declares it as oslo.messaging does, so
    # the filter's publishes are not refused (PRECONDITION_FAILED) afterwards.
    by_user = Tail(bus.conf_file, '--user', 'u-two', '--json', '--count', '3')
    by_resource = Tail(bus.conf_file, '--resource', NEW_ID, '--format', 'cadf', '--count', '2')
    tails = (by_user, by_resource)
    try:
        for tail in tails:
            tail.wait_listening()
        # What neither tail shows comes first: a tail that did not filter would print it.
        first = bus.call('u-one', 'GET', '/v2/images/%s/file' % fake.ACTIVE_ID)
        created = bus.call('u-one', 'POST', '/v2/images', {'name': 'tail-b'})
        downloaded = bus.call('u-two', 'GET', '/v2/images/%s/file' % fake.ACTIVE_ID)
        refused = bus.call('u-two', 'PATCH', '/v2/images/%s' % NEW_ID,
                           [{'op': 'replace', 'path': '/name', 'value': 'y'}])
        rcs = [tail.wait() for tail in tails]
    finally:
        for tail in tails:
            if tail.proc.poll() is None:
                tail.proc.kill()
    assert rcs == [0, 0], [t.err for t in tails]
    assert [e['event_type'] for e in first + created + downloaded + refused] == [
        'image.send', 'audit.image.download', 'image.create', 'audit.image.create',
        'image.send', 'audit.image.download', 'image.update', 'audit.image.update']
    counters = bus.filter.delivery.counters
    assert (counters['sent'], counters['send_errors']) == (8, 0)
    # --user u-two: the CADF initiator, image.send's receiver_user_id; not the
    # refused update's Glance-format payload (a message, naming nobody)
    user_wants = downloaded + refused[1:]
    assert _by_id(json.loads(line) for line in by_user.out) == _by_id(user_wants)
    # --resource NEW_ID --format cadf, in text: "<timestamp> <the demo's line>"
    resource_wants = [created[1], refused[1]]
    assert by_resource.out == ['%s %s' % (e['timestamp'], describe(e))
                               for e in resource_wants]
    assert by_resource.out[1].split(' ', 2)[2] == (
        'ERROR audit.image.update   action=update outcome=failure/403 target=%s '
        'by=name-u-two' % NEW_ID)


def test_tail_stops_at_its_timeout(bus):
    """Nothing is published: with --count that is a failure, without it a normal end."""
    counted = Tail(bus.conf_file, '--count', '1', '--timeout', '1')
    timed = Tail(bus.conf_file, '--timeout', '1')
    assert [counted.wait(), timed.wait()] == [1, 0]
    assert counted.err[-1] == 'audit-notifier tail: 0 of 1 notification(s) within 1 s'
    assert timed.err[-1].startswith('audit-notifier tail: listening on ')
    assert counted.out == timed.out == []


def test_a_lost_connection_ends_tail_with_one_line(bus, broker, tmp_path):
    with TcpProxy('127.0.0.1', 5672) as proxy:
        conf = tmp_path / 'proxied.conf'
        conf.write_text(bus.conf_file.read_text().replace(
            '@127.0.0.1:5672/', '@127.0.0.1:%d/' % proxy.port))
        tail = Tail(conf, '--json')
        queue = tail.wait_listening()
        proxy.cut()                                   # the broker "goes away"
        rc = tail.wait()
    assert rc == 1
    assert tail.out == []
    assert tail.err[-1].startswith('audit-notifier tail: error: lost the connection to '
                                   'rabbit://127.0.0.1:%d/' % proxy.port), tail.err
    assert _queue_state(broker.amqp_url, queue) == 'gone'


def test_wrong_password_is_one_line_without_it(bus, broker, tmp_path):
    conf = tmp_path / 'wrong.conf'
    conf.write_text(bus.conf_file.read_text().replace(
        broker.transport_url, broker.transport_url.replace(':guest@', ':Wr0ng-pass@')))
    tail = Tail(conf, '--count', '1')
    rc = tail.wait()
    assert rc == 1
    assert tail.out == []
    (line,) = [line for line in tail.err if line.startswith('audit-notifier tail:')]
    assert line.startswith('audit-notifier tail: error: cannot connect to '
                           'rabbit://127.0.0.1:5672/%s: ' % broker.vhost.strip('/'))
    assert 'ACCESS_REFUSED' in line
    assert 'Wr0ng-pass' not in '\n'.join(tail.err)


def test_unreachable_bus_is_one_line(tmp_path):
    conf = tmp_path / 'closed.conf'
    conf.write_text('[audit_notifier]\ndriver = messagingv2\n'
                    'transport_url = rabbit://audit:S3cret-pw@127.0.0.1:1/\n')
    tail = Tail(conf, '--count', '1')
    assert tail.wait() == 1
    assert tail.out == []
    (line,) = [line for line in tail.err if line.startswith('audit-notifier tail:')]
    assert line.startswith('audit-notifier tail: error: cannot connect to '
                           'rabbit://127.0.0.1:1/: ')
    assert 'S3cret-pw' not in '\n'.join(tail.err)
