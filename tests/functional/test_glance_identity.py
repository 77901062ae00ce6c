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

"""Identity trust against the REAL Glance 33 and keystonemiddleware's REAL auth_token
(``delay_auth_decision = true``; tokens from its AuthTokenFixture).

* filter after authtoken, a valid token and forged identity headers: auth_token
  replaces the headers, the initiator is the token's user, ``Confirmed``;
* filter after authtoken, a bad token and forged headers: auth_token removes them and
  says ``Invalid``, Glance answers 401; the initiator is ``unknown``, ``Invalid``;
* filter BEFORE authtoken (a wrong pipeline): the headers the filter sees are the
  client's; the initiator is ``unknown``, ``Unauthenticated``, the forged ids are kept
  under ``claimed``, image.send names no receiver, and one warning is logged.
"""

from __future__ import annotations

import datetime
import logging
import os

import pytest

try:
    from . import glance_app
except ImportError:
    import glance_app

from tests.support import cadf as cadf_support

pytestmark = pytest.mark.glance

USER_TYPE = 'service/security/account/user'
TOKEN = 'identity-test-token'
# what a client sends to pass itself off as an admin of another project
FORGED = {'X-Identity-Status': 'Confirmed', 'X-User-Id': 'u-forged',
          'X-User-Name': 'forged-admin', 'X-Project-Id': 'p-victim',
          'X-Roles': 'admin,member', 'User-Agent': 'forger/1.0'}
WARNING = ('no keystonemiddleware auth_token before audit_notifier: initiators are '
           'recorded as unauthenticated claims; put the filter after authtoken')
AFTER = 'authtoken audit context'
BEFORE = 'audit authtoken context'


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope='module')
def warnings_logged():
    """WARNING+ lines of the filter's middleware logger while the module runs."""
    handler = Records()
    logger = logging.getLogger('audit_notifier.middleware')
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.fixture(scope='module')
def identity_token(glance_env):
    """A token of the fixture whose every identity field the test chose."""
    expires = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
               + datetime.timedelta(days=1))
    glance_env.auth_fixture.add_token_data(
        token_id=TOKEN, expires=expires, user_id='u-identity', user_name='identity-user',
        user_domain_id='default', user_domain_name='Default', project_id='p-demo',
        project_name='demo', project_domain_id='default', project_domain_name='Default',
        role_list=['member', 'reader'])
    return TOKEN


class Pipeline:
    """Glance with the audit filter at a chosen place of the paste pipeline."""

    def __init__(self, env, name, where):
        self.env = env
        self.publisher_id = 'image.audit-identity-' + name
        audit_filter = {'formats': 'cadf,glance', 'driver': 'test',
                        'publisher_id': self.publisher_id,
                        'journal_dir': os.path.join(env.base_dir, 'journal-identity-' + name)}
        ini = glance_app._paste_ini(audit_filter)
        assert ini.count(AFTER) == 1
        path = os.path.join(env.base_dir, 'etc', 'glance-api-paste-identity-%s.ini' % name)
        with open(path, 'w') as f:
            f.write(ini.replace(AFTER, where))
        from glance.common import config as glance_config
        self.app = glance_config.load_paste_app(glance_app.PASTE_APP_NAME, conf_file=path)
        self.mw = glance_app.find_audit_middleware(self.app)

    def call(self, method, path, token, headers=None, **kw):
        """(response, our notifications for the call)."""
        before = len(self.ours())
        resp = self.env.request(method, path, token=token, headers=headers, app=self.app,
                                remote_addr='203.0.113.7', **kw)
        assert self.mw.delivery.flush(30.0), 'audit sender did not drain'
        return resp, self.ours()[before:]

    def ours(self):
        return [m for m in glance_app.all_notifications()
                if m.get('publisher_id') == self.publisher_id]


@pytest.fixture(scope='module')
def pipelines(glance_env, warnings_logged):
    made = {'after': Pipeline(glance_env, 'after', AFTER),
            'before': Pipeline(glance_env, 'before', BEFORE)}
    yield made
    for pipeline in made.values():
        pipeline.mw.delivery.close()


@pytest.fixture(scope='module')
def image_id(glance_env, identity_token):
    """An active image of project p-demo (Glance without the filter)."""
    r = glance_env.request('POST', '/v2/images', token=identity_token, body={
        'name': 'identity', 'disk_format': 'raw', 'container_format': 'bare'})
    assert r.status == 201, r.text
    iid = r.json['id']
    r = glance_env.request('PUT', '/v2/images/%s/file' % iid, token=identity_token,
                           body=b'0123456789', content_type='application/octet-stream')
    assert r.status == 204, r.text
    return iid


def only(notes, event_type):
    found = [n for n in notes if n['event_type'] == event_type]
    assert len(found) == 1, [n['event_type'] for n in notes]
    return found[0]['payload']


def test_after_authtoken_forged_headers_are_replaced(pipelines, image_id, identity_token,
                                                     warnings_logged):
    resp, notes = pipelines['after'].call('GET', '/v2/images/%s' % image_id, identity_token,
                                          headers=FORGED)
    assert resp.status == 200, resp.text
    payload = only(notes, 'audit.image.read')
    assert payload['initiator'] == {
        'typeURI': USER_TYPE, 'id': 'u-identity', 'user_id': 'u-identity',
        'name': 'identity-user', 'domain_id': 'default', 'domain': 'Default',
        'project_id': 'p-demo', 'project_name': 'demo', 'project_domain_id': 'default',
        'project_domain_name': 'Default', 'roles': ['member', 'reader'],
        'identity_status': 'Confirmed',
        'host': {'address': '203.0.113.7', 'agent': 'forger/1.0'},
        'request_id': resp.headers['x-openstack-request-id']}
    cadf_support.assert_valid(payload)
    assert WARNING not in warnings_logged


def test_after_authtoken_invalid_token_is_unknown(pipelines, image_id, warnings_logged):
    """delay_auth_decision: auth_token passes the call on as Invalid (without the
    forged headers); Glance's context middleware answers 401."""
    resp, notes = pipelines['after'].call('GET', '/v2/images/%s' % image_id, 'not-a-token',
                                          headers=FORGED)
    assert resp.status == 401, resp.text
    payload = only(notes, 'audit.image.read')
    assert (payload['outcome'], payload['reason']['reasonCode']) == ('failure', '401')
    # (Glance's 401 carries no request id)
    assert 'x-openstack-request-id' not in resp.headers
    assert payload['initiator'] == {
        'typeURI': USER_TYPE, 'id': 'unknown', 'identity_status': 'Invalid',
        'host': {'address': '203.0.113.7', 'agent': 'forger/1.0'}}
    cadf_support.assert_valid(payload)
    assert WARNING not in warnings_logged


def test_before_authtoken_headers_are_unchecked_claims(pipelines, image_id, identity_token,
                                                       warnings_logged):
    """Glance serves the token's user (auth_token, after the filter, replaced the
    forged headers); the filter saw only the client's claims and says so."""
    before = warnings_logged.count(WARNING)
    resp, notes = pipelines['before'].call('GET', '/v2/images/%s/file' % image_id,
                                           identity_token, headers=FORGED)
    assert resp.status == 200 and resp.body == b'0123456789', resp.text
    payload = only(notes, 'audit.image.download')
    assert payload['initiator'] == {
        'typeURI': USER_TYPE, 'id': 'unknown', 'identity_status': 'Unauthenticated',
        'claimed': {'user_id': 'u-forged', 'name': 'forged-admin', 'project_id': 'p-victim',
                    'roles': ['admin', 'member']},
        'host': {'address': '203.0.113.7', 'agent': 'forger/1.0'},
        'request_id': resp.headers['x-openstack-request-id']}
    cadf_support.assert_valid(payload)
    send = only(notes, 'image.send')
    assert (send['receiver_tenant_id'], send['receiver_user_id'], send['bytes_sent']) == \
        (None, None, 10)
    # one warning for this filter, however many calls
    pipelines['before'].call('GET', '/v2/images/%s' % image_id, identity_token)
    assert warnings_logged.count(WARNING) == before + 1


def test_before_authtoken_glance_itself_served_the_token_user(pipelines, image_id,
                                                              identity_token):
    """The forgery did not change what Glance did (auth_token after the filter
    replaced the headers): Glance's own image.send names the token's user."""
    glance_app.reset_notifications()
    resp, _ = pipelines['before'].call('GET', '/v2/images/%s/file' % image_id,
                                       identity_token, headers=FORGED)
    assert resp.status == 200
    [own] = [m for m in glance_app.glance_own_notifications()
             if m['event_type'] == 'image.send']
    assert (own['payload']['receiver_user_id'], own['payload']['receiver_tenant_id']) == \
        ('u-identity', 'p-demo')
