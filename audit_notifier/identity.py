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

"""How far the caller's identity headers can be believed.

keystonemiddleware's ``auth_token`` removes every identity header a client sent
(``X-Identity-Status``, ``X-User-*``, ``X-Project-*``, ``X-Roles`` ...), checks the
token, sets its own headers for a valid one and always leaves
``keystone.token_auth`` (its ``UserAuthPlugin``) in the environ.  A client cannot
put a key without the ``HTTP_`` prefix in the environ, so that object is what the
filter trusts; the headers alone are only what the client claims.

One of three values is recorded per call, on the request path (two dict look-ups and
an attribute read):

* ``confirmed``: auth_token ran and confirmed a user token; the headers are its own.
* ``invalid``: auth_token ran and found no valid user token (``delay_auth_decision``
  passed the call on); it removed the client's identity headers.
* ``absent``: auth_token did not run before the filter; any identity header is a
  claim nobody checked.
"""

from __future__ import annotations

CONFIRMED = 'confirmed'
INVALID = 'invalid'
ABSENT = 'absent'

TOKEN_AUTH_KEY = 'keystone.token_auth'      # an environ key, not a secret  # nosec B105
# Magnum's auth_token subclass passes its public routes (/, /v1) on unchecked and
# says so with this key: auth_token is in front, even without keystone.token_auth.
_PUBLIC_ROUTE_KEY = 'is_public_api'


def status(environ: dict) -> str:
    """CONFIRMED, INVALID or ABSENT for a request, as auth_token left it."""
    token_auth = environ.get(TOKEN_AUTH_KEY)
    if token_auth is None:
        return ABSENT
    # An expired or unauthorised token also leaves a user auth_ref behind: the
    # status header auth_token itself set tells a valid one.  ``user`` is the
    # plugin's public attribute behind its ``has_user_token`` property (read
    # directly: the property would cost a Python call on the request path).
    if (getattr(token_auth, 'user', None) is not None
            and environ.get('HTTP_X_IDENTITY_STATUS') == 'Confirmed'):
        return CONFIRMED
    return INVALID


def behind_auth_token(environ: dict) -> bool:
    """Did keystonemiddleware's auth_token (or a subclass) see this request first?"""
    return TOKEN_AUTH_KEY in environ or _PUBLIC_ROUTE_KEY in environ
