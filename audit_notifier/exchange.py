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

"""The facts about one audited API call, captured on the request path.

An ``Exchange`` is filled in three places, all cheap: classification (route and
the request facts: an allow-list of environ keys copied before the app can rewrite
``PATH_INFO``), ``start_response`` (status and headers) and the body wrappers (byte
counts, a bounded reference to a small JSON response body).  Everything expensive
(parsing, look-ups, building events) happens later, in the sender, from these facts.

The request facts never hold a token, a password or a service catalog: they are
what the journal stores (:mod:`audit_notifier.delivery.record`), and what a record
look-up after the call sends to the wrapped app as the caller's identity.
"""

from __future__ import annotations

import time

from audit_notifier import identity, sanitize
from audit_notifier.redaction import DEFAULT as DEFAULT_REDACTOR, Redactor

# Phases of an exchange that produce events.
STARTED = 'started'      # an upload began (the app read the request body)
RESPONDED = 'responded'  # a streamed body is about to send its first byte
FINISHED = 'finished'    # the response is complete, or the client went away

# Largest response body kept (by reference, never copied) for event building.
MAX_BODY = 64 * 1024

# environ keys kept for event building and record look-ups: request line, caller
# identity headers (believed only when auth_token confirmed them, see identity.py;
# never X-Auth-Token or the catalog), client address,
# request ids, and the server keys a look-up sub-request needs.  The request path
# keeps their values in this order (a list: cheaper to collect and to journal than
# a dict); the sender makes the dict.
REQUEST_KEYS = (
    'REQUEST_METHOD', 'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING',
    'HTTP_X_IDENTITY_STATUS', 'HTTP_X_USER_ID', 'HTTP_X_USER', 'HTTP_X_USER_NAME',
    'HTTP_X_USER_DOMAIN_ID', 'HTTP_X_USER_DOMAIN_NAME', 'HTTP_X_PROJECT_ID',
    'HTTP_X_PROJECT_NAME', 'HTTP_X_PROJECT_DOMAIN_ID', 'HTTP_X_PROJECT_DOMAIN_NAME',
    'HTTP_X_TENANT_ID', 'HTTP_X_TENANT_NAME', 'HTTP_X_TENANT', 'HTTP_X_ROLES', 'HTTP_X_ROLE',
    'HTTP_X_DOMAIN_ID', 'HTTP_X_DOMAIN_NAME', 'HTTP_X_SYSTEM_SCOPE', 'HTTP_X_IS_ADMIN_PROJECT',
    'REMOTE_ADDR', 'HTTP_USER_AGENT', 'HTTP_X_OPENSTACK_REQUEST_ID',
    'openstack.request_id', 'openstack.global_request_id', 'HTTP_X_IMAGE_META_STORE',
    'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL', 'HTTP_HOST', 'wsgi.url_scheme',
    'HTTP_OPENSTACK_API_VERSION', 'HTTP_X_OPENSTACK_NOVA_API_VERSION')
_QUERY = REQUEST_KEYS.index('QUERY_STRING')
_ENCODED = frozenset({'SCRIPT_NAME', 'PATH_INFO', 'QUERY_STRING'})
APP_CREDENTIAL_KEY = 'audit_notifier.application_credential_id'
# identity.status(): whether auth_token confirmed the identity headers (last, so a
# record journaled before it existed reads as not confirmed).
IDENTITY_KEY = 'audit_notifier.identity'
FACT_KEYS = REQUEST_KEYS + (APP_CREDENTIAL_KEY, IDENTITY_KEY)


def request_facts(environ: dict, redactor: Redactor = DEFAULT_REDACTOR) -> list:
    """The journal-safe facts of a request: the values of FACT_KEYS, None where
    absent (request path: a few us).

    Bounded work: a value is cut to sanitize.JOURNAL_LIMIT (and marked) before
    anything scans it, the query to sanitize.QUERY_LIMIT before it is redacted.
    """
    values = list(map(environ.get, REQUEST_KEYS))
    query = values[_QUERY]                  # as sent: redacted whole below
    try:
        together = '\n'.join(filter(None, values))     # one C-speed look at all of them
    except TypeError:                                 # a value that is not a str
        together = None
    if together is None or len(together) > sanitize.JOURNAL_LIMIT or '://' in together:
        for i, value in enumerate(values):
            if value.__class__ is str and (len(value) > sanitize.JOURNAL_LIMIT or
                                           '://' in value):
                values[i] = sanitize.journal_text(value)
    if query and query.__class__ is str:
        if len(query) > sanitize.QUERY_LIMIT:
            values[_QUERY] = redactor.query(query[:sanitize.QUERY_LIMIT]) + sanitize.MARK
        else:
            values[_QUERY] = redactor.query(query)
    token_info = environ.get('keystone.token_info')
    app_cred = None
    if token_info is not None:
        try:        # .get: most tokens have no application credential (no raise)
            credential = token_info['token'].get('application_credential')
            app_cred = credential['id'] if credential else None
        except (TypeError, KeyError, AttributeError):
            pass
    values.append(app_cred)
    values.append(identity.status(environ))
    return values


class Exchange:
    __slots__ = ('route', 'params', 'facts', '_request', 'started_at', 'finished_at',
                 'status', 'headers', 'body', 'bytes_sent', 'completed',
                 'bytes_received', 'upload_started', 'raised', 'prefetched', 'call',
                 'level', 'capture', 'captured', 'captured_size', 'response',
                 'response_size', 'withheld')

    def __init__(self, route, params: dict, facts: list, started_at: float | None = None):
        self.route = route
        self.params = params
        # Taken before the app runs: downstream apps rewrite PATH_INFO in place.
        self.facts = facts                   # request_facts(): values of FACT_KEYS
        self._request = None
        self.started_at = time.time() if started_at is None else started_at
        self.finished_at: float | None = None
        self.status: str | None = None
        self.headers: list | None = None
        self.body: list | None = None
        self.bytes_sent = 0
        self.completed = False
        self.bytes_received = 0
        self.upload_started = False
        self.raised: str | None = None
        self.prefetched = None
        self.call: int | None = None       # journal call number, set at its first record
        # Audit policy level of the call (policy.py); 1 is metadata.
        self.level = 1
        # Capture (levels request and above; JSON only, never image data): capture is
        # the cap in bytes (0: nothing kept).  captured holds the request bytes the
        # app read, at most ``capture`` of them (None: not teed, or past the cap);
        # captured_size counts every byte the app read.  response: the redacted JSON
        # response (request_response; sender side, from the journal).  withheld: the
        # captured content named secrets it could not mask (nothing of it is kept).
        self.capture = 0
        self.captured: bytearray | bytes | None = None
        self.captured_size = 0
        self.response: bytes | None = None
        self.response_size = 0
        self.withheld = False

    @property
    def request(self) -> dict:
        """The request facts as a dict (sender side; made once): values cleaned and
        capped for events (sanitize.request_values), except the path and query,
        which :attr:`request_path` and the CADF requestPath encode."""
        if self._request is None:
            self._request = sanitize.request_values(FACT_KEYS, self.facts, _ENCODED)
        return self._request

    @property
    def status_code(self) -> int | None:
        """The status code, or None: no status yet, or a status line that does not
        start with a three-digit code (empty, blank, garbage: the app's bug)."""
        code = (self.status or '')[:4].rstrip()
        if len(code) == 3 and code.isdigit() and code.isascii():
            return int(code)
        return None

    @property
    def status_invalid(self) -> bool:
        """The app called start_response with a status line that has no code."""
        return self.status is not None and self.status_code is None

    def header(self, name: str) -> str | None:
        """A response header (case-insensitive), or None."""
        if not self.headers:
            return None
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def request_path(self) -> str:
        """SCRIPT_NAME + PATH_INFO as the client sent them: URL-encoded, capped."""
        env = self.request
        return sanitize.url_path(env.get('SCRIPT_NAME', '') + env.get('PATH_INFO', ''))
