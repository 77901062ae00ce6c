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

"""Outcome and priority rules: status codes, exceptions, broken and partial downloads."""

from __future__ import annotations

import json
import logging

import pytest

from audit_notifier import emitter
from audit_notifier.logs import LimitedLog

IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'
FILE = '/v2/images/%s/file' % IMAGE


def status_app(status, body=b'', headers=()):
    def app(environ, start_response):
        start_response(status, [('Content-Type', 'application/json')] + list(headers))
        return [body] if body else []
    return app


def cadf_of(captured):
    [event] = [e for e in captured.all() if e['event_type'].startswith('audit.')]
    return event


@pytest.mark.parametrize('status, outcome, priority', [
    ('200 OK', 'success', 'INFO'),
    ('201 Created', 'success', 'INFO'),
    ('204 No Content', 'success', 'INFO'),
    ('202 Accepted', 'pending', 'INFO'),
    ('304 Not Modified', 'success', 'INFO'),
    ('400 Bad Request', 'failure', 'ERROR'),    # refused: refused_priority
    ('401 Unauthorized', 'failure', 'ERROR'),    # refused: refused_priority
    ('403 Forbidden', 'failure', 'ERROR'),    # refused: refused_priority
    ('404 Not Found', 'failure', 'ERROR'),    # refused: refused_priority
    ('409 Conflict', 'failure', 'ERROR'),    # refused: refused_priority
    ('413 Request Entity Too Large', 'failure', 'ERROR'),    # refused: refused_priority
    ('500 Internal Server Error', 'failure', 'ERROR'),
    ('502 Bad Gateway', 'failure', 'ERROR'),
    ('503 Service Unavailable', 'failure', 'ERROR'),
])
@pytest.mark.parametrize('method, path, event_type', [
    ('GET', '/v2/images/%s' % IMAGE, 'audit.image.read'),
    ('POST', '/v2/images/%s/actions/deactivate' % IMAGE, 'audit.image.deactivate'),
    ('POST', '/v2/images/%s/import' % IMAGE, 'audit.image.import'),
])
def test_status_to_outcome(make_filter, captured, wsgi, status, outcome, priority, method,
                           path, event_type):
    mw = make_filter(status_app(status))
    wsgi.run(mw, wsgi.environ(method, path))
    events = captured.all()
    assert len(events) == 1, events
    [event] = events
    assert event['event_type'] == event_type
    assert event['priority'] == priority
    assert event['payload']['outcome'] == outcome
    assert event['payload']['reason'] == {'reasonType': 'HTTP',
                                          'reasonCode': status.split()[0]}


@pytest.mark.parametrize('refused_priority, expected', [
    (None, 'ERROR'), ('', 'ERROR'), ('error', 'ERROR'), ('warn', 'WARN'), ('info', 'INFO'),
    ('ERROR', 'ERROR')])
def test_refused_priority_option(make_filter, captured, wsgi, refused_priority, expected):
    """The CADF event of a 4xx gets refused_priority (unset or empty: the route map's
    client_error_priority, ERROR in the Glance map); the Glance-format text of the
    same call stays WARN, and a 5xx stays ERROR."""
    extra = {} if refused_priority is None else {'refused_priority': refused_priority}
    for status, cadf_priority in (('403 Forbidden', expected),
                                  ('503 Service Unavailable', 'ERROR')):
        captured.reset()
        mw = make_filter(status_app(status, b'{"message": "no"}'), formats='cadf,glance',
                         **extra)
        wsgi.run(mw, wsgi.environ('PATCH', '/v2/images/%s' % IMAGE))
        cadf = cadf_of(captured)
        assert (cadf['priority'], cadf['payload']['outcome']) == (cadf_priority, 'failure')
        assert captured.one('image.update')['priority'] == (
            'WARN' if status.startswith('4') else 'ERROR')


def test_refused_priority_bad_value_is_one_line(make_filter):
    from audit_notifier._config import ConfigError
    with pytest.raises(ConfigError) as err:
        make_filter(status_app('200 OK'), refused_priority='critical')
    assert str(err.value).startswith("audit_notifier: option refused_priority: invalid value "
                                     "'critical' in the paste ini")
    assert '\n' not in str(err.value)


@pytest.mark.parametrize('status, priority', [('404 Not Found', 'WARN'),
                                              ('503 Service Unavailable', 'ERROR')])
def test_glance_format_failures_are_text_at_the_same_priority(make_filter, captured, wsgi,
                                                              status, priority):
    body = json.dumps({'message': 'No image found with ID %s' % IMAGE}).encode()
    mw = make_filter(status_app(status, body), formats='glance')
    wsgi.run(mw, wsgi.environ('PATCH', '/v2/images/%s' % IMAGE))
    [event] = captured.all()
    assert (event['event_type'], event['priority']) == ('image.update', priority)
    assert event['payload'] == 'PATCH /v2/images/%s failed: %s: No image found with ID %s' % (
        IMAGE, status, IMAGE)


def test_app_exception_is_failure_error(make_filter, captured, wsgi):
    def app(environ, start_response):
        raise RuntimeError('boom')

    mw = make_filter(app, formats='cadf,glance')
    with pytest.raises(RuntimeError):
        mw(wsgi.environ('POST', '/v2/images/%s/actions/deactivate' % IMAGE),
           wsgi.StartResponse())
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome'], cadf['payload']['reason']) == \
        ('ERROR', 'failure', {'reasonType': 'exception', 'reasonCode': 'RuntimeError'})
    update = captured.one('image.update')
    assert update['priority'] == 'ERROR'
    assert update['payload'] == ('POST /v2/images/%s/actions/deactivate failed: internal '
                                 'error (RuntimeError)' % IMAGE)


# -- downloads --------------------------------------------------------------------------------

def download_app(chunks, status='200 OK', headers=(('Content-Length', '4000'),), lazy=True):
    """A generator app; lazy: start_response is called at the first iteration."""
    def app(environ, start_response):
        def respond():
            start_response(status, [('Content-Type', 'application/octet-stream')] +
                           list(headers))

        def gen():
            if lazy:
                respond()
            for chunk in chunks:
                yield chunk
        if not lazy:
            respond()
        return gen()
    return app


def measurement(event):
    [m] = event['payload']['measurements']
    assert m['metric']['name'] == 'bytes_sent' and m['metric']['unit'] == 'B'
    return m['result']


def test_complete_download_is_success(make_filter, captured, wsgi):
    mw = make_filter(download_app([b'a' * 1000] * 4), formats='cadf,glance')
    sr, body = wsgi.run(mw, wsgi.environ('GET', FILE, headers=wsgi.IDENTITY, **wsgi.CONFIRMED))
    assert len(body) == 4000
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome'], measurement(cadf)) == \
        ('INFO', 'success', 4000)
    send = captured.one('image.send')
    assert send['priority'] == 'INFO'
    assert send['payload'] == {'bytes_sent': 4000, 'image_id': IMAGE, 'owner_id': None,
                               'receiver_tenant_id': wsgi.PROJECT_ID,
                               'receiver_user_id': wsgi.USER_ID,
                               'destination_ip': '192.0.2.10'}


@pytest.mark.parametrize('consumed, lazy', [(0, False), (1, False), (1, True), (2, True),
                                            (3, True), (3, False)])
@pytest.mark.parametrize('headers', [(('Content-Length', '4000'),), ()])
def test_interrupted_download_is_failure_with_partial_count(make_filter, captured, wsgi,
                                                            consumed, lazy, headers):
    mw = make_filter(download_app([b'a' * 1000] * 4, headers=headers, lazy=lazy),
                     formats='cadf,glance')
    result = mw(wsgi.environ('GET', FILE), wsgi.StartResponse())
    it = iter(result)
    for _ in range(consumed):
        next(it)
    result.close()                          # the client went away
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome']) == ('ERROR', 'failure')
    assert measurement(cadf) == 1000 * consumed
    send = captured.one('image.send')
    assert send['priority'] == 'ERROR'
    assert send['payload']['bytes_sent'] == 1000 * consumed
    assert send['payload']['image_id'] == IMAGE


def test_short_body_is_failure(make_filter, captured, wsgi):
    mw = make_filter(download_app([b'a' * 1000] * 3), formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('GET', FILE))
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome'], measurement(cadf)) == \
        ('ERROR', 'failure', 3000)
    send = captured.one('image.send')
    assert (send['priority'], send['payload']['bytes_sent']) == ('ERROR', 3000)


@pytest.mark.parametrize('headers', [
    (('Content-Range', 'bytes 100-199/1000'),),
    (('Content-Range', 'bytes 100-199/1000'), ('Content-Length', '100')),
])
def test_range_206_counts_against_content_range(make_filter, captured, wsgi, headers):
    mw = make_filter(download_app([b'r' * 60, b'r' * 40], '206 Partial Content', headers),
                     formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('GET', FILE, headers={'Range': 'bytes=100-199'}))
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome'], measurement(cadf)) == \
        ('INFO', 'success', 100)
    assert cadf['payload']['reason']['reasonCode'] == '206'
    send = captured.one('image.send')
    assert (send['priority'], send['payload']['bytes_sent']) == ('INFO', 100)


def test_range_206_short_is_failure(make_filter, captured, wsgi):
    mw = make_filter(download_app([b'r' * 60], '206 Partial Content',
                                  (('Content-Range', 'bytes 100-199/1000'),)),
                     formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('GET', FILE, headers={'Range': 'bytes=100-199'}))
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome'], measurement(cadf)) == \
        ('ERROR', 'failure', 60)
    send = captured.one('image.send')
    assert (send['priority'], send['payload']['bytes_sent']) == ('ERROR', 60)


def test_range_206_with_record_size_uses_the_range(make_filter, captured, wsgi):
    """The image is 1000 bytes; a 100-byte range is complete, not short."""
    def app(environ, start_response):
        if environ.get('audit_notifier.subrequest'):
            start_response('200 OK', [('Content-Type', 'application/json')])
            return [json.dumps({'id': IMAGE, 'owner': 'owner-1', 'size': 1000}).encode()]
        return download_app([b'r' * 100], '206 Partial Content',
                            (('Content-Range', 'bytes 0-99/1000'),))(environ, start_response)

    mw = make_filter(app, formats='cadf,glance', record_lookups='true')
    wsgi.run(mw, wsgi.environ('GET', FILE))
    send = captured.one('image.send')
    assert (send['priority'], send['payload']['bytes_sent'], send['payload']['owner_id']) == \
        ('INFO', 100, 'owner-1')


def test_download_404_is_refused(make_filter, captured, wsgi):
    mw = make_filter(status_app('404 Not Found', b'{"message": "gone"}'), formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('GET', FILE))
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome']) == ('ERROR', 'failure')
    assert 'measurements' not in cadf['payload']        # an error page is not image data
    send = captured.one('image.send')
    assert send['priority'] == 'WARN'
    assert send['payload'] == 'GET %s failed: 404 Not Found: gone' % FILE


def test_download_closed_before_the_app_started_is_a_zero_byte_send(make_filter, captured,
                                                                    wsgi):
    """The client left before the first chunk (the app had not called start_response):
    still a broken download of 0 bytes, not a call without a response."""
    mw = make_filter(download_app([b'a' * 1000] * 4, lazy=True), formats='cadf,glance')
    result = mw(wsgi.environ('GET', FILE), wsgi.StartResponse())
    result.close()
    cadf = cadf_of(captured)
    assert (cadf['priority'], cadf['payload']['outcome'], measurement(cadf)) == \
        ('ERROR', 'failure', 0)
    send = captured.one('image.send')
    assert send['priority'] == 'ERROR'
    assert isinstance(send['payload'], dict), send['payload']
    assert (send['payload']['bytes_sent'], send['payload']['image_id']) == (0, IMAGE)


# -- an app that answers with a status line without a code ----------------------------------

@pytest.mark.parametrize('status', ['', ' ', '   \t', 'OK', '2000 Too long'])
def test_status_line_without_code_is_audited_as_unknown(make_filter, captured, wsgi, caplog,
                                                        monkeypatch, status):
    # A fresh limiter: an earlier test must not have used up this minute's line.
    monkeypatch.setattr(emitter, '_LIMITED', LimitedLog(emitter.LOG))
    mw = make_filter(status_app(status), formats='cadf,glance')
    with caplog.at_level(logging.WARNING, logger='audit_notifier'):
        for _ in range(3):
            wsgi.run(mw, wsgi.environ('POST', '/v2/images/%s/actions/deactivate' % IMAGE))
        events = captured.all()
    assert [(e['event_type'], e['priority']) for e in events] == [
        ('image.update', 'ERROR'), ('audit.image.deactivate', 'ERROR')] * 3
    cadf = events[1]['payload']
    assert (cadf['outcome'], cadf['reason']) == (
        'unknown', {'reasonType': 'HTTP', 'reasonCode': 'invalid status line'})
    assert events[0]['payload'] == (
        'POST /v2/images/%s/actions/deactivate failed: invalid status line %r' % (IMAGE, status))
    assert mw.delivery.counters['build_errors'] == 0
    assert mw.delivery.counters['dead_letters'] == 0
    lines = [r.getMessage() for r in caplog.records if 'status line' in r.getMessage()]
    assert lines == ['audit_notifier: the app answered POST /v2/images/{image_id}/actions/'
                     'deactivate with the status line %r, which has no status code; audited '
                     'with outcome unknown' % status]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
