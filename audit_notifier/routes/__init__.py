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

"""Route maps: which API calls are audited, as what, on which resource.

A route map is declarative data (YAML) shipped in this package (``glance.yaml``,
``magnum.yaml``) or written by an operator.  It is validated when the filter loads;
every mistake is reported as one line naming the file, the route and the field.
Matching walks a trie of path segments, so its cost depends on the depth of the path,
not on the number of routes, and unknown paths leave no state behind.

Map layout::

    service:                      # who observes: the service this filter runs in
      name: glance
      type_uri: service/storage/image
      publisher: image            # default publisher_id is <publisher>.<host>
      cadf_event_type: "audit.{event}"
      unmatched_event: image.request
      client_error_priority: ERROR  # priority of a 4xx call (INFO, WARN or ERROR; option
                                    # refused_priority overrides it)
      observer_follows_target: false  # Magnum: observer typeURI = target typeURI
    routes:
      - method: POST
        path: /v2/images
        event: image.create       # the service's vocabulary for this call
        action: create            # CADF action (pycadf taxonomy, prefix match)
        kind: write               # write | read | list
        target: {type_uri: service/storage/image, id: response.id}
        usage: image.create       # Glance-format rule (events/glance.py), optional
        observe: upload           # upload | download (byte counting), optional
        async: true               # a 2xx only starts the work: outcome pending (Magnum deletes)
        pending_if: {source: response.status, match: "*_IN_PROGRESS"}
                                  # a 2xx whose source matches (shell pattern) is pending
        record: /v1/clusters/{cluster_ident}   # fetched before the call when the path
                                  # names the resource by name: target id record.uuid;
                                  # and for the old values of a changes rule
        changes: json-patch       # what the call changes, for the CADF "changes"
                                  # attachment (levels request and above): json-patch,
                                  # fields (each body key), tag-add, tag-remove,
                                  # deactivate, reactivate (changes.py)
        content: false            # never keep this call's request/response content

A target ``id`` (and any ``attachments`` value) is a source expression:
``path.<param>``, ``response.<key>[.<key>...]``, ``record.<key>`` (the route's
``record``, fetched in-process before the call), ``header.<Name>`` (a response
header; the last path segment is used, for ``Location``) or ``literal.<text>``;
several may be given as a list and the first one that yields a value wins.  A
target's ``data`` names a record attachment (:mod:`audit_notifier.events.records`,
``cluster_data``): the resource's record from the response, a look-up after the call
or the route's ``record``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import threading
import types
from typing import Any, Mapping

from pycadf import cadftaxonomy
import yaml

from audit_notifier._config import ConfigError
from audit_notifier.changes import KINDS as CHANGE_KINDS
from audit_notifier.events.records import ATTACHMENTS as RECORD_ATTACHMENTS

SHIPPED_DIR = os.path.dirname(os.path.abspath(__file__))
METHODS = frozenset({'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'})
KINDS = frozenset({'write', 'read', 'list'})
OBSERVE = frozenset({'upload', 'download'})
SOURCES = frozenset({'path', 'response', 'record', 'header', 'literal'})
_PARAM = re.compile(r'^\{([A-Za-z_][A-Za-z0-9_]*)\}$')
_EVENT = re.compile(r'^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$')
# Priorities a refused call (4xx) may have: Ceilometer's event pipeline reads only INFO
# and ERROR (doc/source/install/consumers.rst), hence ERROR by default.
REFUSED_PRIORITIES = ('INFO', 'WARN', 'ERROR')
_SERVICE_KEYS = {'name', 'type_uri', 'publisher', 'cadf_event_type', 'unmatched_event',
                 'client_error_priority', 'observer_follows_target'}
_ROUTE_KEYS = {'method', 'path', 'event', 'action', 'kind', 'target', 'usage', 'observe',
               'async', 'record', 'changes', 'pending_if', 'content'}
_PENDING_IF_KEYS = {'source', 'match'}
_TARGET_KEYS = {'type_uri', 'id', 'name', 'attachments', 'data'}


@dataclasses.dataclass(frozen=True)
class Target:
    type_uri: str
    id: tuple = ()                      # source expressions, first hit wins
    name: tuple = ()
    attachments: tuple = ()             # ((name, sources), ...)
    data: str | None = None             # a record attachment (events/records.py)


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    event: str
    action: str
    kind: str
    target: Target
    usage: str | None = None
    observe: str | None = None
    # Does building this call's events need the response body?  Derived at load.
    wants_body: bool = False
    # A successful answer only starts the work (202 always does): outcome pending.
    asynchronous: bool = False
    # API path of the resource, fetched before the call when a path parameter is a
    # name rather than a UUID (a delete by name still names the uuid).
    record: str | None = None
    # How the CADF "changes" attachment reads the call (changes.KINDS), or None.
    changes: str | None = None
    # (sources, shell pattern): a 2xx whose source value matches is outcome pending
    # (Magnum 3.0.0's bay create at 1.1: 201 with the bay in CREATE_IN_PROGRESS).
    pending_if: tuple | None = None
    # false: audit policy levels never keep this call's request or response content
    # (Glance's task input: its own notifications never show it).
    content: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


@dataclasses.dataclass(frozen=True)
class Service:
    name: str
    type_uri: str
    publisher: str
    cadf_event_type: str
    unmatched_event: str
    client_error_priority: str = 'ERROR'   # the refused_priority option overrides it
    observer_follows_target: bool = False


class RouteMap:
    """A validated, compiled route map; immutable, so filters share it (see load)."""

    def __init__(self, service: Service, routes: list[Route], sources: list[str],
                 origins: Mapping[tuple[str, str], tuple[str, int]]):
        """``routes`` are unique (load() checks); ``origins`` gives each route's
        ``(file, index)`` by key, for errors."""
        self.service = service
        self.routes = tuple(routes)
        self.sources = tuple(sources)
        self.by_key = types.MappingProxyType({route.key: route for route in routes})
        # Trie node: {segment: node, None: (param name, node), 0: {method: route}}
        self._trie: dict = {}
        param_owner: dict[int, Route] = {}      # id(param node) -> the route that made it
        for route in routes:
            node = self._trie
            for seg in _segments(route.path):
                param = _PARAM.match(seg)
                if param is None:
                    node = node.setdefault(seg, {})
                    continue
                name, child = node.setdefault(None, (param.group(1), {}))
                owner = param_owner.setdefault(id(child), route)
                if name != param.group(1):
                    path, index = origins[route.key]
                    other_path, other_index = origins[owner.key]
                    raise _map_error(
                        path, _where(index, route.method, route.path) + '.path',
                        'parameter {%s} stands where %s%s has {%s}'
                        % (param.group(1), _where(other_index, owner.method, owner.path),
                           '' if other_path == path else ' of ' + other_path, name),
                        'use one name for the same position')
                node = child
            node.setdefault(0, {})[route.method] = route

    def match(self, method: str, path: str) -> tuple[Route, dict] | None:
        """The route for ``method path`` and its path parameters, or None.

        Literal segments win over parameters; a trailing slash is ignored.
        """
        node = self._trie
        params = None
        for seg in path.strip('/').split('/') if path not in ('', '/') else ():
            if not seg:
                return None                      # '//' never names a resource
            nxt = node.get(seg)
            if nxt is None:
                param = node.get(None)
                if param is None or not seg:
                    return None
                if params is None:
                    params = {}
                params[param[0]] = seg
                nxt = param[1]
            node = nxt
        leaf = node.get(0)
        if leaf is None:
            return None
        route = leaf.get(method)
        if route is None:
            return None
        return route, params or {}


def _segments(path: str) -> list[str]:
    path = path.strip('/')
    return path.split('/') if path else []


def _identity(route: Route) -> tuple:
    """What a request sees of a route: method and path, without the trailing slash
    (ignored by match) and without parameter names (any value matches)."""
    return (route.method,
            tuple('{}' if seg.startswith('{') else seg for seg in _segments(route.path)))


def _where(index: int, method: str, path: str) -> str:
    return 'route %d (%s %s)' % (index, method, path)


def resolve_map_path(name_or_path: str) -> str:
    """A shipped map name (``glance``) or a file path, as an existing file."""
    if os.sep not in name_or_path and not name_or_path.endswith(('.yaml', '.yml')):
        path = os.path.join(SHIPPED_DIR, name_or_path + '.yaml')
        if not os.path.isfile(path):
            raise ConfigError(
                'audit_notifier: option route_map: no shipped map named %r; use one of %s '
                'or the path of a YAML map file' % (name_or_path, ', '.join(shipped_maps())))
        return path
    if not os.path.isfile(name_or_path):
        raise ConfigError('audit_notifier: route map file %s does not exist; fix the path in '
                          'route_map or route_map_overrides' % name_or_path)
    return name_or_path


def shipped_maps() -> list[str]:
    return sorted(f[:-5] for f in os.listdir(SHIPPED_DIR) if f.endswith('.yaml'))


# (paths, usage rules) -> (digest of each file, RouteMap): one entry per combination
# of files, replaced when one of them changes, so edits never make the cache grow.
_LOADED: dict[tuple, tuple[tuple, RouteMap]] = {}
_LOADED_LOCK = threading.Lock()


def load(base: str, overrides: list[str] | tuple = (),
         usage_rules: Mapping[str, Any] | None = None) -> RouteMap:
    """Load, validate and compile a base map plus operator override files.

    A route in an override file replaces the base route with the same method and
    path (a trailing slash and parameter names aside), or adds a new one; an
    override file may also change ``service`` keys.  Within one file, such a
    duplicate is an error.  ``usage_rules`` are the usage-format rules a route may
    name (each with a ``wants_body`` flag); the event builders own them, the map
    only names them.

    Parsed once per process: every filter of a service (and every app a test suite
    builds) gets the same immutable RouteMap while its files read the same; they
    are read again each time (microseconds) and compared by content, so an edited
    override file is parsed anew even when its size and timestamp did not change.
    """
    usage_rules = usage_rules or {}
    paths = (resolve_map_path(base),) + tuple(resolve_map_path(extra) for extra in overrides)
    texts = [_read_text(path) for path in paths]
    digests = tuple(hashlib.sha256(text.encode('utf-8')).digest() for text in texts)
    key = (paths, tuple(os.path.abspath(path) for path in paths),
           tuple(sorted((name, bool(rule.wants_body)) for name, rule in usage_rules.items())))
    with _LOADED_LOCK:
        cached = _LOADED.get(key)
        if cached is not None and cached[0] == digests:
            return cached[1]
        route_map = _compile(paths, texts, usage_rules)
        _LOADED[key] = (digests, route_map)
        return route_map


def _compile(paths: tuple, texts: list[str], usage_rules: Mapping[str, Any]) -> RouteMap:
    """The RouteMap of these files (base first), read as ``texts``."""
    base_path = paths[0]
    doc = _read(base_path, texts[0])
    service_doc = dict(_require_mapping(doc.get('service'), base_path, 'service'))
    _check_service_keys(service_doc, base_path)
    # identity -> (route, file, index); a later file's route replaces an earlier one
    merged = {_identity(route): (route, base_path, index)
              for index, route in _file_routes(doc, base_path, usage_rules,
                                               override=False)}
    for extra_path, extra_text in zip(paths[1:], texts[1:]):
        extra_doc = _read(extra_path, extra_text)
        extra_service = _require_mapping(extra_doc.get('service', {}), extra_path, 'service')
        _check_service_keys(extra_service, extra_path)
        service_doc.update(extra_service)
        if 'routes' in extra_doc:
            for index, route in _file_routes(extra_doc, extra_path, usage_rules,
                                             override=True):
                # moved to the end, so a parameter-name clash names the override
                merged.pop(_identity(route), None)
                merged[_identity(route)] = (route, extra_path, index)
    service = _parse_service(service_doc, base_path)
    final = list(merged.values())
    return RouteMap(service, [route for route, _, _ in final], list(paths),
                    {route.key: (path, index) for route, path, index in final})


def _file_routes(doc: Mapping, path: str, usage_rules: Mapping[str, Any], *,
                 override: bool) -> list[tuple[int, Route]]:
    """The parsed routes of one file, with their indexes; no two the same."""
    raw_routes = doc.get('routes')
    if 'routes' in doc and (raw_routes is None or raw_routes == []):
        raise _map_error(path, 'routes', 'empty', 'list at least one route' +
                         (', or leave routes: out of an override file' if override else ''))
    parsed = []
    seen: dict[tuple, tuple[int, Route]] = {}
    for index, raw in enumerate(_require_list(raw_routes, path, 'routes')):
        route = _parse_route(raw, path, index, usage_rules)
        first = seen.setdefault(_identity(route), (index, route))
        if first[0] != index:
            raise _map_error(path, _where(index, route.method, route.path) + '.path',
                             'duplicate route, also at %s'
                             % _where(first[0], first[1].method, first[1].path),
                             'keep one of them (routes that differ only by a trailing slash '
                             'or parameter names match the same requests)')
        parsed.append((index, route))
    return parsed


class _DuplicateKey(Exception):
    """A mapping key given twice (1-based lines); _read reports it as a map error."""

    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(key, line, first_line)
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == 'tag:yaml.org,2002:merge':
                continue                # '<<' may be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node)
            except TypeError:
                continue                # unhashable: the base class reports it
            if first is not key_node:
                raise _DuplicateKey(key, key_node.start_mark.line + 1,
                                    first.start_mark.line + 1)
        return super().construct_mapping(node, deep)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding='utf-8') as f:
            return f.read()
    except OSError as exc:
        raise ConfigError('audit_notifier: cannot read route map %s (%s); check the path '
                          'and permissions' % (path, exc.strerror))


def _read(path: str, text: str) -> Mapping:
    try:
        doc = yaml.load(text, Loader=_UniqueKeyLoader)   # a yaml.SafeLoader  # nosec B506
    except _DuplicateKey as dup:
        raise _map_error(path, 'line %d' % dup.line, 'duplicate key %r (first at line %d)'
                         % (dup.key, dup.first_line),
                         'keep one of them (YAML would silently use the last)')
    except yaml.YAMLError as exc:
        raise ConfigError('audit_notifier: route map %s is not valid YAML (%s); fix the '
                          'syntax' % (path, ' '.join(str(exc).split())))
    if not isinstance(doc, dict):
        raise _map_error(path, 'document', 'not a mapping', 'start with service: and routes:')
    unknown = set(doc) - {'service', 'routes'}
    if unknown:
        raise _map_error(path, 'document', 'unknown key %s' % sorted(unknown)[0],
                         'only service and routes are allowed')
    return doc


def _map_error(path: str, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError('audit_notifier: route map %s, %s: %s; %s' % (path, where, problem, fix))


def _require_mapping(value: Any, path: str, where: str) -> Mapping:
    if not isinstance(value, dict):
        raise _map_error(path, where, 'missing or not a mapping', 'give it as key: value pairs')
    return value


def _require_list(value: Any, path: str, where: str) -> list:
    if not isinstance(value, list):
        raise _map_error(path, where, 'missing or not a list', 'give it as a YAML list')
    return value


def _check_service_keys(doc: Mapping, path: str) -> None:
    unknown = set(doc) - _SERVICE_KEYS
    if unknown:
        raise _map_error(path, 'service', 'unknown key %s' % sorted(unknown)[0],
                         'allowed keys: %s' % ', '.join(sorted(_SERVICE_KEYS)))


def _parse_service(doc: Mapping, path: str) -> Service:
    for key in ('name', 'type_uri', 'publisher'):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise _map_error(path, 'service.%s' % key, 'missing', 'give a non-empty string')
    _check_type_uri(doc['type_uri'], path, 'service.type_uri')
    template = doc.get('cadf_event_type', '{event}')
    check_event_template(template, 'route map %s, service.cadf_event_type' % path)
    unmatched = doc.get('unmatched_event', doc['name'] + '.request')
    if not isinstance(unmatched, str) or not _EVENT.match(unmatched):
        raise _map_error(path, 'service.unmatched_event', 'not a dotted event name',
                         'use for example image.request')
    client_error = doc.get('client_error_priority', 'ERROR')
    if client_error not in REFUSED_PRIORITIES:
        raise _map_error(path, 'service.client_error_priority', 'unknown priority %r'
                         % (client_error,), 'use INFO, WARN or ERROR')
    follows = doc.get('observer_follows_target', False)
    if not isinstance(follows, bool):
        raise _map_error(path, 'service.observer_follows_target', 'not a boolean',
                         'use true or false')
    return Service(doc['name'], doc['type_uri'], doc['publisher'], template, unmatched,
                   client_error, follows)


def check_event_template(template: Any, where: str) -> None:
    if not isinstance(template, str) or '{event}' not in template:
        raise ConfigError('audit_notifier: %s: %r does not contain {event}; write for example '
                          '"audit.{event}" or "{event}"' % (where, template))
    try:
        template.format(event='x')
    except (KeyError, IndexError, ValueError):
        raise ConfigError('audit_notifier: %s: %r has a placeholder other than {event}; use '
                          'only {event}' % (where, template))


def _check_type_uri(value: Any, path: str, where: str) -> None:
    # pycadf's own rule (a prefix of its RESOURCE_TAXONOMY), so every event passes
    # pycadf's Resource validator.
    if not isinstance(value, str) or not cadftaxonomy.is_valid_resource(value):
        roots = sorted({uri.split('/')[0] for uri in cadftaxonomy.RESOURCE_TAXONOMY})
        raise _map_error(path, where, 'typeURI %r is not in the CADF resource taxonomy' % (value,),
                         "start it with one of pycadf's resource types (%s), e.g. "
                         'service/storage/image' % ', '.join(roots))


def _parse_route(raw: Any, path: str, index: int, usage_rules: Mapping[str, Any]) -> Route:
    where = 'route %d' % index
    if not isinstance(raw, dict):
        raise _map_error(path, where, 'not a mapping', 'give method, path, event, action, target')
    if isinstance(raw.get('method'), str) and isinstance(raw.get('path'), str):
        where = 'route %d (%s %s)' % (index, raw['method'], raw['path'])
    unknown = set(raw) - _ROUTE_KEYS
    if unknown:
        raise _map_error(path, where, 'unknown key %s' % sorted(unknown)[0],
                         'allowed keys: %s' % ', '.join(sorted(_ROUTE_KEYS)))
    for key in ('method', 'path', 'event', 'action'):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise _map_error(path, '%s.%s' % (where, key), 'missing', 'give a non-empty string')
    method = raw['method'].upper()
    if method not in METHODS:
        raise _map_error(path, where + '.method', 'unknown HTTP method %r' % raw['method'],
                         'use one of %s' % ', '.join(sorted(METHODS)))
    route_path = raw['path']
    if not route_path.startswith('/'):
        raise _map_error(path, where + '.path', 'does not start with /', 'write /v2/images ...')
    if '//' in route_path:
        raise _map_error(path, where + '.path', 'empty segment (//)',
                         'write one / between segments (a request with an empty segment '
                         'never matches)')
    params = []
    for seg in _segments(route_path):
        if '{' in seg or '}' in seg:
            m = _PARAM.match(seg)
            if not m:
                raise _map_error(path, where + '.path', 'bad segment %r' % seg,
                                 'a parameter is a whole segment like {image_id}')
            if m.group(1) in params:
                raise _map_error(path, where + '.path', 'parameter {%s} appears twice'
                                 % m.group(1), 'give each parameter its own name')
            params.append(m.group(1))
    if not _EVENT.match(raw['event']):
        raise _map_error(path, where + '.event', 'not a dotted lower-case event name (%r)'
                         % raw['event'], 'write for example image.create')
    if not cadftaxonomy.is_valid_action(raw['action']):     # pycadf's rule: a prefix
        raise _map_error(path, where + '.action', 'action %r is not in the CADF taxonomy'
                         % raw['action'], "start it with one of pycadf's actions (%s), "
                         'e.g. update/deactivate'
                         % ', '.join(sorted(cadftaxonomy.ACTION_TAXONOMY)))
    kind = raw.get('kind', _default_kind(method, raw['action']))
    if kind not in KINDS:
        raise _map_error(path, where + '.kind', 'unknown kind %r' % kind,
                         'use write, read or list')
    observe = raw.get('observe')
    if observe is not None and observe not in OBSERVE:
        raise _map_error(path, where + '.observe', 'unknown value %r' % observe,
                         'use upload or download')
    usage = raw.get('usage')
    if usage is not None and usage not in usage_rules:
        raise _map_error(path, where + '.usage', 'no usage-format rule named %r' % usage,
                         'use one of %s' % ', '.join(sorted(usage_rules)))
    record = raw.get('record')
    if record is not None:
        record_params = re.findall(r'\{([A-Za-z_][A-Za-z0-9_]*)\}', str(record))
        if not isinstance(record, str) or not record.startswith('/') or \
                any(p not in params for p in record_params):
            raise _map_error(path, where + '.record', 'bad record path %r' % (record,),
                             'an API path using only this route\'s parameters, e.g. '
                             '/v1/clusters/{cluster_ident}')
    content = raw.get('content', True)
    if not isinstance(content, bool):
        raise _map_error(path, where + '.content', 'not a boolean', 'use true or false')
    changes = raw.get('changes')
    if changes is not None and changes not in CHANGE_KINDS:
        raise _map_error(path, where + '.changes', 'unknown value %r' % (changes,),
                         'use one of %s' % ', '.join(sorted(CHANGE_KINDS)))
    if changes in ('tag-add', 'tag-remove') and 'tag_value' not in params:
        raise _map_error(path, where + '.changes', '%s needs the path parameter '
                         '{tag_value}' % changes, 'name the tag segment {tag_value}')
    asynchronous = raw.get('async', False)
    if not isinstance(asynchronous, bool):
        raise _map_error(path, where + '.async', 'not a boolean', 'use true or false')
    pending_if = _parse_pending_if(raw.get('pending_if'), path, where, params, asynchronous)
    target = _parse_target(raw.get('target'), path, where, params)
    wants_body = (_uses_response(target) or
                  (pending_if is not None and
                   any(kind == 'response' for kind, _ in pending_if[0])) or
                  (usage is not None and usage_rules[usage].wants_body))
    return Route(method, route_path, raw['event'], raw['action'], kind, target, usage,
                 observe, wants_body, asynchronous, record, changes, pending_if=pending_if,
                 content=content)


def _parse_pending_if(raw: Any, path: str, where: str, params: list[str],
                      asynchronous: bool) -> tuple | None:
    """``pending_if: {source: <source expression>, match: <shell pattern>}``."""
    if raw is None:
        return None
    where = where + '.pending_if'
    if not isinstance(raw, dict):
        raise _map_error(path, where, 'not a mapping',
                         'give source: and match:, e.g. {source: response.status, '
                         'match: "*_IN_PROGRESS"}')
    unknown = set(raw) - _PENDING_IF_KEYS
    if unknown:
        raise _map_error(path, where, 'unknown key %s' % sorted(unknown)[0],
                         'allowed keys: %s' % ', '.join(sorted(_PENDING_IF_KEYS)))
    if asynchronous:
        raise _map_error(path, where, 'given with async: true, which makes every 2xx '
                         'pending already', 'keep one of them')
    sources = _parse_sources(raw.get('source'), path, where + '.source', params)
    if not sources:
        raise _map_error(path, where + '.source', 'missing', 'give a source expression, '
                         'e.g. response.status')
    pattern = raw.get('match')
    if not isinstance(pattern, str) or not pattern:
        raise _map_error(path, where + '.match', 'missing or not a string',
                         'give a shell-style pattern, e.g. "*_IN_PROGRESS"')
    return sources, pattern


def _default_kind(method: str, action: str) -> str:
    if action.startswith('read/list'):
        return 'list'
    if method in ('GET', 'HEAD') or action.startswith('read'):
        return 'read'
    return 'write'


def _parse_target(raw: Any, path: str, where: str, params: list[str]) -> Target:
    where = where + '.target'
    if not isinstance(raw, dict):
        raise _map_error(path, where, 'missing or not a mapping', 'give type_uri and id')
    unknown = set(raw) - _TARGET_KEYS
    if unknown:
        raise _map_error(path, where, 'unknown key %s' % sorted(unknown)[0],
                         'allowed keys: %s' % ', '.join(sorted(_TARGET_KEYS)))
    _check_type_uri(raw.get('type_uri'), path, where + '.type_uri')
    attachments = raw.get('attachments', {})
    if not isinstance(attachments, dict):
        raise _map_error(path, where + '.attachments', 'not a mapping', 'give name: source pairs')
    data = raw.get('data')
    if data is not None and data not in RECORD_ATTACHMENTS:
        raise _map_error(path, where + '.data', 'no record attachment named %r' % (data,),
                         'use one of %s' % ', '.join(sorted(RECORD_ATTACHMENTS)))
    target = Target(
        raw['type_uri'],
        _parse_sources(raw.get('id', ()), path, where + '.id', params),
        _parse_sources(raw.get('name', ()), path, where + '.name', params),
        tuple((str(name), _parse_sources(src, path, '%s.attachments.%s' % (where, name), params))
              for name, src in attachments.items()), data)
    if data is not None and not target.id:
        raise _map_error(path, where + '.data', 'the target has no id to look the record up '
                         'by', 'give target.id')
    return target


def _parse_sources(raw: Any, path: str, where: str, params: list[str]) -> tuple:
    items = raw if isinstance(raw, list) else [raw] if raw else []
    parsed = []
    for item in items:
        if not isinstance(item, str) or '.' not in item:
            raise _map_error(path, where, 'bad source %r' % (item,),
                             'write path.<param>, response.<key>, record.<key>, header.<Name> '
                             'or literal.<text>')
        kind, _, rest = item.partition('.')
        if kind not in SOURCES or not rest:
            raise _map_error(path, where, 'bad source %r' % item,
                             'write path.<param>, response.<key>, header.<Name> or literal.<text>')
        if kind == 'path' and rest not in params:
            raise _map_error(path, where, 'path parameter %r is not in the route path' % rest,
                             'use one of %s' % (', '.join(params) or '(none)'))
        parsed.append((kind, tuple(rest.split('.')) if kind in ('response', 'record')
                       else rest))
    return tuple(parsed)


def _uses_response(target: Target) -> bool:
    sources = list(target.id) + list(target.name)
    for _, srcs in target.attachments:
        sources.extend(srcs)
    # a record attachment (data) takes the response first, when it is the record
    return target.data is not None or any(kind == 'response' for kind, _ in sources)
