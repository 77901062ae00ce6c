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

"""CADF audit events, built as plain dicts that pycadf's ``Event.is_valid()`` accepts.

Shape (pycadf 4.x conventions: plain UUID ids, ``+0000`` eventTime)::

    {typeURI, eventType: activity, id, eventTime, action, outcome,
     reason: {reasonType: HTTP, reasonCode: "201"},
     initiator: {typeURI: service/security/account/user, id: <user id>, name,
                 domain_id, project_id, project_name, project_domain_id, roles,
                 identity_status: Confirmed, host: {address, agent}, request_id,
                 global_request_id, ...}
                or {typeURI, id: unknown, identity_status: Invalid | Unauthenticated,
                    claimed: {user_id, project_id, roles, ...}, host, request_id, ...},
     target: {typeURI: service/storage/image[/...], id: <the real resource id>, ...},
     observer: {typeURI: <service>, id, name}, requestPath, [measurements]}

No token, credential or request body ever goes in: identity comes from the headers
keystonemiddleware's auth_token sets, by an allow-list, and names the initiator only
when auth_token confirmed it (:mod:`audit_notifier.identity`); otherwise the
initiator is ``unknown`` and the headers are kept as ``claimed``.
"""

from __future__ import annotations

import re
import uuid

from pycadf import cadftaxonomy
from pycadf import cadftype

from audit_notifier import identity, sanitize
from audit_notifier.events import records
from audit_notifier.events import (WARN, Notification, Outcome, cadf_time, outcome_of,
                                   pending_by_body)
from audit_notifier.exchange import APP_CREDENTIAL_KEY, IDENTITY_KEY

# pycadf.event.TYPE_URI_EVENT, built as pycadf builds it: importing pycadf.event would
# register pycadf's [audit] options in the host service's global oslo.config CONF.
EVENT_TYPE_URI = cadftype.CADF_VERSION_1_0_0 + 'event'
EVENT_TYPE = cadftype.EVENTTYPE_ACTIVITY
USER_TYPE_URI = cadftaxonomy.ACCOUNT_USER       # service/security/account/user
UNKNOWN = cadftaxonomy.UNKNOWN                  # the id of a caller nobody confirmed
_METRIC_NS = uuid.UUID('7b4ae1d8-6c1d-4a53-9a44-6a2b3c1c0f00')
BYTES_SENT_METRIC = {'metricId': str(uuid.uuid5(_METRIC_NS, 'bytes_sent')),
                     'unit': 'B', 'name': 'bytes_sent'}
BYTES_RECEIVED_METRIC = {'metricId': str(uuid.uuid5(_METRIC_NS, 'bytes_received')),
                         'unit': 'B', 'name': 'bytes_received'}
_GLOBAL_REQUEST_ID = re.compile(r'^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                                r'[0-9a-f]{12}$')

# header environ key -> identity attribute, in output order
_IDENTITY_ATTRS = (
    ('HTTP_X_USER_NAME', 'name'),
    ('HTTP_X_USER_DOMAIN_ID', 'domain_id'),
    ('HTTP_X_USER_DOMAIN_NAME', 'domain'),
    ('HTTP_X_PROJECT_ID', 'project_id'),
    ('HTTP_X_PROJECT_NAME', 'project_name'),
    ('HTTP_X_PROJECT_DOMAIN_ID', 'project_domain_id'),
    ('HTTP_X_PROJECT_DOMAIN_NAME', 'project_domain_name'),
    ('HTTP_X_SYSTEM_SCOPE', 'system_scope'),
)
# identity.status() -> initiator identity_status (auth_token's words, and ours for
# a request auth_token never saw); a journal record older than the fact reads ABSENT.
IDENTITY_STATUS = {identity.CONFIRMED: 'Confirmed', identity.INVALID: 'Invalid',
                   identity.ABSENT: 'Unauthenticated'}


def observer_id(publisher_id: str) -> str:
    """A stable id for this service instance, derived from its publisher_id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'audit-notifier:' + publisher_id))


def initiator(facts) -> dict:
    """The caller of an API call.

    Confirmed by auth_token: the user it names, with project, domain and roles.
    Otherwise ``id`` is ``unknown`` and whatever identity the request carried is
    kept apart under ``claimed`` (a client can forge it: doc/source/admin/security.rst).
    The host and the request ids are recorded in every case.
    """
    env = facts.exchange.request
    status = env.get(IDENTITY_KEY, identity.ABSENT)
    claims = _identity_claims(env)
    user = {'typeURI': USER_TYPE_URI, 'id': UNKNOWN}
    if status == identity.CONFIRMED:
        user['id'] = claims.get('user_id', UNKNOWN)     # user_id too: Magnum's attribute
        user.update(claims)
    elif claims:
        user['claimed'] = claims
    user['identity_status'] = IDENTITY_STATUS[status]
    host = {}
    if env.get('REMOTE_ADDR'):
        host['address'] = env['REMOTE_ADDR']
    if env.get('HTTP_USER_AGENT'):
        host['agent'] = facts.redactor.text(env['HTTP_USER_AGENT'])
    if host:
        user['host'] = host
    request_id = facts.request_id()
    if request_id:
        user['request_id'] = request_id
    global_id = env.get('openstack.global_request_id') or env.get('HTTP_X_OPENSTACK_REQUEST_ID')
    if global_id and _GLOBAL_REQUEST_ID.match(global_id) and global_id != request_id:
        user['global_request_id'] = global_id
    return user


def _identity_claims(env: dict) -> dict:
    """The identity the request's headers state (user_id, name, project_id, roles
    ...), whoever set them."""
    claims = {}
    user_id = env.get('HTTP_X_USER_ID') or env.get('HTTP_X_USER')
    if user_id:
        claims['user_id'] = user_id
    for key, attr in _IDENTITY_ATTRS:
        value = env.get(key)
        if value:
            claims[attr] = value
    if 'project_id' not in claims and env.get('HTTP_X_TENANT_ID'):
        claims['project_id'] = env['HTTP_X_TENANT_ID']
    roles = env.get('HTTP_X_ROLES')
    if roles:
        claims['roles'] = [r.strip() for r in roles.split(',') if r.strip()]
    app_cred = env.get(APP_CREDENTIAL_KEY)
    if app_cred:
        claims['application_credential_id'] = app_cred
    return claims


def target(facts, observer: dict) -> dict:
    spec = facts.exchange.route.target
    target_id = facts.source(spec.id)
    resource = {'typeURI': spec.type_uri, 'id': target_id or observer['id']}
    name = facts.source(spec.name)
    if name:
        resource['name'] = name
    attachments = []
    for att_name, sources in spec.attachments:
        value = facts.source(sources)
        if value:
            attachments.append({'typeURI': 'mime:text/plain', 'name': att_name,
                                'content': value})
    if attachments:
        resource['attachments'] = attachments
    if spec.data is not None and target_id:     # Magnum's cluster_data (events/records.py)
        records.decorate(facts, records.ATTACHMENTS[spec.data], resource)
    return resource


def event(*, action: str, outcome: str, initiator: dict, target: dict, observer: dict,
          when: float, reason: dict | None = None, request_path: str | None = None) -> dict:
    """A CADF event dict (the shape pycadf's Event.as_dict() gives)."""
    payload = {
        'typeURI': EVENT_TYPE_URI,
        'eventType': EVENT_TYPE,
        'id': str(uuid.uuid4()),
        'eventTime': cadf_time(when),
        'action': action,
        'outcome': outcome,
    }
    if reason is not None:
        payload['reason'] = reason
    payload['initiator'] = initiator
    payload['target'] = target
    payload['observer'] = observer
    if request_path is not None:
        payload['requestPath'] = request_path
    return payload


def build(facts, observer: dict, event_type_template: str, service,
          outcome: Outcome | None = None) -> Notification:
    """The CADF record of one finished API call."""
    exchange = facts.exchange
    route = exchange.route
    outcome = pending_by_body(outcome or outcome_of(exchange), facts)
    priority = outcome.priority
    if priority == WARN:                # a refused call (4xx): the map's or the option's
        priority = service.client_error_priority
    tgt = target(facts, observer)
    if service.observer_follows_target:
        observer = dict(observer, typeURI=tgt['typeURI'])
    payload = event(action=route.action, outcome=outcome.outcome,
                    reason={'reasonType': outcome.reason_type,
                            'reasonCode': outcome.reason_code},
                    initiator=initiator(facts), target=tgt, observer=observer,
                    when=exchange.started_at, request_path=request_path(facts))
    if route.observe == 'download' and _carries_image_data(exchange):
        payload['measurements'] = [{'result': exchange.bytes_sent, 'metric': BYTES_SENT_METRIC}]
    elif route.observe == 'upload' and exchange.upload_started:
        payload['measurements'] = [{'result': exchange.bytes_received,
                                    'metric': BYTES_RECEIVED_METRIC}]
    return Notification('cadf', event_type_template.format(event=route.event), priority,
                        payload, tgt['id'], exchange.finished_at or exchange.started_at)


def _carries_image_data(exchange) -> bool:
    """Is the download's response the image data: a 2xx with a body, or none yet (the
    client left before the app answered: 0 bytes of it, as image.send says)?  An
    error page's bytes are not image data and are not measured."""
    code = exchange.status_code
    if code is None:
        return exchange.status is None and exchange.raised is None
    return 200 <= code < 300 and code != 204


def initiator_from_context(context) -> dict:
    """The initiator of an out-of-band event, from a request context (object or dict)."""
    def get(*names):
        for name in names:
            value = (context.get(name) if isinstance(context, dict)
                     else getattr(context, name, None))
            if value:
                return value
        return None
    user_id = get('user_id', 'user') if context is not None else None
    user = {'typeURI': USER_TYPE_URI, 'id': user_id or UNKNOWN}
    if user_id:
        user['user_id'] = user_id
    if context is None:
        return user
    for attr, names in (('name', ('user_name',)), ('domain_id', ('user_domain_id',)),
                        ('project_id', ('project_id', 'tenant', 'project')),
                        ('project_name', ('project_name',)),
                        ('request_id', ('request_id',)),
                        ('global_request_id', ('global_request_id',))):
        value = get(*names)
        if value:
            user[attr] = value
    roles = get('roles')
    if roles:
        user['roles'] = list(roles)
    return user


def request_path(facts) -> str:
    """The path and query the client asked for, URL-encoded, secret values
    redacted (again: a journal written under another redact_names), each part capped
    (sanitize.PATH_LIMIT, sanitize.QUERY_LIMIT)."""
    exchange = facts.exchange
    path = exchange.request_path
    query = exchange.request.get('QUERY_STRING')
    if query:
        query, truncated = sanitize.unmark(query)
        path = path + '?' + sanitize.url_query(facts.redactor.query(query), truncated)
    return path
