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

"""audit-notifier verify: exact report lines for each kind of damage to a trail.

The trails are made by the real chain (audit_notifier.trail.Chain) as the sender
uses it: assign, published, digests; then stored as a consumer stores them."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import os
import subprocess
import sys


from audit_notifier import trail, verify

OWNER = 'host-4242-1700000000000000'
STREAM = OWNER + '/cadf'


def envelope(n: int, owner: str = OWNER) -> dict:
    return {'message_id': '00000000-0000-4000-8000-%012d' % n, 'publisher_id': 'image.test',
            'event_type': 'audit.image.read', 'priority': 'INFO',
            'payload': {'id': 'ev-%d' % n, 'outcome': 'success', 'n': n, 'name': 'caf\u00e9'},
            'timestamp': '2026-12-01 10:00:%02d.000000' % (n % 60)}


def stored(env: dict, ctxt: dict, form: str = 'v2') -> str:
    """One line as a consumer stores it."""
    if form == 'context':
        return json.dumps(dict(env, context=ctxt))
    inner = dict(env, _unique_id='u%s' % env['message_id'][-4:])
    inner.update(('_context_%s' % k, v) for k, v in ctxt.items())
    if form == 'v1':
        return json.dumps(inner)
    return json.dumps({'oslo.version': '2.0', 'oslo.message': json.dumps(inner)})


def make_trail(count: int, *, every: int = 1000, signer=None, directory=None,
               owner: str = OWNER, final: bool = True, forms=('v2', 'v1', 'context'),
               chain=None, start: int = 1) -> tuple[list[str], trail.Chain]:
    """``count`` notifications published one batch each (a digest every ``every``),
    then a final digest."""
    config = trail.TrailConfig(True, every=every, interval=3600.0, signer=signer)
    chain = chain or trail.Chain(config, owner, directory, 'image.test')
    lines = []
    for n in range(start, start + count):
        env = envelope(n, owner)
        ctxt = chain.assign('cadf', [env])[0]
        chain.published('cadf')
        lines.append(stored(env, ctxt, forms[n % len(forms)]))
        if chain.undigested('cadf') >= every:
            lines.append(_digest(chain, False))
    if final:
        lines.append(_digest(chain, True))
    return lines, chain


def _digest(chain, final):
    env = chain.digest('cadf', final)
    ctxt = chain.assign('cadf', [env])[0]
    chain.published('cadf')
    return stored(env, ctxt)


def report(lines, **kwargs):
    result = verify.verify(lines, verify.Keys(**kwargs))
    return result.problems, [line for line in result.lines
                             if not line.startswith(('verify:', 'note:')) and
                             not line.endswith(': OK')]


def test_a_clean_trail_passes():
    lines, _ = make_trail(12, every=5)
    result = verify.verify(lines)
    assert result.problems == 0
    assert result.lines == [
        'stream %s: 15 notification(s), seq 1-15, 3 digest(s): OK' % STREAM,
        'verify: 1 stream(s), 15 notification(s), 0 problem(s): the trail is complete and '
        'unaltered']


def test_one_notification_removed_is_one_gap():
    lines, _ = make_trail(12, every=5)
    del lines[7]                                  # seq 8
    assert report(lines) == (1, [
        'stream %s: seq 8 missing' % STREAM,
        'stream %s: 14 notification(s), seq 1-15, 3 digest(s): 1 problem(s)' % STREAM])


def test_one_notification_duplicated_is_one_duplicate():
    lines, _ = make_trail(12, every=5)
    lines.insert(9, lines[4])
    assert report(lines) == (1, [
        'stream %s: seq 5 received 2 times, identical (a resend)' % STREAM,
        'stream %s: 15 notification(s), seq 1-15, 3 digest(s): 1 problem(s)' % STREAM])
    # at-least-once resends may be tolerated on request
    assert verify.verify(lines, allow_resends=True).problems == 0


def test_one_notification_moved_is_one_reordering():
    lines, _ = make_trail(12, every=5)
    lines[2], lines[3] = lines[3], lines[2]       # seq 3 and 4 swapped
    assert report(lines) == (1, [
        'stream %s: seq 4 out of order (line 3, after seq 2)' % STREAM,
        'stream %s: 15 notification(s), seq 1-15, 3 digest(s): 1 problem(s)' % STREAM])
    lines = make_trail(12, every=5)[0]
    moved = lines.pop(1)                          # seq 2 read after seq 11
    lines.insert(10, moved)
    assert report(lines) == (1, [
        'stream %s: seq 2 out of order (line 11, after seq 11)' % STREAM,
        'stream %s: 15 notification(s), seq 1-15, 3 digest(s): 1 problem(s)' % STREAM])
    # a store of several queues (one per priority) may interleave: noted only
    relaxed = verify.verify(lines, ignore_order=True)
    assert relaxed.problems == 0
    assert 'note: stream %s: seq 2 out of order (line 11, after seq 11)' % STREAM \
        in relaxed.lines


def test_one_notification_edited_is_reported_altered():
    lines, _ = make_trail(12, every=5)
    lines[8] = lines[8].replace('success', 'failure')          # seq 9
    assert report(lines) == (1, [
        'stream %s: seq 9 altered (its hash is not the audit_prev of seq 10)' % STREAM,
        'stream %s: 15 notification(s), seq 1-15, 3 digest(s): 1 problem(s)' % STREAM])


def test_an_edited_chain_field_is_that_notification_altered():
    lines, _ = make_trail(6)
    env, ctxt = verify.parse(lines[2])
    ctxt = {k: v for k, v in ctxt.items() if k.startswith('audit_')}
    ctxt['audit_prev'] = 'f' * 64
    lines[2] = stored(env, ctxt)
    assert report(lines)[1][0] == \
        'stream %s: seq 3 altered (its hash is not the audit_prev of seq 4)' % STREAM


def test_a_forged_notification_with_a_taken_seq_is_a_conflict():
    lines, _ = make_trail(6)
    env, ctxt = verify.parse(lines[3])
    ctxt = {k: v for k, v in ctxt.items() if k.startswith('audit_')}
    forged = copy.deepcopy(env)
    forged['payload']['outcome'] = 'failure'
    lines.append(stored(forged, ctxt))
    assert report(lines) == (1, [
        'stream %s: seq 4 received in 2 different versions (lines 4, 8)' % STREAM,
        'stream %s: 7 notification(s), seq 1-7, 1 digest(s): 1 problem(s)' % STREAM])


def test_a_forged_hmac_digest_is_reported(tmp_path):
    key = b'k3y-for-tests-only'
    lines, _ = make_trail(6, signer=trail.HmacSigner(key))
    assert verify.verify(lines, verify.Keys(hmac_key=key)).problems == 0
    env, ctxt = verify.parse(lines[-1])                # the final digest, seq 7
    ctxt = {k: v for k, v in ctxt.items() if k.startswith('audit_')}
    env['payload']['count'] = 5
    env['payload']['first_seq'] = 2
    lines[-1] = stored(env, ctxt)
    assert report(lines, hmac_key=key) == (3, [
        'stream %s: digest seq 7: first_seq is 2, the chain says 1' % STREAM,
        'stream %s: digest seq 7: count is 5, the chain says 6' % STREAM,
        'stream %s: digest seq 7: bad signature' % STREAM,
        'stream %s: 7 notification(s), seq 1-7, 1 digest(s): 3 problem(s)' % STREAM])


def test_a_digest_signed_with_another_key_is_a_bad_signature():
    lines, _ = make_trail(4, signer=trail.HmacSigner(b'the-real-key'))
    assert report(lines, hmac_key=b'another-key') == (1, [
        'stream %s: digest seq 5: bad signature' % STREAM,
        'stream %s: 5 notification(s), seq 1-5, 1 digest(s): 1 problem(s)' % STREAM])
    # without a key the signature is not checked, and nothing else is wrong
    assert verify.verify(lines).problems == 0


def test_ed25519_digests():
    from cryptography.hazmat.primitives.asymmetric import ed25519
    private = ed25519.Ed25519PrivateKey.generate()
    lines, _ = make_trail(4, signer=trail.Ed25519Signer(private))
    public = private.public_key()
    assert verify.verify(lines, verify.Keys(ed25519_public=public)).problems == 0
    payload = json.loads(json.loads(lines[-1])['oslo.message'])['payload']
    assert payload['algorithm'] == 'ed25519'
    other = ed25519.Ed25519PrivateKey.generate().public_key()
    assert report(lines, ed25519_public=other)[1][0] == \
        'stream %s: digest seq 5: bad signature' % STREAM
    # an unsigned trail, when a key is given, is a problem
    unsigned, _ = make_trail(4)
    assert report(unsigned, ed25519_public=public)[1][0] == \
        'stream %s: digest seq 5: unsigned' % STREAM


def test_a_trail_across_a_restart_passes(tmp_path):
    first, chain_a = make_trail(5, directory=str(tmp_path), owner='host-1-100',
                                final=False)
    assert json.loads((tmp_path / 'host-1-100.trail').read_text())['cadf']['seq'] == 5
    second, chain_b = make_trail(3, directory=str(tmp_path), owner='host-2-200', start=6)
    # the successor named its predecessor, and took its state file
    assert not (tmp_path / 'host-1-100.trail').exists()
    assert chain_b.streams['cadf'].follows == {
        'stream': 'host-1-100/cadf', 'seq': 5, 'hash': chain_a.streams['cadf'].last_hash}
    result = verify.verify(first + second)
    assert result.problems == 0, result.lines
    assert 'stream host-2-200/cadf: 4 notification(s), seq 1-4, 1 digest(s), follows ' \
        'host-1-100/cadf: OK' in result.lines
    # the predecessor's last notification removed: the successor names it, a gap
    assert report(first[:-1] + second)[1][0] == 'stream host-1-100/cadf: seq 5 missing'


def test_a_resend_after_a_crash_is_not_tampering(tmp_path):
    """Process A published seq 4-5 but died before recording it; B re-sends those
    records (same message_id) in its own stream, following A at seq 3."""
    config = trail.TrailConfig(True, every=1000, interval=3600.0)
    chain_a = trail.Chain(config, 'host-1-100', str(tmp_path), 'image.test')
    lines = []
    for n in range(1, 4):
        env = envelope(n)
        lines.append(stored(env, chain_a.assign('cadf', [env])[0]))
        chain_a.published('cadf')
    envs = [envelope(4), envelope(5)]
    lines += [stored(e, c) for e, c in zip(envs, chain_a.assign('cadf', envs))]
    # (killed here: published() never ran, the state file says seq 3)
    chain_b = trail.Chain(config, 'host-2-200', str(tmp_path), 'image.test')
    resent = [envelope(4), envelope(5), envelope(6)]
    lines += [stored(e, c) for e, c in zip(resent, chain_b.assign('cadf', resent))]
    chain_b.published('cadf')
    lines.append(_digest(chain_b, True))
    result = verify.verify(lines)
    assert result.problems == 0, result.lines
    assert 'note: 2 notification(s) appear in streams host-1-100/cadf, host-2-200/cadf ' \
        'with the same message_id (sent again after a restart: at-least-once delivery, ' \
        'not a problem)' in result.lines


def test_lines_that_are_not_chained_notifications_are_problems():
    lines, _ = make_trail(3)
    env = envelope(99)
    lines[1:1] = ['{not json', json.dumps([1, 2]), json.dumps(env)]
    assert report(lines) == (3, [
        "line 2: not an oslo.messaging notification (Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1))",
        'line 3: not an oslo.messaging notification (not a JSON object)',
        'line 4: audit.image.read 00000000-0000-4000-8000-000000000099 carries no chain '
        'fields (audit_stream, audit_seq, audit_prev)'])


def test_hash_definition_is_canonical_json_of_the_envelope_and_chain_fields():
    env = envelope(1)
    ctxt = {'audit_stream': STREAM, 'audit_seq': 1, 'audit_prev': trail.ZERO_HASH}
    expected = hashlib.sha256(json.dumps(
        dict(env, **ctxt), sort_keys=True, separators=(',', ':'),
        ensure_ascii=False).encode('utf-8')).hexdigest()
    assert trail.notification_hash(env, dict(ctxt, request_id='not chained')) == expected
    # a digest signature is HMAC-SHA256 of the canonical payload without signature
    signer = trail.HmacSigner(b'k')
    payload = {'stream': STREAM, 'last_seq': 1, 'algorithm': 'hmac-sha256'}
    assert signer.sign(trail.signed_part(dict(payload, signature='x'))) == hmac.new(
        b'k', json.dumps(payload, sort_keys=True, separators=(',', ':')).encode(),
        hashlib.sha256).hexdigest()
    assert base64  # (imported for the Ed25519 test's sake)


# -- the command ------------------------------------------------------------------------

def _cli(*args, stdin=None):
    return subprocess.run([sys.executable, '-m', 'audit_notifier.cli', 'verify', *args],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONWARNINGS='ignore'))


def test_cli_on_files(tmp_path):
    key = tmp_path / 'trail.key'
    key.write_bytes(b'secret-key-of-the-test\n')
    lines, _ = make_trail(6, every=3, signer=trail.HmacSigner(b'secret-key-of-the-test'))
    good = tmp_path / 'trail.jsonl'
    good.write_text('\n'.join(lines) + '\n')
    proc = _cli(str(good), '--key-file', str(key))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == ('verify: 1 stream(s), 9 notification(s), 0 '
                                            'problem(s): the trail is complete and unaltered')
    # from standard input
    assert _cli('-', stdin=good.read_text()).returncode == 0
    # one line removed
    bad = tmp_path / 'gap.jsonl'
    bad.write_text('\n'.join(lines[:2] + lines[3:]) + '\n')
    proc = _cli(str(bad), '--key-file', str(key))
    assert proc.returncode == 1
    assert 'stream %s: seq 3 missing' % STREAM in proc.stdout.splitlines()
    # the wrong key: every digest is reported, and the key is never printed
    wrong = tmp_path / 'wrong.key'
    wrong.write_bytes(b'not-the-key')
    proc = _cli(str(good), '--key-file', str(wrong))
    assert proc.returncode == 1
    assert [line for line in proc.stdout.splitlines() if 'bad signature' in line] == [
        'stream %s: digest seq %d: bad signature' % (STREAM, seq) for seq in (4, 8, 9)]
    assert 'not-the-key' not in proc.stdout + proc.stderr
    # a bad JSON line
    broken = tmp_path / 'broken.jsonl'
    broken.write_text('\n'.join(lines[:4] + ['{"oslo.message": 3}'] + lines[4:]) + '\n')
    proc = _cli(str(broken))
    assert proc.returncode == 1
    assert 'line 5: not an oslo.messaging notification (oslo.message is not a JSON text)' \
        in proc.stdout.splitlines()


def test_cli_errors(tmp_path):
    proc = _cli(str(tmp_path / 'missing.jsonl'))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('audit-notifier verify: error: cannot read %s: No such '
                                   'file or directory' % (tmp_path / 'missing.jsonl'))
    proc = _cli('-', '--key-file', str(tmp_path / 'nokey'), stdin='')
    assert proc.returncode == 2
    assert 'cannot read --key-file' in proc.stderr
    conf = tmp_path / 'glance-api.conf'
    conf.write_text('[audit_notifier]\ndriver = messagingv2\n'
                    'transport_url = rabbit://guest:guest@127.0.0.1:1/\n')
    proc = _cli('--config-file', str(conf), '--count', '1')
    assert proc.returncode == 2
    assert proc.stderr.startswith('audit-notifier verify: error: cannot connect to '
                                  'rabbit://127.0.0.1:1/'), proc.stderr
    assert 'guest:guest' not in proc.stderr
    proc = _cli('--config-file', str(conf))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('audit-notifier verify: error: reading from the bus '
                                   'needs --count or --timeout')
    pem = tmp_path / 'not.pem'
    pem.write_text('hello')
    proc = _cli('-', '--public-key', str(pem), stdin='')
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('audit-notifier verify: error: --public-key %s is not a '
                                   'PEM public key' % pem)
