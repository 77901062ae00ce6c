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

"""The audit filter: paste entry point and WSGI middleware.

``[filter:audit] paste.filter_factory = audit_notifier.middleware:filter_factory``,
placed right after ``authtoken``.  Per request it only classifies the call, keeps
the facts and appends them to the process's journal before the response leaves;
notifications are built and sent by a background sender
(:mod:`audit_notifier.delivery`).  Any error of its own is logged (rate-limited)
and the API call goes on untouched.
"""

from __future__ import annotations

import logging
from typing import Any

from audit_notifier import identity, uwsgi_input
from audit_notifier.assembly import Pipeline
from audit_notifier.logs import LimitedLog
from audit_notifier.lookup import SUBREQUEST_KEY
from audit_notifier.observe import call_observed

LOG = logging.getLogger(__name__)


def filter_factory(global_conf: dict, **local_conf: Any):
    """paste.filter_factory: ``[filter:audit]`` keys override ``[audit_notifier]``."""
    def audit_filter(app):
        return AuditMiddleware(app, local_conf)
    return audit_filter


class AuditMiddleware:
    """WSGI middleware that turns audited API calls into notifications."""

    def __init__(self, app, paste_conf: dict | None = None):
        self._app = app
        pipeline = Pipeline(paste_conf, app=app)
        settings = pipeline.settings
        self.settings = settings
        self.route_map = pipeline.route_map
        self.emitter = pipeline.emitter
        self.delivery = pipeline.delivery
        self.classifier = pipeline.classifier
        # Routes that fetch a record before the app runs (deletes; names, not UUIDs;
        # updates at audit policy level request and above, for their old values).
        self._prefetch = {id(r) for r in self.route_map.routes
                          if self.emitter.needs_prefetch(r)}
        self._internal_error = LimitedLog(LOG)
        # What runs before the filter is only seen in a request: warn at the first one.
        self._warned_no_auth_token = False
        uwsgi_input.install()          # inside uWSGI: count uploads read by chunked_read()

    def __call__(self, environ, start_response):
        if environ.get(SUBREQUEST_KEY):
            return self._app(environ, start_response)
        try:
            exchange = self.classifier.classify(environ)
            if exchange is not None and id(exchange.route) in self._prefetch:
                self.emitter.prefetch(exchange, environ)
        except Exception:
            self._internal_error(logging.ERROR, 'classify', 'audit_notifier: classifying a '
                                 'call failed; it goes on unaudited', exc_info=True)
            self.delivery.count_filter_error()
            exchange = None
        if exchange is None:
            return self._app(environ, start_response)
        if not self._warned_no_auth_token and not identity.behind_auth_token(environ):
            self._warned_no_auth_token = True
            LOG.warning('no keystonemiddleware auth_token before audit_notifier: initiators '
                        'are recorded as unauthenticated claims; put the filter after '
                        'authtoken')
        return call_observed(self._app, environ, start_response, exchange, self._submit)

    def _submit(self, phase, exchange) -> None:
        try:
            self.delivery.submit(phase, exchange)
        except Exception:
            self._internal_error(logging.ERROR, 'journal', 'audit_notifier: journaling an '
                                 'API call failed; its notifications are lost', exc_info=True)
            self.delivery.count_filter_error()
