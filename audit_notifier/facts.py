"""The sender's view of one exchange: decoded body, sources and look-ups, each once.

Built in the sender thread from an :class:`~audit_notifier.exchange.Exchange`;
nothing here runs on the request path.
"""

from __future__ import annotations

import json
import logging
import re

from audit_notifier.exchange import Exchange
from audit_notifier.logs import LimitedLog

LOG = logging.getLogger(__name__)
_LIMITED = LimitedLog(LOG)
_UNSET = object()
_TAGS = re.compile(r'<[^>]+>')


class Facts:
    def __init__(self, exchange: Exchange, subrequests=None):
        self.exchange = exchange
        self._subrequests = subrequests
        self._json = _UNSET
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
        """A one-line explanation from an error response (JSON or HTML), bounded."""
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
        text = ' '.join(_TAGS.sub(' ', str(text)).split())
        return text[:1000]

    def request_id(self) -> str | None:
        return (self.exchange.header('X-OpenStack-Request-ID') or
                self.exchange.header('X-Compute-Request-ID') or
                self.exchange.request.get('openstack.request_id'))

    # -- source expressions of the route map ---------------------------------------
    def source(self, sources) -> str | None:
        for kind, ref in sources:
            value = None
            if kind == 'path':
                value = self.exchange.params.get(ref)
            elif kind in ('response', 'record'):
                value = self.body_json() if kind == 'response' else self.exchange.prefetched
                for key in ref:
                    value = value.get(key) if isinstance(value, dict) else None
            elif kind == 'header':
                value = self.exchange.header(ref)
                if value and ref.lower() in ('location', 'content-location'):
                    value = value.rstrip('/').rsplit('/', 1)[-1]
            elif kind == 'literal':
                value = ref
            if value is not None and value != '':
                return str(value)
        return None

    # -- look-ups -------------------------------------------------------------------
    def lookup(self, path: str) -> dict | None:
        """The JSON record at ``path`` as the caller sees it now, or None."""
        if path in self._records:
            return self._records[path]
        record = None
        if self._subrequests is not None:
            try:
                _, record = self._subrequests.get_json(self.exchange.request, path)
            except Exception:
                _LIMITED(logging.WARNING, 'lookup', 'audit_notifier: look-up of %s failed; '
                         'the notification carries only what the call itself showed', path,
                         exc_info=True)
        self._records[path] = record
        return record
