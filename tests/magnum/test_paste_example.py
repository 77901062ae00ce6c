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

"""etc/audit_notifier/magnum-api-paste.ini, as shipped, loaded by the real Magnum 23.

The file is loaded the way Magnum loads its own (``paste.deploy.loadapp``, app
``main``) on the session's Magnum (its config, database, conductor and auth_token
fixture); the filter reads its options from ``[audit_notifier]`` of that
configuration, as in a deployment, and ``route_map = magnum`` from the paste file.
"""

import configparser
import contextlib
import os

from audit_notifier.middleware import AuditMiddleware
from audit_notifier.opts import ALL_OPTS
from tests.support.peer import find_node

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, 'etc', 'audit_notifier', 'magnum-api-paste.ini')
PUBLISHER = 'container-infra.paste-example'


def _ini(path):
    parser = configparser.RawConfigParser()
    parser.optionxform = str
    with open(path) as f:
        parser.read_file(f)
    return parser


@contextlib.contextmanager
def shipped_pipeline(magnum_env, journal_dir):
    from oslo_config import cfg
    from paste import deploy
    cfg.CONF.register_opts(ALL_OPTS, group='audit_notifier')   # as the filter does
    with contextlib.ExitStack() as stack:
        stack.enter_context(magnum_env.override('journal_dir', journal_dir,
                                                'audit_notifier'))
        stack.enter_context(magnum_env.override('publisher_id', PUBLISHER,
                                                'audit_notifier'))
        app = deploy.loadapp('config:' + SHIPPED, name='main')
        audit = find_node(app, AuditMiddleware)
        try:
            yield app, audit
        finally:
            audit.delivery.close()


def test_magnum_paste_is_magnum_23_plus_the_filter():
    """Every section but the pipeline equals the api-paste.ini Magnum 23 installs;
    the pipeline is Magnum's with ``audit`` right after ``authtoken``."""
    import sys
    installed = os.path.join(sys.prefix, 'etc', 'magnum', 'api-paste.ini')
    if not os.path.isfile(installed):
        from tests.support.rabbit import peer_missing
        peer_missing('magnum is not installed in %s' % sys.prefix)
    theirs, ours = _ini(installed), _ini(SHIPPED)
    assert set(ours.sections()) == set(theirs.sections()) | {'filter:audit'}
    for section in theirs.sections():
        if section != 'pipeline:api':
            assert dict(ours.items(section)) == dict(theirs.items(section)), section
    names = ours.get('pipeline:api', 'pipeline').split()
    assert names[names.index('authtoken') + 1] == 'audit'
    assert [n for n in names if n != 'audit'] == \
        theirs.get('pipeline:api', 'pipeline').split()
    assert dict(ours.items('filter:audit')) == {
        'paste.filter_factory': 'audit_notifier.middleware:filter_factory',
        'route_map': 'magnum'}


def test_shipped_magnum_paste_puts_the_filter_after_authtoken(magnum_env, tmp_path):
    from magnum.api.middleware.auth_token import AuthTokenMiddleware
    from magnum.api.middleware.parsable_error import ParsableErrorMiddleware
    from pecan.middleware.recursive import RecursiveMiddleware

    with shipped_pipeline(magnum_env, str(tmp_path / 'journal')) as (app, audit):
        assert find_node(app, AuthTokenMiddleware)._app is audit
        # then Magnum's api_v1: pecan.make_app's outer layer, Magnum's error wrapper
        assert type(audit._app) is RecursiveMiddleware
        find_node(audit._app, ParsableErrorMiddleware)
        assert audit.route_map.service.name == 'magnum'
        assert audit.delivery.directory == str(tmp_path / 'journal')


def test_shipped_magnum_paste_answers_and_audits(magnum_env, magnum_notifications,
                                                 magnum_template, tmp_path):
    with shipped_pipeline(magnum_env, str(tmp_path / 'journal')) as (app, audit):
        r = magnum_env.request('GET', '/v1/clustertemplates/%s' % magnum_template['uuid'],
                               app=app)
        assert r.status == 200, r.text
        assert r.json['uuid'] == magnum_template['uuid']
        # no token: authtoken answers 401 itself, the filter never sees the call
        assert magnum_env.request('GET', '/v1/clusters', app=app, token=None).status == 401
        # the public version document passes authtoken, and is not audited
        assert magnum_env.request('GET', '/v1/', app=app, token=None).status == 200
        assert audit.delivery.flush(30.0)
    ours = [m for m in magnum_notifications.all_notifications()
            if m['publisher_id'] == PUBLISHER]
    assert [(m['event_type'], m['priority']) for m in ours] == \
        [('magnum.clustertemplate.read', 'INFO')]
    payload = ours[0]['payload']
    assert (payload['outcome'], payload['target']['id'], payload['initiator']['id']) == \
        ('success', magnum_template['uuid'], 'u-admin')
