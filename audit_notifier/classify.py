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

"""Request classification: method and path -> route, or not audited.

Runs on the request path for every call, so it only matches the path against the
compiled route map and looks up a precomputed verdict per route.  Nothing is
remembered per path: a flood of distinct unknown paths leaves no state behind.
The call's audit policy level (:mod:`audit_notifier.policy`) is a dict look-up per
route, or, for a route a rule about callers may match, a walk of those rules; at
level request and above a JSON body is marked for the tee (observe.py).
"""

from __future__ import annotations

from oslo_config import cfg

from audit_notifier import policy as audit_policy
from audit_notifier import routes as route_maps
from audit_notifier.exchange import Exchange, request_facts
from audit_notifier.redaction import DEFAULT as DEFAULT_REDACTOR, Redactor

classify_opts = [
    cfg.StrOpt('route_map', default='glance',
               help='Route map that says which API calls are audited: the name of a map '
                    'shipped with audit_notifier (glance, magnum) or the path of a YAML '
                    'map file.'),
    cfg.ListOpt('route_map_overrides', default=[],
                help='Extra YAML map files, applied in order: a route with the same method '
                     'and path replaces the shipped one, others are added.'),
    cfg.StrOpt('unmatched_requests', default='ignore',
               choices=[('ignore', 'pass the call through untouched, no event'),
                        ('audit', 'a CADF event whose target is the service itself')],
               help='What to do with a call that no route of the map matches.'),
    cfg.BoolOpt('audit_reads', default=True,
                help='Emit CADF events for reads of single resources (GET/HEAD), '
                     'including image downloads.'),
    cfg.BoolOpt('audit_lists', default=True,
                help='Emit CADF events for collection listings (GET on a collection).'),
]


# Methods whose JSON body levels request and above keep (never routes with observe:
# an upload's or a stage's body is image data).
_BODY_METHODS = frozenset({'POST', 'PUT', 'PATCH'})


class Classifier:
    """Maps a WSGI environ to a new Exchange, or None when nothing would be emitted."""

    def __init__(self, route_map: route_maps.RouteMap, audit_reads: bool, audit_lists: bool,
                 audit_unmatched: bool, cadf_enabled: bool, usage_enabled: bool,
                 redactor: Redactor = DEFAULT_REDACTOR,
                 policy: audit_policy.Policy | None = None):
        self.route_map = route_map
        self.policy = policy
        self._capture_limit = policy.capture_limit if policy is not None else 0
        self._redactor = redactor          # secrets leave the query before the journal
        self._audit_unmatched = audit_unmatched and cadf_enabled
        # Verdict per route, computed once: is any event produced for this route?
        self._wanted = {}
        for route in route_map.routes:
            cadf = cadf_enabled and (route.kind == 'write' or
                                     (route.kind == 'read' and audit_reads) or
                                     (route.kind == 'list' and audit_lists))
            usage = usage_enabled and route.usage is not None
            if cadf and policy is not None and policy.route_level(route) == audit_policy.NONE:
                cadf = False            # policy level none: no CADF event
            self._wanted[id(route)] = cadf or usage
        self._cadf = cadf_enabled
        self._unmatched = {}

    def classify(self, environ: dict) -> Exchange | None:
        method = environ.get('REQUEST_METHOD', 'GET')
        hit = self.route_map.match(method, environ.get('PATH_INFO', ''))
        if hit is None:
            if not self._audit_unmatched:
                return None
            return Exchange(self._unmatched_route(method), {},
                            request_facts(environ, self._redactor))
        route, params = hit
        if not self._wanted[id(route)]:
            return None
        exchange = Exchange(route, params, request_facts(environ, self._redactor))
        if self.policy is not None:
            level = exchange.level = self.policy.level_for(route, environ)
            if level == audit_policy.NONE and route.usage is None:
                return None             # chosen per caller: nothing to send
            if (level >= audit_policy.REQUEST and self._cadf and self._capture_limit and
                    route.content):
                exchange.capture = self._capture_limit
                if (route.observe is None and route.method in _BODY_METHODS and
                        'json' in (environ.get('CONTENT_TYPE') or '').lower()):
                    exchange.captured = bytearray()     # observe.py tees wsgi.input
        return exchange

    def route_for(self, key) -> route_maps.Route | None:
        """The route a journal record names by ``(method, path)``; ``path`` '*' is
        the synthetic route of an unmatched call."""
        method, path = key
        if path == '*':
            return self._unmatched_route(method)
        return self.route_map.by_key.get((method, path))

    def _unmatched_route(self, method: str) -> route_maps.Route:
        # One synthetic route per HTTP method (a bounded set), never per path.
        route = self._unmatched.get(method)
        if route is None:
            service = self.route_map.service
            action = {'GET': 'read', 'HEAD': 'read', 'POST': 'create', 'PUT': 'update',
                      'PATCH': 'update', 'DELETE': 'delete'}.get(method, 'unknown')
            route = route_maps.Route(method, '*', service.unmatched_event, action,
                                     'write', route_maps.Target(service.type_uri))
            if len(self._unmatched) < 32:
                self._unmatched[method] = route
        return route
