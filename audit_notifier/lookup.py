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

"""Resource records fetched by in-process sub-requests to the wrapped app.

Glance answers some calls without the record its usage notifications carry (204 on
upload, tag, deactivate; nothing left to show after a delete).  Instead of a network
hop, the filter calls the app it wraps (``GET /v2/images/{id}``) with the caller's
identity: the same code path, policy and database Glance uses, costing one in-process
GET (about 1-3 ms of Glance time).  Post-call look-ups run in the sender thread;
only a delete, a resource named by name, and an update at audit policy level request
and above (the old values of its changes) need their record before the app runs, on
the request path (doc/source/configuration/policy.rst).
"""

from __future__ import annotations

import io
import json
import logging
import sys

LOG = logging.getLogger(__name__)

SUBREQUEST_KEY = 'audit_notifier.subrequest'

_COPIED = ('SCRIPT_NAME', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL', 'HTTP_HOST',
           'wsgi.url_scheme', 'REMOTE_ADDR', 'HTTP_OPENSTACK_API_VERSION',
           'HTTP_X_OPENSTACK_NOVA_API_VERSION')
# Identity set by auth_token (and the token itself, which never leaves this process).
_IDENTITY_PREFIXES = ('HTTP_X_IDENTITY_STATUS', 'HTTP_X_USER', 'HTTP_X_PROJECT',
                      'HTTP_X_TENANT', 'HTTP_X_ROLE', 'HTTP_X_DOMAIN', 'HTTP_X_SYSTEM_SCOPE',
                      'HTTP_X_IS_ADMIN_PROJECT', 'HTTP_X_SERVICE_', 'HTTP_X_AUTH_TOKEN',
                      'HTTP_X_APPLICATION_CREDENTIAL', 'keystone.')
_MAX_RECORD = 1024 * 1024


class SubRequester:
    """GET a JSON record from the wrapped app as the original caller."""

    def __init__(self, app):
        self._app = app

    def get_json(self, environ: dict, path: str) -> tuple[int | None, dict | None]:
        env = {k: v for k, v in environ.items() if k.startswith(_IDENTITY_PREFIXES)}
        for key in _COPIED:
            if key in environ:
                env[key] = environ[key]
        env.update({
            'REQUEST_METHOD': 'GET', 'PATH_INFO': path, 'QUERY_STRING': '',
            'CONTENT_LENGTH': '0', 'HTTP_ACCEPT': 'application/json',
            'wsgi.input': io.BytesIO(b''), 'wsgi.errors': sys.stderr,
            'wsgi.version': (1, 0), 'wsgi.multithread': True, 'wsgi.multiprocess': False,
            'wsgi.run_once': False, SUBREQUEST_KEY: True,
        })
        env.setdefault('SERVER_NAME', 'localhost')
        env.setdefault('SERVER_PORT', '80')
        env.setdefault('wsgi.url_scheme', 'http')
        status = []

        def start_response(status_line, headers, exc_info=None):
            status.append(status_line)
            return lambda data: None

        body = self._app(env, start_response)
        chunks, size = [], 0
        try:
            for chunk in body:
                size += len(chunk)
                if size > _MAX_RECORD:
                    return None, None
                chunks.append(chunk)
        finally:
            close = getattr(body, 'close', None)
            if close is not None:
                close()
        code = int(status[0].split(None, 1)[0]) if status else None
        if code != 200:
            return code, None
        try:
            record = json.loads(b''.join(chunks))
        except ValueError:
            return code, None
        return code, record if isinstance(record, dict) else None
