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

"""Every CADF event of every shipped route map round-trips through pycadf.

The filter builds its events as plain dicts (doc/source/reference/events.rst, "Why
events are built as dicts"); these tests are what keeps those dicts CADF.  Each route
of glance.yaml and magnum.yaml is called through the real filter (test driver) as a
confirmed success, a confirmed failure and an unauthenticated failure; each event is
rebuilt as pycadf objects (``Event``, ``Resource``, ``Host``, ``Reason``,
``Measurement``, ``Metric``, ``Attachment``) through pycadf's own validators, must be
``is_valid()``, and ``as_dict()`` must give back exactly our dict.

The one documented difference: attributes CADF does not define (``requestPath`` on
the event, the identity attributes of the initiator) are plain attributes of the pycadf
objects, as keystonemiddleware.audit and Magnum set them.  They are asserted exactly,
per case, below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings

from pycadf import attachment as cadf_attachment
from pycadf import cadftaxonomy
from pycadf import event as cadf_event
from pycadf import host as cadf_host
from pycadf import measurement as cadf_measurement
from pycadf import metric as cadf_metric
from pycadf import reason as cadf_reason
from pycadf import resource as cadf_resource
import pytest

from audit_notifier.events import glance as glance_events
from audit_notifier import routes
from tests.support import cadf as support_cadf

SHIPPED = routes.shipped_maps()
REQUEST_ID = 'req-0b6f5c2e-6d0a-4a43-9d55-1f2e3d4c5b6a'
GLOBAL_ID = 'req-7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b'
CADF_EVENT_KEYS = frozenset(cadf_event.EVENT_KEYNAMES)
CADF_RESOURCE_KEYS = frozenset(cadf_resource.RESOURCE_KEYNAMES)
# The non-CADF attributes each case carries (events.rst, "Field mapping").
EVENT_EXTENSIONS = {'requestPath'}
CONFIRMED_EXTENSIONS = {'user_id', 'domain_id', 'project_id', 'project_name',
                        'project_domain_id', 'roles', 'identity_status', 'request_id',
                        'global_request_id'}
UNCONFIRMED_EXTENSIONS = {'claimed', 'identity_status', 'request_id', 'global_request_id'}

# case -> (status, confirmed caller?)
CASES = {
    'success': ('200 OK', True),
    'forbidden': ('403 Forbidden', True),
    'unauthenticated': ('401 Unauthorized', False),
}


def _uuid(text):
    return str(uuid.uuid5(uuid.NAMESPACE_OID, text))


def _concrete(route_path, tag):
    """The route's path with a distinct UUID for each parameter."""
    segs = [_uuid(seg + tag) if seg.startswith('{') else seg
            for seg in route_path.strip('/').split('/')]
    return '/' + '/'.join(segs)


def _response_for(route):
    """A JSON body and headers giving a UUID to every source the route reads."""
    body, headers = {}, {'X-OpenStack-Request-ID': REQUEST_ID}
    sources = list(route.target.id) + list(route.target.name)
    for _, srcs in route.target.attachments:
        sources.extend(srcs)
    for kind, ref in sources:
        if kind == 'response':
            node = body
            for key in ref[:-1]:
                node = node.setdefault(key, {})
            node[ref[-1]] = _uuid('response.' + '.'.join(ref))
        elif kind == 'header':
            headers[ref] = 'http://api.example.org/v2/x/' + _uuid('header.' + ref)
    return body, headers


def _rebuild(payload):
    """``payload`` as pycadf objects, each CADF attribute through pycadf's
    constructor or validator (a bad value raises ValueError); extensions by setattr."""
    def resource(doc):
        doc = dict(doc)
        host = doc.pop('host', None)
        attachments = doc.pop('attachments', ())
        res = cadf_resource.Resource(
            id=doc.pop('id'), typeURI=doc.pop('typeURI'), name=doc.pop('name', None),
            host=cadf_host.Host(**host) if host is not None else None)
        for att in attachments:
            res.add_attachment(cadf_attachment.Attachment(**att))
        assert not set(doc) & CADF_RESOURCE_KEYS, doc     # every CADF key went above
        for key, value in doc.items():
            setattr(res, key, value)
        return res

    doc = dict(payload)
    assert doc.pop('typeURI') == cadf_event.TYPE_URI_EVENT
    ev = cadf_event.Event(
        eventType=doc.pop('eventType'), id=doc.pop('id'), eventTime=doc.pop('eventTime'),
        action=doc.pop('action'), outcome=doc.pop('outcome'),
        reason=cadf_reason.Reason(**doc.pop('reason')),
        initiator=resource(doc.pop('initiator')), target=resource(doc.pop('target')),
        observer=resource(doc.pop('observer')))
    for meas in doc.pop('measurements', ()):
        ev.add_measurement(cadf_measurement.Measurement(
            result=meas['result'], metric=cadf_metric.Metric(**meas['metric'])))
    for att in doc.pop('attachments', ()):      # level request: changes / request
        ev.add_attachment(cadf_attachment.Attachment(**att))
    assert not set(doc) & CADF_EVENT_KEYS, doc
    for key, value in doc.items():
        setattr(ev, key, value)
    return ev


def _assert_round_trip(payload, confirmed):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        ev = _rebuild(payload)
        assert ev.is_valid() is True
        for part in (ev.initiator, ev.target, ev.observer, ev.reason):
            assert part.is_valid() is True
        assert ev.as_dict() == payload
    # pycadf warns on an id that is not a UUID: only the initiator nobody confirmed
    # has one, pycadf's own 'unknown' (as keystonemiddleware.audit records it)
    assert [str(w.message) for w in caught] == ([] if confirmed else [
        'Invalid uuid: unknown. To ensure interoperability, identifiers should be a '
        'valid uuid.'])
    assert set(payload) - CADF_EVENT_KEYS == EVENT_EXTENSIONS
    assert set(payload['target']) - CADF_RESOURCE_KEYS == set()
    assert set(payload['observer']) - CADF_RESOURCE_KEYS == set()
    assert set(payload['initiator']) - CADF_RESOURCE_KEYS == (
        CONFIRMED_EXTENSIONS if confirmed else UNCONFIRMED_EXTENSIONS)
    # the project's own pycadf validator agrees (tests/support/cadf.py)
    support_cadf.assert_valid(payload)


@pytest.mark.parametrize('case', sorted(CASES))
@pytest.mark.parametrize('name', SHIPPED)
def test_every_route_event_round_trips_through_pycadf(name, case, make_filter, captured,
                                                      wsgi):
    status, confirmed = CASES[case]
    rm = routes.load(name, usage_rules=glance_events.RULES)
    current = {}

    def app(environ, start_response):
        environ['wsgi.input'].read()
        body, headers = _response_for(current['route'])
        data = json.dumps(body).encode()
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(data)))] + list(headers.items()))
        return [data]

    mw = make_filter(app, route_map=name, formats='cadf')
    priority = 'INFO'
    if case != 'success':
        priority = rm.service.client_error_priority
    for index, route in enumerate(rm.routes):
        captured.reset()
        current['route'] = route
        path = _concrete(route.path, '-%d' % index)
        extra = dict(wsgi.CONFIRMED) if confirmed else {}
        env = wsgi.environ(route.method, path, body=b'{}', headers=wsgi.IDENTITY, **extra)
        env['openstack.global_request_id'] = GLOBAL_ID
        sr, _ = wsgi.run(mw, env)
        assert sr.status == status
        [envelope] = captured.all()
        where = (name, route.method, route.path)
        assert envelope['event_type'] == rm.service.cadf_event_type.format(event=route.event)
        assert envelope['priority'] == priority, where
        payload = envelope['payload']
        expected_outcome = cadftaxonomy.OUTCOME_FAILURE
        if case == 'success':
            expected_outcome = (cadftaxonomy.OUTCOME_PENDING if route.asynchronous
                                else cadftaxonomy.OUTCOME_SUCCESS)
        assert (payload['action'], payload['outcome'], payload['reason']) == (
            route.action, expected_outcome,
            {'reasonType': 'HTTP', 'reasonCode': status.split()[0]}), where
        assert payload['target']['typeURI'] == route.target.type_uri, where
        assert payload['initiator']['id'] == (wsgi.USER_ID if confirmed
                                              else cadftaxonomy.UNKNOWN), where
        # measurements and attachments go through pycadf too
        if case == 'success':
            assert ('measurements' in payload) == (route.observe is not None), where
        assert ('attachments' in payload['target']) == bool(route.target.attachments), where
        _assert_round_trip(payload, confirmed)


@pytest.mark.parametrize('name', SHIPPED)
def test_unmatched_and_exception_events_round_trip(name, make_filter, captured, wsgi):
    """The map's other events: an unmatched call (unmatched_requests = audit) and
    a call whose app raised."""
    rm = routes.load(name, usage_rules=glance_events.RULES)
    route = rm.routes[0]

    def app(environ, start_response):
        if environ['PATH_INFO'] != '/no/such/path':
            raise OSError('disk')
        start_response('200 OK', [])
        return [b'']

    mw = make_filter(app, route_map=name, formats='cadf', unmatched_requests='audit')
    for path, method in (('/no/such/path', 'POST'), (_concrete(route.path, ''), route.method)):
        captured.reset()
        env = wsgi.environ(method, path, headers=wsgi.IDENTITY, **wsgi.CONFIRMED)
        env['openstack.global_request_id'] = GLOBAL_ID
        env['openstack.request_id'] = REQUEST_ID       # oslo.middleware's request_id filter
        if path == '/no/such/path':
            wsgi.run(mw, env)
        else:
            with pytest.raises(OSError):
                mw(env, wsgi.StartResponse())
        [envelope] = captured.all()
        payload = envelope['payload']
        if path == '/no/such/path':
            assert envelope['event_type'] == rm.service.cadf_event_type.format(
                event=rm.service.unmatched_event)
            assert (payload['action'], payload['outcome'], payload['reason']) == (
                'create', 'success', {'reasonType': 'HTTP', 'reasonCode': '200'})
            _assert_round_trip(payload, confirmed=True)
        else:
            assert (payload['action'], payload['outcome'], payload['reason']) == (
                route.action, 'failure', {'reasonType': 'exception', 'reasonCode': 'OSError'})
            _assert_round_trip(payload, confirmed=True)


def test_filter_does_not_register_pycadf_options_in_the_global_conf():
    """The filter uses pycadf's vocabulary modules only: pycadf.event (through
    pycadf.identifier) would register an [audit] group in the host service's
    global oslo.config CONF on import."""
    code = ('import sys\n'
            'from oslo_config import cfg\n'
            'import audit_notifier.middleware, audit_notifier.emitter\n'
            'import audit_notifier.events.cadf, audit_notifier.events.glance\n'
            'print(sorted(m for m in sys.modules if m.startswith("pycadf")), '
            '"audit" in cfg.CONF)\n')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], cwd=root,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert out.strip() == "['pycadf', 'pycadf.cadftaxonomy', 'pycadf.cadftype'] False"
