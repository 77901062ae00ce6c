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

"""The sender's view of one exchange: decoded body, sources and look-ups, each once.

Built in the sender thread from an :class:`~audit_notifier.exchange.Exchange`;
nothing here runs on the request path.
"""

from __future__ import annotations

import json
import logging
import re

from audit_notifier import sanitize
from audit_notifier.exchange import Exchange
from audit_notifier.redaction import DEFAULT as DEFAULT_REDACTOR, Redactor
from audit_notifier.logs import LimitedLog

LOG = logging.getLogger(__name__)
_LIMITED = LimitedLog(LOG)
_UNSET = object()
_TAGS = re.compile(r'<[^>]+>')
_CUT_JSON_MESSAGE = re.compile(
    r'\{.{0,200}?"(?:message|detail|title)"\s*:\s*"((?:[^"\\]|\\.)*)', re.S)


class Facts:
    def __init__(self, exchange: Exchange, subrequests=None,
                 redactor: Redactor = DEFAULT_REDACTOR):
        self.exchange = exchange
        self.redactor = redactor
        self._subrequests = subrequests
        self._json = _UNSET
        self._error: str | None = None
        self._records: dict = {}

    # -- the response ---------------------------------------------------------------
    def body_bytes(self) -> bytes:
        body = self.exchange.body
        if not body:
            return b''
        return b''.join(c if isinstance(c, bytes) else bytes(c) for c in body)

    def body_json(self):
        """The response body as JSON, or None (not JSON, too large, or absent)."""
        if self._json is _UNSET:
            self._json = None
            ctype = (self.exchange.header('Content-Type') or '').lower()
            if 'json' in ctype:
                try:
                    self._json = json.loads(self.body_bytes())
                except ValueError:
                    pass
        return self._json

    def error_text(self) -> str:
        """A one-line explanation from an error response (JSON or HTML): tags
        removed, secrets redacted, at most sanitize.ERROR_LIMIT characters.

        Error bodies quote what the client sent (Glance's 400 repeats a rejected
        value), so this is client-controlled text."""
        if self._error is None:
            self._error = self._explanation()
        return self._error

    def _explanation(self) -> str:
        doc = self.body_json()
        text = None
        if isinstance(doc, dict):
            errors = doc.get('errors')
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                text = errors[0].get('detail') or errors[0].get('title')
            elif isinstance(doc.get('message'), str):
                text = doc['message']
            elif isinstance(doc.get('error'), dict):
                text = doc['error'].get('message')
        if text is None:
            text = self.body_bytes().decode('utf-8', 'replace')
            # A JSON body the journal kept only the start of (record.ERROR_BODY_LIMIT)
            cut_json = _CUT_JSON_MESSAGE.match(text)
            if cut_json:
                text = cut_json.group(1).replace('\\"', '"')
        text = ' '.join(_TAGS.sub(' ', str(text)).split())
        # Redacted whole, then cut: a cut could leave a quoted secret unclosed.
        return sanitize.plain_text(self.redactor.text(text), sanitize.ERROR_LIMIT)

    def request_id(self) -> str | None:
        value = (self.exchange.header('X-OpenStack-Request-ID') or
                 self.exchange.header('X-Compute-Request-ID') or
                 self.exchange.request.get('openstack.request_id'))
        return sanitize.native_text(value) if value else value

    def param(self, name: str) -> str | None:
        """A path parameter as text for events: UTF-8, printable, capped."""
        value = self.exchange.params.get(name)
        return sanitize.native_text(value, url_bytes=True) if value else value

    # -- source expressions of the route map ---------------------------------------
    def source(self, sources) -> str | None:
        for kind, ref in sources:
            value = None
            if kind == 'path':
                value = self.param(ref)
            elif kind in ('response', 'record'):
                value = self.body_json() if kind == 'response' else self.exchange.prefetched
                for key in ref:
                    value = value.get(key) if isinstance(value, dict) else None
                if value is not None:
                    value = sanitize.plain_text(str(value))
            elif kind == 'header':
                value = self.exchange.header(ref)
                if value and ref.lower() in ('location', 'content-location'):
                    value = value.rstrip('/').rsplit('/', 1)[-1]
                if value:
                    value = sanitize.native_text(value)
            elif kind == 'literal':
                value = ref
            if value is not None and value != '':
                return str(value)
        return None

    # -- look-ups -------------------------------------------------------------------
    @property
    def lookups(self) -> bool:
        """Are look-ups on (option record_lookups, and an app to ask)?"""
        return self._subrequests is not None

    def lookup(self, path: str, fresh: bool = False) -> dict | None:
        """The JSON record at ``path`` as the caller sees it now, or None; ``fresh``:
        ask again even if this exchange asked before."""
        if path in self._records and not fresh:
            return self._records[path]
        record = None
        # A path made of cleaned or cut parameters names no record.
        if self._subrequests is not None and path.isascii() and sanitize.MARK not in path:
            try:
                _, record = self._subrequests.get_json(self.exchange.request, path)
            except Exception:
                _LIMITED(logging.WARNING, 'lookup', 'audit_notifier: look-up of %s failed; '
                         'the notification carries only what the call itself showed', path,
                         exc_info=True)
        self._records[path] = record
        return record
