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

"""Shared fixtures of the unit tests: a fresh ConfigOpts per test, filters with the
``test`` notification driver, WSGI environ building, and captured notifications.

Nothing here touches the process-global ``oslo_config.cfg.CONF``: every filter gets
its own ``ConfigOpts`` through the paste key ``oslo_config_config``.
"""

from __future__ import annotations

import io
import logging
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from oslo_config import cfg  # noqa: E402
from oslo_messaging.notify import _impl_test  # noqa: E402

from audit_notifier import middleware  # noqa: E402
from tests.support import identity  # noqa: E402

IMAGE_ID = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'
USER_ID = '5d4c1c3c1fd44e8a8c7f0b0d7f0a9e11'
PROJECT_ID = '9b2f0e33b4b94e2c9f5b1d2a3c4e5f60'


class Captured:
    """Notifications captured by the oslo.messaging ``test`` driver."""

    def __init__(self):
        self.filters = []

    @staticmethod
    def reset():
        _impl_test.reset()

    def all(self):
        """Flush every filter of the test, then the captured envelopes, in order."""
        for mw in self.filters:
            assert mw.delivery.flush(10.0), 'sender thread did not drain its queue'
        # reset() rebinds the list: always read it through the module.
        return [envelope for _ctxt, envelope, _priority, _retry in _impl_test.NOTIFICATIONS]

    def raw(self):
        for mw in self.filters:
            assert mw.delivery.flush(10.0)
        return list(_impl_test.NOTIFICATIONS)

    def types(self):
        return [e['event_type'] for e in self.all()]

    def one(self, event_type):
        found = [e for e in self.all() if e['event_type'] == event_type]
        assert len(found) == 1, (event_type, [e['event_type'] for e in self.all()])
        return found[0]


@pytest.fixture
def captured():
    cap = Captured()
    cap.reset()
    yield cap
    for mw in cap.filters:
        mw.delivery.stop()
    cap.reset()


@pytest.fixture
def conf():
    return cfg.ConfigOpts()


@pytest.fixture
def make_filter(captured, tmp_path_factory):
    """make_filter(app, **paste) -> AuditMiddleware with the test driver.

    Defaults: driver=test, record_lookups=false (no sub-requests unless asked for),
    a fresh ConfigOpts and a fresh journal directory (never the shared default, whose
    left-over segments of other processes would be re-sent into this test).
    Any paste key can be overridden.
    """
    def make(app, conf=None, **paste):
        paste.setdefault('driver', 'test')
        paste.setdefault('record_lookups', 'false')
        paste.setdefault('journal_dir', str(tmp_path_factory.mktemp('journal')))
        paste.setdefault('stats_interval', '0')
        paste['oslo_config_config'] = conf if conf is not None else cfg.ConfigOpts()
        mw = middleware.filter_factory({}, **paste)(app)
        captured.filters.append(mw)
        return mw
    # a filter the test closes on purpose, with records left unsent
    make.forget = captured.filters.remove
    return make


def make_environ(method='GET', path='/', query='', body=None, headers=None, **extra):
    """A complete PEP 3333 environ; ``headers`` as a dict of HTTP header names."""
    environ = {
        'REQUEST_METHOD': method,
        'SCRIPT_NAME': '',
        'PATH_INFO': path,
        'QUERY_STRING': query,
        'SERVER_NAME': 'glance.example.org',
        'SERVER_PORT': '9292',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '192.0.2.10',
        'wsgi.version': (1, 0),
        'wsgi.url_scheme': 'http',
        'wsgi.input': body if body is not None and not isinstance(body, bytes)
        else io.BytesIO(body or b''),
        'wsgi.errors': sys.stderr,
        'wsgi.multithread': True,
        'wsgi.multiprocess': False,
        'wsgi.run_once': False,
    }
    if isinstance(body, bytes):
        environ['CONTENT_LENGTH'] = str(len(body))
    for name, value in (headers or {}).items():
        key = name.upper().replace('-', '_')
        if key not in ('CONTENT_TYPE', 'CONTENT_LENGTH'):
            key = 'HTTP_' + key
        environ[key] = value
    environ.update(extra)
    return environ


IDENTITY = {
    'X-Identity-Status': 'Confirmed',
    'X-User-Id': USER_ID,
    'X-User-Name': 'alice',
    'X-User-Domain-Id': 'default',
    'X-Project-Id': PROJECT_ID,
    'X-Project-Name': 'demo',
    'X-Project-Domain-Id': 'default',
    'X-Roles': 'member,reader',
    'User-Agent': 'python-glanceclient',
}


class StartResponse:
    """A server's start_response that records what it was given."""

    def __init__(self):
        self.calls = []
        self.written = []

    def __call__(self, status, headers, exc_info=None):
        self.calls.append((status, list(headers), exc_info))
        return self.written.append

    @property
    def status(self):
        return self.calls[-1][0]

    @property
    def headers(self):
        return self.calls[-1][1]


def run(mw, environ, close=True):
    """Serve one request like a WSGI server: iterate everything, then close()."""
    sr = StartResponse()
    result = mw(environ, sr)
    try:
        chunks = list(result)
    finally:
        if close and hasattr(result, 'close'):
            result.close()
    return sr, b''.join(chunks)


@pytest.fixture
def wsgi():
    """Helpers for tests: make_environ, run, StartResponse, IDENTITY and ids."""
    class Helpers:
        pass
    h = Helpers()
    h.environ = make_environ
    h.run = run
    h.StartResponse = StartResponse
    h.IDENTITY = dict(IDENTITY)
    # environ extras of a call auth_token confirmed (its keystone.token_auth), for
    # IDENTITY: make_environ(..., headers=h.IDENTITY, **h.CONFIRMED)
    h.CONFIRMED = identity.confirmed(USER_ID, PROJECT_ID)
    h.IMAGE_ID = IMAGE_ID
    h.USER_ID = USER_ID
    h.PROJECT_ID = PROJECT_ID
    return h


# -- pycadf validation ------------------------------------------------------------------

def pycadf_event(payload):
    """Rebuild a CADF event dict as pycadf objects (extra attributes via setattr).

    pycadf validates each attribute on assignment (ValueError); the caller then
    checks ``is_valid()``.
    """
    from pycadf import (attachment, event, host, measurement, metric, reason,
                        resource)

    def make_resource(doc):
        doc = dict(doc)
        host_doc = doc.pop('host', None)
        attachments = doc.pop('attachments', None) or []
        res = resource.Resource(id=doc.pop('id'), typeURI=doc.pop('typeURI'),
                                name=doc.pop('name', None),
                                host=host.Host(**host_doc) if host_doc else None)
        for att in attachments:
            res.add_attachment(attachment.Attachment(
                typeURI=att['typeURI'], content=att['content'], name=att['name']))
        for key, value in doc.items():
            setattr(res, key, value)
        return res

    doc = dict(payload)
    reason_doc = doc.pop('reason', None)
    ev = event.Event(
        eventType=doc.pop('eventType'), id=doc.pop('id'), eventTime=doc.pop('eventTime'),
        action=doc.pop('action'), outcome=doc.pop('outcome'),
        initiator=make_resource(doc.pop('initiator')),
        target=make_resource(doc.pop('target')),
        observer=make_resource(doc.pop('observer')),
        reason=reason.Reason(**reason_doc) if reason_doc else None)
    assert doc.pop('typeURI') == ev.typeURI
    for m in doc.pop('measurements', None) or []:
        ev.add_measurement(measurement.Measurement(
            result=m['result'], metric=metric.Metric(**m['metric'])))
    for att in doc.pop('attachments', None) or []:
        ev.add_attachment(attachment.Attachment(
            typeURI=att['typeURI'], content=att['content'], name=att['name']))
    for key, value in doc.items():
        setattr(ev, key, value)
    return ev


@pytest.fixture
def cadf_valid():
    """cadf_valid(payload): rebuild with pycadf, assert is_valid(), return the Event."""
    def check(payload):
        ev = pycadf_event(payload)
        assert ev.is_valid() is True
        return ev
    return check


@pytest.fixture
def oslo_log_lines():
    """The lines the ``audit_notifier`` logger writes, formatted by oslo.log's
    ContextFormatter as a service's log file has them (it appends the exception
    being handled to WARNING and ERROR lines), at the moment each is logged."""
    from oslo_log import formatters
    from oslo_log import log as oslo_log
    log_conf = cfg.ConfigOpts()
    oslo_log.register_options(log_conf)
    log_conf([])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatters.ContextFormatter(config=log_conf))
    logger = logging.getLogger('audit_notifier')
    logger.addHandler(handler)
    try:
        yield lambda: stream.getvalue().splitlines()
    finally:
        logger.removeHandler(handler)
