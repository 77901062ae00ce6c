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

"""Record attachments (events/records.py): Magnum's cluster_data from the response, a
look-up after the call or the record fetched before it; through the filter with a
stand-in Magnum app (the real Magnum 23 is in tests/magnum)."""

from __future__ import annotations

import json

import pytest

from audit_notifier.events import records

CLUSTER = '5d7c3a4e-2f57-4d7a-9b1e-0a6e6d1f2c3b'
MAGNUM_KEYS = ['status', 'status_reason', 'project_id', 'created_at', 'updated_at',
               'cluster_template_id', 'keypair', 'docker_volume_size:', 'labels',
               'master_flavor_id', 'flavor_id', 'stack_id', 'health_status',
               'create_timeout', 'api_address', 'discovery_url', 'node_addresses',
               'master_addresses', 'node_count', 'master_count']


def api_cluster(**changes):
    """GET /v1/clusters/{uuid} of Magnum 23 (microversion 1.1), abridged."""
    record = {'uuid': CLUSTER, 'name': 'k8s', 'status': 'CREATE_IN_PROGRESS',
              'status_reason': None, 'project_id': 'p-demo',
              'created_at': '2026-11-23T14:31:00.919876+00:00', 'updated_at': None,
              'cluster_template_id': 'ct-1', 'keypair': 'kp', 'docker_volume_size': 5,
              'labels': {'a': 'b'}, 'master_flavor_id': 'm1', 'flavor_id': 'f1',
              'stack_id': 'stack-1', 'health_status': None, 'create_timeout': 60,
              'api_address': None, 'discovery_url': None, 'node_addresses': [],
              'master_addresses': [], 'node_count': 1, 'master_count': 1,
              'coe_version': None, 'links': []}
    record.update(changes)
    return record


def test_content_has_magnums_keys_in_magnums_order():
    content = records.content(records.CLUSTER_DATA, api_cluster())
    assert list(content) == MAGNUM_KEYS
    assert content['docker_volume_size:'] == 5
    assert content['created_at'] == '2026-11-23T14:31:00.919876'
    assert content['stack_id'] == 'stack-1'


def test_content_at_microversion_1_13_takes_cluster_id_as_stack_id():
    record = api_cluster(cluster_id='stack-9')
    del record['stack_id']
    assert records.content(records.CLUSTER_DATA, record)['stack_id'] == 'stack-9'


def test_content_of_a_summary_leaves_missing_keys_none():
    content = records.content(records.CLUSTER_DATA, {'uuid': CLUSTER, 'status': 'X'})
    assert list(content) == MAGNUM_KEYS
    assert [k for k, v in content.items() if v is not None] == ['status']


@pytest.mark.parametrize('value, expected', [
    ('2026-11-23T14:31:00.919876+00:00', '2026-11-23T14:31:00.919876'),
    ('2026-11-23T14:31:00+00:00', '2026-11-23T14:31:00.000000'),
    ('2026-11-23T16:31:00+02:00', '2026-11-23T14:31:00.000000'),
    ('2026-11-23T14:31:00', '2026-11-23T14:31:00.000000'),
    (None, None), ('yesterday', 'yesterday'), (7, 7)])
def test_service_time(value, expected):
    assert records.service_time(value) == expected


class MagnumStandIn:
    """POST /v1/clusters answers 202 {"uuid"} and stores the cluster only after
    ``store_after`` GETs (as Magnum's conductor stores it after the API answered);
    DELETE by name answers 204; GET /v1/clusters/{ident} answers the record."""

    def __init__(self, store_after=0, post_status='202 Accepted', stored_as=()):
        self.store_after = store_after
        self.post_status = post_status
        # the record's first look-ups once stored (then api_cluster()): a conductor
        # that has stored the cluster row but not yet all its node groups
        self.stored_as = list(stored_as)
        self.gets = []
        self.stored = False

    def __call__(self, environ, start_response):
        method, path = environ['REQUEST_METHOD'], environ['PATH_INFO']
        environ['wsgi.input'].read()
        if method == 'GET':
            self.gets.append(path)
            if len(self.gets) > self.store_after:
                self.stored = True
            if self.stored and path.rsplit('/', 1)[-1] in (CLUSTER, 'k8s'):
                record = self.stored_as.pop(0) if self.stored_as else api_cluster()
                return self._json(start_response, '200 OK', record)
            return self._json(start_response, '404 Not Found', {'errors': []})
        if method == 'POST':
            return self._json(start_response, self.post_status, {'uuid': CLUSTER})
        start_response('204 No Content', [])
        return [b'']

    @staticmethod
    def _json(start_response, status, doc):
        data = json.dumps(doc).encode()
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(data)))])
        return [data]


@pytest.fixture
def pauses(monkeypatch):
    """The pauses the look-up retry would take (not taken)."""
    taken = []
    monkeypatch.setattr(records.time, 'sleep', taken.append)
    return taken


def _create(make_filter, captured, wsgi, app, **paste):
    paste.setdefault('record_lookups', 'true')
    mw = make_filter(app, route_map='magnum', formats='cadf', **paste)
    wsgi.run(mw, wsgi.environ('POST', '/v1/clusters', body=b'{}', headers=wsgi.IDENTITY,
                              **wsgi.CONFIRMED))
    [event] = captured.all()
    return event


def test_create_carries_cluster_data_and_name(make_filter, captured, wsgi, pauses):
    app = MagnumStandIn()
    event = _create(make_filter, captured, wsgi, app)
    target = event['payload']['target']
    assert target['id'] == CLUSTER and target['name'] == 'k8s'
    [att] = target['attachments']
    assert (att['typeURI'], att['name']) == ('service/magnum/cluster', 'cluster_data')
    assert att['content'] == records.content(records.CLUSTER_DATA, api_cluster())
    assert app.gets == ['/v1/clusters/' + CLUSTER] and pauses == []


def test_create_waits_a_bounded_time_for_the_conductor(make_filter, captured, wsgi, pauses):
    app = MagnumStandIn(store_after=2)           # found at the third look-up
    target = _create(make_filter, captured, wsgi, app)['payload']['target']
    assert target['attachments'][0]['name'] == 'cluster_data'
    assert pauses == list(records.SETTLE[:2])
    assert len(app.gets) == 3


def test_create_gives_up_after_settle(make_filter, captured, wsgi, pauses):
    app = MagnumStandIn(store_after=10 ** 6)
    target = _create(make_filter, captured, wsgi, app)['payload']['target']
    assert target == {'typeURI': 'service/magnum/cluster', 'id': CLUSTER}
    assert pauses == list(records.SETTLE)
    assert len(app.gets) == 1 + len(records.SETTLE)
    assert sum(records.SETTLE) < 2


def test_create_waits_for_the_node_groups(make_filter, captured, wsgi, pauses):
    """Magnum's conductor stores the cluster row, then the master node group, then
    the worker one: a record without them is looked up again."""
    app = MagnumStandIn(stored_as=[api_cluster(node_count=0, master_count=0),
                                   api_cluster(node_count=0, master_count=1)])
    target = _create(make_filter, captured, wsgi, app)['payload']['target']
    content = target['attachments'][0]['content']
    assert (content['node_count'], content['master_count']) == (1, 1)
    assert pauses == list(records.SETTLE[:2]) and len(app.gets) == 3


def test_create_without_workers_settles_when_the_conductor_saved_it(make_filter, captured,
                                                                    wsgi, pauses):
    """node_count 0 is allowed: complete once the conductor saved the cluster again."""
    saved = api_cluster(node_count=0, updated_at='2026-11-23T14:31:02+00:00')
    app = MagnumStandIn(stored_as=[api_cluster(node_count=0)] * 3 + [saved])
    target = _create(make_filter, captured, wsgi, app)['payload']['target']
    content = target['attachments'][0]['content']
    assert (content['node_count'], content['updated_at']) == (0, '2026-11-23T14:31:02.000000')
    assert pauses == list(records.SETTLE[:3]) and len(app.gets) == 4


def test_create_never_settled_keeps_the_last_record(make_filter, captured, wsgi, pauses):
    app = MagnumStandIn(stored_as=[api_cluster(node_count=0, master_count=0)] * 3 +
                        [api_cluster(node_count=0, master_count=1, status='X')] * 10)
    target = _create(make_filter, captured, wsgi, app)['payload']['target']
    content = target['attachments'][0]['content']
    assert (content['master_count'], content['status']) == (1, 'X')
    assert pauses == list(records.SETTLE) and len(app.gets) == 1 + len(records.SETTLE)


@pytest.mark.parametrize('record, settled', [
    (api_cluster(), True), (api_cluster(node_count=0, master_count=0), False),
    (api_cluster(node_count=0), False), (api_cluster(master_count=0), False),
    (api_cluster(node_count=0, updated_at='2026-11-23T14:31:02+00:00'), True),
    (api_cluster(master_count=None), False)])
def test_cluster_settled(record, settled):
    assert records.cluster_settled(record) is settled


def test_refused_create_is_not_waited_for(make_filter, captured, wsgi, pauses):
    app = MagnumStandIn(store_after=10 ** 6, post_status='403 Forbidden')
    event = _create(make_filter, captured, wsgi, app)
    assert event['payload']['outcome'] == 'failure'
    assert 'attachments' not in event['payload']['target']
    assert pauses == []


def test_no_lookups_no_cluster_data_and_no_wait(make_filter, captured, wsgi, pauses):
    app = MagnumStandIn()
    target = _create(make_filter, captured, wsgi, app,
                     record_lookups='false')['payload']['target']
    assert target == {'typeURI': 'service/magnum/cluster', 'id': CLUSTER}
    assert app.gets == [] and pauses == []


def test_delete_by_name_falls_back_to_the_record_fetched_before(make_filter, captured, wsgi,
                                                                pauses):
    """Gone after the call: the record the route fetched before it (by name) is used."""
    app = MagnumStandIn()
    app.stored = True

    def gone_after_delete(environ, start_response):
        if environ['REQUEST_METHOD'] == 'DELETE':
            app.stored = False
            app.store_after = 10 ** 6
        return app(environ, start_response)

    mw = make_filter(gone_after_delete, route_map='magnum', formats='cadf',
                     record_lookups='true')
    wsgi.run(mw, wsgi.environ('DELETE', '/v1/clusters/k8s', headers=wsgi.IDENTITY,
                              **wsgi.CONFIRMED))
    [event] = captured.all()
    target = event['payload']['target']
    assert target['id'] == CLUSTER
    assert target['attachments'][0]['content']['status'] == 'CREATE_IN_PROGRESS'
    assert app.gets == ['/v1/clusters/k8s', '/v1/clusters/' + CLUSTER]
    assert pauses == []                 # not a create: no waiting


def test_content_of_a_cluster_object_is_magnums():
    """What a conductor hook passes (Magnum's Cluster object): attributes, and its
    datetimes in the format Magnum's serialized event shows."""
    import datetime

    class Cluster:
        status = 'CREATE_IN_PROGRESS'
        docker_volume_size = 3
        created_at = datetime.datetime(2026, 11, 23, 14, 31, 0, 919876,
                                       tzinfo=datetime.timezone.utc)
        updated_at = None
        cluster_id = 'not-the-stack'       # only the API's 1.13+ view calls it so
        stack_id = None
        node_count = 2

    content = records.content_of_object(records.CLUSTER_DATA, Cluster())
    assert list(content) == MAGNUM_KEYS
    assert (content['status'], content['docker_volume_size:'], content['created_at'],
            content['updated_at'], content['stack_id'], content['node_count'],
            content['labels']) == ('CREATE_IN_PROGRESS', 3, '2026-11-23T14:31:00.919876',
                                   None, None, 2, None)
