"""CADF audit events, built as plain dicts that pycadf's ``Event.is_valid()`` accepts.

Shape (pycadf 4.x conventions: plain UUID ids, ``+0000`` eventTime)::

    {typeURI, eventType: activity, id, eventTime, action, outcome,
     reason: {reasonType: HTTP, reasonCode: "201"},
     initiator: {typeURI: service/security/account/user, id: <user id>, name,
                 domain_id, project_id, project_name, project_domain_id, roles,
                 host: {address, agent}, request_id, global_request_id, ...},
     target: {typeURI: service/storage/image[/...], id: <the real resource id>, ...},
     observer: {typeURI: <service>, id, name}, requestPath, [measurements]}

No token, credential or request body ever goes in: identity comes from the headers
keystonemiddleware's auth_token sets, by an allow-list.
"""

from __future__ import annotations

import re
import uuid

from audit_notifier.events import (ERROR, WARN, Notification, Outcome, cadf_time, outcome_of,
                                   redact)
from audit_notifier.exchange import APP_CREDENTIAL_KEY

EVENT_TYPE_URI = 'http://schemas.dmtf.org/cloud/audit/1.0/event'
USER_TYPE_URI = 'service/security/account/user'
_METRIC_NS = uuid.UUID('7b4ae1d8-6c1d-4a53-9a44-6a2b3c1c0f00')
BYTES_SENT_METRIC = {'metricId': str(uuid.uuid5(_METRIC_NS, 'bytes_sent')),
                     'unit': 'B', 'name': 'bytes_sent'}
BYTES_RECEIVED_METRIC = {'metricId': str(uuid.uuid5(_METRIC_NS, 'bytes_received')),
                         'unit': 'B', 'name': 'bytes_received'}
_GLOBAL_REQUEST_ID = re.compile(r'^req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-'
                                r'[0-9a-f]{12}$')

# header environ key -> initiator attribute, in output order
_INITIATOR_ATTRS = (
    ('HTTP_X_USER_NAME', 'name'),
    ('HTTP_X_USER_DOMAIN_ID', 'domain_id'),
    ('HTTP_X_USER_DOMAIN_NAME', 'domain'),
    ('HTTP_X_PROJECT_ID', 'project_id'),
    ('HTTP_X_PROJECT_NAME', 'project_name'),
    ('HTTP_X_PROJECT_DOMAIN_ID', 'project_domain_id'),
    ('HTTP_X_PROJECT_DOMAIN_NAME', 'project_domain_name'),
    ('HTTP_X_SYSTEM_SCOPE', 'system_scope'),
    ('HTTP_X_IDENTITY_STATUS', 'identity_status'),
)


def observer_id(publisher_id: str) -> str:
    """A stable id for this service instance, derived from its publisher_id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'audit-notifier:' + publisher_id))


def initiator(facts) -> dict:
    env = facts.exchange.request
    user = {'typeURI': USER_TYPE_URI,
            'id': env.get('HTTP_X_USER_ID') or env.get('HTTP_X_USER') or 'unknown'}
    if user['id'] != 'unknown':
        user['user_id'] = user['id']          # Magnum's attribute; Ceilometer reads either
    for key, attr in _INITIATOR_ATTRS:
        value = env.get(key)
        if value:
            user[attr] = value
    if 'project_id' not in user and env.get('HTTP_X_TENANT_ID'):
        user['project_id'] = env['HTTP_X_TENANT_ID']
    roles = env.get('HTTP_X_ROLES')
    if roles:
        user['roles'] = [r.strip() for r in roles.split(',') if r.strip()]
    app_cred = env.get(APP_CREDENTIAL_KEY)
    if app_cred:
        user['application_credential_id'] = app_cred
    host = {}
    if env.get('REMOTE_ADDR'):
        host['address'] = env['REMOTE_ADDR']
    if env.get('HTTP_USER_AGENT'):
        host['agent'] = env['HTTP_USER_AGENT']
    if host:
        user['host'] = host
    request_id = facts.request_id()
    if request_id:
        user['request_id'] = request_id
    global_id = env.get('openstack.global_request_id') or env.get('HTTP_X_OPENSTACK_REQUEST_ID')
    if global_id and _GLOBAL_REQUEST_ID.match(global_id) and global_id != request_id:
        user['global_request_id'] = global_id
    return user


def target(facts, observer: dict) -> dict:
    spec = facts.exchange.route.target
    resource = {'typeURI': spec.type_uri,
                'id': facts.source(spec.id) or observer['id']}
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
    return resource


def event(*, action: str, outcome: str, initiator: dict, target: dict, observer: dict,
          when: float, reason: dict | None = None, request_path: str | None = None) -> dict:
    """A CADF event dict (the shape pycadf's Event.as_dict() gives)."""
    payload = {
        'typeURI': EVENT_TYPE_URI,
        'eventType': 'activity',
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
    outcome = outcome or outcome_of(exchange)
    priority = outcome.priority
    if priority == WARN and service.client_error_priority == ERROR:
        priority = ERROR
    tgt = target(facts, observer)
    if service.observer_follows_target:
        observer = dict(observer, typeURI=tgt['typeURI'])
    payload = event(action=route.action, outcome=outcome.outcome,
                    reason={'reasonType': outcome.reason_type,
                            'reasonCode': outcome.reason_code},
                    initiator=initiator(facts), target=tgt, observer=observer,
                    when=exchange.started_at, request_path=request_path(exchange))
    if route.observe == 'download':
        payload['measurements'] = [{'result': exchange.bytes_sent, 'metric': BYTES_SENT_METRIC}]
    elif route.observe == 'upload' and exchange.upload_started:
        payload['measurements'] = [{'result': exchange.bytes_received,
                                    'metric': BYTES_RECEIVED_METRIC}]
    return Notification('cadf', event_type_template.format(event=route.event), priority,
                        payload, tgt['id'], exchange.finished_at or exchange.started_at)


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
    user = {'typeURI': USER_TYPE_URI, 'id': user_id or 'unknown'}
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


def request_path(exchange) -> str:
    path = exchange.request_path
    query = exchange.request.get('QUERY_STRING')
    if query:
        path = path + '?' + redact(query)
    return path
