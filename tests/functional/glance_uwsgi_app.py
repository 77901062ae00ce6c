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

"""The REAL Glance 33 app with the audit filter, as a uWSGI WSGI module.

uWSGI loads this file (``--wsgi-file``) in its worker; ``$GLANCE_UWSGI_SPEC`` names a
JSON file ``{"base_dir": ..., "audit_filter": {...paste keys...}}``.  Glance runs
through the same harness as the in-process tests (:class:`glance_app.GlanceEnv`: SQLite,
file store, auth_token with the fixture tokens, the oslo.messaging ``test`` driver),
with the filter right after authtoken.  Both Glance's own notifications and the
filter's are recorded in this worker; the test reads them over HTTP:

* ``GET /_test/notifications``: flushes the filter's sender, then returns
  ``{"flushed": <the sender drained>, "uwsgi": <Glance reads chunked bodies with
  uwsgi.chunked_read>, "notifications": [every envelope, oldest first]}``;
* ``POST /_test/reset``: forgets every recorded envelope.

Everything else goes to the filtered Glance pipeline.  Serve with ONE worker process
(the records are per process).  This is a helper module, not a test file.
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import glance_app  # noqa: E402


def _load():
    with open(os.environ['GLANCE_UWSGI_SPEC']) as f:
        spec = json.load(f)
    env = glance_app.GlanceEnv().start(spec['base_dir'], audit_filter=spec['audit_filter'])
    return env, glance_app.find_audit_middleware(env.app)


ENV, AUDIT = _load()


def _json(start_response, status, doc):
    body = json.dumps(doc, default=str).encode()
    start_response(status, [('Content-Type', 'application/json'),
                            ('Content-Length', str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ.get('PATH_INFO', '')
    if path == '/_test/notifications':
        from glance.common import wsgi as glance_wsgi
        import uwsgi
        flushed = AUDIT.delivery.flush(30.0)
        return _json(start_response, '200 OK', {
            'flushed': flushed,
            'uwsgi': glance_wsgi._get_uwsgi() is uwsgi,
            'notifications': glance_app.all_notifications()})
    if path == '/_test/reset':
        glance_app.reset_notifications()
        return _json(start_response, '200 OK', {})
    return ENV.app(environ, start_response)
