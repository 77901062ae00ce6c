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

"""audit_notifier's out-of-band API driven by the REAL Magnum 23 conductor.

Magnum learns that a cluster operation finished (or failed) in its conductor:
the RPC handlers send ``pending`` and ``failure``, the periodic
``ClusterUpdateJob`` sends ``success`` (admin context) when Heat -- here the
fake driver -- reports ``*_COMPLETE``.  None of that passes through the API, so
a WSGI filter cannot see it.  A conductor hook reports it with the public API::

    notifier = audit_notifier.get_notifier(route_map='magnum', ...)
    notifier.cluster(action, outcome, cluster, context=context)

This test installs such a hook the simplest way an operator could: it wraps
``magnum.conductor.utils.notify_about_cluster_operation`` (every call site in
Magnum 23 looks it up on the module: ``conductor_utils.notify_about_...``), so
each time Magnum notifies, our notifier is called with the same arguments
right after.  Then every step (API call or periodic run) must give our events
one for one with Magnum's own: same event_type, priority, outcome, action,
target id, typeURI and name, same user and project, in the same order.
"""

# magnum first, as in magnum-api: its package selects oslo_service's threading
# backend, which importing oslo_messaging (audit_notifier does) would otherwise
# settle as eventlet for the whole session Magnum (magnum/__init__.py warns)
import magnum  # noqa: F401,I100

import json
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:      # tests.support, audit_notifier from the work tree
    sys.path.insert(0, _ROOT)

from tests.support import cadf as cadf_check  # noqa: E402

try:  # tests/magnum as a package
    from . import magnum_app
except ImportError:  # rootdir/prepend import mode, no __init__.py
    import magnum_app

import audit_notifier  # noqa: E402

pytestmark = pytest.mark.magnum

HOOK_PUBLISHER = 'container-infra.conductor-hook'
MAGNUM_PUBLISHER = magnum_app.MAGNUM_PUBLISHER_ID


@pytest.fixture
def hooked(magnum_env, tmp_path, monkeypatch):
    """Our notifier, called by a wrapper around Magnum's own notify function."""
    from magnum.conductor import utils as conductor_utils
    notifier = audit_notifier.get_notifier(
        route_map='magnum', driver='test', formats='cadf', publisher_id=HOOK_PUBLISHER,
        journal_dir=str(tmp_path / 'spool'))
    original = conductor_utils.notify_about_cluster_operation
    calls = []

    def notify_about_cluster_operation(context, action, outcome, cluster_obj=None):
        original(context, action, outcome, cluster_obj)
        calls.append((action, outcome))
        notifier.cluster(action, outcome, cluster_obj, context=context)

    magnum_env.wait_idle()
    monkeypatch.setattr(conductor_utils, 'notify_about_cluster_operation',
                        notify_about_cluster_operation)
    notifier.calls = calls
    yield notifier
    magnum_env.wait_idle()
    monkeypatch.undo()
    notifier.close()


def view(note):
    """What must agree between Magnum's notification and ours."""
    p = note['payload']
    init = p['initiator']
    return (note['event_type'], note['priority'], p['outcome'], p['action'],
            p['target']['id'], p['target']['typeURI'], p['target'].get('name'),
            p['observer']['typeURI'], init['typeURI'], init.get('user_id'),
            init.get('project_id'))


def test_conductor_outcomes_mirrored_one_for_one(magnum_env, magnum_template, hooked):
    env = magnum_env
    steps = []

    def step(label, action):
        env.wait_idle()
        assert hooked.flush(10)
        before = len(magnum_app.all_notifications())
        result = action()
        env.wait_idle()
        assert hooked.flush(10)
        new = magnum_app.all_notifications()[before:]
        ours = [m for m in new if m['publisher_id'] == HOOK_PUBLISHER]
        theirs = [m for m in new if m['publisher_id'] == MAGNUM_PUBLISHER]
        assert len(ours) + len(theirs) == len(new)
        steps.append((label, ours, theirs))
        return result

    r = step('create', lambda: env.create_cluster(magnum_template['uuid'], name='hook-cl',
                                                  token='member-token'))
    assert r.status == 202, r.text
    uuid = r.json['uuid']
    step('periodic (create)', env.sync_cluster_status)
    r = step('resize', lambda: env.request('POST', '/v1/clusters/%s/actions/resize' % uuid,
                                           token='member-token', body={'node_count': 2},
                                           microversion='1.7'))
    assert r.status == 202, r.text
    r = step('patch while updating', lambda: env.request(
        'PATCH', '/v1/clusters/' + uuid, token='member-token',
        body=[{'op': 'replace', 'path': '/node_count', 'value': 3}]))
    assert r.status == 202, r.text
    step('periodic (resize)', env.sync_cluster_status)
    r = step('create failing', lambda: env.create_cluster(magnum_template['uuid'],
                                                          name='fail-hook'))
    assert r.status == 202
    failed = r.json['uuid']
    assert step('delete failed', lambda: env.request(
        'DELETE', '/v1/clusters/' + failed)).status == 204
    step('periodic (delete failed)', env.sync_cluster_status)
    assert step('delete', lambda: env.request('DELETE', '/v1/clusters/' + uuid,
                                              token='member-token')).status == 204
    step('periodic (delete)', env.sync_cluster_status)
    assert env.request('GET', '/v1/clusters/' + uuid).status == 404

    # Magnum's own sequence, as the harness capture shows it
    own = [(label, n['event_type'], n['priority'], n['payload']['outcome'],
            n['payload']['target']['id']) for label, _, theirs in steps for n in theirs]
    assert own == [
        ('create', 'magnum.cluster.create', 'INFO', 'pending', uuid),
        ('periodic (create)', 'magnum.cluster.create', 'INFO', 'success', uuid),
        ('resize', 'magnum.cluster.update', 'INFO', 'pending', uuid),
        ('patch while updating', 'magnum.cluster.update', 'ERROR', 'failure', uuid),
        ('periodic (resize)', 'magnum.cluster.update', 'INFO', 'success', uuid),
        ('create failing', 'magnum.cluster.create', 'INFO', 'pending', failed),
        ('create failing', 'magnum.cluster.create', 'ERROR', 'failure', failed),
        ('delete failed', 'magnum.cluster.delete', 'INFO', 'pending', failed),
        ('periodic (delete failed)', 'magnum.cluster.delete', 'INFO', 'success', failed),
        ('delete', 'magnum.cluster.delete', 'INFO', 'pending', uuid),
        ('periodic (delete)', 'magnum.cluster.delete', 'INFO', 'success', uuid),
    ]
    # ours: one for one, step by step, in the same order
    for label, ours, theirs in steps:
        assert [view(n) for n in ours] == [view(n) for n in theirs], label
    assert len(hooked.calls) == 11

    # our events: valid CADF, initiator from the request context
    for label, ours, magnum_notes in steps:
        for note, theirs in zip(ours, magnum_notes):
            payload = note['payload']
            cadf_check.assert_valid(payload)
            init = payload['initiator']
            if 'user_id' in theirs['payload']['initiator']:
                # the API call's context: the token's user, named as the user
                assert init['id'] == init['user_id'] == \
                    theirs['payload']['initiator']['user_id'], label
                assert init['roles'] and init['request_id'].startswith('req-'), label
            else:
                # the periodic job's admin context has no user
                assert label.startswith('periodic') and init['id'] == 'unknown', label
                assert 'user_id' not in init
            assert 'token' not in json.dumps(note).lower()
            # the same cluster object at the same moment: Magnum's cluster_data exactly
            # (keys in Magnum's order, 'docker_volume_size:' with its colon)
            assert payload['target']['attachments'] == \
                theirs['payload']['target']['attachments'], label
            [att] = payload['target']['attachments']
            assert (att['typeURI'], att['name']) == ('service/magnum/cluster',
                                                     'cluster_data')
            assert list(att['content']) == list(
                theirs['payload']['target']['attachments'][0]['content'])
    users = {(n['payload']['initiator']['id'], n['payload']['initiator'].get('project_id'))
             for _, ours, _ in steps for n in ours}
    assert users == {('u-member', 'p-demo'), ('u-admin', 'p-demo'), ('unknown', None)}


def test_bay_resource_and_2016_event_names(magnum_env, tmp_path):
    """resource='bay' gives the 2016 magnum.bay.* events; with the options of the
    2016 user guide (cadf_event_type "{event}d", cadf_resource_info) its shape."""
    from magnum.common import context as magnum_context
    ctx = magnum_context.RequestContext(user_id='u-2016', project_id='p-2016',
                                        user_name='bay-user', roles=['member'])
    bay = {'uuid': '4c8b2f6a-6f51-4a9d-9b0b-3d2f0c1e2a11', 'name': 'bay-2016'}
    notifier = audit_notifier.get_notifier(
        route_map='magnum', driver='test', formats='cadf', publisher_id='magnum.host1234',
        cadf_event_type='{event}d', cadf_resource_info='true',
        journal_dir=str(tmp_path / 'spool'))
    try:
        before = len(magnum_app.all_notifications())
        notifier.cluster('create', 'pending', bay, context=ctx, resource='bay')
        notifier.cluster('create', 'success', bay, resource='bay')
        notifier.cluster('delete', 'failure', bay, context=ctx, resource='bay')
        assert notifier.flush(10)
        with pytest.raises(ValueError):
            notifier.cluster('resize', 'pending', bay, context=ctx)
        with pytest.raises(ValueError):
            notifier.cluster('create', 'done', bay, context=ctx)
        with pytest.raises(ValueError):
            notifier.cluster('create', 'pending', bay, context=ctx, resource='baymodel')
    finally:
        notifier.close()
    new = [m for m in magnum_app.all_notifications()[before:]
           if m['publisher_id'] == 'magnum.host1234']
    assert [(m['event_type'], m['priority'], m['payload']['outcome'],
             m['payload']['target']['typeURI'], m['payload']['observer']['typeURI'],
             m['payload']['resource_info'], m['payload']['initiator']['id'])
            for m in new] == [
        ('magnum.bay.created', 'INFO', 'pending', 'service/magnum/bay',
         'service/magnum/bay', bay['uuid'], 'u-2016'),
        ('magnum.bay.created', 'INFO', 'success', 'service/magnum/bay',
         'service/magnum/bay', bay['uuid'], 'unknown'),
        ('magnum.bay.deleted', 'ERROR', 'failure', 'service/magnum/bay',
         'service/magnum/bay', bay['uuid'], 'u-2016'),
    ]
    for m in new:
        payload = dict(m['payload'])
        payload.pop('resource_info')
        cadf_check.assert_valid(payload)
    assert new[0]['payload']['initiator']['name'] == 'bay-user'
    assert new[0]['payload']['target']['name'] == 'bay-2016'
