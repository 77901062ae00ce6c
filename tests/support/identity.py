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

"""What keystonemiddleware's auth_token leaves in an environ, for tests that have no
auth_token in front of the filter.

:func:`token_auth` is the real ``keystone.token_auth`` object auth_token sets
(``keystonemiddleware.auth_token._user_plugin.UserAuthPlugin``), holding a
Keystone v3 token body made by keystoneauth's fixture, or no user token at all.
:func:`confirmed` is the environ part of a call auth_token confirmed.

Usage::

    from tests.support import identity
    env.update(identity.confirmed())                  # headers stay the test's own
    env['keystone.token_auth'] = identity.token_auth(None)   # delay_auth_decision
"""

from __future__ import annotations

from keystoneauth1 import access
from keystoneauth1 import fixture
from keystonemiddleware.auth_token import _user_plugin

TOKEN_AUTH_KEY = 'keystone.token_auth'


def token_auth(user_id: str | None = 'u-confirmed', project_id: str = 'p-confirmed'):
    """auth_token's UserAuthPlugin: with a user token for ``user_id``, or (None)
    none, as auth_token leaves it for a missing or rejected token."""
    if user_id is None:
        return _user_plugin.UserAuthPlugin(None, None)
    body = fixture.V3Token(user_id=user_id, project_id=project_id)
    return _user_plugin.UserAuthPlugin(access.create(body=body), None)


def confirmed(user_id: str = 'u-confirmed', project_id: str = 'p-confirmed') -> dict:
    """The environ keys auth_token adds besides the headers for a valid user token
    (the identity headers themselves, X-Identity-Status: Confirmed included, are
    the caller's to set)."""
    return {TOKEN_AUTH_KEY: token_auth(user_id, project_id)}
