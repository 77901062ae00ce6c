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
    assert rm.sources == (routes.resolve_map_path(name),)
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
                                          headers=wsgi.IDENTITY, **wsgi.CONFIRMED))
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
    routes_before = tuple(rm.routes)
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


def test_loader_applies_pycadfs_own_taxonomy(tmp_path, monkeypatch):
    """No copy of pycadf's lists: a pycadf with other taxonomies loads other maps."""
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        route(action='import/glance-direct')]})
    message = load_error(path)
    assert "route 0 (GET /v2/x/{x_id}).action: action 'import/glance-direct' is not in " \
        "the CADF taxonomy; start it with one of pycadf's actions (%s), e.g. " \
        'update/deactivate' % ', '.join(sorted(cadftaxonomy.ACTION_TAXONOMY)) in message
    monkeypatch.setattr(cadftaxonomy, 'ACTION_TAXONOMY',
                        cadftaxonomy.ACTION_TAXONOMY | {'import'})
    loaded = routes.load(path, usage_rules=glance_events.RULES)
    assert loaded.routes[0].action == 'import/glance-direct'
    # without the entries service/storage/image starts with, the good route is refused
    monkeypatch.setattr(cadftaxonomy, 'RESOURCE_TAXONOMY', frozenset(
        uri for uri in cadftaxonomy.RESOURCE_TAXONOMY
        if not 'service/storage/image'.startswith(uri)))
    message = load_error(write_map(tmp_path, {'service': SERVICE, 'routes': [GOOD_ROUTE]},
                                   'good.yaml'))
    assert "route 0 (GET /v2/x/{x_id}).target.type_uri: typeURI 'service/storage/image' " \
        "is not in the CADF resource taxonomy; start it with one of pycadf's resource " \
        'types (compute, data, network, service, storage, unknown), e.g. ' \
        'service/storage/image' in message


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


DUPLICATE_FIX = ('keep one of them (routes that differ only by a trailing slash or parameter '
                 'names match the same requests)')


@pytest.mark.parametrize('second', [
    route(method='get', event='image.y'),                   # method in another case
    route(path='/v2/x/{x_id}/', event='image.y'),           # a trailing slash
    route(path='/v2/x/{other}', event='image.y',            # another parameter name
          target={'type_uri': 'service/storage/image', 'id': 'path.other'}),
])
def test_duplicate_route_is_an_error(tmp_path, second):
    """The later route used to replace the earlier one silently (or, with another
    parameter name, to fail without saying that both routes match the same calls)."""
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [GOOD_ROUTE, second]})
    assert load_error(path) == (
        'audit_notifier: route map %s, route 1 (GET %s).path: duplicate route, also at '
        'route 0 (GET /v2/x/{x_id}); %s' % (path, second['path'], DUPLICATE_FIX))


def test_conflicting_parameter_names_name_file_and_routes(tmp_path):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        GOOD_ROUTE,
        route(method='POST', path='/v2/x/{other}/y',
              target={'type_uri': 'service/storage/image'})]})
    assert load_error(path) == (
        'audit_notifier: route map %s, route 1 (POST /v2/x/{other}/y).path: parameter {other} '
        'stands where route 0 (GET /v2/x/{x_id}) has {x_id}; use one name for the same '
        'position' % path)


@pytest.mark.parametrize('bad_path', ['/v2//x/{x_id}', '//v2/x/{x_id}', '/v2/x/{x_id}//'])
def test_path_with_an_empty_segment_is_an_error(tmp_path, bad_path):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [route(path=bad_path)]})
    assert load_error(path) == (
        'audit_notifier: route map %s, route 0 (GET %s).path: empty segment (//); write one / '
        'between segments (a request with an empty segment never matches)' % (path, bad_path))


def test_trailing_slash_of_a_route_path_is_ignored(tmp_path):
    """As for requests: the route matches with and without the trailing slash."""
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [route(path='/v2/x/{x_id}/')]})
    rm = routes.load(path, usage_rules=glance_events.RULES)
    assert [(r.path, p) for r, p in (rm.match('GET', '/v2/x/a'), rm.match('GET', '/v2/x/b/'))] \
        == [('/v2/x/{x_id}/', {'x_id': 'a'}), ('/v2/x/{x_id}/', {'x_id': 'b'})]


def test_same_parameter_twice_in_a_path_is_an_error(tmp_path):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        route(path='/v2/x/{x_id}/y/{x_id}')]})
    assert load_error(path) == (
        'audit_notifier: route map %s, route 0 (GET /v2/x/{x_id}/y/{x_id}).path: parameter '
        '{x_id} appears twice; give each parameter its own name' % path)


MAP_HEAD = 'service: {name: test, type_uri: service/storage/image, publisher: image}\n'


@pytest.mark.parametrize('text, line, key, first_line', [
    (MAP_HEAD + 'routes:\n'
     '  - {method: GET, path: /v2/x, event: image.x, event: image.y, action: read,\n'
     '     target: {type_uri: service/storage/image}}\n', 3, 'event', 3),
    (MAP_HEAD + 'routes:\n'
     '  - method: GET\n'
     '    path: /v2/x\n'
     '    event: image.x\n'
     '    action: read\n'
     '    target:\n'
     '      type_uri: service/storage/image\n'
     '      type_uri: data/image\n', 9, 'type_uri', 8),
    (MAP_HEAD + 'service: {name: other, type_uri: service/storage/image, publisher: image}\n'
     'routes: [{method: GET, path: /v2/x, event: image.x, action: read,\n'
     '          target: {type_uri: service/storage/image}}]\n', 2, 'service', 1),
])
def test_duplicate_yaml_key_is_an_error(tmp_path, text, line, key, first_line):
    """yaml.safe_load keeps the last of two equal keys without a word."""
    path = write_map(tmp_path, text)
    assert load_error(path) == (
        "audit_notifier: route map %s, line %d: duplicate key '%s' (first at line %d); keep "
        "one of them (YAML would silently use the last)" % (path, line, key, first_line))


def test_yaml_merge_key_may_be_overridden(tmp_path):
    """An explicit key next to '<<' refines the merged mapping: not a duplicate."""
    path = write_map(tmp_path, MAP_HEAD + textwrap.dedent('''\
        routes:
          - &read {method: GET, path: /v2/x, event: image.x, action: read,
                   target: {type_uri: service/storage/image}}
          - {<<: *read, path: /v2/y, event: image.y}
        '''))
    rm = routes.load(path, usage_rules=glance_events.RULES)
    assert [(r.method, r.path, r.event) for r in rm.routes] == \
        [('GET', '/v2/x', 'image.x'), ('GET', '/v2/y', 'image.y')]


@pytest.mark.parametrize('routes_text', ['routes: []\n', 'routes:\n'])
def test_empty_routes_is_an_error(tmp_path, routes_text):
    path = write_map(tmp_path, MAP_HEAD + routes_text)
    assert load_error(path) == (
        'audit_notifier: route map %s, routes: empty; list at least one route' % path)


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
    assert rm.sources == (routes.resolve_map_path('glance'), override)
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


# Override files follow the rules of a base map, except that a route may replace one of
# an earlier file (that is what they are for).
OVERRIDE_ROUTE = ('  - {method: GET, path: %s, event: image.x, action: read,\n'
                  '     target: {type_uri: service/storage/image}}\n')


@pytest.mark.parametrize('text, where, problem_and_fix', [
    ('routes:\n' + OVERRIDE_ROUTE % '/v2//x', 'route 0 (GET /v2//x).path',
     'empty segment (//); write one / between segments (a request with an empty segment '
     'never matches)'),
    ('routes:\n' + OVERRIDE_ROUTE % '/v2/x' + OVERRIDE_ROUTE % '/v2/x/',
     'route 1 (GET /v2/x/).path',
     'duplicate route, also at route 0 (GET /v2/x); ' + DUPLICATE_FIX),
    ('routes:\n' + OVERRIDE_ROUTE % '"/v2/{a}/x/{a}"', 'route 0 (GET /v2/{a}/x/{a}).path',
     'parameter {a} appears twice; give each parameter its own name'),
    ('routes:\n' + (OVERRIDE_ROUTE % '/v2/x').replace('action: read,',
                                                      'action: read, kind: read, kind: write,'),
     'line 2', "duplicate key 'kind' (first at line 2); keep one of them (YAML would silently "
     'use the last)'),
    ('routes: []\n', 'routes',
     'empty; list at least one route, or leave routes: out of an override file'),
    ('service: {cadf_event_type: "x.{event}"}\nroutes:\n', 'routes',
     'empty; list at least one route, or leave routes: out of an override file'),
])
def test_override_files_follow_the_same_rules(tmp_path, text, where, problem_and_fix):
    override = write_map(tmp_path, text, 'override.yaml')
    assert load_error('glance', [override]) == (
        'audit_notifier: route map %s, %s: %s' % (override, where, problem_and_fix))


def test_override_replaces_a_route_written_with_a_trailing_slash(tmp_path):
    """Across files a duplicate is a replacement, the later file winning; a file
    without routes only changes service keys."""
    base = write_map(tmp_path, {'service': SERVICE, 'routes': [
        GOOD_ROUTE, route(method='DELETE', event='image.delete', action='delete')]})
    first = write_map(tmp_path, 'routes:\n' + OVERRIDE_ROUTE % '"/v2/x/{x_id}/"', 'first.yaml')
    second = write_map(tmp_path, {'routes': [
        route(method='DELETE', path='/v2/x/{x_id}/', event='image.gone', action='delete')]},
        'second.yaml')
    third = write_map(tmp_path, {'routes': [
        route(method='DELETE', event='image.erase', action='delete')]}, 'third.yaml')
    service_only = write_map(tmp_path, 'service: {cadf_event_type: "x.{event}"}\n', 'svc.yaml')
    rm = routes.load(base, [first, second, third, service_only],
                     usage_rules=glance_events.RULES)
    assert [(r.method, r.path, r.event) for r in rm.routes] == [
        ('GET', '/v2/x/{x_id}/', 'image.x'), ('DELETE', '/v2/x/{x_id}', 'image.erase')]
    assert rm.service.cadf_event_type == 'x.{event}'
    hit, params = rm.match('GET', '/v2/x/abc')
    assert (hit.event, params) == ('image.x', {'x_id': 'abc'})
    hit, params = rm.match('DELETE', '/v2/x/abc/')
    assert (hit.event, params) == ('image.erase', {'x_id': 'abc'})


def test_override_with_another_parameter_name_names_the_override(tmp_path):
    """Replacing one route under another parameter name clashes with the base routes
    that keep the old name; the error points at the override and the base route."""
    base = write_map(tmp_path, {'service': SERVICE, 'routes': [
        GOOD_ROUTE, route(method='DELETE', event='image.delete', action='delete')]})
    override = write_map(tmp_path, {'routes': [
        route(path='/v2/x/{id}', target={'type_uri': 'service/storage/image', 'id': 'path.id'})]},
        'override.yaml')
    assert load_error(base, [override]) == (
        'audit_notifier: route map %s, route 0 (GET /v2/x/{id}).path: parameter {id} stands '
        'where route 1 (DELETE /v2/x/{x_id}) of %s has {x_id}; use one name for the same '
        'position' % (override, base))


# -- pending_if: a 2xx that only started the work, by what the answer shows ---------------

PENDING_IF = {'source': 'response.status', 'match': '*_IN_PROGRESS'}


@pytest.mark.parametrize('pending_if, extra, where, words', [
    ('yes', {}, '.pending_if', ['not a mapping', 'source:']),
    (dict(PENDING_IF, when='now'), {}, '.pending_if', ['unknown key when']),
    ({'match': '*_IN_PROGRESS'}, {}, '.pending_if.source', ['missing']),
    (dict(PENDING_IF, source='body.status'), {}, '.pending_if.source', ["'body.status'"]),
    (dict(PENDING_IF, source='path.bay_id'), {}, '.pending_if.source', ["'bay_id'", 'x_id']),
    ({'source': 'response.status'}, {}, '.pending_if.match', ['missing']),
    (dict(PENDING_IF, match=7), {}, '.pending_if.match', ['not a string']),
    (PENDING_IF, {'async': True}, '.pending_if', ['async: true', 'keep one']),
])
def test_pending_if_validation_errors(tmp_path, pending_if, extra, where, words):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        route(method='POST', action='create', pending_if=pending_if, **extra)]})
    message = load_error(path)
    assert 'route map %s, route 0 (POST /v2/x/{x_id})%s:' % (path, where) in message, message
    for word in words:
        assert word in message


@pytest.mark.parametrize('status, body, outcome', [
    ('201 Created', {'uuid': 'b-1', 'status': 'CREATE_IN_PROGRESS'}, 'pending'),
    ('200 OK', {'uuid': 'b-1', 'status': 'UPDATE_IN_PROGRESS'}, 'pending'),
    ('200 OK', {'uuid': 'b-1', 'status': 'CREATE_COMPLETE'}, 'success'),   # nothing changed
    ('200 OK', {'uuid': 'b-1'}, 'success'),
    ('200 OK', ['not', 'a', 'mapping'], 'success'),
    ('202 Accepted', {'uuid': 'b-1'}, 'pending'),
    ('400 Bad Request', {'uuid': 'b-1', 'status': 'CREATE_IN_PROGRESS'}, 'failure'),
])
def test_pending_if_reads_the_answer(tmp_path, make_filter, captured, wsgi, status, body,
                                     outcome):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [
        route(method='POST', path='/v2/x', action='create', pending_if=PENDING_IF,
              target={'type_uri': 'service/storage/image', 'id': 'response.uuid'})]})
    rm = routes.load(path, usage_rules=glance_events.RULES)
    assert rm.routes[0].pending_if == ((('response', ('status',)),), '*_IN_PROGRESS')
    assert rm.routes[0].wants_body          # the journal keeps the body for it

    def app(environ, start_response):
        data = json.dumps(body).encode()
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(data)))])
        return [data]

    mw = make_filter(app, route_map=path, formats='cadf')
    wsgi.run(mw, wsgi.environ('POST', '/v2/x', body=b'{}'))
    [event] = captured.all()
    assert event['payload']['outcome'] == outcome
    assert event['priority'] == ('ERROR' if outcome == 'failure' else 'INFO')


def test_shipped_magnum_map_bay_writes_are_pending_when_in_progress():
    rm = load('magnum')
    rules = {key: r.pending_if for key, r in rm.by_key.items() if r.pending_if}
    assert rules == {('POST', '/v1/bays'): ((('response', ('status',)),), '*_IN_PROGRESS'),
                     ('PATCH', '/v1/bays/{bay_ident}'):
                         ((('response', ('status',)),), '*_IN_PROGRESS')}


@pytest.mark.parametrize('value, expected', [
    (None, 'ERROR'), ('INFO', 'INFO'), ('WARN', 'WARN'), ('ERROR', 'ERROR')])
def test_client_error_priority_of_a_map(tmp_path, value, expected):
    service = dict(SERVICE) if value is None else dict(SERVICE, client_error_priority=value)
    path = write_map(tmp_path, {'service': service, 'routes': [GOOD_ROUTE]})
    assert routes.load(path, usage_rules=glance_events.RULES).service.client_error_priority \
        == expected


def test_client_error_priority_bad_value(tmp_path):
    path = write_map(tmp_path, {'service': dict(SERVICE, client_error_priority='DEBUG'),
                                'routes': [GOOD_ROUTE]})
    message = load_error(path)
    assert "route map %s, service.client_error_priority: unknown priority 'DEBUG'; use " \
        'INFO, WARN or ERROR' % path in message


@pytest.mark.parametrize('target, where, words', [
    ({'type_uri': 'service/magnum/cluster', 'id': 'path.x_id', 'data': 'cluster_info'},
     '.target.data', ["no record attachment named 'cluster_info'", 'cluster_data']),
    ({'type_uri': 'service/magnum/cluster', 'data': 'cluster_data'},
     '.target.data', ['no id', 'give target.id']),
])
def test_target_data_validation_errors(tmp_path, target, where, words):
    path = write_map(tmp_path, {'service': SERVICE, 'routes': [route(target=target)]})
    message = load_error(path)
    assert 'route map %s, route 0 (GET /v2/x/{x_id})%s:' % (path, where) in message, message
    for word in words:
        assert word in message


def test_shipped_magnum_map_cluster_writes_carry_cluster_data():
    rm = load('magnum')
    assert sorted(key for key, r in rm.by_key.items() if r.target.data == 'cluster_data') == [
        ('DELETE', '/v1/clusters/{cluster_ident}'),
        ('PATCH', '/v1/certificates/{cluster_ident}'),
        ('PATCH', '/v1/clusters/{cluster_ident}'),
        ('POST', '/v1/clusters'),
        ('POST', '/v1/clusters/{cluster_ident}/actions/resize'),
        ('POST', '/v1/clusters/{cluster_ident}/actions/upgrade')]
    assert all(r.wants_body for r in rm.routes if r.target.data)
