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

"""Which notifications are sent: event filter, CADF event_type template, publisher_id,
audit_reads / audit_lists, and unmatched requests."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from audit_notifier.emitter import EventFilter
from audit_notifier.events import cadf as cadf_events

IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'


def json_app(status='200 OK', doc=None):
    body = json.dumps(doc if doc is not None else {'id': IMAGE, 'status': 'active'}).encode()

    def app(environ, start_response):
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(body)))])
        return [body]
    return app


# -- EventFilter ----------------------------------------------------------------------------

@pytest.mark.parametrize('patterns, event_type, enabled', [
    ([], 'image.create', True),
    (['image'], 'image.create', False),                    # group prefix
    (['image'], 'image.member.create', False),
    (['image'], 'image', False),
    (['image'], 'audit.image.create', True),               # a prefix, not a substring
    (['image'], 'images.create', True),
    (['image.member'], 'image.member.delete', False),
    (['image.member'], 'image.create', True),
    (['image.member'], 'image.members.list', True),
    (['image.send'], 'image.send', False),                 # exact name
    (['image.send'], 'image.sender', True),
    (['image.send'], 'image.upload', True),
    (['audit'], 'audit.image.read', False),
    (['audit.image.read*'], 'audit.image.read', False),    # glob
    (['audit.image.read*'], 'audit.image.readers', False),
    (['audit.image.read*'], 'audit.image.create', True),
    (['audit.image.read*'], 'image.read', True),
    (['audit.*.delete'], 'audit.image.member.delete', False),
    (['audit.*.delete'], 'image.delete', True),
    (['image.?pload'], 'image.upload', False),
    (['image.?pload'], 'image.reupload', True),
    (['image.[cd]*'], 'image.create', False),
    (['image.[cd]*'], 'image.delete', False),
    (['image.[cd]*'], 'image.update', True),
    ([' image.send ', '', '  '], 'image.send', False),
    ([' image.send ', '', '  '], 'image.create', True),
    (['task', 'image.member'], 'task.run', False),
    (['task', 'image.member'], 'image.member.update', False),
    (['task', 'image.member'], 'image.update', True),
])
def test_event_filter(patterns, event_type, enabled):
    f = EventFilter(patterns)
    assert f.enabled(event_type) is enabled
    assert f.enabled(event_type) is enabled           # and again, from its cache


def test_event_filter_cache_is_bounded():
    f = EventFilter(['image.send', 'audit.*.read'])
    for i in range(10000):
        assert f.enabled('x%d.read' % i) is True
    assert len(f._cache) == 4096
    assert f.enabled('audit.image.read') is False
    assert f.enabled('image.send') is False


@pytest.mark.parametrize('disabled, expected', [
    ('', ['image.send', 'audit.image.download']),
    ('image', ['audit.image.download']),
    ('image.send', ['audit.image.download']),
    ('audit', ['image.send']),
    ('audit.image.download', ['image.send']),
    ('audit.image.*', ['image.send']),
    ('audit.*,image', []),
    ('image.upload,audit.image.read', ['image.send', 'audit.image.download']),
])
def test_disabled_events_through_the_filter(make_filter, captured, wsgi, disabled, expected):
    mw = make_filter(json_app(), formats='cadf,glance', disabled_events=disabled)
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s/file' % IMAGE))
    assert captured.types() == expected


# -- CADF event_type template and publisher_id ----------------------------------------------------

@pytest.mark.parametrize('template, event_type', [
    (None, 'audit.image.read'),
    ('{event}', 'image.read'),
    ('cadf.{event}.v1', 'cadf.image.read.v1'),
])
def test_cadf_event_type_template(make_filter, captured, wsgi, template, event_type):
    paste = {} if template is None else {'cadf_event_type': template}
    mw = make_filter(json_app(), **paste)
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s' % IMAGE))
    assert captured.types() == [event_type]


def test_template_does_not_rename_glance_format(make_filter, captured, wsgi):
    mw = make_filter(json_app('201 Created'), formats='cadf,glance',
                     cadf_event_type='cadf.{event}')
    wsgi.run(mw, wsgi.environ('POST', '/v2/images'))
    assert sorted(captured.types()) == ['cadf.image.create', 'image.create']


def test_publisher_id_default_is_image_dot_host(make_filter, captured, wsgi):
    mw = make_filter(json_app('201 Created'), formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('POST', '/v2/images'))
    envelopes = captured.all()
    assert len(envelopes) == 2
    publisher = 'image.%s' % socket.gethostname()
    assert {e['publisher_id'] for e in envelopes} == {publisher}
    cadf = captured.one('audit.image.create')['payload']
    assert cadf['observer'] == {'typeURI': 'service/storage/image',
                                'id': cadf_events.observer_id(publisher), 'name': 'glance'}


def test_publisher_id_option(make_filter, captured, wsgi):
    mw = make_filter(json_app('201 Created'), formats='cadf,glance',
                     publisher_id='glance-api.node-7')
    wsgi.run(mw, wsgi.environ('POST', '/v2/images'))
    assert {e['publisher_id'] for e in captured.all()} == {'glance-api.node-7'}
    observer = captured.one('audit.image.create')['payload']['observer']
    assert observer['id'] == cadf_events.observer_id('glance-api.node-7')
    # stable per publisher_id, distinct between publishers
    assert cadf_events.observer_id('glance-api.node-7') != cadf_events.observer_id('image.x')


# -- audit_reads / audit_lists --------------------------------------------------------------------

@pytest.mark.parametrize('method, path, reads, lists, expected', [
    ('GET', '/v2/images/%s' % IMAGE, 'false', 'true', []),
    ('HEAD', '/v1/images/%s' % IMAGE, 'false', 'true', []),
    ('GET', '/v2/images/%s/members/m1' % IMAGE, 'false', 'true', []),
    ('GET', '/v2/images', 'false', 'true', ['audit.image.list']),
    ('GET', '/v2/images', 'true', 'false', []),
    ('GET', '/v1/images/detail', 'true', 'false', []),
    ('GET', '/v2/images/%s/members' % IMAGE, 'true', 'false', []),
    ('GET', '/v2/images/%s' % IMAGE, 'true', 'false', ['audit.image.read']),
    ('POST', '/v2/images', 'false', 'false', ['audit.image.create']),
    ('DELETE', '/v2/images/%s' % IMAGE, 'false', 'false', ['audit.image.delete']),
])
def test_audit_reads_and_lists(make_filter, captured, wsgi, method, path, reads, lists,
                               expected):
    mw = make_filter(json_app(), audit_reads=reads, audit_lists=lists)
    wsgi.run(mw, wsgi.environ(method, path))
    assert captured.types() == expected


def test_reads_off_passes_reads_through_untouched(make_filter, captured, wsgi):
    body = [b'{}']

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/json')])
        return body

    mw = make_filter(app, audit_reads='false')
    assert mw(wsgi.environ('GET', '/v2/images/%s' % IMAGE), wsgi.StartResponse()) is body
    assert captured.all() == []


@pytest.mark.parametrize('reads', ['false', 'true'])
def test_reads_off_still_sends_image_send(make_filter, captured, wsgi, reads):
    mw = make_filter(json_app(), formats='cadf,glance', audit_reads=reads)
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s/file' % IMAGE))
    expected = ['image.send'] + (['audit.image.download'] if reads == 'true' else [])
    assert captured.types() == expected
    send = captured.one('image.send')
    assert send['priority'] == 'INFO'
    assert send['payload']['bytes_sent'] == len(json.dumps({'id': IMAGE, 'status': 'active'}))


# -- unmatched requests ---------------------------------------------------------------------------

@pytest.mark.parametrize('method, action', [('GET', 'read'), ('POST', 'create'),
                                            ('PUT', 'update'), ('DELETE', 'delete'),
                                            ('OPTIONS', 'unknown')])
def test_unmatched_requests_audit(make_filter, captured, wsgi, cadf_valid, method, action):
    mw = make_filter(json_app(), unmatched_requests='audit')
    wsgi.run(mw, wsgi.environ(method, '/v2/info/stores', query='detail=1',
                              headers=wsgi.IDENTITY, **wsgi.CONFIRMED))
    event = captured.one('audit.image.request')
    assert event['priority'] == 'INFO'
    payload = event['payload']
    observer = mw.emitter.observer
    assert payload['target'] == {'typeURI': 'service/storage/image', 'id': observer['id']}
    assert (payload['action'], payload['outcome']) == (action, 'success')
    assert payload['requestPath'] == '/v2/info/stores?detail=1'
    assert payload['initiator']['id'] == wsgi.USER_ID
    cadf_valid(payload)


def test_unmatched_requests_ignored_by_default(make_filter, captured, wsgi):
    mw = make_filter(json_app())
    wsgi.run(mw, wsgi.environ('GET', '/v2/info/stores'))
    assert captured.all() == []


def test_unmatched_audit_needs_cadf(make_filter, captured, wsgi):
    mw = make_filter(json_app(), unmatched_requests='audit', formats='glance')
    wsgi.run(mw, wsgi.environ('GET', '/v2/info/stores'))
    assert captured.all() == []


def test_unmatched_requests_keep_no_per_path_state(make_filter, captured, wsgi):
    mw = make_filter(json_app(), unmatched_requests='audit')
    classifier = mw.classifier
    wanted = dict(classifier._wanted)
    for i in range(2000):
        wsgi.run(mw, wsgi.environ('GET', '/v2/unknown/%d/%d' % (i, i * 7)))
    events = captured.all()
    assert len(events) == 2000
    assert {e['event_type'] for e in events} == {'audit.image.request'}
    assert {e['payload']['target']['id'] for e in events} == {mw.emitter.observer['id']}
    assert [e['payload']['requestPath'] for e in events[:2]] == ['/v2/unknown/0/0',
                                                                 '/v2/unknown/1/7']
    assert list(classifier._unmatched) == ['GET']
    assert classifier._wanted == wanted
    assert list(mw.emitter.filter._cache) == ['audit.image.request']


# -- the filter's own failures: the call goes on, the loss is counted and logged -----------

def test_a_classification_bug_serves_the_call_and_counts_it(make_filter, captured, wsgi,
                                                            caplog):
    mw = make_filter(json_app())
    plain_sr, plain_body = wsgi.run(json_app(), wsgi.environ('GET', '/v2/images/%s' % IMAGE))

    def broken(environ):
        raise RuntimeError('classifier bug')
    mw.classifier.classify = broken
    with caplog.at_level(logging.ERROR, logger='audit_notifier'):
        for _ in range(3):
            sr, body = wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s' % IMAGE))
            assert (sr.calls, body) == (plain_sr.calls, plain_body)
    assert mw.delivery.counters['filter_errors'] == 3
    assert captured.all() == []
    [line] = caplog.records
    assert line.getMessage() == ('audit_notifier: classifying a call failed; it goes on '
                                 'unaudited')
    assert line.exc_info[0] is RuntimeError


def test_a_journaling_bug_serves_the_call_and_counts_it(make_filter, captured, wsgi, caplog):
    mw = make_filter(json_app())
    plain_sr, plain_body = wsgi.run(json_app(), wsgi.environ('GET', '/v2/images/%s' % IMAGE))

    def broken(phase, exchange):
        raise OSError('journal bug')
    mw.delivery.submit = broken
    with caplog.at_level(logging.ERROR, logger='audit_notifier'):
        for _ in range(3):
            sr, body = wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s' % IMAGE))
            assert (sr.calls, body) == (plain_sr.calls, plain_body)
    assert mw.delivery.counters['filter_errors'] == 3
    assert [r.getMessage() for r in caplog.records] == [
        'audit_notifier: journaling an API call failed; its notifications are lost']


@pytest.mark.parametrize('formats, lookups, route_map, looking_up', [
    # Glance format with look-ups: every call with a usage rule may look a record up
    ('cadf,glance', 'true', 'glance',
     {('GET', '/v2/images/{image_id}'): False, ('GET', '/v2/images'): False,
      ('GET', '/v2/images/{image_id}/file'): True, ('PUT', '/v2/images/{image_id}/file'): True,
      ('POST', '/v2/images/{image_id}/actions/deactivate'): True,
      ('PUT', '/v2/images/{image_id}/tags/{tag_value}'): True}),
    ('cadf', 'true', 'glance',
     {('GET', '/v2/images/{image_id}/file'): False,
      ('PUT', '/v2/images/{image_id}/tags/{tag_value}'): False}),
    ('cadf,glance', 'false', 'glance', {('GET', '/v2/images/{image_id}/file'): False}),
    # Magnum: cluster_data (a record attachment) is looked up after the call
    ('cadf', 'true', 'magnum',
     {('POST', '/v1/clusters'): True, ('GET', '/v1/clusters'): False}),
])
def test_which_calls_may_need_a_record_look_up(make_filter, formats, lookups, route_map,
                                               looking_up):
    """emitter.looks_up: the calls a gathering sender builds at once (their record
    look-up must not wait)."""
    mw = make_filter(lambda e, s: [], formats=formats, record_lookups=lookups,
                     route_map=route_map)
    routes = {route.key: route for route in mw.route_map.routes}
    assert {key: mw.emitter.looks_up(routes[key]) for key in looking_up} == looking_up
