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

"""The integrity trail through the real filter and sender, without a broker:
oslo.messaging's ``test`` driver receives each envelope with its context."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from oslo_config import cfg
from oslo_messaging.notify import _impl_test

from audit_notifier import middleware, trail, verify
from audit_notifier._config import ConfigError
from audit_notifier.delivery import sender as sender_mod
from tests.support.wait import wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGES = ['11111111-1111-4111-8111-1111111111%02d' % i for i in range(10)]
KEY = b'hmac-key-of-the-trail-tests-0123456789'


def deactivate_app(environ, start_response):
    start_response('204 No Content', [])
    return [b'']


def call(mw, wsgi, n):
    environ = wsgi.environ('POST', '/v2/images/%s/actions/deactivate' % IMAGES[n % 10],
                           headers=dict(wsgi.IDENTITY))
    sr, _ = wsgi.run(mw, environ)
    assert sr.status.startswith('204')


def captured_lines() -> list[str]:
    """What the test driver received, stored as a listener's endpoint would store it."""
    return [json.dumps(dict(envelope, context=ctxt))
            for ctxt, envelope, _priority, _retry in _impl_test.NOTIFICATIONS]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(sender_mod, 'RETRY_FIRST', 0.01)
    monkeypatch.setattr(sender_mod, 'RETRY_MAX', 0.05)


def test_every_notification_is_chained_and_digested(make_filter, wsgi, tmp_path):
    key_file = tmp_path / 'trail.key'
    key_file.write_bytes(KEY + b'\n')
    mw = make_filter(deactivate_app, formats='cadf', trail='true', trail_digest_every='3',
                     trail_hmac_key_file=str(key_file))
    for n in range(7):
        call(mw, wsgi, n)
        assert mw.delivery.flush(30)            # one batch per call: digests after 3, 6
    mw.delivery.close()
    received = list(_impl_test.NOTIFICATIONS)
    audits = [(c, e) for c, e, _p, _r in received if e['event_type'] != trail.DIGEST_EVENT]
    digests = [(c, e) for c, e, _p, _r in received if e['event_type'] == trail.DIGEST_EVENT]
    assert len(audits) == 7
    assert [(e['payload']['first_seq'], e['payload']['last_seq'], e['payload']['final'])
            for _c, e in digests] == [(1, 3, False), (5, 7, False), (9, 9, True)]
    assert all(e['priority'] == 'INFO' for _c, e in digests)
    # the envelope itself is unchanged: the chain is in the context only
    for ctxt, envelope in audits:
        assert set(envelope) == {'message_id', 'publisher_id', 'event_type', 'priority',
                                 'payload', 'timestamp'}
        assert set(ctxt) == {'audit_stream', 'audit_seq', 'audit_prev'}
    owner = mw.delivery._journal.owner
    assert [c['audit_seq'] for c, _e, _p, _r in received] == \
        list(range(1, len(received) + 1))
    assert {c['audit_stream'] for c, _e, _p, _r in received} == {owner + '/cadf'}
    result = verify.verify(captured_lines(), verify.Keys(hmac_key=KEY))
    assert result.problems == 0, result.lines
    # the key is in no file the filter wrote and in no notification
    for name in os.listdir(mw.delivery.directory):
        with open(os.path.join(mw.delivery.directory, name), 'rb') as f:
            assert KEY not in f.read(), name
    assert KEY.decode() not in json.dumps([list(r[:2]) for r in received])
    # the state a successor reads: the last published notification (the final digest)
    with open(os.path.join(mw.delivery.directory, owner + '.trail')) as f:
        state = json.load(f)
    assert state == {'cadf': {'stream': owner + '/cadf', 'seq': len(received),
                              'hash': trail.notification_hash(received[-1][1],
                                                              received[-1][0])}}


def test_a_restarted_filter_follows_its_predecessor(make_filter, wsgi, tmp_path):
    journal = str(tmp_path / 'journal')
    first = make_filter(deactivate_app, formats='cadf', trail='true', journal_dir=journal)
    for n in range(3):
        call(first, wsgi, n)
    assert first.delivery.flush(30)
    first.delivery.close()
    count = len(_impl_test.NOTIFICATIONS)
    second = make_filter(deactivate_app, formats='cadf', trail='true', journal_dir=journal)
    for n in range(3, 5):
        call(second, wsgi, n)
    assert second.delivery.flush(30)
    second.delivery.close()
    ctxt = _impl_test.NOTIFICATIONS[count][0]
    assert ctxt['audit_seq'] == 1
    assert ctxt['audit_follows']['stream'] == first.delivery._journal.owner + '/cadf'
    assert ctxt['audit_follows']['seq'] == count
    result = verify.verify(captured_lines())
    assert result.problems == 0, result.lines
    # the predecessor's final digest removed: the successor's link shows the gap
    lines = captured_lines()
    del lines[count - 1]
    result = verify.verify(lines)
    assert result.problems == 1
    assert 'stream %s/cadf: seq %d missing' % (first.delivery._journal.owner, count) \
        in result.lines


def test_a_stop_with_the_bus_down_rolls_the_chain_back(make_filter, wsgi, caplog):
    """Chain fields of notifications that were never published are not kept: the
    next process sends those records in its own stream, and no digest claims them."""
    mw = make_filter(deactivate_app, formats='cadf', trail='true', driver='messagingv2',
                     transport_url='rabbit://guest:guest@127.0.0.1:1/', retry='0')
    make_filter.forget(mw)
    with caplog.at_level(logging.WARNING, logger='audit_notifier'):
        for n in range(3):
            call(mw, wsgi, n)
        wait_until(lambda: mw.delivery.counters['send_errors'] >= 2, timeout=60,
                   message='the sender never tried the bus')
        chain = mw.delivery._sender.trail
        assert chain.streams['cadf'].seq >= 1          # assigned while trying
        mw.delivery.close(timeout=0.5)
    assert chain.streams['cadf'].seq == 0
    assert chain.streams['cadf'].last_hash == trail.ZERO_HASH
    assert chain.chained == 0
    assert not os.path.exists(chain.state_path())      # nothing was ever published
    assert any('stay in the journal' in r.getMessage() for r in caplog.records)


def _filter(tmp_path, **paste):
    paste.setdefault('journal_dir', str(tmp_path / 'journal'))
    paste['oslo_config_config'] = cfg.ConfigOpts()
    return middleware.filter_factory({}, driver='test', **paste)(deactivate_app)


@pytest.mark.parametrize('paste, line', [
    ({'trail_digest_every': '0'},
     'audit_notifier: option trail_digest_every'),
    ({'trail_digest_interval': '0.5'},
     'audit_notifier: option trail_digest_interval'),
    ({'trail_hmac_key_file': '/nonexistent/trail.key'},
     'audit_notifier: option trail_hmac_key_file: cannot read /nonexistent/trail.key'),
])
def test_bad_trail_options_fail_at_start_up_naming_the_option(tmp_path, paste, line):
    with pytest.raises(ConfigError) as info:
        _filter(tmp_path, trail='true', **paste)
    assert str(info.value).startswith(line), str(info.value)
    assert '\n' not in str(info.value)


def test_key_problems_name_the_option_never_the_key(tmp_path):
    key = tmp_path / 'hmac.key'
    key.write_bytes(KEY)
    not_ed = tmp_path / 'ed.pem'
    not_ed.write_bytes(b'-----BEGIN PRIVATE KEY-----\n' + KEY + b'\n-----END PRIVATE KEY-----\n')
    with pytest.raises(ConfigError) as info:
        _filter(tmp_path, trail='true', trail_hmac_key_file=str(key),
                trail_ed25519_key_file=str(not_ed))
    assert str(info.value).startswith('audit_notifier: option trail_ed25519_key_file: is '
                                      'set as well as trail_hmac_key_file')
    with pytest.raises(ConfigError) as info:
        _filter(tmp_path, trail='true', trail_ed25519_key_file=str(not_ed))
    assert str(info.value).startswith('audit_notifier: option trail_ed25519_key_file: not '
                                      'an unencrypted PEM private key')
    assert KEY.decode() not in str(info.value)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    other = tmp_path / 'ec.pem'
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError) as info:
        _filter(tmp_path, trail='true', trail_ed25519_key_file=str(other))
    assert 'the key is not an Ed25519 key' in str(info.value)


def test_ed25519_signed_trail_through_the_filter(make_filter, wsgi, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    private = ed25519.Ed25519PrivateKey.generate()
    pem = tmp_path / 'ed25519.pem'
    pem.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    mw = make_filter(deactivate_app, formats='cadf', trail='true',
                     trail_ed25519_key_file=str(pem))
    for n in range(2):
        call(mw, wsgi, n)
    assert mw.delivery.flush(30)
    mw.delivery.close()
    keys = verify.Keys(ed25519_public=private.public_key())
    result = verify.verify(captured_lines(), keys)
    assert result.problems == 0, result.lines
    assert result.lines[0].endswith('3 notification(s), seq 1-3, 1 digest(s): OK')


def test_trail_off_sends_an_empty_context(make_filter, wsgi):
    mw = make_filter(deactivate_app, formats='cadf')
    call(mw, wsgi, 0)
    assert mw.delivery.flush(30)
    mw.delivery.close()
    assert [c for c, _e, _p, _r in _impl_test.NOTIFICATIONS] == [{}]


CHILD = textwrap.dedent('''
    import logging, sys, webob
    from oslo_config import cfg
    from audit_notifier.middleware import filter_factory
    out = open(sys.argv[2], 'a')

    class Store(logging.Handler):
        """What the log driver writes: one envelope (chain as _context_ keys) a line."""
        def emit(self, record):
            out.write(record.getMessage() + '\\n')
            out.flush()

    logger = logging.getLogger('oslo.messaging.notification')
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(Store())

    def app(environ, start_response):
        start_response('204 No Content', [])
        return [b'']

    mw = filter_factory({}, oslo_config_config=cfg.ConfigOpts(), driver='log',
                        formats='cadf', trail='true', journal_dir=sys.argv[1],
                        process_hooks='false')(app)
    for n in range(3):
        webob.Request.blank('/v2/images/11111111-1111-4111-8111-11111111110%d/actions/'
                            'deactivate' % n, method='POST').get_response(mw)
    assert mw.delivery.flush(60)
    print(mw.delivery._journal.owner, flush=True)
    sys.stdin.read()                  # until killed
''')


def test_a_successor_of_a_killed_process_follows_it(make_filter, wsgi, tmp_path):
    """A process killed with SIGKILL (no final digest, its lock file left behind):
    the next one in the same journal directory names where its stream ended."""
    journal = tmp_path / 'journal'
    journal.mkdir()
    stored = tmp_path / 'killed.jsonl'
    child = subprocess.Popen([sys.executable, '-c', CHILD, str(journal), str(stored)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        owner = child.stdout.readline().strip()
        assert owner, child.stderr.read()[-3000:]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    assert (journal / (owner + '.lock')).exists()
    killed = stored.read_text().splitlines()
    assert len(killed) == 3
    successor = make_filter(deactivate_app, formats='cadf', trail='true',
                            journal_dir=str(journal))
    for n in range(2):
        call(successor, wsgi, n)
    assert successor.delivery.flush(30)
    successor.delivery.close()
    first = _impl_test.NOTIFICATIONS[0][0]
    assert first['audit_follows']['stream'] == owner + '/cadf'
    assert first['audit_follows']['seq'] == 3
    result = verify.verify(killed + captured_lines())
    assert result.problems == 0, result.lines
    assert 'stream %s/cadf: 3 notification(s), seq 1-3, 0 digest(s): OK' % owner \
        in result.lines
    # the killed process's last notification lost: the successor's link shows it
    result = verify.verify(killed[:2] + captured_lines())
    assert 'stream %s/cadf: seq 3 missing' % owner in result.lines
    assert result.problems == 1


def test_a_digest_comes_after_the_interval_without_more_traffic(make_filter, wsgi):
    mw = make_filter(deactivate_app, formats='cadf', trail='true',
                     trail_digest_interval='1')
    call(mw, wsgi, 0)
    assert mw.delivery.flush(30)
    digests = wait_until(lambda: [e for _c, e, _p, _r in _impl_test.NOTIFICATIONS
                                  if e['event_type'] == trail.DIGEST_EVENT],
                         timeout=60, message='no timed digest')
    assert [(d['payload']['first_seq'], d['payload']['last_seq'], d['payload']['final'])
            for d in digests] == [(1, 1, False)]
    mw.delivery.close()
    result = verify.verify(captured_lines())
    assert result.problems == 0, result.lines
