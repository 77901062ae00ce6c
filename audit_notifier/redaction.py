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

"""Secrets kept out of events and the journal: credential URLs, secret-named values.

A value is secret when its *name* matches an entry of ``redact_names``.  Names
are compared as the application reads them, then normalised: percent-escapes
and ``+`` decoded (``pass%77ord`` is ``password``), lower case, everything but
letters and digits removed (``X-Amz-Signature`` is ``xamzsignature``).  Entries
are shell-style patterns normalised the same way (``*access_key*`` is
``*accesskey*``), so ``*token*`` matches every name that contains "token" and
``key`` only the name ``key``.

Applied to the query string (``name=***``, still a valid query), to error texts
and other free text (also ``"name": "value"`` and ``'name': 'value'`` pairs), and
to ``scheme://user:password@`` in URLs anywhere (``scheme://***@``).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterable
from urllib.parse import quote, unquote_plus

from oslo_config import cfg

from audit_notifier._config import config_error

DEFAULT_NAMES = ['*token*', '*password*', '*passwd*', '*passphrase*', '*pwd*', 'pass',
                 '*secret*', 'auth', 'authorization', 'key', '*accesskey*', '*privatekey*',
                 '*apikey*', '*credential*', '*signature*', '*sig']

redaction_opts = [
    cfg.ListOpt('redact_names', default=DEFAULT_NAMES,
                help='Names whose values never reach an event or the journal: query '
                     'parameters, and name=value or "name": "value" pairs in error '
                     'responses and the user agent (doc/source/admin/security.rst). '
                     'Shell-style patterns, compared with the name percent-decoded, in '
                     'lower case and with everything but letters and digits removed '
                     '("*accesskey*" matches x_access_key and AWSAccessKeyId, "key" only '
                     'key). Setting this option replaces the whole list: start from the '
                     'default.'),
]

MASK = '***'
# Nesting a parsed document may have before what is deeper is masked whole.
_MAX_DEPTH = 32
_NOT_ALNUM = re.compile(r'[\W_]+')
_NOT_PATTERN = re.compile(r'[^\w*?\[\]!]|_')
_CREDENTIAL_URL = re.compile(r'(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]*:[^/\s@]*@')
_CREDENTIAL_URL_BYTES = re.compile(rb'(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@"]*:[^/\s@"]*@')
_QUERY_SEPARATOR = re.compile('([&;])')
# name=value in free text; the value ends at a space, a separator or a quote.
_PAIR = re.compile(r'(?<![\w.%+\[\]-])([\w.%+\[\]-]+)=([^\s&,;\'"<>(){}\[\]]*)')
# "name": "value", 'name': 'value', "name": value (JSON, Python reprs).
_QUOTED_PAIR = re.compile(
    r'''(["'])([^"'\s]{1,128})\1(\s*[:=]\s*)'''
    r'''(?:(["'])((?:\\.|(?!\4)[^\\])*)\4|[^\s,;'"(){}\[\]]+)''')
_CACHE_SIZE = 4096
_CACHED_NAME = 64


def strip_credential_urls(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host``."""
    return _CREDENTIAL_URL.sub(r'\1***@', text)


def redact_bytes(data: bytes) -> bytes:
    """``user:password@`` of URLs in a response body removed (request path: the
    journal keeps small bodies; bounded by their size)."""
    if b'://' in data and b'@' in data:
        data = _CREDENTIAL_URL_BYTES.sub(rb'\1***@', data)
    return data


class Redactor:
    """Redaction by the names of one ``redact_names`` list."""

    def __init__(self, names: Iterable[str]):
        patterns = []
        for name in names:
            pattern = _NOT_PATTERN.sub('', name.lower())
            if not pattern:
                raise config_error('redact_names',
                                   'entry %r has no letter, digit or wildcard' % name,
                                   'remove it, or name what to redact, e.g. *token*')
            patterns.append(pattern)
        if not patterns:
            raise config_error('redact_names', 'empty', 'list the names to redact (the '
                               'default list covers tokens, passwords, keys and signatures)')
        self._secret = re.compile('|'.join(fnmatch.translate(p) for p in patterns)).match
        self._verdicts: dict[str, bool] = {}

    def secret_name(self, name: str) -> bool:
        """Is a value of this name (as sent: percent-encoded or not) secret?"""
        verdict = self._verdicts.get(name)
        if verdict is None:
            plain = unquote_plus(name) if ('%' in name or '+' in name) else name
            verdict = self._secret(_NOT_ALNUM.sub('', plain.lower())) is not None
            # Real names are few and short; a flood of long distinct ones is not kept.
            if len(name) <= _CACHED_NAME and len(self._verdicts) < _CACHE_SIZE:
                self._verdicts[name] = verdict
        return verdict

    def query(self, query: str) -> str:
        """A query string with every secret value (and credentials in URL values)
        replaced by ``***``; names and all else as sent."""
        if '=' not in query:
            return query
        parts = _QUERY_SEPARATOR.split(query)
        for i in range(0, len(parts), 2):
            name, equals, value = parts[i].partition('=')
            if not equals:
                continue
            if self.secret_name(name):
                parts[i] = name + '=' + MASK
            elif '@' in value or '%40' in value:
                parts[i] = name + '=' + _url_value(value)
        return ''.join(parts)

    def text(self, text: str) -> str:
        """Free text (an error explanation, a log-like message) without secrets."""
        if '://' in text:
            text = strip_credential_urls(text)
        if ':' in text or '=' in text:
            text = _QUOTED_PAIR.sub(self._quoted_pair, text)
        if '=' in text:
            text = _PAIR.sub(self._pair, text)
        return text

    def _pair(self, m: re.Match) -> str:
        return m.group(1) + '=' + MASK if self.secret_name(m.group(1)) else m.group(0)

    def _quoted_pair(self, m: re.Match) -> str:
        quote_char, value = m.group(4), m.group(5)
        if self.secret_name(m.group(2)):
            value = MASK
        elif not quote_char:
            return m.group(0)
        elif ':' in value or '=' in value:      # a repr inside a JSON string
            value = _QUOTED_PAIR.sub(self._quoted_pair, value)
        quote_char = quote_char or ''
        return '%s%s%s%s%s%s%s' % (m.group(1), m.group(2), m.group(1), m.group(3),
                                   quote_char, value, quote_char)

    def hidden_or_secret(self, name: str) -> bool:
        """Is a member of this name never shown (:data:`HIDDEN_NAMES`) or secret?"""
        return name.lower() in HIDDEN_NAMES or self.secret_name(name)

    def document(self, doc: Any, depth: int = 0) -> Any:
        """A parsed JSON document with hidden and secret-named members, PEM blocks
        and credentials in URLs or pairs masked (sender thread; a new document)."""
        if depth > _MAX_DEPTH:
            return MASK
        if isinstance(doc, dict):
            return {k: MASK if self.hidden_or_secret(str(k)) else self.document(v, depth + 1)
                    for k, v in doc.items()}
        if isinstance(doc, list):
            return [self.document(v, depth + 1) for v in doc]
        if isinstance(doc, str):
            if '-----BEGIN' in doc:
                return MASK
            return self.text(doc) if ('://' in doc or '=' in doc) else doc
        return doc

    def error_body(self, data: bytes) -> bytes:
        """An error response body as the journal keeps it (request path; at most
        exchange.MAX_BODY bytes): error pages quote the request's values back."""
        text = data.decode('utf-8', 'surrogateescape')
        return self.text(text).encode('utf-8', 'surrogateescape')


# JSON members a captured body may hold a secret in, beyond the quoted pairs text()
# masks: a JSON-patch operation on a secret-named path, a secret name whose value is
# an object or a list, a PEM block (certificates, keys, CSRs).
_PATCH_PATH = re.compile(r'"path"\s*:\s*"([^"]{0,1024})"')
_PATCH_VALUE = re.compile(r'("value"\s*:\s*)(?:"(?:\\.|[^"\\])*"|[^\s,}\]]+)')
_PATCH_VALUE_NESTED = re.compile(r'"value"\s*:\s*[\[{]')
_NESTED = re.compile(r'"([^"\s]{1,128})"\s*:\s*[\[{]')
_MEMBER = re.compile(r'"([^"\s]{1,128})"\s*:')
#: Members never kept whatever redact_names says: Glance's image locations (its own
#: notifications never show them) and Magnum's certificate bodies.
HIDDEN_NAMES = frozenset({'location', 'locations', 'direct_url', 'pem', 'csr'})
_HIDDEN_PAIR = re.compile(r'("(?:location|locations|direct_url|pem|csr)"\s*:\s*)'
                          r'(?:"(?:\\.|[^"\\])*"|[^\s,}\]]+)')
_PEM = re.compile(r'-----BEGIN[^"]*')
_FLAT_OBJECT = re.compile(r'\{(?:"(?:\\.|[^"\\])*"|[^{}"])*\}')    # strings may hold {}


def captured_body(redactor: Redactor, data: bytes) -> bytes | None:
    """A captured JSON request or response body as the journal keeps it (request
    path; bounded by capture_limit, ~1 us per 100 bytes): secret values masked as
    :meth:`Redactor.text` masks them, PEM blocks masked; every ``value`` of a
    JSON-patch that touches a secret-named path masked.  None (the body is not
    kept at all) when a secret name holds an object or a list, or a patch of a
    secret path sets one: the sender, which parses the body, never sees it."""
    text = data.decode('utf-8', 'surrogateescape')
    if '-----BEGIN' in text:
        text = _PEM.sub(MASK, text)
    # One C-speed scan for the member names; the full redaction only runs when one
    # of them is secret (or a value may hold a name=value pair or a URL).
    names = _MEMBER.findall(text)
    secret_member = any(redactor.secret_name(name) for name in names)
    if secret_member or not HIDDEN_NAMES.isdisjoint(names):
        for name in _NESTED.findall(text):
            if name in HIDDEN_NAMES or redactor.secret_name(name):
                return None
        text = _HIDDEN_PAIR.sub(lambda m: m.group(1) + '"' + MASK + '"', text)
    if '"path"' in text:
        def secret_path(op_text):
            return any(redactor.secret_name(seg) for path in _PATCH_PATH.findall(op_text)
                       for seg in path.split('/') if seg)
        if secret_path(text):
            if _PATCH_VALUE_NESTED.search(text):
                return None
            # Every operation is a flat {...}: mask the value of those on a secret path.
            text = _FLAT_OBJECT.sub(lambda op: _PATCH_VALUE.sub(
                lambda m: m.group(1) + '"' + MASK + '"', op.group(0))
                if secret_path(op.group(0)) else op.group(0), text)
    if secret_member or '=' in text or '://' in text:
        text = redactor.text(text)
    return text.encode('utf-8', 'surrogateescape')


def _url_value(value: str) -> str:
    """A query value with the credentials of a URL in it removed (it may be
    percent-encoded: ``next=https%3A%2F%2Fuser%3Apw%40host``)."""
    stripped = strip_credential_urls(value)
    if stripped != value or '%' not in value:
        return stripped
    decoded = unquote_plus(value)
    stripped = strip_credential_urls(decoded)
    return value if stripped == decoded else quote(stripped, safe='*')


DEFAULT = Redactor(DEFAULT_NAMES)
