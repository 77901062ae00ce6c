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

"""audit_notifier (route_map = magnum) in front of the 2016 (Magnum 3.0.0) bays API.

The app under the filter is ``bays_2016_app.Bays2016App``: a FAITHFUL
REPRODUCTION of Magnum 3.0.0's ``/v1/bays`` and ``/v1/baymodels`` routes,
status codes and response bodies, NOT the real Magnum (real Magnum has not
served bays since 17.0.0; see that module's docstring for what is reproduced
and from where).  The point is the case only 2016 had: ``POST /v1/bays``
answers **201 with the whole Bay** at microversion 1.1 and **202
``{"uuid"}``** at 1.2+, and ``PATCH`` 200 Bay / 202 ``{"uuid"}``; the audit
event must name the bay (its uuid) in both, with ``outcome`` pending in both:
the 201/200 Bay is still ``CREATE_IN_PROGRESS`` / ``UPDATE_IN_PROGRESS`` and
Magnum 3.0.0's conductor sent ``pending`` for it (route key ``pending_if``).
``DELETE`` (204) is pending too: the route is ``async`` (the conductor deletes
the Heat stack after the answer).

Also here: the 2016 user guide's notification shape (``magnum.bay.created``,
``resource_info``) reached by configuration, and Ceilometer's 2016
``magnum.bay.*`` event definition applied to our bay events.

Runs in the tests/magnum pytest process but needs no Magnum app (the filter
only registers its options on the global ``cfg.CONF``).
"""

# magnum first, as in magnum-api: its package selects oslo_service's threading
# backend, which importing oslo_messaging (audit_notifier does) would otherwise
# settle as eventlet for the whole session Magnum (magnum/__init__.py warns)
import magnum  # noqa: F401,I100

import json
import os
import sys
import uuid

import pytest
import webtest
from oslo_messaging.notify import _impl_test
from oslo_utils import timeutils

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:      # tests.support, audit_notifier from the work tree
    sys.path.insert(0, _ROOT)

from tests.support import cadf as cadf_check  # noqa: E402
from tests.support import ceilometer as ceilo  # noqa: E402
from tests.support import identity  # noqa: E402

try:  # tests/magnum as a package
    from . import bays_2016_app
except ImportError:  # rootdir/prepend import mode, no __init__.py
    import bays_2016_app

from audit_notifier import middleware  # noqa: E402

pytestmark = pytest.mark.magnum

PUBLISHER = 'container-infra.bays2016-audit-test'
TOKEN = 'bay-secret-token-5f3c'
USER_AGENT = 'python-magnumclient/2.3.0 bays-2016-test'
CLIENT_ADDR = '198.51.100.23'
BAY_TYPE = 'service/magnum/bay'
BAYMODEL_TYPE = 'service/magnum/baymodel'

#: what keystonemiddleware's auth_token puts into the request for a token
IDENTITY = {
    'X-Identity-Status': 'Confirmed',
    'X-User-Id': 'u-bay-owner', 'X-User-Name': 'bay-owner',
    'X-User-Domain-Id': 'default', 'X-User-Domain-Name': 'Default',
    'X-Project-Id': 'p-bays', 'X-Project-Name': 'bays',
    'X-Project-Domain-Id': 'default', 'X-Project-Domain-Name': 'Default',
    'X-Roles': 'member,reader',
}


#: the example of the 2016 Magnum user guide ("Example Notification - Bay
#: Create"), with its placeholder values
USER_GUIDE_EXAMPLE = {
    "event_type": "magnum.bay.created",
    "message_id": "0156ee79-b35f-4cef-ac37-d4a85f231c69",
    "payload": {
        "typeURI": "http://schemas.dmtf.org/cloud/audit/1.0/event",
        "initiator": {
            "typeURI": "service/security/account/user",
            "id": "c9f76d3c31e142af9291de2935bde98a",
            "user_id": "0156ee79-b35f-4cef-ac37-d4a85f231c69",
            "project_id": "3d4a50a9-2b59-438b-bf19-c231f9c7625a"
        },
        "target": {
            "typeURI": "service/magnum/bay",
            "id": "openstack:1c2fc591-facb-4479-a327-520dade1ea15"
        },
        "observer": {
            "typeURI": "service/magnum/bay",
            "id": "openstack:3d4a50a9-2b59-438b-bf19-c231f9c7625a"
        },
        "eventType": "activity",
        "eventTime": "2015-05-20T01:20:47.932842+00:00",
        "action": "create",
        "outcome": "success",
        "id": "openstack:f5352d7b-bee6-4c22-8213-450e7b646e9f",
        "resource_info": "671da331c47d4e29bb6ea1d270154ec3"
    },
    "priority": "INFO",
    "publisher_id": "magnum.host1234",
    "timestamp": "2016-05-20 15:03:45.960280"
}


# ---------------------------------------------------------------------------
# harness
# ---------------------------------------------------------------------------

class Audited:
    """Bays2016App behind the audit filter, driven through webtest."""

    def __init__(self, journal_dir, publisher_id=PUBLISHER, **filter_conf):
        self.backend = bays_2016_app.Bays2016App()
        conf = {'route_map': 'magnum', 'driver': 'test', 'formats': 'cadf',
                'publisher_id': publisher_id, 'journal_dir': str(journal_dir)}
        conf.update(filter_conf)
        self.publisher_id = publisher_id
        # exactly what paste does with [filter:audit]
        self.mw = middleware.filter_factory({}, **conf)(self.backend)
        # auth_token's keystone.token_auth: it confirmed the IDENTITY headers
        self.app = webtest.TestApp(self.mw, extra_environ=dict(
            identity.confirmed('u-bay-owner', 'p-bays'), REMOTE_ADDR=CLIENT_ADDR))

    def call(self, method, path, body=None, microversion=None, status='*', **kw):
        """One request; returns (webtest response, our notifications for it)."""
        headers = dict(IDENTITY, **{'X-Auth-Token': TOKEN, 'User-Agent': USER_AGENT,
                                    'Accept': 'application/json'})
        if microversion is not None:
            headers['OpenStack-API-Version'] = 'container-infra %s' % microversion
        headers.update(kw.pop('headers', {}))
        before = len(_impl_test.NOTIFICATIONS)
        params = json.dumps(body) if body is not None else ''
        if body is not None:
            headers['Content-Type'] = 'application/json'
        resp = self.app.request(path, method=method, body=params.encode('utf-8'),
                                headers=headers, status=status, **kw)
        assert self.mw.delivery.flush(10), 'audit notifications not delivered'
        new = [entry[1] for entry in _impl_test.NOTIFICATIONS[before:]]
        assert all(n['publisher_id'] == self.publisher_id for n in new), new
        return resp, new

    def create_baymodel(self, name='bm-2016'):
        resp, _ = self.call('POST', '/v1/baymodels', body={
            'name': name, 'coe': 'kubernetes', 'image_id': 'fedora-atomic-latest',
            'keypair_id': 'default', 'external_network_id': 'public'})
        assert resp.status_int == 201, resp.text
        return resp.json

    def close(self):
        self.mw.delivery.close()


@pytest.fixture
def audited(tmp_path):
    a = Audited(tmp_path / 'spool')
    yield a
    a.close()


@pytest.fixture
def baymodel(audited):
    return audited.create_baymodel()


def summary(note):
    p = note['payload']
    return (note['event_type'], note['priority'], p['outcome'], p['action'],
            p['reason']['reasonCode'], p['target']['typeURI'], p['target']['id'])


def check_common(note, *, bay=True):
    """Every bay/baymodel event: valid pycadf, observer follows the target,
    initiator from the auth_token headers, no token."""
    payload = dict(note['payload'])
    payload.pop('resource_info', None)      # the 2016 option; not a CADF key
    cadf_check.assert_valid(payload)
    assert payload['observer']['typeURI'] == payload['target']['typeURI']
    assert payload['observer']['name'] == 'magnum'
    init = payload['initiator']
    assert {k: init[k] for k in ('typeURI', 'id', 'user_id', 'name', 'project_id',
                                 'project_name', 'roles', 'host')} == {
        'typeURI': 'service/security/account/user', 'id': 'u-bay-owner',
        'user_id': 'u-bay-owner', 'name': 'bay-owner', 'project_id': 'p-bays',
        'project_name': 'bays', 'roles': ['member', 'reader'],
        'host': {'address': CLIENT_ADDR, 'agent': USER_AGENT}}
    assert TOKEN not in json.dumps(note)


# ---------------------------------------------------------------------------
# the reproduction itself (what the filter is fed)
# ---------------------------------------------------------------------------

def test_reproduction_microversions_and_shapes(audited, baymodel):
    resp, _ = audited.call('POST', '/v1/bays', body={'name': 'k8s-a',
                                                     'baymodel_id': baymodel['uuid']})
    assert resp.status_int == 201
    assert resp.headers['OpenStack-API-Version'] == 'container-infra 1.1'
    assert resp.headers['OpenStack-API-Maximum-Version'] == 'container-infra 1.3'
    assert resp.headers['Location'].endswith('/v1/bays/' + resp.json['uuid'])
    assert set(resp.json) == set(bays_2016_app.BAY_FIELDS) | {'links'}
    assert resp.json['status'] == 'CREATE_IN_PROGRESS' and resp.json['stack_id']
    resp, _ = audited.call('POST', '/v1/bays', body={'name': 'k8s-b',
                                                     'baymodel_id': baymodel['uuid']},
                           microversion='1.2')
    assert resp.status_int == 202
    assert list(resp.json) == ['uuid']
    resp, _ = audited.call('GET', '/v1/bays', microversion='latest')
    assert resp.headers['OpenStack-API-Version'] == 'container-infra 1.3'
    assert [set(b) for b in resp.json['bays']] == \
        [set(bays_2016_app.BAY_SUMMARY_FIELDS) | {'links'}] * 2
    resp, _ = audited.call('GET', '/v1/bays', microversion='1.4')
    assert resp.status_int == 406
    resp, _ = audited.call('GET', '/v1/clusters')      # 3.0.0 had them; not reproduced
    assert resp.status_int == 404


# ---------------------------------------------------------------------------
# bay events: 201 vs 202
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('microversion, status, outcome, body_keys', [
    (None, 201, 'pending', None),                  # 1.1: the full Bay, CREATE_IN_PROGRESS
    ('1.1', 201, 'pending', None),
    ('1.2', 202, 'pending', ['uuid']),            # 1.2+: {"uuid"}
    ('1.3', 202, 'pending', ['uuid']),
])
def test_bay_create(audited, baymodel, microversion, status, outcome, body_keys):
    resp, notes = audited.call('POST', '/v1/bays', microversion=microversion,
                               body={'name': 'k8s-create', 'baymodel_id': baymodel['uuid'],
                                     'node_count': 2})
    assert resp.status_int == status
    if body_keys is not None:
        assert list(resp.json) == body_keys
    else:
        assert resp.json['name'] == 'k8s-create' and resp.json['node_count'] == 2
    bay_uuid = resp.json['uuid']
    assert [summary(n) for n in notes] == [
        ('magnum.bay.create', 'INFO', outcome, 'create', str(status), BAY_TYPE, bay_uuid)]
    check_common(notes[0])
    assert notes[0]['payload']['requestPath'] == '/v1/bays'
    # the bay really exists under that uuid
    assert audited.call('GET', '/v1/bays/' + bay_uuid)[0].json['uuid'] == bay_uuid


@pytest.mark.parametrize('microversion, status, outcome', [
    (None, 200, 'pending'), ('1.2', 202, 'pending'), ('1.3', 202, 'pending')])
@pytest.mark.parametrize('by', ['uuid', 'name'])
def test_bay_update(audited, baymodel, microversion, status, outcome, by):
    created, _ = audited.call('POST', '/v1/bays', body={'name': 'k8s-upd',
                                                        'baymodel_id': baymodel['uuid']})
    bay_uuid = created.json['uuid']
    ident = bay_uuid if by == 'uuid' else 'k8s-upd'
    resp, notes = audited.call('PATCH', '/v1/bays/' + ident, microversion=microversion,
                               body=[{'op': 'replace', 'path': '/node_count', 'value': 3}])
    assert resp.status_int == status
    if status == 200:
        assert resp.json['node_count'] == 3 and resp.json['status'] == 'UPDATE_IN_PROGRESS'
    else:
        assert resp.json == {'uuid': bay_uuid}
    # the uuid from the response body, even when the path named the bay
    assert [summary(n) for n in notes] == [
        ('magnum.bay.update', 'INFO', outcome, 'update', str(status), BAY_TYPE, bay_uuid)]
    check_common(notes[0])


def test_bay_read_list_delete_and_errors(audited, baymodel):
    created, _ = audited.call('POST', '/v1/bays', body={'name': 'k8s-rd',
                                                        'baymodel_id': baymodel['uuid']})
    bay_uuid = created.json['uuid']
    missing = str(uuid.UUID(int=7))
    steps = [
        ('GET', '/v1/bays/k8s-rd', None, 200,
         ('magnum.bay.read', 'INFO', 'success', 'read', '200', BAY_TYPE, bay_uuid)),
        ('GET', '/v1/bays', None, 200,
         ('magnum.bay.list', 'INFO', 'success', 'read/list', '200', BAY_TYPE, None)),
        ('GET', '/v1/bays/detail', None, 200,
         ('magnum.bay.list', 'INFO', 'success', 'read/list', '200', BAY_TYPE, None)),
        ('GET', '/v1/bays/' + missing, None, 404,
         ('magnum.bay.read', 'ERROR', 'failure', 'read', '404', BAY_TYPE, missing)),
        ('POST', '/v1/bays', {'name': 'k8s-x', 'baymodel_id': missing}, 400,
         ('magnum.bay.create', 'ERROR', 'failure', 'create', '400', BAY_TYPE, None)),
        ('PATCH', '/v1/bays/' + bay_uuid, [{'op': 'replace', 'path': '/stack_id',
                                            'value': 'x'}], 400,
         ('magnum.bay.update', 'ERROR', 'failure', 'update', '400', BAY_TYPE, bay_uuid)),
        ('DELETE', '/v1/bays/' + bay_uuid, None, 204,
         ('magnum.bay.delete', 'INFO', 'pending', 'delete', '204', BAY_TYPE, bay_uuid)),
        ('DELETE', '/v1/bays/' + bay_uuid, None, 404,
         ('magnum.bay.delete', 'ERROR', 'failure', 'delete', '404', BAY_TYPE, bay_uuid)),
    ]
    for method, path, body, status, expected in steps:
        resp, notes = audited.call(method, path, body=body)
        assert resp.status_int == status, (method, path, resp.text)
        assert len(notes) == 1, (method, path, notes)
        note = notes[0]
        got = summary(note)
        if expected[-1] is None:
            # no id in the call: the target is the service (the observer's id)
            assert note['payload']['target']['id'] == note['payload']['observer']['id']
            got = got[:-1] + (None,)
        assert got == expected, (method, path)
        check_common(note)
    read = audited.call('GET', '/v1/bays/' + missing)[1][0]['payload']
    assert read['requestPath'] == '/v1/bays/' + missing


def test_bay_delete_by_name_names_the_uuid(audited, baymodel):
    """The route's record (GET /v1/bays/{name} before the call) names the uuid."""
    created, _ = audited.call('POST', '/v1/bays', body={'name': 'k8s-del',
                                                        'baymodel_id': baymodel['uuid']})
    resp, notes = audited.call('DELETE', '/v1/bays/k8s-del')
    assert resp.status_int == 204
    assert notes[0]['payload']['target']['id'] == created.json['uuid']


# ---------------------------------------------------------------------------
# baymodel events
# ---------------------------------------------------------------------------

def test_baymodel_crud(audited):
    resp, notes = audited.call('POST', '/v1/baymodels', body={
        'name': 'bm-crud', 'coe': 'kubernetes', 'image_id': 'fedora-atomic-latest',
        'keypair_id': 'default'})
    assert resp.status_int == 201
    assert resp.headers['Location'].endswith('/v1/baymodels/' + resp.json['uuid'])
    model = resp.json['uuid']
    got = [summary(n) + (n['payload']['target'].get('name'),) for n in notes]
    assert got == [('magnum.baymodel.create', 'INFO', 'success', 'create', '201',
                    BAYMODEL_TYPE, model, 'bm-crud')]
    check_common(notes[0])
    bay, _ = audited.call('POST', '/v1/bays', body={'name': 'uses-bm',
                                                    'baymodel_id': model},
                          microversion='1.2')
    steps = [
        ('GET', '/v1/baymodels/bm-crud', None, 200,
         ('magnum.baymodel.read', 'INFO', 'success', 'read', '200', BAYMODEL_TYPE, model)),
        ('GET', '/v1/baymodels', None, 200,
         ('magnum.baymodel.list', 'INFO', 'success', 'read/list', '200', BAYMODEL_TYPE,
          None)),
        ('PATCH', '/v1/baymodels/' + model,
         [{'op': 'replace', 'path': '/name', 'value': 'bm-renamed'}], 200,
         ('magnum.baymodel.update', 'INFO', 'success', 'update', '200', BAYMODEL_TYPE,
          model)),
        ('DELETE', '/v1/baymodels/' + model, None, 400,          # still used by a bay
         ('magnum.baymodel.delete', 'ERROR', 'failure', 'delete', '400', BAYMODEL_TYPE,
          model)),
        ('DELETE', '/v1/bays/' + bay.json['uuid'], None, 204,
         ('magnum.bay.delete', 'INFO', 'pending', 'delete', '204', BAY_TYPE,
          bay.json['uuid'])),
        ('DELETE', '/v1/baymodels/' + model, None, 204,
         ('magnum.baymodel.delete', 'INFO', 'success', 'delete', '204', BAYMODEL_TYPE,
          model)),
    ]
    for method, path, body, status, expected in steps:
        resp, notes = audited.call(method, path, body=body)
        assert resp.status_int == status, (method, path, resp.text)
        assert len(notes) == 1
        got = summary(notes[0])
        if expected[-1] is None:
            assert notes[0]['payload']['target']['id'] == \
                notes[0]['payload']['observer']['id']
            got = got[:-1] + (None,)
        assert got == expected, (method, path)
        check_common(notes[0])


# ---------------------------------------------------------------------------
# the 2016 user guide's shape, by configuration
# ---------------------------------------------------------------------------

def _key_paths(d, prefix=''):
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= _key_paths(v, prefix + k + '.')
    return out


def test_user_guide_2016_shape_by_configuration(tmp_path):
    audited = Audited(tmp_path / 'spool', publisher_id='magnum.host1234',
                      cadf_event_type='{event}d', cadf_resource_info='true',
                      audit_reads='false', audit_lists='false')
    try:
        model = audited.create_baymodel('bm-guide')
        resp, created = audited.call('POST', '/v1/bays', body={
            'name': 'guide', 'baymodel_id': model['uuid']})
        bay_uuid = resp.json['uuid']
        _, updated = audited.call('PATCH', '/v1/bays/' + bay_uuid, microversion='1.2',
                                  body=[{'op': 'replace', 'path': '/node_count', 'value': 2}])
        _, read = audited.call('GET', '/v1/bays/' + bay_uuid)
        _, deleted = audited.call('DELETE', '/v1/bays/' + bay_uuid)
    finally:
        audited.close()
    assert read == []                       # audit_reads = false
    assert [(n['event_type'], n['priority'], n['payload']['outcome'],
             n['payload']['resource_info']) for n in created + updated + deleted] == [
        ('magnum.bay.created', 'INFO', 'pending', bay_uuid),
        ('magnum.bay.updated', 'INFO', 'pending', bay_uuid),
        ('magnum.bay.deleted', 'INFO', 'pending', bay_uuid)]
    note = created[0]
    example = USER_GUIDE_EXAMPLE
    # the envelope and every key of the example's payload are there ...
    assert set(note) == set(example)
    assert _key_paths(example['payload']) <= _key_paths(note['payload'])
    # ... with the example's constant values
    for key in ('event_type', 'priority', 'publisher_id'):
        assert note[key] == example[key]
    payload, expected = note['payload'], example['payload']
    for path in ('typeURI', 'eventType', 'action', 'initiator.typeURI',
                 'target.typeURI', 'observer.typeURI'):
        a, b = payload, expected
        for part in path.split('.'):
            a, b = a[part], b[part]
        assert a == b, path
    # the example shows a finished creation (success: Magnum's Heat poller sent it);
    # the API answered with the bay in CREATE_IN_PROGRESS, for which Magnum 3.0.0's
    # conductor sent pending, and so does the filter
    assert (expected['outcome'], payload['outcome']) == ('success', 'pending')
    # where the example (not the code) was wrong, we follow pycadf 4:
    # plain uuids (no "openstack:" prefix) and a +0000 eventTime
    assert payload['resource_info'] == payload['target']['id'] == bay_uuid
    assert payload['initiator']['id'] == payload['initiator']['user_id'] == 'u-bay-owner'
    assert payload['initiator']['project_id'] == 'p-bays'
    uuid.UUID(payload['id'])
    assert payload['eventTime'].endswith('+0000')
    for n in created + updated + deleted:
        check_common(n)


# ---------------------------------------------------------------------------
# Ceilometer (2016 definition magnum.bay.*)
# ---------------------------------------------------------------------------

_DEFINITION = []


def _ceilometer_traits(envelope):
    """Ceilometer's TraitDefinition.to_trait for each trait of the definition:
    (traits that got a value, names of all traits)."""
    import fnmatch
    if not _DEFINITION:         # jsonpath parsers are slow to build: once per session
        definition = ceilo.magnum_event_definition('magnum.bay.*')
        _DEFINITION.append((definition['event_type'],
                            {name: (cfg.get('type', 'text'), ceilo.Field(cfg['fields']))
                             for name, cfg in definition['traits'].items()}))
    event_type, fields = _DEFINITION[0]
    assert fnmatch.fnmatch(envelope['event_type'], event_type)
    traits = {}
    for name, (trait_type, field) in fields.items():
        value = field.parse(envelope)
        if value is None:
            continue
        if trait_type == 'datetime':
            value = timeutils.normalize_time(timeutils.parse_isotime(value))
        traits[name] = value
    return traits, set(fields)


def test_ceilometer_bay_traits(audited, baymodel):
    notes = []
    resp, n = audited.call('POST', '/v1/bays', body={'name': 'ceilo',
                                                     'baymodel_id': baymodel['uuid']})
    notes += n
    bay_uuid = resp.json['uuid']
    notes += audited.call('PATCH', '/v1/bays/' + bay_uuid, microversion='1.2',
                          body=[{'op': 'replace', 'path': '/node_count', 'value': 2}])[1]
    notes += audited.call('GET', '/v1/bays/' + bay_uuid)[1]
    notes += audited.call('DELETE', '/v1/bays/' + bay_uuid)[1]
    assert [n['event_type'] for n in notes] == [
        'magnum.bay.create', 'magnum.bay.update', 'magnum.bay.read', 'magnum.bay.delete']
    for note in notes:
        traits, names = _ceilometer_traits(note)
        assert set(traits) == names, (note['event_type'], names - set(traits))
        p = note['payload']
        assert traits['target_id'] == bay_uuid
        assert traits['target_typeURI'] == traits['observer_typeURI'] == BAY_TYPE
        assert traits['initiator_id'] == 'u-bay-owner'
        assert traits['initiator_name'] == 'bay-owner'
        assert traits['initiator_host_agent'] == USER_AGENT
        assert traits['initiator_host_address'] == CLIENT_ADDR
        assert traits['eventTime'] == timeutils.normalize_time(
            timeutils.parse_isotime(p['eventTime']))
        assert traits['eventTime'].tzinfo is None
        assert (traits['action'], traits['outcome']) == (p['action'], p['outcome'])
