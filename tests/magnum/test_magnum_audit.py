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

"""audit_notifier (route_map = magnum) in front of the REAL Magnum 23 API.

One scripted life cycle (module fixture ``scenario``) runs through an extra
pipeline of the session Magnum (``magnum_env.load_app``: ``... authtoken audit
api_v1``) with the filter's paste keys ``route_map = magnum``, ``driver =
test``, ``formats = cadf`` and a publisher_id of its own
(``container-infra.audit-test``; Magnum's own is ``container-infra.localhost``,
so the harness's ``magnum_own_notifications()``, which takes every
``container-infra.*``, is not used here).  After every call the conductor is
drained (``wait_idle``) and our dispatcher flushed, so each step holds exactly
the notifications it caused: ours and Magnum's own.

The tests then assert, per step: our exact CADF events (event_type, priority,
outcome, action, reason, target, initiator from the token, observer,
requestPath), pycadf validity, no token anywhere; field by field, the
agreement with Magnum's OWN notification for the calls where both send one;
and that every difference, per field and per step, is exactly the list in
``data/magnum_cadf_differences.yaml`` (so that list cannot go stale).
Ceilometer's ``magnum.cluster.*`` event definition is applied to our events.
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
import yaml
from oslo_utils import timeutils

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:      # tests.support, audit_notifier from the work tree
    sys.path.insert(0, _ROOT)

from tests.support import cadf as cadf_check  # noqa: E402
from tests.support import ceilometer as ceilo  # noqa: E402

try:  # tests/magnum as a package
    from . import magnum_app
except ImportError:  # rootdir/prepend import mode, no __init__.py
    import magnum_app

pytestmark = pytest.mark.magnum

HERE = os.path.dirname(os.path.abspath(__file__))
DIFFERENCES_FILE = os.path.join(HERE, 'data', 'magnum_cadf_differences.yaml')

OUR_PUBLISHER = 'container-infra.audit-test'
MAGNUM_PUBLISHER = magnum_app.MAGNUM_PUBLISHER_ID
USER_AGENT = 'python-magnumclient/4.9.0 audit-test'
CLIENT_ADDR = '203.0.113.7'
NOT_FOUND = '00000000-0000-4000-8000-000000000000'
CLUSTER = 'service/magnum/cluster'
TEMPLATE = 'service/magnum/clustertemplate'
USER_TYPE = 'service/security/account/user'
#: the steps where Magnum sends its own notification for the same call
COMPARED_STEPS = ('cluster create', 'cluster resize', 'cluster patch node_count',
                  'cluster delete')


def audit_filter(journal_dir, **extra):
    conf = {'route_map': 'magnum', 'driver': 'test', 'formats': 'cadf',
            'publisher_id': OUR_PUBLISHER, 'journal_dir': str(journal_dir)}
    conf.update(extra)
    return conf


class Step:
    def __init__(self, label, response, ours, theirs):
        self.label = label
        self.response = response
        self.ours = ours
        self.magnum = theirs

    @property
    def status(self):
        return self.response.status if self.response is not None else None

    def __repr__(self):
        return '<Step %s %s ours=%s magnum=%s>' % (self.label, self.status,
                                                   brief(self.ours), brief(self.magnum))


class Driver:
    """Runs calls through the audited pipeline, one step at a time."""

    def __init__(self, env, app):
        self.env = env
        self.app = app
        self.mw = magnum_app.find_audit_middleware(app)
        self.steps = {}
        self.order = []

    def _settle(self):
        self.env.wait_idle()
        assert self.mw.delivery.flush(10), 'audit notifications not delivered'

    def _record(self, label, before, response):
        self._settle()
        new = magnum_app.all_notifications()[before:]
        ours = [m for m in new if m['publisher_id'] == OUR_PUBLISHER]
        theirs = [m for m in new if m['publisher_id'] == MAGNUM_PUBLISHER]
        assert len(ours) + len(theirs) == len(new), new
        step = Step(label, response, ours, theirs)
        assert label not in self.steps
        self.steps[label] = step
        self.order.append(step)
        return step

    def call(self, label, method, path, token='admin-token', body=None, **kw):
        self._settle()
        before = len(magnum_app.all_notifications())
        headers = {'User-Agent': USER_AGENT}
        headers.update(kw.pop('headers', {}))
        response = self.env.request(method, path, token=token, body=body, app=self.app,
                                    headers=headers, remote_addr=CLIENT_ADDR, **kw)
        return self._record(label, before, response)

    def sync(self, label):
        """Magnum's periodic ClusterUpdateJob, once (no API call)."""
        self._settle()
        before = len(magnum_app.all_notifications())
        self.env.sync_cluster_status()
        return self._record(label, before, None)


@pytest.fixture(scope='module')
def audited(magnum_env, tmp_path_factory):
    app = magnum_env.load_app(audit_filter=audit_filter(
        tmp_path_factory.mktemp('audit-spool')), name='audit')
    driver = Driver(magnum_env, app)
    yield driver
    driver.mw.delivery.close()


@pytest.fixture(scope='module')
def scenario(audited):
    """The scripted life cycle; returns the Driver with its steps."""
    d = audited
    r = d.call('ct create', 'POST', '/v1/clustertemplates', body={
        'name': 'audit-ct', 'image_id': magnum_app.IMAGE_ID, 'coe': 'kubernetes',
        'server_type': 'vm', 'external_network_id': None, 'labels': {}}).response
    assert r.status == 201, r.text
    ct = r.json['uuid']
    d.ct = ct
    assert d.call('ct create (reader)', 'POST', '/v1/clustertemplates', token='reader-token',
                  body={'name': 'audit-ct-r', 'image_id': magnum_app.IMAGE_ID,
                        'coe': 'kubernetes', 'server_type': 'vm'}).status == 403
    assert d.call('ct show', 'GET', '/v1/clustertemplates/audit-ct').status == 200
    assert d.call('ct list', 'GET', '/v1/clustertemplates').status == 200
    assert d.call('ct patch', 'PATCH', '/v1/clustertemplates/' + ct, body=[
        {'op': 'replace', 'path': '/name', 'value': 'audit-ct-2'}]).status == 200

    cluster_body = {'name': 'audit-cl', 'cluster_template_id': ct, 'master_count': 1,
                    'node_count': 1}
    assert d.call('cluster create (reader)', 'POST', '/v1/clusters', token='reader-token',
                  body=dict(cluster_body, name='audit-cl-r')).status == 403
    r = d.call('cluster create', 'POST', '/v1/clusters', body=cluster_body).response
    assert r.status == 202, r.text
    assert list(r.json) == ['uuid']
    cl = r.json['uuid']
    d.cluster = cl
    assert d.call('cluster show', 'GET', '/v1/clusters/audit-cl').status == 200
    assert d.call('cluster list', 'GET', '/v1/clusters').status == 200
    d.sync('periodic sync (create)')
    assert d.call('cluster resize', 'POST', '/v1/clusters/%s/actions/resize' % cl,
                  body={'node_count': 2}, microversion='1.7').status == 202
    # Magnum accepts it (202) and its conductor then refuses it (still UPDATE_IN_PROGRESS)
    assert d.call('cluster patch (update in progress)', 'PATCH', '/v1/clusters/' + cl,
                  body=[{'op': 'replace', 'path': '/node_count', 'value': 3}]).status == 202
    d.sync('periodic sync (resize)')
    assert d.call('cluster patch node_count', 'PATCH', '/v1/clusters/' + cl,
                  body=[{'op': 'replace', 'path': '/node_count', 'value': 3}]).status == 202
    d.sync('periodic sync (patch)')
    assert d.call('cluster show (not found)', 'GET', '/v1/clusters/' + NOT_FOUND).status == 404
    assert d.call('cluster delete (other project)', 'DELETE', '/v1/clusters/' + cl,
                  token='other-token').status == 404
    assert d.call('ct delete (in use)', 'DELETE', '/v1/clustertemplates/' + ct).status == 400
    r = d.call('cluster create (driver fails)', 'POST', '/v1/clusters',
               body=dict(cluster_body, name='fail-audit')).response
    assert r.status == 202
    d.failed_cluster = r.json['uuid']
    assert d.call('cluster delete by name (failed one)', 'DELETE',
                  '/v1/clusters/fail-audit').status == 204
    assert d.call('cluster delete', 'DELETE', '/v1/clusters/' + cl).status == 204
    d.sync('periodic sync (delete)')
    assert d.call('cluster show (deleted)', 'GET', '/v1/clusters/' + cl).status == 404
    assert d.call('ct delete', 'DELETE', '/v1/clustertemplates/' + ct).status == 204
    return d


def brief(notes):
    return ['%s %s %s' % (n['event_type'], n['priority'], n['payload']['outcome'])
            for n in notes]


def summary(note):
    p = note['payload']
    return (note['event_type'], note['priority'], p['outcome'], p['action'],
            p['reason']['reasonCode'], p['target']['typeURI'], p['target']['id'])


def the_one(step):
    assert len(step.ours) == 1, step
    return step.ours[0]


# ---------------------------------------------------------------------------
# our events, exactly
# ---------------------------------------------------------------------------

def test_clustertemplate_events(scenario):
    s, ct = scenario.steps, scenario.ct
    service_id = the_one(s['ct list'])['payload']['observer']['id']
    expected = {
        'ct create': ('magnum.clustertemplate.create', 'INFO', 'success', 'create', '201',
                      TEMPLATE, ct),
        'ct create (reader)': ('magnum.clustertemplate.create', 'ERROR', 'failure',
                               'create', '403', TEMPLATE, service_id),
        'ct show': ('magnum.clustertemplate.read', 'INFO', 'success', 'read', '200',
                    TEMPLATE, ct),
        'ct list': ('magnum.clustertemplate.list', 'INFO', 'success', 'read/list', '200',
                    TEMPLATE, service_id),
        'ct patch': ('magnum.clustertemplate.update', 'INFO', 'success', 'update', '200',
                     TEMPLATE, ct),
        'ct delete (in use)': ('magnum.clustertemplate.delete', 'ERROR', 'failure',
                               'delete', '400', TEMPLATE, ct),
        'ct delete': ('magnum.clustertemplate.delete', 'INFO', 'success', 'delete', '204',
                      TEMPLATE, ct),
    }
    for label, want in expected.items():
        assert summary(the_one(s[label])) == want, label
        # Magnum itself sends nothing for cluster templates
        assert s[label].magnum == [], label
    # names where the response shows them: the new name after the PATCH
    names = {label: the_one(s[label])['payload']['target'].get('name') for label in expected}
    assert names == {'ct create': 'audit-ct', 'ct create (reader)': None,
                     'ct show': 'audit-ct', 'ct list': None, 'ct patch': 'audit-ct-2',
                     'ct delete (in use)': None, 'ct delete': None}


def test_cluster_events(scenario):
    s, cl, failed = scenario.steps, scenario.cluster, scenario.failed_cluster
    service_id = the_one(s['cluster list'])['payload']['observer']['id']
    expected = {
        'cluster create (reader)': ('magnum.cluster.create', 'ERROR', 'failure', 'create',
                                    '403', CLUSTER, service_id),
        'cluster create': ('magnum.cluster.create', 'INFO', 'pending', 'create', '202',
                           CLUSTER, cl),
        'cluster show': ('magnum.cluster.read', 'INFO', 'success', 'read', '200', CLUSTER,
                         cl),
        'cluster list': ('magnum.cluster.list', 'INFO', 'success', 'read/list', '200',
                         CLUSTER, service_id),
        'cluster resize': ('magnum.cluster.update', 'INFO', 'pending', 'update/resize',
                           '202', CLUSTER, cl),
        'cluster patch (update in progress)': ('magnum.cluster.update', 'INFO', 'pending',
                                               'update', '202', CLUSTER, cl),
        'cluster patch node_count': ('magnum.cluster.update', 'INFO', 'pending', 'update',
                                     '202', CLUSTER, cl),
        'cluster show (not found)': ('magnum.cluster.read', 'ERROR', 'failure', 'read',
                                     '404', CLUSTER, NOT_FOUND),
        'cluster delete (other project)': ('magnum.cluster.delete', 'ERROR', 'failure',
                                           'delete', '404', CLUSTER, cl),
        'cluster create (driver fails)': ('magnum.cluster.create', 'INFO', 'pending',
                                          'create', '202', CLUSTER, failed),
        # the path names the cluster by name: the record fetched before the call
        # (route key record) gives its uuid, as Magnum's own event has it.
        # 204, but the conductor is still deleting: pending, as Magnum says (async route)
        'cluster delete by name (failed one)': ('magnum.cluster.delete', 'INFO', 'pending',
                                                'delete', '204', CLUSTER, failed),
        'cluster delete': ('magnum.cluster.delete', 'INFO', 'pending', 'delete', '204',
                           CLUSTER, cl),
        'cluster show (deleted)': ('magnum.cluster.read', 'ERROR', 'failure', 'read', '404',
                                   CLUSTER, cl),
    }
    for label, want in expected.items():
        assert summary(the_one(s[label])) == want, label
    # the show by name is named by the uuid the response carries, with its name
    assert the_one(s['cluster show'])['payload']['target']['name'] == 'audit-cl'
    # the conductor's periodic job is invisible to an API filter
    for label in ('periodic sync (create)', 'periodic sync (resize)',
                  'periodic sync (patch)', 'periodic sync (delete)'):
        assert s[label].ours == [], label
    # every step of the scenario is covered above or in the template test
    covered = set(expected) | {label for label in s if label.startswith(('ct ', 'periodic'))}
    assert covered == set(s)


def test_request_path_and_reason(scenario):
    for step in scenario.order:
        for note in step.ours:
            p = note['payload']
            assert p['reason'] == {'reasonType': 'HTTP',
                                   'reasonCode': str(step.response.status)}, step
    paths = {label: the_one(scenario.steps[label])['payload']['requestPath'] for label in
             ('cluster resize', 'cluster show', 'ct list')}
    assert paths == {
        'cluster resize': '/v1/clusters/%s/actions/resize' % scenario.cluster,
        'cluster show': '/v1/clusters/audit-cl', 'ct list': '/v1/clustertemplates'}


def test_initiator_is_the_token_user(scenario):
    users = {'admin-token': ('u-admin', ['admin', 'member', 'reader']),
             'reader-token': ('u-reader', ['reader']),
             'other-token': ('u-other', ['member', 'reader'])}
    seen = set()
    for step in scenario.order:
        for note in step.ours:
            init = note['payload']['initiator']
            user = init['id']
            token = {u: t for t, (u, _) in users.items()}[user]
            seen.add(token)
            project = magnum_app.TOKENS[token][1]
            request_id = step.response.headers['x-openstack-request-id']
            assert init == {
                'typeURI': USER_TYPE, 'id': user, 'user_id': user, 'name': user,
                'domain_id': 'default', 'domain': 'Default', 'project_id': project,
                'project_name': project, 'project_domain_id': 'default',
                'project_domain_name': 'Default', 'identity_status': 'Confirmed',
                'roles': users[token][1],
                'host': {'address': CLIENT_ADDR, 'agent': USER_AGENT},
                'request_id': request_id}, step.label
    assert seen == set(users)
    assert the_one(scenario.steps['cluster create (reader)'])['payload']['initiator'][
        'id'] == 'u-reader'
    assert the_one(scenario.steps['cluster delete (other project)'])['payload'][
        'initiator']['project_id'] == 'p-other'


def test_observer_follows_the_target(scenario):
    from audit_notifier.events import cadf as our_cadf
    ids = set()
    for step in scenario.order:
        for note in step.ours:
            p = note['payload']
            assert p['observer']['typeURI'] == p['target']['typeURI']
            assert p['observer']['name'] == 'magnum'
            ids.add(p['observer']['id'])
    # one stable id for this service instance, derived from its publisher_id
    assert ids == {our_cadf.observer_id(OUR_PUBLISHER)}
    uuid.UUID(ids.pop())


def test_payloads_are_valid_cadf_and_carry_no_token(scenario):
    count = 0
    for step in scenario.order:
        for note in step.ours:
            cadf_check.assert_valid(note['payload'])
            text = json.dumps(note)
            for token in magnum_app.TOKENS:          # the token ids and their audit ids
                assert token not in text, step.label
            assert 'token' not in text.lower(), step.label
            assert note['publisher_id'] == OUR_PUBLISHER
            count += 1
    assert count == 20


def test_reads_and_lists_can_be_off(magnum_env, tmp_path):
    app = magnum_env.load_app(audit_filter=audit_filter(
        tmp_path / 'spool', audit_reads='false', audit_lists='false',
        publisher_id='container-infra.audit-writes'), name='audit-writes')
    d = Driver(magnum_env, app)
    try:
        r = magnum_env.create_cluster_template(name='writes-only')
        assert r.status == 201
        ct = r.json['uuid']
        before = len(magnum_app.all_notifications())
        for method, path, status in (('GET', '/v1/clustertemplates', 200),
                                     ('GET', '/v1/clustertemplates/detail', 200),
                                     ('GET', '/v1/clustertemplates/' + ct, 200),
                                     ('GET', '/v1/clusters', 200),
                                     ('GET', '/v1/clusters/' + NOT_FOUND, 404),
                                     ('DELETE', '/v1/clustertemplates/' + ct, 204)):
            assert magnum_env.request(method, path, app=app).status == status
        assert d.mw.delivery.flush(10)
        new = [m for m in magnum_app.all_notifications()[before:]
               if m['publisher_id'] == 'container-infra.audit-writes']
        # only the write; a failed read is not audited either
        assert [(m['event_type'], m['payload']['outcome'], m['payload']['target']['id'])
                for m in new] == [('magnum.clustertemplate.delete', 'success', ct)]
    finally:
        d.mw.delivery.close()


def test_no_cluster_data_without_lookups(magnum_env, tmp_path):
    """record_lookups = false: the 202 {"uuid"} is all the filter has, so the event
    names the cluster by uuid only, without cluster_data (documented)."""
    app = magnum_env.load_app(audit_filter=audit_filter(
        tmp_path / 'spool', record_lookups='false', audit_reads='false',
        publisher_id='container-infra.audit-nolookup'), name='audit-nolookup')
    d = Driver(magnum_env, app)
    try:
        r = magnum_env.create_cluster_template(name='nolookup-ct')
        assert r.status == 201
        before = len(magnum_app.all_notifications())
        r = magnum_env.request('POST', '/v1/clusters', app=app, body={
            'name': 'nolookup-cl', 'cluster_template_id': r.json['uuid'],
            'master_count': 1, 'node_count': 1})
        assert r.status == 202, r.text
        magnum_env.wait_idle()
        assert d.mw.delivery.flush(10)
        new = magnum_app.all_notifications()[before:]
        [ours] = [m for m in new if m['publisher_id'] == 'container-infra.audit-nolookup']
        [theirs] = [m for m in new if m['publisher_id'] == MAGNUM_PUBLISHER]
        assert ours['payload']['target'] == {'typeURI': CLUSTER, 'id': r.json['uuid']}
        assert [a['name'] for a in theirs['payload']['target']['attachments']] == \
            ['cluster_data']
        # leave no cluster behind for the periodic job of later tests
        assert magnum_env.request('DELETE', '/v1/clusters/' + r.json['uuid']).status == 204
        magnum_env.wait_for_cluster(r.json['uuid'], 'DELETED')
    finally:
        d.mw.delivery.close()


def test_magnum_keeps_its_threading_backend(magnum_env):
    """Loading the filter (oslo.messaging) in Magnum's process leaves Magnum on the
    oslo_service backend its package selects (threading), as in magnum-api."""
    from oslo_service import backend
    assert backend.get_backend_type() == backend.BackendType.THREADING


def test_delete_by_name_names_the_uuid(scenario):
    """DELETE /v1/clusters/{name}: the route's record (fetched in-process before the
    call, only because the path is not a UUID) names the target by uuid."""
    step = scenario.steps['cluster delete by name (failed one)']
    assert [n['payload']['target']['id'] for n in step.magnum] == [scenario.failed_cluster]
    assert the_one(step)['payload']['target']['id'] == scenario.failed_cluster


# ---------------------------------------------------------------------------
# against Magnum's own notifications
# ---------------------------------------------------------------------------

def flatten(d, prefix=''):
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and empty dicts are leaves."""
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, prefix + key + '.'))
        else:
            out[prefix + key] = value
    return out


def attachment_structure(note):
    """The envelope with each target attachment's content reduced to its sorted keys:
    the content is the cluster at two different moments (our look-up after the call,
    Magnum's conductor before its driver call), compared in test_cluster_data_is_magnums."""
    note = json.loads(json.dumps(note))
    for att in note['payload']['target'].get('attachments', []):
        att['content'] = sorted(att['content'])
    return note


def field_differences(ours, theirs):
    """{field: presence} of every envelope/payload field whose values differ (target
    attachments by structure)."""
    a, b = flatten(attachment_structure(ours)), flatten(attachment_structure(theirs))
    out = {}
    for field in set(a) | set(b):
        if field not in b:
            out[field] = 'ours-only'
        elif field not in a:
            out[field] = 'magnum-only'
        elif a[field] != b[field]:
            out[field] = 'both'
    return out


def load_differences():
    with open(DIFFERENCES_FILE) as f:
        return yaml.safe_load(f)


def test_same_fields_as_magnum_own(scenario):
    """The fields Ceilometer and auditors key on agree with Magnum's own event
    of the same call (the exceptions are in the differences file)."""
    same = ('event_type', 'priority', 'payload.typeURI', 'payload.eventType',
            'payload.target.id', 'payload.target.typeURI', 'payload.target.name',
            'payload.initiator.typeURI',
            'payload.initiator.user_id', 'payload.initiator.project_id',
            'payload.observer.typeURI')
    for label in COMPARED_STEPS:
        step = scenario.steps[label]
        assert len(step.ours) == 1 and len(step.magnum) == 1, step
        a, b = flatten(step.ours[0]), flatten(step.magnum[0])
        assert {f: a[f] for f in same} == {f: b[f] for f in same}, label
        assert a['payload.target.id'] == scenario.cluster
    actions = {label: (flatten(scenario.steps[label].ours[0])['payload.action'],
                       flatten(scenario.steps[label].magnum[0])['payload.action'])
               for label in COMPARED_STEPS}
    outcomes = {label: (scenario.steps[label].ours[0]['payload']['outcome'],
                        scenario.steps[label].magnum[0]['payload']['outcome'])
                for label in COMPARED_STEPS}
    assert actions == {'cluster create': ('create', 'create'),
                       'cluster resize': ('update/resize', 'update'),
                       'cluster patch node_count': ('update', 'update'),
                       'cluster delete': ('delete', 'delete')}
    assert outcomes == {'cluster create': ('pending', 'pending'),
                        'cluster resize': ('pending', 'pending'),
                        'cluster patch node_count': ('pending', 'pending'),
                        'cluster delete': ('pending', 'pending')}


#: cluster_data keys whose value does not move while a cluster is created, resized,
#: updated or deleted by Magnum's conductor (the others -- status, status_reason,
#: updated_at, stack_id, health_status, node_count -- are the cluster at two moments)
STABLE_CLUSTER_DATA = ('project_id', 'cluster_template_id', 'keypair', 'docker_volume_size:',
                       'labels', 'master_flavor_id', 'flavor_id', 'create_timeout',
                       'api_address', 'discovery_url', 'node_addresses', 'master_addresses',
                       'master_count')
#: every step where Magnum sends its own event for the same cluster during the call
CLUSTER_DATA_STEPS = COMPARED_STEPS + ('cluster patch (update in progress)',
                                       'cluster create (driver fails)',
                                       'cluster delete by name (failed one)')


def test_cluster_data_is_magnums(scenario):
    """Our cluster events carry Magnum's cluster_data attachment: same typeURI, name
    and content keys ('docker_volume_size:' with its colon), the same target name,
    and the same values where the cluster does not change between Magnum's event and
    our look-up; the changing ones are the cluster as GET /v1/clusters/{uuid} showed
    it after the call."""
    for label in CLUSTER_DATA_STEPS:
        step = scenario.steps[label]
        ours, theirs = the_one(step)['payload']['target'], step.magnum[0]['payload']['target']
        assert ours['name'] == theirs['name'], label
        [att] = ours['attachments']
        [magnum_att] = theirs['attachments']
        assert (att['typeURI'], att['name']) == (magnum_att['typeURI'], magnum_att['name']) \
            == ('service/magnum/cluster', 'cluster_data'), label
        assert list(att['content']) == list(magnum_att['content']), label     # order too
        content, magnum_content = att['content'], magnum_att['content']
        assert {k: content[k] for k in STABLE_CLUSTER_DATA} == \
            {k: magnum_content[k] for k in STABLE_CLUSTER_DATA}, label
        # Magnum's time format (naive UTC, microseconds); Magnum's own conductor
        # sometimes shows the database's whole second
        assert content['created_at'][:19] == magnum_content['created_at'][:19], label
        assert len(content['created_at']) == len('2026-01-01T00:00:00.000000'), label
        assert content['status'].startswith(('CREATE_', 'UPDATE_', 'DELETE_')), label
    # the cluster at the create: the conductor stored it in CREATE_IN_PROGRESS
    create = the_one(scenario.steps['cluster create'])['payload']['target']
    assert create['attachments'][0]['content']['status'] == 'CREATE_IN_PROGRESS'
    assert create['attachments'][0]['content']['node_count'] == 1
    # the delete by name: the cluster the path named, after its failed create
    failed = the_one(scenario.steps['cluster delete by name (failed one)'])
    assert failed['payload']['target']['attachments'][0]['content']['status'].startswith(
        ('CREATE_FAILED', 'DELETE_'))
    # only the cluster writes Magnum notifies carry it
    for step in scenario.order:
        if step.label in CLUSTER_DATA_STEPS:
            continue
        for note in step.ours:
            assert 'attachments' not in note['payload']['target'], step.label


def test_field_differences_are_exactly_the_documented_ones(scenario):
    documented = load_differences()['fields']
    observed = {}
    for label in COMPARED_STEPS:
        step = scenario.steps[label]
        observed[label] = field_differences(step.ours[0], step.magnum[0])
    problems = []
    for entry in documented:
        assert set(entry.get('steps', COMPARED_STEPS)) <= set(COMPARED_STEPS), entry
    for label in COMPARED_STEPS:
        entries = [e for e in documented if label in e.get('steps', COMPARED_STEPS)]
        want = {e['field']: e['presence'] for e in entries}
        assert len(want) == len(entries), 'a field is listed twice for %s' % label
        if observed[label] != want:
            problems.append('%s: undocumented %s; documented but not observed %s' % (
                label,
                sorted(set(observed[label].items()) - set(want.items())),
                sorted(set(want.items()) - set(observed[label].items()))))
    assert not problems, '\n'.join(problems)
    # documented exact values
    for entry in documented:
        for label in entry.get('steps', COMPARED_STEPS):
            step = scenario.steps[label]
            a, b = flatten(step.ours[0]), flatten(step.magnum[0])
            if 'ours_value' in entry:
                assert a[entry['field']] == entry['ours_value'], (label, entry['field'])
            if 'magnum_value' in entry:
                assert b[entry['field']] == entry['magnum_value'], (label, entry['field'])
    for entry in documented:
        assert entry.get('reason') and entry.get('ours') and entry.get('magnum'), entry


def test_event_differences_are_exactly_the_documented_ones(scenario):
    documented = {e['step']: (e['ours'], e['magnum']) for e in
                  load_differences()['events']}
    for e in load_differences()['events']:
        assert e.get('reason'), e
    observed = {}
    for step in scenario.order:
        ours, theirs = brief(step.ours), brief(step.magnum)
        if ours != theirs:
            observed[step.label] = (ours, theirs)
    assert observed == documented
    # and where they agree, they agree one for one
    agreeing = [s.label for s in scenario.order if s.label not in observed]
    assert agreeing == ['cluster create', 'cluster resize', 'cluster patch node_count',
                        'cluster delete by name (failed one)', 'cluster delete']


def test_magnum_own_events_are_what_the_capture_recorded(scenario):
    """Same Magnum sequence as data/magnum23_own_notifications.json (harness
    capture without any filter): the filter changes nothing in Magnum."""
    with open(os.path.join(HERE, 'data', 'magnum23_own_notifications.json')) as f:
        capture = json.load(f)
    captured = [(n['event_type'], n['priority'], n['payload']['outcome'])
                for s in capture['steps'] for n in s.get('notifications', [])]
    ours = [(n['event_type'], n['priority'], n['payload']['outcome'])
            for s in scenario.order for n in s.magnum]
    assert ours == captured


# ---------------------------------------------------------------------------
# Ceilometer
# ---------------------------------------------------------------------------

_DEFINITION = []


def ceilometer_traits(envelope):
    """Ceilometer's trait extraction (jsonpath_rw_ext, TraitDefinition.to_trait)
    with its magnum.cluster.* definition: (traits with a value, all names)."""
    import fnmatch
    if not _DEFINITION:
        definition = ceilo.magnum_event_definition('magnum.cluster.*')
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


def test_ceilometer_cluster_traits(scenario):
    ours = [n for s in scenario.order for n in s.ours
            if n['event_type'].startswith('magnum.cluster.')]
    assert len(ours) == 13
    for note in ours:
        traits, names = ceilometer_traits(note)
        assert set(traits) == names, (note['event_type'], names - set(traits))
        p = note['payload']
        assert traits['initiator_host_agent'] == USER_AGENT
        assert traits['initiator_host_address'] == CLIENT_ADDR
        assert traits['initiator_name'] == traits['initiator_id'] == p['initiator']['id']
        assert traits['target_typeURI'] == traits['observer_typeURI'] == CLUSTER
        assert (traits['action'], traits['outcome'], traits['target_id']) == (
            p['action'], p['outcome'], p['target']['id'])
        assert traits['eventTime'].tzinfo is None
    # Magnum's own events lack the initiator's name and host: those traits are absent
    own = [n for s in scenario.order for n in s.magnum]
    assert len(own) == 13
    for note in own:
        traits, names = ceilometer_traits(note)
        assert names - set(traits) == {'initiator_name', 'initiator_host_agent',
                                       'initiator_host_address'}
