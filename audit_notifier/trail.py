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

"""The integrity trail: a hash chain per stream, and signed digests of it.

With ``trail = true`` every notification a process publishes carries, in its
oslo.messaging **context** (never in the payload: Glance-format payloads stay
byte-identical), the chain fields of its stream:

``audit_stream``
    ``<owner>/<format>``: one stream per process and format (CADF and
    Glance-format notifications go to different topics);
``audit_seq``
    1, 2, 3 ... in publish order;
``audit_prev``
    the SHA-256 (hex) of the previous notification of the stream
    (:func:`notification_hash`), 64 zeros for the first one;
``audit_follows``
    first notification of a stream only, when the process followed another one
    in the same journal directory: ``{"stream", "seq", "hash"}`` of the last
    notification that process recorded as published.

Every ``trail_digest_every`` notifications or ``trail_digest_interval`` seconds,
and at a clean shutdown, an ``audit.digest`` notification (INFO, itself chained)
summarises the stream since the previous digest and is signed when a key is
configured (HMAC-SHA256 or Ed25519).  :mod:`audit_notifier.verify` checks a
captured trail.

Everything in :class:`Chain` runs in the sender thread, at publish time: nothing
here is on the request path.  The cost is one canonical JSON encoding and one
SHA-256 per notification (:doc:`/reference/benchmarks`).
"""

from __future__ import annotations

import base64
import errno
import fcntl
import glob
import hashlib
import hmac
import json
import logging
import os
import time
import uuid
from typing import Any

from oslo_config import cfg

from audit_notifier._config import config_error
from audit_notifier.events import envelope_time

LOG = logging.getLogger(__name__)

DIGEST_EVENT = 'audit.digest'
ZERO_HASH = '0' * 64
#: The envelope fields a notification's hash covers, with the chain fields.
HASHED_FIELDS = ('message_id', 'publisher_id', 'event_type', 'priority', 'payload',
                 'timestamp')
CHAIN_KEYS = ('audit_stream', 'audit_seq', 'audit_prev', 'audit_follows')
STATE_SUFFIX = '.trail'
_ID_NAMESPACE = uuid.UUID('5d0c2a8e-7f41-4b0a-9c3e-2a6b8f1d4e77')

trail_opts = [
    cfg.BoolOpt('trail', default=False,
                help='Chain every notification into a per-process, per-format stream '
                     '(stream id, sequence number and SHA-256 of the previous '
                     'notification, in the oslo.messaging context) and publish '
                     'audit.digest notifications summarising it, so that '
                     'audit-notifier verify can prove a captured trail complete and '
                     'unaltered. Computed in the sender thread only.'),
    cfg.IntOpt('trail_digest_every', default=1000, min=1, max=1000000,
               help='With trail = true: publish an audit.digest notification after this '
                    'many notifications of a stream (at the end of the batch that reaches '
                    'it).'),
    cfg.FloatOpt('trail_digest_interval', default=60.0, min=1.0, max=86400.0,
                 help='With trail = true: publish an audit.digest notification when this '
                      'many seconds passed since the last one and the stream has new '
                      'notifications.'),
    cfg.StrOpt('trail_hmac_key_file',
               help='With trail = true: file holding the secret key (its bytes, '
                    'surrounding whitespace removed) that signs digests with '
                    'HMAC-SHA256. The key is never logged nor written anywhere.'),
    cfg.StrOpt('trail_ed25519_key_file',
               help='With trail = true: PEM file of an Ed25519 private key (unencrypted '
                    'PKCS#8) that signs digests; needs the cryptography library. Give '
                    'verifiers the public key.'),
]


# -- the hash -------------------------------------------------------------------------

def canonical(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no spaces, UTF-8 (not ASCII-escaped)."""
    return json.dumps(value, sort_keys=True, separators=(',', ':'), ensure_ascii=False,
                      default=str).encode('utf-8')


def notification_hash(envelope: dict, context: dict) -> str:
    """SHA-256 (hex) of the canonical JSON of the envelope's :data:`HASHED_FIELDS`
    and the context's chain fields (:data:`CHAIN_KEYS` present in it)."""
    hashed = {k: envelope.get(k) for k in HASHED_FIELDS}
    hashed.update((k, context[k]) for k in CHAIN_KEYS if k in context)
    return hashlib.sha256(canonical(hashed)).hexdigest()


def signed_part(payload: dict) -> bytes:
    """What a digest's signature covers: its payload without ``signature``."""
    return canonical({k: v for k, v in payload.items() if k != 'signature'})


# -- keys -----------------------------------------------------------------------------

class Signer:
    """Signs digests.  Holds the key in memory only; never logs or writes it."""

    algorithm: str | None = None

    def sign(self, data: bytes) -> str | None:
        return None


class HmacSigner(Signer):
    algorithm = 'hmac-sha256'

    def __init__(self, key: bytes):
        self._key = key

    def sign(self, data: bytes) -> str:
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()

    def __repr__(self) -> str:
        return '<HmacSigner>'


class Ed25519Signer(Signer):
    algorithm = 'ed25519'

    def __init__(self, key):
        self._key = key

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data)).decode('ascii')

    def __repr__(self) -> str:
        return '<Ed25519Signer>'


def read_key_file(path: str, option: str) -> bytes:
    """The bytes of a key file, or a ConfigError naming ``option`` (never the key)."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise config_error(option, 'cannot read %s (%s)' % (path, exc.strerror or exc),
                           'make it readable by the service user')
    if not data.strip():
        raise config_error(option, '%s is empty' % path, 'put the key in it')
    return data


def load_ed25519_private(data: bytes, option: str):
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise config_error(option, 'the cryptography library is not installed',
                           'install cryptography or use trail_hmac_key_file')
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise config_error(option, 'not an unencrypted PEM private key (%s)'
                           % type(exc).__name__, 'give an Ed25519 PKCS#8 PEM file')
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise config_error(option, 'the key is not an Ed25519 key',
                           'give an Ed25519 PKCS#8 PEM file')
    return key


class TrailConfig:
    """The trail options, checked at start-up (one line naming the option)."""

    def __init__(self, enabled: bool, every: int = 1000, interval: float = 60.0,
                 signer: Signer | None = None):
        self.enabled = enabled
        self.every = every
        self.interval = interval
        self.signer = signer or Signer()

    @classmethod
    def from_settings(cls, settings) -> 'TrailConfig':
        enabled = bool(settings.get('trail'))
        every = settings.get('trail_digest_every')
        interval = settings.get('trail_digest_interval')
        if every is None or every < 1:
            raise config_error('trail_digest_every', 'must be 1 or more', 'set e.g. 1000')
        if interval is None or not 1.0 <= interval <= 86400.0:
            raise config_error('trail_digest_interval', 'must be from 1 to 86400 seconds',
                               'set e.g. 60')
        hmac_file = settings.get('trail_hmac_key_file')
        ed_file = settings.get('trail_ed25519_key_file')
        if hmac_file and ed_file:
            raise config_error('trail_ed25519_key_file', 'is set as well as '
                               'trail_hmac_key_file', 'set only one of them')
        signer = None
        if enabled and hmac_file:
            signer = HmacSigner(read_key_file(hmac_file, 'trail_hmac_key_file').strip())
        elif enabled and ed_file:
            signer = Ed25519Signer(load_ed25519_private(
                read_key_file(ed_file, 'trail_ed25519_key_file'), 'trail_ed25519_key_file'))
        return cls(enabled, every, interval, signer)


# -- the chain of one process --------------------------------------------------------------

class _Stream:
    __slots__ = ('name', 'seq', 'last_hash', 'period_start', 'last_digest', 'follows',
                 'pending')

    def __init__(self, name: str, follows: dict | None, now: float):
        self.name = name
        self.seq = 0
        self.last_hash = ZERO_HASH
        self.period_start = 1           # first seq the next digest covers
        self.last_digest = now
        self.follows = follows
        self.pending: list = []         # (seq, hash) assigned and not yet published


class Chain:
    """The streams of one process (one per format).  Sender thread only.

    :meth:`assign` gives a run of envelopes their chain fields once, before the
    first publish attempt (a retry resends the same fields); :meth:`published`
    makes them final (and records the state next to the journal);
    :meth:`rollback` forgets what could not be published because the sender is
    stopping, so that no digest claims it.
    """

    def __init__(self, config: TrailConfig, owner: str, directory: str | None,
                 publisher_id: str, clock=time.monotonic):
        self.config = config
        self.owner = owner
        self.directory = directory
        self.publisher_id = publisher_id
        self.clock = clock
        self.streams: dict[str, _Stream] = {}
        self.chained = 0                 # notifications given chain fields
        self.digests = 0                 # digests published
        self._claimed = False
        self._predecessors: dict[str, dict] = {}
        self._dirty = False

    # -- streams ------------------------------------------------------------------------
    def _stream(self, fmt: str) -> _Stream:
        stream = self.streams.get(fmt)
        if stream is None:
            if not self._claimed:
                self._claimed = True
                self._predecessors = claim_predecessor(self.directory, self.owner)
            stream = self.streams[fmt] = _Stream('%s/%s' % (self.owner, fmt),
                                                 self._predecessors.get(fmt), self.clock())
            if stream.follows:
                LOG.info('audit_notifier: trail stream %s follows %s (seq %s)', stream.name,
                         stream.follows.get('stream'), stream.follows.get('seq'))
        return stream

    def assign(self, fmt: str, envelopes: list[dict]) -> list[dict]:
        """The contexts of ``envelopes`` (chain fields), in order; advances the stream."""
        stream = self._stream(fmt)
        contexts = []
        for envelope in envelopes:
            stream.seq += 1
            context = {'audit_stream': stream.name, 'audit_seq': stream.seq,
                       'audit_prev': stream.last_hash}
            if stream.seq == 1 and stream.follows:
                context['audit_follows'] = dict(stream.follows)
            stream.last_hash = notification_hash(envelope, context)
            stream.pending.append((stream.seq, stream.last_hash,
                                   envelope.get('event_type') == DIGEST_EVENT))
            contexts.append(context)
        self.chained += len(envelopes)
        return contexts

    def published(self, fmt: str, save: bool = True) -> None:
        """Everything assigned in ``fmt`` so far is on the bus (or dead-lettered: a
        legitimate gap); the state file is rewritten unless ``save`` is false (the
        sender saves once per batch, :meth:`save`)."""
        stream = self.streams.get(fmt)
        if stream is None or not stream.pending:
            return
        for seq, _hash, digest in stream.pending:
            if digest:
                stream.period_start = seq + 1
                stream.last_digest = self.clock()
                self.digests += 1
        stream.pending = []
        self._dirty = True
        if save:
            self.save()

    def rollback(self, fmt: str, context: dict) -> None:
        """Forget ``context`` and every notification assigned after it (not
        published: the sender is stopping; the next process sends them)."""
        stream = self.streams.get(fmt)
        if stream is None:
            return
        seq = context['audit_seq']
        dropped = sum(1 for s, _h, _d in stream.pending if s >= seq)
        stream.pending = [p for p in stream.pending if p[0] < seq]
        stream.seq = seq - 1
        stream.last_hash = context['audit_prev']
        self.chained -= dropped

    # -- digests ------------------------------------------------------------------------
    def undigested(self, fmt: str) -> int:
        stream = self.streams.get(fmt)
        return 0 if stream is None else stream.seq - stream.period_start + 1

    def digest_due(self, fmt: str) -> bool:
        stream = self.streams.get(fmt)
        if stream is None or stream.seq < stream.period_start:
            return False
        return (stream.seq - stream.period_start + 1 >= self.config.every or
                self.clock() - stream.last_digest >= self.config.interval)

    def due(self) -> list[str]:
        return [fmt for fmt in list(self.streams) if self.digest_due(fmt)]

    def digest(self, fmt: str, final: bool = False) -> dict:
        """The ``audit.digest`` envelope summarising ``fmt``'s stream since the last
        digest (chain it with :meth:`assign` like any other)."""
        stream = self._stream(fmt)
        payload = {'stream': stream.name, 'first_seq': stream.period_start,
                   'last_seq': stream.seq, 'last_hash': stream.last_hash,
                   'count': stream.seq - stream.period_start + 1,
                   'follows': stream.follows.get('stream') if stream.follows else None,
                   'final': final, 'algorithm': self.config.signer.algorithm}
        signature = self.config.signer.sign(signed_part(payload))
        if signature is not None:
            payload['signature'] = signature
        return {'message_id': str(uuid.uuid5(_ID_NAMESPACE, '%s/digest/%d'
                                             % (stream.name, stream.seq + 1))),
                'publisher_id': self.publisher_id, 'event_type': DIGEST_EVENT,
                'priority': 'INFO', 'payload': payload,
                'timestamp': envelope_time(time.time())}

    # -- the state file -------------------------------------------------------------------
    def state_path(self) -> str | None:
        if self.directory is None:
            return None
        return os.path.join(self.directory, self.owner + STATE_SUFFIX)

    def save(self) -> None:
        """Rewrite ``<journal_dir>/<owner>.trail`` (last published stream, seq, hash
        per format) if something was published since; one small file write."""
        path = self.state_path()
        if path is None or not self._dirty:
            return
        self._dirty = False
        state = {fmt: {'stream': s.name, 'seq': s.seq, 'hash': s.last_hash}
                 for fmt, s in self.streams.items() if s.seq and not s.pending}
        try:
            write_state(path, state)
        except OSError as exc:
            LOG.debug('audit_notifier: cannot write %s (%s)', path, exc)


def write_state(path: str, state: dict) -> None:
    tmp = path + '.tmp'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
        json.dump(state, f, sort_keys=True)
    os.replace(tmp, path)


def _alive(directory: str, owner: str) -> bool:
    """Does a process hold ``<owner>.lock``?"""
    try:
        fd = os.open(os.path.join(directory, owner + '.lock'), os.O_RDONLY)
    except OSError:
        return False                    # no lock file: it stopped cleanly
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
    finally:
        os.close(fd)                    # releases our lock, if we got it
    return False


def claim_predecessor(directory: str | None, owner: str) -> dict[str, dict]:
    """The state of the most recent stream of a process that is gone, claimed (its
    file removed, so that one successor follows it): {fmt: {stream, seq, hash}}."""
    if directory is None:
        return {}
    candidates = []
    for path in glob.glob(os.path.join(glob.escape(directory), '*' + STATE_SUFFIX)):
        other = os.path.basename(path)[:-len(STATE_SUFFIX)]
        if other == owner:
            continue
        try:
            candidates.append((os.stat(path).st_mtime, other, path))
        except OSError:
            continue
    for _mtime, other, path in sorted(candidates, reverse=True):
        if _alive(directory, other):
            continue
        claimed = '%s.%s' % (path, owner)
        try:
            os.rename(path, claimed)                   # atomic: one successor wins
        except OSError:
            continue
        try:
            with open(claimed, encoding='utf-8') as f:
                state = json.load(f)
        except (OSError, ValueError):
            state = {}
        finally:
            try:
                os.unlink(claimed)
            except OSError:
                pass
        if isinstance(state, dict):
            return {fmt: s for fmt, s in state.items() if isinstance(s, dict)}
        return {}
    return {}
