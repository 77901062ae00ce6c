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

"""What the real-peer harnesses (tests/functional/glance_app.py,
tests/magnum/magnum_app.py) share: the oslo.messaging ``test`` driver's record of
notifications, a fully consumed WSGI response, and finding a filter in a loaded
paste pipeline.

oslo.messaging is imported lazily: importing it before Magnum would lock Magnum
into oslo.service's eventlet backend.
"""

from __future__ import annotations

import json
import time

import webob.headers


def all_notifications() -> list:
    """All recorded notification envelopes, oldest first (message dicts:
    ``message_id, publisher_id, event_type, priority, payload, timestamp``).
    Always read through the module attribute: ``_impl_test.reset()`` rebinds the
    list."""
    from oslo_messaging.notify import _impl_test
    return [message for _ctxt, message, _priority, _retry in _impl_test.NOTIFICATIONS]


def reset_notifications() -> None:
    """Forget every recorded notification (the service's and everybody else's)."""
    from oslo_messaging.notify import _impl_test
    _impl_test.reset()


def wait_for_notification(predicate, timeout=10.0, interval=0.02, source=all_notifications):
    """Poll until ``predicate(envelope)`` holds for one envelope of ``source()``
    (``predicate`` may be an event_type string); returns it, raises TimeoutError."""
    if isinstance(predicate, str):
        event_type = predicate

        def predicate(m):
            return m.get('event_type') == event_type
    deadline = time.monotonic() + timeout
    while True:
        for m in source():
            if predicate(m):
                return m
        if time.monotonic() > deadline:
            raise TimeoutError('no matching notification after %.1fs; got %s'
                               % (timeout, [m.get('event_type') for m in source()]))
        time.sleep(interval)


def find_node(app, wanted: type, max_nodes: int = 500):
    """The first node of class ``wanted`` in a loaded paste pipeline, breadth first
    through the URL maps and each filter's next app. Raises LookupError."""
    queue, seen = [app], set()
    while queue and len(seen) < max_nodes:
        node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, wanted):
            return node
        queue.extend(a for _, a in getattr(node, 'applications', ()) or ())
        queue.extend(getattr(node, attr) for attr in ('_app', 'app', 'application')
                     if callable(getattr(node, attr, None)))
    raise LookupError('no %s in the pipeline %r' % (wanted.__name__, app))


def ini_escape(value) -> str:
    """A paste-ini value: ConfigParser interpolation treats % specially."""
    return str(value).replace('%', '%%')


class Response(object):
    """A fully consumed WSGI response."""

    def __init__(self, status_line, header_list, body):
        self.status_line = status_line
        self.status = int(status_line.split(' ', 1)[0])
        self.header_list = list(header_list)
        #: case-insensitive multi-dict
        self.headers = webob.headers.ResponseHeaders(self.header_list)
        self.body = body

    @property
    def text(self):
        return self.body.decode('utf-8', 'replace')

    @property
    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return '<Response %s, %d bytes>' % (self.status_line, len(self.body))
