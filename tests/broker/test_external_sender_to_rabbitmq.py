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

"""sender = external against the REAL Glance 33 API and a REAL RabbitMQ.

Glance runs with the filter in a child process (glance_child.py, as in
test_glance_to_rabbitmq.py) with ``sender = external``: it only journals.  Two
``audit-notifier send`` processes (the console script's code, ``python -m
audit_notifier.cli send``) send: the first is killed with SIGKILL once the first
notifications reached the broker, while Glance is still answering; the second
takes over.  A raw tap queue and a real oslo.messaging listener must receive
every CADF event of the calls, in order, each event once or (at-least-once, after
the kill) again with the same message id and the same content; the Glance child's
flush must see the second sender confirm everything; when the child has stopped,
the sender adopts and removes its journal; SIGTERM stops the sender cleanly.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import broker_helpers as bh

pytestmark = pytest.mark.broker

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PUBLISHER = 'image.broker-external'
CADF_A = [('audit.image.create', 'create', '201'), ('audit.image.upload', 'update', '204'),
          ('audit.image.download', 'read', '200'), ('audit.image.update', 'update', '200'),
          ('audit.image.delete', 'delete', '204')]
CADF_B = [('audit.image.create', 'create', '201'), ('audit.image.delete', 'delete', '204')]


def _wait(predicate, what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)


def _send_process(conf, journal_dir, env, log):
    return subprocess.Popen(
        [sys.executable, '-m', 'audit_notifier.cli', 'send', '--config-file', str(conf),
         '--journal-dir', str(journal_dir)], env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope='module')
def run(broker, tmp_path_factory):
    base = tmp_path_factory.mktemp('glance-external')
    exchange = broker.name('glance_ext')
    topic = broker.name('audit_ext')
    journal_dir = base / 'journal'
    common = {'driver': 'messagingv2', 'transport_url': broker.transport_url,
              'formats': 'cadf', 'cadf_topics': topic, 'publisher_id': PUBLISHER,
              'sender': 'external', 'journal_dir': str(journal_dir)}
    conf = base / 'glance-api.conf'
    conf.write_text('[DEFAULT]\ncontrol_exchange = %s\n\n[audit_notifier]\n%s\n' % (
        exchange, '\n'.join('%s = %s' % kv for kv in common.items())))
    spec = {'audit_filter': dict(common, retry='0'),
            'conf_overrides': {'DEFAULT': {'control_exchange': exchange}},
            'upload_size': 1024 * 1024}
    spec_file, out_file = base / 'spec.json', base / 'result.json'
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    listener = bh.NotificationListener(broker.transport_url, bh.private_conf(exchange), [topic])
    tap = bh.Tap(broker.amqp_url, exchange, [topic])
    admin = bh.AmqpAdmin(broker.amqp_url)
    result: dict = {}
    log1, log2 = open(base / 'send1.log', 'wb'), open(base / 'send2.log', 'wb')
    first = second = None
    try:
        listener.start()
        tap.start()
        os.makedirs(journal_dir, mode=0o700)
        first = _send_process(conf, journal_dir, env, log1)
        child = subprocess.Popen(
            [sys.executable, os.path.join(HERE, 'glance_child.py'), str(base / 'glance'),
             str(spec_file), str(out_file)], env=env, cwd=str(base),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        tap.wait_for(2, 180.0)
        first.send_signal(signal.SIGKILL)
        result['first_rc'] = first.wait(30)
        second = _send_process(conf, journal_dir, env, log2)
        child_out = child.communicate(timeout=240)[0].decode(errors='replace')
        child_result = json.loads(out_file.read_text()) if out_file.exists() else {}
        assert child.returncode == 0 and 'error' not in child_result, (
            'glance child failed (rc %d)\n%s\n%s' % (child.returncode,
                                                     child_result.get('error', ''),
                                                     child_out[-3000:]))
        result.update(child_result)
        n = len(CADF_A) + len(CADF_B)
        tap.wait_until(lambda items: len({i['message']['message_id'] for i in items}) >= n,
                       60.0, '%d distinct CADF events' % n)
        listener.wait_until(lambda items: len({i['message_id'] for i in items}) >= n, 60.0,
                            '%d distinct events at the listener' % n)
        # the child has stopped: the sender adopts what it left and removes it
        _wait(lambda: not glob.glob(str(journal_dir / '*.journal')), 'the journal removed')
        result['left_files'] = sorted(os.path.basename(p)
                                      for p in glob.glob(str(journal_dir / '*')))
        second.send_signal(signal.SIGTERM)
        result['second_rc'] = second.wait(60)
        result['after_stop'] = sorted(os.path.basename(p)
                                      for p in glob.glob(str(journal_dir / '*')))
        result['tapped'] = tap.items
        result['received'] = listener.items
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)
        log1.close()
        log2.close()
        listener.stop()
        tap.stop()
        result['leftover'] = admin.delete_queues(listener.queue_names())
        if not broker.isolated:
            admin.delete_exchange(exchange)
    result['send_logs'] = [(base / 'send1.log').read_text(errors='replace'),
                           (base / 'send2.log').read_text(errors='replace')]
    result['topic'] = topic
    return result


def _distinct(items, message_of):
    """Items once per message id, in first-arrival order; a repeat must be identical."""
    seen: dict = {}
    for item in items:
        message = message_of(item)
        first = seen.setdefault(message['message_id'], message)
        assert first == message, 'a repeated message id with other content'
    return list(seen.values())


def _cadf_for(messages, image_id):
    return [m for m in messages if m['payload']['target']['id'] == image_id]


def test_glance_answered_and_the_flush_saw_every_call_confirmed(run):
    assert [(s['step'], s['status']) for s in run['steps']] == [
        ('create_a', 201), ('create_b', 201), ('upload_a', 204), ('download_a', 200),
        ('patch_a', 200), ('delete_b', 204), ('delete_a', 204)]
    assert run['flushed'] is True
    counters = run['counters']
    # the API process journals (one record per call here; two for the upload and the
    # download: started / responded, then finished) and sends nothing itself
    assert (counters['journaled'], counters['sent'], counters['built'],
            counters['dropped']) == (9, 0, 0, 0)
    assert run['envelopes'] == []


def test_every_event_arrived_in_order_once_or_again_identical(run):
    messages = _distinct(run['tapped'], lambda i: i['message'])
    assert len(messages) == len(CADF_A) + len(CADF_B)
    assert {i['routing_key'] for i in run['tapped']} == {run['topic'] + '.info'}
    for image_id, expected in ((run['image_a'], CADF_A), (run['image_b'], CADF_B)):
        got = [(m['event_type'], m['payload']['action'],
                m['payload']['reason']['reasonCode'], m['payload']['outcome'],
                m['payload']['initiator']['id'], m['payload']['initiator']['project_id'],
                m['publisher_id'], m['priority'])
               for m in _cadf_for(messages, image_id)]
        assert got == [e + ('success', 'u-admin', 'p-demo', PUBLISHER, 'INFO')
                       for e in expected]
    payloads = {m['event_type']: m['payload'] for m in _cadf_for(messages, run['image_a'])}
    assert payloads['audit.image.upload']['measurements'][0]['result'] == 1024 * 1024
    assert payloads['audit.image.download']['measurements'][0]['result'] == 1024 * 1024


def test_the_listener_saw_the_same_events(run):
    tapped = {m['message_id']: m for m in _distinct(run['tapped'], lambda i: i['message'])}
    received = _distinct(run['received'], lambda r: r)
    assert sorted(r['message_id'] for r in received) == sorted(tapped)
    for r in received:
        assert (r['event_type'], r['payload'], r['priority']) == (
            tapped[r['message_id']]['event_type'], tapped[r['message_id']]['payload'],
            'info')


def test_the_killed_sender_was_replaced_and_the_second_stopped_cleanly(run):
    assert run['first_rc'] == -signal.SIGKILL
    assert run['second_rc'] == 0
    second = run['send_logs'][1]
    assert 'audit-notifier send serves the journals in' in second
    assert 'signal %d: sending what was read, then stopping' % signal.SIGTERM in second
    assert 'Traceback' not in second
    # what stays: the send lock, and the stats files of the processes (counters)
    assert all(name == 'audit-notifier-send.lock' or name.endswith('.stats.json')
               for name in run['after_stop']), run['after_stop']
    for key in ('info', 'warn', 'error'):
        assert run['leftover']['%s.%s' % (run['topic'], key)] == 0
