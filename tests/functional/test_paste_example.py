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

"""etc/audit_notifier/glance-api-paste.ini, as shipped, loaded by the real Glance 33.

The file is loaded the way Glance loads its own (``load_paste_app('glance-api')``
with ``flavor = keystone``) on the session's Glance (its config, database, store
and auth_token fixture); the filter reads its options from ``[audit_notifier]`` of
that configuration, as in a deployment.
"""

import contextlib
import os

from audit_notifier.middleware import AuditMiddleware
from audit_notifier.opts import ALL_OPTS
from tests.support.peer import find_node

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, 'etc', 'audit_notifier', 'glance-api-paste.ini')
PUBLISHER = 'image.paste-example'


@contextlib.contextmanager
def shipped_pipeline(glance_env, journal_dir):
    from glance.common import config as glance_config
    from oslo_config import cfg
    cfg.CONF.register_opts(ALL_OPTS, group='audit_notifier')   # as the filter does
    with contextlib.ExitStack() as stack:
        stack.enter_context(glance_env.override('flavor', 'keystone', 'paste_deploy'))
        stack.enter_context(glance_env.override('journal_dir', journal_dir,
                                                'audit_notifier'))
        stack.enter_context(glance_env.override('publisher_id', PUBLISHER,
                                                'audit_notifier'))
        app = glance_config.load_paste_app('glance-api', conf_file=SHIPPED)
        audit = find_node(app, AuditMiddleware)
        try:
            yield app, audit
        finally:
            audit.delivery.close()


def test_shipped_glance_paste_puts_the_filter_after_authtoken(glance_env, tmp_path):
    from glance.api.middleware.context import ContextMiddleware
    from keystonemiddleware.auth_token import AuthProtocol

    with shipped_pipeline(glance_env, str(tmp_path / 'journal')) as (app, audit):
        assert find_node(app, AuthProtocol)._app is audit
        assert type(audit._app) is ContextMiddleware
        assert audit.route_map.service.name == 'glance'
        assert audit.delivery.directory == str(tmp_path / 'journal')


def test_shipped_glance_paste_answers_and_audits(glance_env, glance_notifications,
                                                 tmp_path):
    with shipped_pipeline(glance_env, str(tmp_path / 'journal')) as (app, audit):
        r = glance_env.request('POST', '/v2/images', app=app,
                               body={'name': 'paste-example', 'disk_format': 'raw',
                                     'container_format': 'bare'})
        assert r.status == 201, r.text
        image_id = r.json['id']
        # a bad token still reaches the filter (delay_auth_decision), Glance says 401
        assert glance_env.request('GET', '/v2/images', app=app, token='bogus').status == 401
        assert audit.delivery.flush(30.0)
    ours = [m for m in glance_notifications.all_notifications()
            if m['publisher_id'] == PUBLISHER]
    assert [(m['event_type'], m['priority']) for m in ours] == \
        [('audit.image.create', 'INFO'), ('audit.image.list', 'ERROR')]
    created, listed = (m['payload'] for m in ours)
    assert (created['outcome'], created['target']['id'], created['initiator']['id']) == \
        ('success', image_id, 'u-admin')
    assert (listed['outcome'], listed['reason']['reasonCode'],
            listed['initiator']['identity_status']) == ('failure', '401', 'Invalid')
    # Glance's own notification of the create went out as usual
    own = [m['event_type'] for m in glance_notifications.glance_own_notifications()]
    assert own == ['image.create']
