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

"""Client-controlled strings made fit for events: bounded, valid UTF-8, printable.

Every string an event copies from a request (path, query, headers, path
parameters) or from an error response is cut to a documented limit and cleaned,
so that every consumer can parse every event:

* a string longer than its limit becomes ``limit`` characters: its start followed
  by :data:`MARK` (a URL part a few less, rather than end in half a ``%XX``);
* WSGI "native" strings (PEP 3333: the request's bytes decoded as latin-1) are
  read as the UTF-8 they usually carry; paths and queries are percent-encoded, so
  they show invalid UTF-8, NUL or spaces as the escapes a URL has for them;
* control characters (U+0000-U+001F, U+007F-U+009F) and lone surrogates, which
  some parsers reject, become U+FFFD.

The request path only slices (:func:`journal_text`): the sender does the rest.
"""

from __future__ import annotations

import re
from typing import Collection, Sequence
from urllib.parse import quote

from audit_notifier.redaction import strip_credential_urls

#: Appended to a string that was cut.
MARK = '...[truncated]'

PATH_LIMIT = 2048       # requestPath before the query: SCRIPT_NAME + PATH_INFO, encoded
QUERY_LIMIT = 2048      # requestPath after the "?": the redacted, encoded query
FIELD_LIMIT = 256       # a header value, request id, path parameter, resource id or name
AGENT_LIMIT = 512       # User-Agent
ROLES_LIMIT = 2048      # X-Roles (a comma-separated list)
ERROR_LIMIT = 256       # the explanation quoted from an error response
#: What the journal keeps of a request fact (request path): above every limit
#: here, so the sender still knows what to cut and mark.
JOURNAL_LIMIT = 4096

_KEY_LIMITS = {'HTTP_USER_AGENT': AGENT_LIMIT, 'HTTP_X_ROLES': ROLES_LIMIT,
               'HTTP_X_ROLE': ROLES_LIMIT}
_UNPRINTABLE = re.compile('[\x00-\x1f\x7f-\x9f\ud800-\udfff]')
# RFC 3986: what a path segment and a query may hold as they are (besides
# letters, digits and "-._~"); everything else is percent-encoded.
_PATH_SAFE = "/!$&'()*+,;=:@"
_QUERY_SAFE = "/?!$&'()*+,;=:@%"
_STRAY_PERCENT = re.compile('%(?![0-9A-Fa-f]{2})')


def journal_text(value: str) -> str:
    """A request fact as the journal keeps it (request path: slicing only, and
    ``user:password@`` removed from URLs)."""
    if len(value) > JOURNAL_LIMIT:
        value = value[:JOURNAL_LIMIT] + MARK
    if '://' in value:
        value = strip_credential_urls(value)
    return value


def unmark(value: str) -> tuple[str, bool]:
    """``value`` without a trailing :data:`MARK`, and whether it had one."""
    if value.endswith(MARK):
        return value[:-len(MARK)], True
    return value, False


def capped(text: str, limit: int, truncated: bool = False) -> str:
    """``text`` if it fits ``limit`` and was not cut before, else its start + MARK."""
    if truncated or len(text) > limit:
        return text[:limit - len(MARK)] + MARK
    return text


def plain_text(value: str, limit: int = FIELD_LIMIT) -> str:
    """Decoded text (an error explanation, a JSON value): printable, capped."""
    if not (value.isascii() and value.isprintable()):
        value = _UNPRINTABLE.sub('\ufffd', value)
    return capped(value, limit)


def native_text(value: str, limit: int = FIELD_LIMIT, url_bytes: bool = False) -> str:
    """A WSGI native string (a header value, a path parameter) as text: read as
    UTF-8, printable, capped; a journal MARK is kept.

    ``url_bytes``: the value is bytes of the URL (a path parameter), so invalid
    UTF-8 becomes U+FFFD.  Otherwise (a header) a value that is not UTF-8 keeps its
    characters: auth_token sets its headers as text ("José"), not as bytes."""
    value, truncated = unmark(value)
    if not value.isascii():
        try:
            value = value.encode('latin-1').decode('utf-8', 'replace' if url_bytes
                                                   else 'strict')
        except UnicodeError:
            pass                # already text (or a header that is not UTF-8): kept
    if not value.isprintable():
        value = _UNPRINTABLE.sub('\ufffd', value)
    return capped(value, limit, truncated)


def request_value(key: str, value):
    """A request fact (:data:`audit_notifier.exchange.FACT_KEYS`) fit for events."""
    if value.__class__ is not str:
        return value
    limit = _KEY_LIMITS.get(key, FIELD_LIMIT)
    # Most values are short printable ASCII, which native_text returns unchanged:
    # checked inline (a build reads about 25 of them per call).
    if len(value) <= limit and value.isascii() and value.isprintable() and \
            not value.endswith(MARK):
        return value
    return native_text(value, limit)


def request_values(keys: Sequence[str], values: Sequence, raw: Collection[str] = frozenset()
                   ) -> dict:
    """The request facts as a dict for events: absent (None) ones left out, each
    value as :func:`request_value` makes it, except those of ``raw`` keys (kept as
    they are).  Most calls' facts are all short printable ASCII, which
    request_value returns unchanged: that is checked for all of them at once (a
    join and C-speed scans) before any is checked on its own."""
    present = [(key, value) for key, value in zip(keys, values) if value is not None]
    texts = [value for _, value in present]
    try:
        together = ''.join(texts)
    except TypeError:                                 # a value that is not a str
        together = None
    if (together is not None and together.isascii() and together.isprintable() and
            MARK not in together and max(map(len, texts), default=0) <= FIELD_LIMIT):
        return dict(present)
    return {key: value if key in raw else request_value(key, value)
            for key, value in present}


def url_path(path: str) -> str:
    """SCRIPT_NAME + PATH_INFO (decoded by the server) as an encoded URL path."""
    path, truncated = unmark(path)
    return _url_capped(quote(_native_bytes(path), safe=_PATH_SAFE), PATH_LIMIT, truncated)


def url_query(query: str, truncated: bool = False) -> str:
    """A query string (as sent, already redacted) with what a query cannot hold
    as it is (spaces, controls, non-ASCII bytes, a lone "%") percent-encoded."""
    encoded = quote(_native_bytes(query), safe=_QUERY_SAFE)
    if '%' in encoded:
        encoded = _STRAY_PERCENT.sub('%25', encoded)
    return _url_capped(encoded, QUERY_LIMIT, truncated)


def _native_bytes(value: str) -> bytes:
    try:
        return value.encode('latin-1')
    except UnicodeEncodeError:          # a server that passed real text
        return value.encode('utf-8', 'surrogatepass')


def _url_capped(encoded: str, limit: int, truncated: bool) -> str:
    if not truncated and len(encoded) <= limit:
        return encoded
    head = encoded[:limit - len(MARK)]
    escape = head.find('%', len(head) - 2)
    if escape >= 0:
        head = head[:escape]            # no half escape before the mark
    return head + MARK
