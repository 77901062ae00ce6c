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

"""Identity trust: the initiator names a user only when keystonemiddleware's auth_token
confirmed it (``keystone.token_auth`` in the environ, which no client can send);
identity headers without it are kept as claims, marked, and never fill a trusted field.

``token_auth`` objects are auth_token's real ``UserAuthPlugin`` (tests/support/identity.py);
tests/functional/test_glance_identity.py runs the real auth_token in front of Glance.
"""

from __future__ import annotations

import json
import logging

import pytest

from audit_notifier import exchange as exchange_mod
from audit_notifier import identity
from audit_notifier.events import cadf as cadf_events
from audit_notifier.facts import Facts
from tests.support import identity as auth

IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'
REQUEST_ID = 'req-0b6f5c2e-6d0a-4a43-9d55-1f2e3d4c5b6a'
USER_TYPE = 'service/security/account/user'
WARNING = ('no keystonemiddleware auth_token before audit_notifier: initiators are '
           'recorded as unauthenticated claims; put the filter after authtoken')

# what a client sends to pass itself off as an admin of another project
FORGED = {
    'X-Identity-Status': 'Confirmed',
    'X-User-Id': 'u-forged',
    'X-User-Name': 'admin',
    'X-Project-Id': 'p-victim',
    'X-Project-Name': 'victim',
    'X-Roles': 'admin,member',
    'User-Agent': 'curl/8.5.0',
}
FORGED_CLAIMS = {'user_id': 'u-forged', 'name': 'admin', 'project_id': 'p-victim',
                 'project_name': 'victim', 'roles': ['admin', 'member']}


def image_app(environ, start_response):
    body = json.dumps({'id': IMAGE, 'name': 'cirros', 'owner': 'p-owner',
                       'size': 4}).encode()
    start_response('201 Created', [('Content-Type', 'application/json'),
                                   ('X-OpenStack-Request-ID', REQUEST_ID)])
    return [body]


def download_app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                              ('Content-Length', '4'),
                              ('X-OpenStack-Request-ID', REQUEST_ID)])
    return [b'data']


def initiator_of(captured, wsgi, mw, headers, **extra):
    captured.reset()
    wsgi.run(mw, wsgi.environ('POST', '/v2/images', body=b'{}', headers=headers, **extra))
    return captured.one('audit.image.create')['payload']


# -- the recorded fact ------------------------------------------------------------------

@pytest.mark.parametrize('environ, expected', [
    # no auth_token: every header is a claim, X-Identity-Status too
    ({'HTTP_X_IDENTITY_STATUS': 'Confirmed', 'HTTP_X_USER_ID': 'u'}, identity.ABSENT),
    ({}, identity.ABSENT),
    # auth_token confirmed a user token (it set the status header itself)
    ({'HTTP_X_IDENTITY_STATUS': 'Confirmed', 'keystone.token_auth': auth.token_auth('u')},
     identity.CONFIRMED),
    # delay_auth_decision, no or a bad token: no user auth_ref, status Invalid
    ({'HTTP_X_IDENTITY_STATUS': 'Invalid', 'keystone.token_auth': auth.token_auth(None)},
     identity.INVALID),
    # a token that was fetched but then refused (expired, bind): auth_ref kept, Invalid
    ({'HTTP_X_IDENTITY_STATUS': 'Invalid', 'keystone.token_auth': auth.token_auth('u')},
     identity.INVALID),
    ({'keystone.token_auth': auth.token_auth(None)}, identity.INVALID),
])
def test_status(environ, expected):
    assert identity.status(environ) == expected


def test_status_reads_what_has_user_token_reads():
    """status() reads the plugin's public ``user`` attribute, not its
    ``has_user_token`` property (a Python call on the request path): the two must
    agree in the installed keystonemiddleware."""
    for user in ('u', None):
        token_auth = auth.token_auth(user)
        assert (token_auth.user is not None) is token_auth.has_user_token is (user is not None)


def test_status_is_the_last_request_fact():
    env = {'REQUEST_METHOD': 'GET', 'HTTP_X_IDENTITY_STATUS': 'Confirmed',
           'keystone.token_auth': auth.token_auth('u')}
    facts = exchange_mod.request_facts(env)
    assert len(facts) == len(exchange_mod.FACT_KEYS)
    assert exchange_mod.FACT_KEYS[-1] == exchange_mod.IDENTITY_KEY
    assert facts[-1] == identity.CONFIRMED
    # the plugin object itself never becomes a fact (the journal holds plain values)
    assert not any(isinstance(v, type(env['keystone.token_auth'])) for v in facts)


def test_behind_auth_token():
    assert identity.behind_auth_token({'keystone.token_auth': auth.token_auth(None)})
    # Magnum's auth_token passes its public routes on unchecked, marked
    assert identity.behind_auth_token({'is_public_api': True})
    assert not identity.behind_auth_token({'HTTP_X_IDENTITY_STATUS': 'Confirmed'})


# -- the CADF initiator -----------------------------------------------------------------

def test_confirmed_initiator(make_filter, captured, wsgi, cadf_valid):
    mw = make_filter(image_app)
    payload = initiator_of(captured, wsgi, mw, wsgi.IDENTITY, **wsgi.CONFIRMED)
    assert payload['initiator'] == {
        'typeURI': USER_TYPE, 'id': wsgi.USER_ID, 'user_id': wsgi.USER_ID, 'name': 'alice',
        'domain_id': 'default', 'project_id': wsgi.PROJECT_ID, 'project_name': 'demo',
        'project_domain_id': 'default', 'roles': ['member', 'reader'],
        'identity_status': 'Confirmed',
        'host': {'address': '192.0.2.10', 'agent': 'python-glanceclient'},
        'request_id': REQUEST_ID}
    cadf_valid(payload)


def test_forged_headers_without_auth_token_are_claims(make_filter, captured, wsgi,
                                                      cadf_valid):
    mw = make_filter(image_app)
    payload = initiator_of(captured, wsgi, mw, FORGED)
    assert payload['initiator'] == {
        'typeURI': USER_TYPE, 'id': 'unknown', 'identity_status': 'Unauthenticated',
        'claimed': FORGED_CLAIMS,
        'host': {'address': '192.0.2.10', 'agent': 'curl/8.5.0'},
        'request_id': REQUEST_ID}
    # 'unknown': pycadf's cadftaxonomy.UNKNOWN, as keystonemiddleware.audit sets it;
    # pycadf accepts it (and only warns, as for any id that is not a UUID)
    cadf_valid(payload)


def test_invalid_status_with_identity_headers_is_not_believed(make_filter, captured, wsgi,
                                                              cadf_valid):
    """delay_auth_decision: auth_token passed a call with no valid token on, marked
    Invalid; identity headers set after it (or by a stand-in) stay claims."""
    mw = make_filter(image_app)
    headers = dict(FORGED, **{'X-Identity-Status': 'Invalid'})
    payload = initiator_of(captured, wsgi, mw, headers,
                           **{'keystone.token_auth': auth.token_auth(None)})
    assert payload['initiator'] == {
        'typeURI': USER_TYPE, 'id': 'unknown', 'identity_status': 'Invalid',
        'claimed': FORGED_CLAIMS,
        'host': {'address': '192.0.2.10', 'agent': 'curl/8.5.0'},
        'request_id': REQUEST_ID}
    cadf_valid(payload)


def test_invalid_token_with_no_headers_has_nothing_claimed(make_filter, captured, wsgi,
                                                           cadf_valid):
    """What the real auth_token leaves for a bad token: its own Invalid, no identity."""
    mw = make_filter(image_app)
    payload = initiator_of(captured, wsgi, mw, {'X-Identity-Status': 'Invalid'},
                           **{'keystone.token_auth': auth.token_auth(None)})
    assert payload['initiator'] == {
        'typeURI': USER_TYPE, 'id': 'unknown', 'identity_status': 'Invalid',
        'host': {'address': '192.0.2.10'}, 'request_id': REQUEST_ID}
    cadf_valid(payload)


def test_claimed_values_stay_strings(make_filter, captured, wsgi, cadf_valid):
    """Odd claims are copied as text, never interpreted (a role list stays a list of
    strings; an empty header is no claim)."""
    mw = make_filter(image_app)
    headers = {'X-User-Id': '{"id": "x"}', 'X-Roles': ' , admin ,', 'X-Project-Id': ''}
    payload = initiator_of(captured, wsgi, mw, headers)
    assert payload['initiator']['claimed'] == {'user_id': '{"id": "x"}', 'roles': ['admin']}
    cadf_valid(payload)


def test_record_journaled_before_the_fact_reads_unauthenticated(wsgi):
    """A journal record from before this fact existed has one value fewer: its
    headers are not believed (nothing says auth_token checked them)."""
    env = wsgi.environ('GET', '/v2/images', headers=wsgi.IDENTITY, **wsgi.CONFIRMED)
    facts = exchange_mod.request_facts(env)[:-1]
    exchange = exchange_mod.Exchange(None, {}, facts, 0.0)
    user = cadf_events.initiator(Facts(exchange))
    assert (user['id'], user['identity_status'], user['claimed']['user_id']) == \
        ('unknown', 'Unauthenticated', wsgi.USER_ID)


# -- Glance-format payloads -------------------------------------------------------------

@pytest.mark.parametrize('case', ['confirmed', 'forged', 'invalid'])
def test_image_send_receiver_only_when_confirmed(make_filter, captured, wsgi, case):
    mw = make_filter(download_app, formats='glance')
    headers, extra = {
        'confirmed': (wsgi.IDENTITY, wsgi.CONFIRMED),
        'forged': (FORGED, {}),
        'invalid': (wsgi.IDENTITY, {'keystone.token_auth': auth.token_auth(None)}),
    }[case]
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s/file' % IMAGE, headers=headers, **extra))
    payload = captured.one('image.send')['payload']
    expected = (wsgi.PROJECT_ID, wsgi.USER_ID) if case == 'confirmed' else (None, None)
    assert (payload['receiver_tenant_id'], payload['receiver_user_id']) == expected
    assert (payload['bytes_sent'], payload['destination_ip']) == (4, '192.0.2.10')


# -- the warning ------------------------------------------------------------------------

def warnings_logged(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == 'audit_notifier.middleware' and r.levelno == logging.WARNING]


def test_one_warning_when_auth_token_is_not_in_front(make_filter, captured, wsgi, caplog):
    caplog.set_level(logging.WARNING, logger='audit_notifier.middleware')
    mw = make_filter(image_app)
    assert warnings_logged(caplog) == []               # nothing known at start-up
    wsgi.run(mw, wsgi.environ('GET', '/v2/info/stores'))   # not audited: no verdict
    assert warnings_logged(caplog) == []
    for _ in range(3):
        wsgi.run(mw, wsgi.environ('POST', '/v2/images', body=b'{}', headers=FORGED))
    assert warnings_logged(caplog) == [WARNING]
    assert len(captured.all()) == 3


@pytest.mark.parametrize('extra', [
    {'keystone.token_auth': auth.token_auth(None)},      # auth_token, delay_auth_decision
    {'keystone.token_auth': auth.token_auth('u')},
    {'is_public_api': True},                             # Magnum's public routes
])
def test_no_warning_behind_auth_token(make_filter, captured, wsgi, caplog, extra):
    caplog.set_level(logging.WARNING, logger='audit_notifier.middleware')
    mw = make_filter(image_app)
    wsgi.run(mw, wsgi.environ('POST', '/v2/images', body=b'{}', **extra))
    assert warnings_logged(caplog) == []
    assert len(captured.all()) == 1
