"""Route maps: every shipped route classifies and is audited; the loader's errors."""

from __future__ import annotations

import json
import logging
import os
import textwrap
import uuid

import pytest
from pycadf import cadftaxonomy

from audit_notifier import routes
from audit_notifier._config import ConfigError
from audit_notifier.classify import Classifier
from audit_notifier.events import glance as glance_events

SHIPPED = routes.shipped_maps()


def load(name, overrides=()):
    return routes.load(name, overrides, usage_rules=glance_events.RULES)


def concrete(route_path, tag=''):
    """A concrete path for a template, and the params it must yield."""
    params = {}
    segs = []
    for seg in route_path.strip('/').split('/'):
        if seg.startswith('{') and seg.endswith('}'):
            name = seg[1:-1]
            params[name] = str(uuid.uuid5(uuid.NAMESPACE_OID, name + tag))
            segs.append(params[name])
        else:
            segs.append(seg)
    return '/' + '/'.join(segs), params


def trie_fingerprint(node):
    """Every key of the compiled trie, recursively, as a hashable structure."""
    if not isinstance(node, dict):
        return ('leaf', id(node))
    items = []
    for key, value in node.items():
        if key is None:
            items.append(('param', value[0], trie_fingerprint(value[1])))
        elif key == '':
            items.append(('methods', tuple(sorted(value))))
        else:
            items.append((key, trie_fingerprint(value)))
    return tuple(sorted(items, key=repr))


def test_glance_map_is_shipped():
    assert 'glance' in SHIPPED
    assert routes.resolve_map_path('glance') == os.path.join(routes.SHIPPED_DIR, 'glance.yaml')


@pytest.mark.parametrize('name', SHIPPED)
def test_every_route_matches_its_concrete_path(name):
    rm = load(name)
    assert rm.routes, name
    assert rm.sources == [routes.resolve_map_path(name)]
    for route in rm.routes:
        path, params = concrete(route.path)
        hit = rm.match(route.method, path)
        assert hit is not None, (route.method, route.path, path)
        assert hit[0] is route, (route.method, route.path, hit[0].path)
        assert hit[1] == params
        # a trailing slash names the same resource
        hit = rm.match(route.method, path + '/')
        assert hit is not None and hit[0] is route and hit[1] == params


@pytest.mark.parametrize('name', SHIPPED)
def test_every_route_uses_the_pycadf_taxonomy(name):
    rm = load(name)
    assert cadftaxonomy.is_valid_resource(rm.service.type_uri)
    for route in rm.routes:
        assert cadftaxonomy.is_valid_action(route.action), (route.path, route.action)
        assert cadftaxonomy.is_valid_resource(route.target.type_uri), route.path
        assert route.kind in ('write', 'read', 'list')
        assert route.event == route.event.lower() and '.' in route.event


def _expected_source(sources, params, body, headers):
    for kind, ref in sources:
        if kind == 'path':
            value = params.get(ref)
        elif kind == 'response':
            value = body
            for key in ref:
                value = value.get(key) if isinstance(value, dict) else None
        elif kind == 'header':
            value = headers.get(ref)
            if value and ref.lower() == 'location':
                value = value.rstrip('/').rsplit('/', 1)[-1]
        elif kind == 'record':
            value = None        # concrete() paths hold UUIDs: no record is fetched
        else:
            value = ref
        if value:
            return value
    return None


def _response_for(route):
    """A JSON body and headers carrying a distinct value for every source of the route."""
    body, headers = {}, {}
    sources = list(route.target.id) + list(route.target.name)
    for _, srcs in route.target.attachments:
        sources.extend(srcs)
    for kind, ref in sources:
        if kind == 'response':
            node = body
            for key in ref[:-1]:
                node = node.setdefault(key, {})
            node[ref[-1]] = str(uuid.uuid5(uuid.NAMESPACE_OID, 'resp.' + '.'.join(ref)))
        elif kind == 'header':
            headers[ref] = 'http://glance.example.org/v2/x/hdr-' + ref.lower()
    return body, headers


@pytest.mark.parametrize('name', SHIPPED)
def test_every_route_is_audited_through_the_filter(name, make_filter, captured, wsgi,
                                                   cadf_valid):
    """One request per route of the map: exactly one CADF event, right type and target."""
    rm = load(name)
    current = {}

    def app(environ, start_response):
        route = current['route']
        body, headers = _response_for(route)
        environ['wsgi.input'].read()
        data = json.dumps(body).encode()
        start_response('200 OK', [('Content-Type', 'application/json'),
                                  ('Content-Length', str(len(data)))] + list(headers.items()))
        return [data]

    mw = make_filter(app, route_map=name, formats='cadf')
    template = rm.service.cadf_event_type
    for index, route in enumerate(rm.routes):
        captured.reset()
        current['route'] = route
        path, params = concrete(route.path, '-%d' % index)
        sr, _ = wsgi.run(mw, wsgi.environ(route.method, path, body=b'{}',
                                            headers=wsgi.IDENTITY))
        assert sr.status == '200 OK'
        events = captured.all()
        assert [e['event_type'] for e in events] == [template.format(event=route.event)], \
            (route.method, route.path)
        payload = events[0]['payload']
        body, headers = _response_for(route)
        expected_id = (_expected_source(route.target.id, params, body, headers) or
                       mw.emitter.observer['id'])
        assert payload['action'] == route.action
        # 200 OK here: success, unless the route only starts the work (async: pending)
        assert payload['outcome'] == ('pending' if route.asynchronous else 'success')
        assert payload['target']['typeURI'] == route.target.type_uri
        assert payload['target']['id'] == expected_id, (route.method, route.path)
        expected_atts = []
        for att_name, srcs in route.target.attachments:
            value = _expected_source(srcs, params, body, headers)
            if value:
                expected_atts.append({'typeURI': 'mime:text/plain', 'name': att_name,
                                      'content': value})
        assert payload['target'].get('attachments', []) == expected_atts
        assert payload['requestPath'] == path
        assert payload['initiator']['id'] == wsgi.USER_ID
        cadf_valid(payload)


def test_literal_segment_beats_parameter():
    rm = load('glance')
    route, params = rm.match('GET', '/v1/images/detail')
    assert (route.path, route.event, params) == ('/v1/images/detail', 'image.list', {})
    route, params = rm.match('GET', '/v1/images/detailed')
    assert (route.path, params) == ('/v1/images/{image_id}', {'image_id': 'detailed'})
    # HEAD exists for the parameter route only: the literal leaf has no HEAD
    assert rm.match('HEAD', '/v1/images/detail') is None


def test_trailing_slash_and_root():
    rm = load('glance')
    assert rm.match('GET', '/v2/images/')[0].path == '/v2/images'
    route, params = rm.match('GET', '/v2/images/abc/')
    assert (route.path, params) == ('/v2/images/{image_id}', {'image_id': 'abc'})
    assert rm.match('GET', '/') is None
    assert rm.match('GET', '') is None


@pytest.mark.parametrize('method, path', [
    ('GET', '/v2/nothing'),
    ('GET', '/v2/images/abc/file/extra'),
    ('POST', '/v2/images/abc'),          # known path, method not audited
    ('GET', '/v3/images'),
    ('GET', '/v2'),
    ('GET', '/v2/images//file'),         # an empty segment is not a parameter value
    ('GET', '/v2/images//GET'),          # nor a way into the method table
    ('POST', '/v2/images//POST/x'),
])
def test_unknown_paths_do_not_match(method, path):
    rm = load('glance')
    assert rm.match(method, path) is None


def test_unknown_path_through_filter_is_passed_through_untouched(make_filter, captured, wsgi,
                                                                  caplog):
    caplog.set_level(logging.DEBUG)
    body = [b'x']

    def app(environ, start_response):
        start_response('200 OK', [])
        return body

    mw = make_filter(app)
    sr = []
    assert mw(wsgi.environ('GET', '/v2/images//GET'), lambda s, h, e=None: sr.append(s)) is body
    assert sr == ['200 OK']
    assert captured.all() == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize('audit_unmatched', [False, True])
def test_unknown_paths_leave_no_state(audit_unmatched):
    rm = load('glance')
    classifier = Classifier(rm, True, True, audit_unmatched, True, True)
    trie_before = trie_fingerprint(rm._trie)
    wanted_before = dict(classifier._wanted)
    routes_before = list(rm.routes)
    classifier.classify({'REQUEST_METHOD': 'GET', 'PATH_INFO': '/warm-up'})
    unmatched_before = dict(classifier._unmatched)
    for i in range(50000):
        path = ('/v2/images/%d/unknown/%d' % (i, i) if i % 2 else '/unknown-%d/x' % i)
        exchange = classifier.classify({'REQUEST_METHOD': 'GET', 'PATH_INFO': path})
        if audit_unmatched:
            assert exchange.route is classifier._unmatched['GET']
        else:
            assert exchange is None
    assert trie_fingerprint(rm._trie) == trie_before
    assert classifier._wanted == wanted_before
    assert rm.routes == routes_before
    assert classifier._unmatched == unmatched_before
    assert len(classifier._unmatched) == (1 if audit_unmatched else 0)


def test_unmatched_routes_are_bounded_per_method():
    classifier = Classifier(load('glance'), True, True, True, True, True)
    for i in range(5000):
        exchange = classifier.classify({'REQUEST_METHOD': 'M%d' % i, 'PATH_INFO': '/u/%d' % i})
        assert exchange.route.action == 'unknown'
        assert exchange.route.method == 'M%d' % i
    assert len(classifier._unmatched) == 32


# -- loader validation -------------------------------------------------------------------

SERVICE = {'name': 'test', 'type_uri': 'service/storage/image', 'publisher': 'image'}
GOOD_ROUTE = {'method': 'GET', 'path': '/v2/x/{x_id}', 'event': 'image.x', 'action': 'read',
              'target': {'type_uri': 'service/storage/image', 'id': 'path.x_id'}}


def write_map(tmp_path, doc, name='map.yaml'):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def route(**changes):
    r = json.loads(json.dumps(GOOD_ROUTE))
    for key, value in changes.items():
        if value is None:
            r.pop(key, None)
        else:
            r[key] = value
    return r


def load_error(path, overrides=()):
    with pytest.raises(ConfigError) as err:
        routes.load(path, overrides, usage_rules=glance_events.RULES)
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith('audit_notifier: ')
    return message


def test_good_test_map_loads(tmp_path):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [GOOD_ROUTE]})
    rm = routes.load(path, usage_rules=glance_events.RULES)
    assert rm.service == routes.Service('test', 'service/storage/image', 'image', '{event}',
                                        'test.request')
    assert [(r.method, r.path, r.kind, r.target.id) for r in rm.routes] == \
        [('GET', '/v2/x/{x_id}', 'read', (('path', 'x_id'),))]


@pytest.mark.parametrize('bad_route, where, words', [
    (route(colour='red'), 'route 0 (GET /v2/x/{x_id})', ['unknown key colour']),
    (route(method='FETCH'), 'route 0 (FETCH /v2/x/{x_id}).method', ["'FETCH'"]),
    (route(method=None), 'route 0.method', ['missing']),
    (route(action='list'), 'route 0 (GET /v2/x/{x_id}).action', ["'list'", 'CADF']),
    (route(action='fetch'), 'route 0 (GET /v2/x/{x_id}).action', ["'fetch'"]),
    (route(event='Image Read'), 'route 0 (GET /v2/x/{x_id}).event', ["'Image Read'"]),
    (route(kind='mutate'), 'route 0 (GET /v2/x/{x_id}).kind', ["'mutate'"]),
    (route(observe='sideways'), 'route 0 (GET /v2/x/{x_id}).observe', ["'sideways'"]),
    (route(path='v2/x'), 'route 0 (GET v2/x).path', ['does not start with /']),
    (route(path='/v2/x{x_id}'), 'route 0 (GET /v2/x{x_id}).path', ["'x{x_id}'"]),
    (route(target={'type_uri': 'image', 'id': 'path.x_id'}),
     'route 0 (GET /v2/x/{x_id}).target.type_uri', ["'image'", 'CADF']),
    (route(target={'type_uri': 'storage/image', 'id': 'path.x_id'}),
     None, []),   # a valid typeURI root (pycadf: storage)
    (route(target={'type_uri': 'service/storage/image', 'id': 'body.id'}),
     'route 0 (GET /v2/x/{x_id}).target.id', ["'body.id'"]),
    (route(target={'type_uri': 'service/storage/image', 'id': 'imageid'}),
     'route 0 (GET /v2/x/{x_id}).target.id', ["'imageid'"]),
    (route(target={'type_uri': 'service/storage/image', 'id': 'path.image_id'}),
     'route 0 (GET /v2/x/{x_id}).target.id', ["'image_id'", 'x_id']),
    (route(target={'type_uri': 'service/storage/image', 'id': 'path.x_id',
                   'attachments': {'tag': 'path.tag'}}),
     'route 0 (GET /v2/x/{x_id}).target.attachments.tag', ["'tag'"]),
    (route(target={'type_uri': 'service/storage/image', 'colour': 'x'}),
     'route 0 (GET /v2/x/{x_id}).target', ['unknown key colour']),
    (route(target=None), 'route 0 (GET /v2/x/{x_id}).target', ['missing']),
    (route(usage='image.frobnicate'), 'route 0 (GET /v2/x/{x_id}).usage',
     ["'image.frobnicate'", 'image.create']),
])
def test_route_validation_errors(tmp_path, bad_route, where, words):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [bad_route]})
    if where is None:
        assert len(routes.load(path, usage_rules=glance_events.RULES).routes) == 1
        return
    message = load_error(path)
    assert 'route map %s, %s:' % (path, where) in message
    for word in words:
        assert word in message


def test_security_type_uri_is_rejected_as_pycadf_does(tmp_path):
    """pycadf has no 'security' root (only service/security, data/security)."""
    assert not cadftaxonomy.is_valid_resource('security/account')
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        route(target={'type_uri': 'security/account', 'id': 'path.x_id'})]})
    message = load_error(path)
    assert 'route 0 (GET /v2/x/{x_id}).target.type_uri' in message


def test_loader_taxonomies_agree_with_pycadf():
    for action in routes.CADF_ACTIONS:
        assert cadftaxonomy.is_valid_action(action), action
    for action in cadftaxonomy.ACTION_TAXONOMY:
        assert action.startswith(routes.CADF_ACTIONS), action
    for root in routes.CADF_TYPE_ROOTS:
        assert cadftaxonomy.is_valid_resource(root + '/x'), root


def test_bad_yaml_names_the_file(tmp_path):
    path = write_map(tmp_path, 'service: {name: test\nroutes: [\n  - {method: GET')
    message = load_error(path)
    assert 'route map %s is not valid YAML' % path in message


@pytest.mark.parametrize('doc, where, words', [
    ({'service': SERVICE, 'routes': [GOOD_ROUTE], 'extra': 1}, 'document', ['unknown key extra']),
    ('- just\n- a list\n', 'document', ['not a mapping']),
    ({'routes': [GOOD_ROUTE]}, 'service', ['missing']),
    ({'service': SERVICE}, 'routes', ['missing or not a list']),
    ({'service': dict(SERVICE, colour='red'), 'routes': [GOOD_ROUTE]}, 'service',
     ['unknown key colour']),
    ({'service': dict(SERVICE, type_uri='image'), 'routes': [GOOD_ROUTE]}, 'service.type_uri',
     ["'image'"]),
    ({'service': {'name': 'test', 'type_uri': 'service/storage/image'},
      'routes': [GOOD_ROUTE]}, 'service.publisher', ['missing']),
    ({'service': dict(SERVICE, unmatched_event='Request'), 'routes': [GOOD_ROUTE]},
     'service.unmatched_event', ['dotted']),
    ({'service': SERVICE, 'routes': [GOOD_ROUTE, 'GET /v2/y']}, 'route 1', ['not a mapping']),
])
def test_document_validation_errors(tmp_path, doc, where, words):
    path = write_map(tmp_path, doc)
    message = load_error(path)
    assert 'route map %s, %s:' % (path, where) in message
    for word in words:
        assert word in message


def test_bad_cadf_event_type_template_names_file(tmp_path):
    path = write_map(tmp_path, {'service': dict(SERVICE, cadf_event_type='audit.event'),
                                'routes': [GOOD_ROUTE]})
    message = load_error(path)
    assert 'route map %s, service.cadf_event_type' % path in message
    assert "'audit.event' does not contain {event}" in message


def test_duplicate_route_is_an_error(tmp_path):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        GOOD_ROUTE, route(method='get', event='image.y')]})
    message = load_error(path)
    assert 'route map %s, route 1 (GET /v2/x/{x_id}): duplicate method and path' % path \
        in message


def test_conflicting_parameter_names_name_file_and_routes(tmp_path):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        GOOD_ROUTE,
        route(path='/v2/x/{other}/y', target={'type_uri': 'service/storage/image'})]})
    message = load_error(path)
    assert 'GET /v2/x/{other}/y' in message
    assert '{other}' in message and '{x_id}' in message
    assert path in message          # which file to fix


def test_missing_file_and_unknown_shipped_name(tmp_path):
    message = load_error(str(tmp_path / 'nope.yaml'))
    assert 'route map file %s does not exist' % (tmp_path / 'nope.yaml') in message
    message = load_error('nova')
    assert "no shipped map named 'nova'" in message
    assert 'glance' in message


def test_override_files_add_and_replace_routes(tmp_path):
    base = load('glance')
    override = write_map(tmp_path, textwrap.dedent('''\
        service:
          cadf_event_type: "cadf.{event}"
        routes:
          - {method: GET, path: "/v2/images/{image_id}", event: image.show, action: read,
             target: {type_uri: data/image, id: path.image_id}}
          - {method: GET, path: /v2/info/usage, event: image.usage.read, action: read,
             target: {type_uri: service/storage/image}}
        '''), 'override.yaml')
    rm = load('glance', [override])
    assert len(rm.routes) == len(base.routes) + 1
    assert rm.sources == [routes.resolve_map_path('glance'), override]
    assert rm.service.cadf_event_type == 'cadf.{event}'
    assert rm.service.name == 'glance'
    route, params = rm.match('GET', '/v2/images/abc')
    assert (route.event, route.target.type_uri, params) == \
        ('image.show', 'data/image', {'image_id': 'abc'})
    route, params = rm.match('GET', '/v2/info/usage')
    assert (route.event, params) == ('image.usage.read', {})
    # the rest of the base map is unchanged
    route, params = rm.match('GET', '/v2/images/abc/file')
    assert (route.event, route.observe) == ('image.download', 'download')
    assert {r.key for r in rm.routes} == {r.key for r in base.routes} | \
        {('GET', '/v2/info/usage')}


def test_override_through_paste_key(tmp_path, make_filter, captured, wsgi):
    override = write_map(tmp_path, textwrap.dedent('''\
        routes:
          - {method: GET, path: /v2/info/usage, event: image.usage.read, action: read,
             target: {type_uri: service/storage/image, id: literal.usage}}
        '''), 'override.yaml')

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/json')])
        return [b'{}']

    mw = make_filter(app, route_map_overrides=override)
    wsgi.run(mw, wsgi.environ('GET', '/v2/info/usage'))
    event = captured.one('audit.image.usage.read')
    assert event['payload']['target'] == {'typeURI': 'service/storage/image', 'id': 'usage'}


def test_errors_in_override_file_name_that_file(tmp_path):
    override = write_map(tmp_path, {'routes': [route(method='FETCH')]}, 'override.yaml')
    message = load_error('glance', [override])
    assert 'route map %s, route 0 (FETCH /v2/x/{x_id}).method' % override in message
    override = write_map(tmp_path, {'service': {'colour': 'red'}}, 'override2.yaml')
    message = load_error('glance', [override])
    assert 'colour' in message and override in message
