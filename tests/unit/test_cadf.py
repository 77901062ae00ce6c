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

"""The CADF dict passes pycadf, its times have the right formats, and no token or
credential ever reaches an envelope or a log record."""

from __future__ import annotations

import datetime
import json
import logging
import re
import time
import uuid
import warnings

from pycadf import cadftaxonomy
from pycadf import cadftype
from pycadf import event as cadf_event
import pytest

from audit_notifier import events
from audit_notifier.events import cadf_time, envelope_time, iso_time
from audit_notifier.events import cadf as cadf_events

IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'
REQUEST_ID = 'req-0b6f5c2e-6d0a-4a43-9d55-1f2e3d4c5b6a'
GLOBAL_ID = 'req-7e8f9a0b-1c2d-4e3f-8a9b-0c1d2e3f4a5b'
EVENT_TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000$')
ENVELOPE_TIME = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?$')

AUTH_TOKEN = 'gAAAAABmAUTHTOKENxyzAUTHTOKEN0123456789AUTHTOKENend'
SUBJECT_TOKEN = 'gAAAAABmSUBJECTTOKENxyz0123456789SUBJECTTOKENend'
SERVICE_TOKEN = 'gAAAAABmSERVICETOKENxyz0123456789SERVICETOKENend'
APP_CRED_SECRET = 'APPCREDSECRET-do-not-leak'
QUERY_TOKEN = 'QUERYTOKENVALUE42'
SECRETS = (AUTH_TOKEN, SUBJECT_TOKEN, SERVICE_TOKEN, APP_CRED_SECRET, QUERY_TOKEN)


DOC = {'id': IMAGE, 'name': 'cirros', 'status': 'queued', 'owner': 'p1', 'size': None,
       'visibility': 'private', 'tags': [], 'member_id': 'member-1'}
BODY = json.dumps(DOC).encode()


def image_app(status='201 Created'):
    def app(environ, start_response):
        if environ.get('wsgi.input') is not None:
            environ['wsgi.input'].read()
        body = BODY
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(body))),
                                ('Location', 'http://glance.example.org/v2/images/' + IMAGE),
                                ('X-OpenStack-Request-ID', REQUEST_ID)])
        return [body]
    return app


def identity_environ(wsgi, method, path, **kw):
    env = wsgi.environ(method, path, headers=dict(wsgi.IDENTITY, **{
        'X-Auth-Token': AUTH_TOKEN, 'X-Subject-Token': SUBJECT_TOKEN,
        'X-Service-Token': SERVICE_TOKEN}), **dict(wsgi.CONFIRMED, **kw))
    env['openstack.global_request_id'] = GLOBAL_ID
    env['keystone.token_info'] = {'token': {
        'application_credential': {'id': 'appcred-1', 'secret': APP_CRED_SECRET},
        'user': {'id': wsgi.USER_ID}}}
    return env


def test_create_event_shape(make_filter, captured, wsgi, cadf_valid):
    mw = make_filter(image_app(), publisher_id='image.host-1')
    before = time.time()
    wsgi.run(mw, identity_environ(wsgi, 'POST', '/v2/images', body=b'{"name": "cirros"}'))
    after = time.time()
    envelope = captured.one('audit.image.create')
    assert set(envelope) == {'message_id', 'publisher_id', 'event_type', 'priority', 'payload',
                             'timestamp'}
    assert str(uuid.UUID(envelope['message_id'])) == envelope['message_id']
    assert (envelope['publisher_id'], envelope['priority']) == ('image.host-1', 'INFO')
    payload = envelope['payload']
    assert payload['typeURI'] == 'http://schemas.dmtf.org/cloud/audit/1.0/event'
    assert payload['eventType'] == 'activity'
    assert str(uuid.UUID(payload['id'])) == payload['id']
    assert (payload['action'], payload['outcome']) == ('create', 'success')
    assert payload['reason'] == {'reasonType': 'HTTP', 'reasonCode': '201'}
    assert payload['target'] == {'typeURI': 'service/storage/image', 'id': IMAGE}
    assert payload['observer'] == {'typeURI': 'service/storage/image', 'name': 'glance',
                                   'id': cadf_events.observer_id('image.host-1')}
    assert payload['requestPath'] == '/v2/images'
    initiator = payload['initiator']
    expected = {
        'typeURI': 'service/security/account/user', 'id': wsgi.USER_ID, 'name': 'alice',
        'domain_id': 'default', 'project_id': wsgi.PROJECT_ID, 'project_name': 'demo',
        'project_domain_id': 'default', 'identity_status': 'Confirmed',
        'roles': ['member', 'reader'], 'application_credential_id': 'appcred-1',
        'host': {'address': '192.0.2.10', 'agent': 'python-glanceclient'},
        'request_id': REQUEST_ID, 'global_request_id': GLOBAL_ID}
    assert {k: initiator.get(k) for k in expected} == expected
    assert 'credential' not in initiator
    # times
    assert EVENT_TIME.match(payload['eventTime'])
    event_time = datetime.datetime.strptime(payload['eventTime'], '%Y-%m-%dT%H:%M:%S.%f%z')
    assert before <= event_time.timestamp() + 1e-6 and event_time.timestamp() <= after
    assert ENVELOPE_TIME.match(envelope['timestamp'])
    stamp = datetime.datetime.fromisoformat(envelope['timestamp']).replace(
        tzinfo=datetime.timezone.utc)
    assert before - 1e-6 <= stamp.timestamp() <= after + 1e-6
    ev = cadf_valid(payload)
    assert ev.as_dict() == payload                  # pycadf serialises it to the same dict


@pytest.mark.parametrize('method, path, status', [
    ('GET', '/v2/images/%s/file' % IMAGE, '200 OK'),              # measurements bytes_sent
    ('PUT', '/v2/images/%s/file' % IMAGE, '204 No Content'),      # measurements bytes_received
    ('PUT', '/v2/images/%s/tags/blue' % IMAGE, '204 No Content'),  # attachments
    ('DELETE', '/v2/images/%s/members/m1' % IMAGE, '404 Not Found'),
    ('POST', '/v2/images/%s/import' % IMAGE, '202 Accepted'),
    ('GET', '/v2/images', '500 Internal Server Error'),
    ('POST', '/v2/tasks', '201 Created'),
])
def test_events_pass_pycadf_validation(make_filter, captured, wsgi, cadf_valid, method, path,
                                       status):
    mw = make_filter(image_app(status))
    env = identity_environ(wsgi, method, path, body=b'x' * 321)
    with warnings.catch_warnings():
        warnings.simplefilter('error')          # pycadf warns on ids that are not UUIDs
        wsgi.run(mw, env)
        [envelope] = captured.all()
        ev = cadf_valid(envelope['payload'])
    assert ev.as_dict() == envelope['payload']
    payload = envelope['payload']
    if path.endswith('/file'):
        [m] = payload['measurements']
        name = 'bytes_sent' if method == 'GET' else 'bytes_received'
        assert m['metric']['name'] == name
        assert m['result'] == (321 if method == 'PUT' else len(BODY))
    if '/tags/' in path:
        assert payload['target']['attachments'] == [
            {'typeURI': 'mime:text/plain', 'name': 'tag', 'content': 'blue'}]


def test_exception_event_passes_pycadf_validation(make_filter, captured, wsgi, cadf_valid):
    def app(environ, start_response):
        raise OSError('disk')

    mw = make_filter(app)
    with pytest.raises(OSError):
        mw(identity_environ(wsgi, 'DELETE', '/v2/images/%s' % IMAGE), wsgi.StartResponse())
    [envelope] = captured.all()
    cadf_valid(envelope['payload'])
    assert envelope['payload']['reason'] == {'reasonType': 'exception', 'reasonCode': 'OSError'}


def test_anonymous_caller_is_unknown(make_filter, captured, wsgi, cadf_valid):
    mw = make_filter(image_app('401 Unauthorized'))
    wsgi.run(mw, wsgi.environ('POST', '/v2/images'))
    payload = captured.one('audit.image.create')['payload']
    assert payload['initiator'] == {'typeURI': 'service/security/account/user',
                                    'id': 'unknown', 'identity_status': 'Unauthenticated',
                                    'host': {'address': '192.0.2.10'},
                                    'request_id': REQUEST_ID}
    # no response id on a failure: the target falls back to the Location header or the
    # observer; it is always a valid resource
    cadf_valid(payload)


def test_vocabulary_is_pycadfs():
    """Outcomes, typeURIs and the event type are pycadf's (cadftaxonomy, cadftype);
    the event typeURI is built as pycadf.event builds it, without importing it."""
    assert {events.SUCCESS, events.FAILURE, events.PENDING, events.UNKNOWN} == \
        cadftaxonomy.OUTCOME_TAXONOMY
    assert cadf_events.EVENT_TYPE_URI == cadf_event.TYPE_URI_EVENT
    assert cadf_events.EVENT_TYPE == cadftype.EVENTTYPE_ACTIVITY == 'activity'
    assert cadf_events.USER_TYPE_URI == cadftaxonomy.ACCOUNT_USER == \
        'service/security/account/user'
    assert cadf_events.UNKNOWN == cadftaxonomy.UNKNOWN == 'unknown'


# -- time formats -------------------------------------------------------------------------------

def test_time_formats_fixed_epoch():
    epoch = datetime.datetime(2016, 5, 20, 15, 3, 45, 960280,
                              tzinfo=datetime.timezone.utc).timestamp()
    assert cadf_time(epoch) == '2016-05-20T15:03:45.960280+0000'
    assert envelope_time(epoch) == '2016-05-20 15:03:45.960280'
    assert iso_time(epoch) == '2016-05-20T15:03:45Z'
    whole = datetime.datetime(2016, 5, 20, 15, 3, 45, tzinfo=datetime.timezone.utc).timestamp()
    assert cadf_time(whole) == '2016-05-20T15:03:45.000000+0000'
    # str(datetime) drops a zero fraction, exactly as oslo.messaging's str(utcnow()) does
    # Always with microseconds (oslo's str(utcnow()) drops them when they are 0).
    assert envelope_time(whole) == '2016-05-20 15:03:45.000000'


def test_envelope_timestamps_of_every_format(make_filter, captured, wsgi):
    mw = make_filter(image_app(), formats='cadf,glance')
    wsgi.run(mw, identity_environ(wsgi, 'POST', '/v2/images'))
    envelopes = captured.all()
    assert sorted(e['event_type'] for e in envelopes) == ['audit.image.create', 'image.create']
    for envelope in envelopes:
        assert ENVELOPE_TIME.match(envelope['timestamp']), envelope['timestamp']


# -- secrets ------------------------------------------------------------------------------------

@pytest.mark.parametrize('method, path, status', [
    ('POST', '/v2/images', '201 Created'),
    ('GET', '/v2/images/%s/file' % IMAGE, '200 OK'),
    ('PUT', '/v2/images/%s/file' % IMAGE, '204 No Content'),
    ('PUT', '/v2/images/%s/file' % IMAGE, '413 Request Entity Too Large'),
    ('DELETE', '/v2/images/%s' % IMAGE, '204 No Content'),
    ('PATCH', '/v2/images/%s' % IMAGE, '403 Forbidden'),
    ('POST', '/v2/images/%s/members' % IMAGE, '200 OK'),
    ('GET', '/v2/no/such/path', '404 Not Found'),
])
def test_no_token_anywhere(make_filter, captured, wsgi, caplog, method, path, status):
    caplog.set_level(logging.DEBUG)
    mw = make_filter(image_app(status), formats='cadf,glance', driver='test,log',
                     record_lookups='true', unmatched_requests='audit')
    env = identity_environ(wsgi, method, path, body=b'data',
                           query='token=%s&password=%s&limit=5' % (QUERY_TOKEN, QUERY_TOKEN))
    wsgi.run(mw, env)
    envelopes = captured.all()
    assert envelopes
    text = json.dumps(captured.raw())
    for secret in SECRETS:
        assert secret not in text
    logged = [r for r in caplog.records if r.name.startswith(('oslo.messaging',
                                                              'oslo_messaging'))]
    assert len(logged) == len(envelopes)          # the log driver wrote every envelope
    for record in caplog.records:
        line = record.getMessage() + (record.exc_text or '')
        for secret in SECRETS:
            assert secret not in line, record.name
    cadf = [e for e in envelopes if e['event_type'].startswith('audit.')]
    assert len(cadf) == 1
    assert cadf[0]['payload']['requestPath'] == '%s?token=***&password=***&limit=5' % path
