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

"""``audit-notifier routes``: the route map in effect, and what a request would hit.

The map, settings and classifier are the filter's own (built from the service's
conf files by :func:`audit_notifier.preflight.offline_pipeline`), so the answer to
``--match "METHOD PATH"`` is the filter's answer: the request goes through
:meth:`audit_notifier.classify.Classifier.classify` and, for a route that needs a
record before the call, :meth:`audit_notifier.emitter.Emitter.prefetch`, as in the
filter; the app it would ask is a stand-in that only notes the paths it is asked
for and answers 404.
"""

from __future__ import annotations

import json
import logging
import sys
import types
import urllib.parse
from typing import Any, TextIO

from oslo_config import cfg

from audit_notifier import preflight, routes as route_maps
from audit_notifier import policy as audit_policy
from audit_notifier._config import ConfigError
from audit_notifier.assembly import Pipeline
from audit_notifier.events import glance as glance_events

COLUMNS = (('method', 'METHOD'), ('path', 'PATH'), ('kind', 'KIND'), ('action', 'ACTION'),
           ('event', 'EVENT'), ('target', 'TARGET'), ('target_from', 'TARGET FROM'),
           ('fetch', 'GET BEFORE'), ('usage', 'USAGE'), ('observe', 'OBSERVE'),
           ('sends', 'SENDS'), ('level', 'LEVEL'))


def run(config_files: list[str], route_map: str | None = None,
        overrides: list[str] | tuple = (), match: tuple[str, str] | None = None,
        as_json: bool = False, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The table, or with ``match`` (method, path) the explanation; 1 when the
    configuration does not load (the reason on ``err``)."""
    keys: dict[str, Any] = {}
    if route_map:
        keys['route_map'] = route_map
    if overrides:
        keys['route_map_overrides'] = list(overrides)
    # What Pipeline logs on a configuration error is printed below, once.
    logging.getLogger('audit_notifier').addHandler(logging.NullHandler())
    try:
        recorder = RecordingApp()
        pipeline = preflight.offline_pipeline(preflight.load_conf(config_files), keys,
                                              app=recorder)
    except (ConfigError, cfg.Error) as exc:
        print('audit-notifier routes: error: %s' % ' '.join(str(exc).split()), file=err)
        return 1
    if match is not None:
        found = explain(pipeline, recorder, *match)
        print(json.dumps(found, sort_keys=True) if as_json else render_match(found), file=out)
        return 0
    rows = [describe(pipeline, route) for route in pipeline.route_map.routes]
    if as_json:
        print(json.dumps({'settings': _settings(pipeline), 'routes': rows}, sort_keys=True),
              file=out)
    else:
        print(render_table(pipeline, rows), file=out)
    return 0


def parse_request(text: str) -> tuple[str, str]:
    """``"PATCH /v2/images/<id>"`` (a full URL works too) -> method and path."""
    parts = text.split()
    if len(parts) != 2 or parts[0].upper() not in route_maps.METHODS:
        raise ValueError('expected "METHOD PATH", e.g. "PATCH /v2/images/<id>", with METHOD '
                         'one of %s' % ', '.join(sorted(route_maps.METHODS)))
    url = urllib.parse.urlsplit(parts[1])
    return parts[0].upper(), url.path or '/'


# -- one route ----------------------------------------------------------------------------

def describe(pipeline: Pipeline, route: route_maps.Route) -> dict:
    """A route as the table shows it: what it is, what the filter looks up for it and
    which formats send something for it with the settings in effect."""
    return {
        'method': route.method, 'path': route.path, 'kind': _kind(route),
        'action': route.action, 'event': route.event, 'target': route.target.type_uri,
        'target_from': _sources_text(route.target),
        'fetch': _fetch_pattern(pipeline, route),
        'usage': route.usage, 'observe': route.observe,
        'sends': [fmt for fmt, (sent, _) in _sends(pipeline, route).items() if sent],
        'level': _levels(pipeline, route),
    }


def _levels(pipeline: Pipeline, route: route_maps.Route) -> list[str]:
    """The audit policy levels a call of this route can get (several when a rule
    names callers)."""
    return [audit_policy.LEVEL_NAMES[level]
            for level in sorted(pipeline.policy.levels(route))]


def _params(route: route_maps.Route) -> list[str]:
    return [seg[1:-1] for seg in route.path.split('/') if seg.startswith('{')]


def _kind(route: route_maps.Route) -> str:
    return route.kind + (' (async)' if route.asynchronous else '')


def _sends(pipeline: Pipeline, route: route_maps.Route) -> dict[str, tuple[bool, str]]:
    """Per format: (is something sent for this route, what or why not)."""
    settings, emitter = pipeline.settings, pipeline.emitter
    formats = pipeline.formats
    event_type = emitter.cadf_event_type.format(event=route.event)
    if 'cadf' not in formats:
        cadf = (False, 'not sent (formats = %s)' % ','.join(formats))
    elif route.kind == 'read' and not settings.audit_reads:
        cadf = (False, '%s not sent (a read, audit_reads = false)' % event_type)
    elif route.kind == 'list' and not settings.audit_lists:
        cadf = (False, '%s not sent (a listing, audit_lists = false)' % event_type)
    elif not emitter.filter.enabled(event_type):
        cadf = (False, '%s not sent (disabled_events)' % event_type)
    elif pipeline.policy.levels(route) == {audit_policy.NONE}:
        cadf = (False, '%s not sent (audit policy level none)' % event_type)
    else:
        client = emitter.service.client_error_priority     # refused_priority applied
        failures = ('ERROR for a 4xx or 5xx' if client == 'ERROR'
                    else '%s for a 4xx, ERROR for a 5xx' % client)
        pending = ''
        if route.asynchronous:
            pending = '; a 2xx is outcome pending: the work goes on'
        elif route.pending_if is not None:
            pending = '; a 2xx is outcome pending when %s matches %s' % (
                '|'.join(_source(s, None) for s in route.pending_if[0]), route.pending_if[1])
        cadf = (True, '%s (INFO; %s%s)' % (event_type, failures, pending))
    if route.usage is None:
        glance = (False, 'nothing (no usage rule)')
    elif 'glance' not in formats:
        glance = (False, 'usage rule %s, not sent (formats = %s)'
                  % (route.usage, ','.join(formats)))
    else:
        glance = (True, 'usage rule %s (the notifications Glance sends for this call%s)'
                  % (route.usage, ', but those in disabled_events' if settings.disabled_events
                     else ''))
    return {'cadf': cadf, 'glance': glance}


def _sources_text(target: route_maps.Target, params: dict | None = None) -> str | None:
    parts = []
    for name, sources in (('id', target.id), ('name', target.name)) + target.attachments:
        if sources:
            parts.append('%s=%s' % (name, '|'.join(_source(s, params) for s in sources)))
    if target.data is not None:         # a record attachment (events/records.py)
        parts.append('data=%s' % target.data)
    return ' '.join(parts) or None


def _source(source: tuple, params: dict | None) -> str:
    kind, ref = source
    text = '%s.%s' % (kind, '.'.join(ref) if isinstance(ref, tuple) else ref)
    if params is not None and kind == 'path' and ref in params:
        text += '(%s)' % params[ref]
    return text


# -- one request --------------------------------------------------------------------------

def explain(pipeline: Pipeline, recorder: 'RecordingApp', method: str, path: str) -> dict:
    """Which route ``method path`` hits, what it binds, what the filter fetches
    before the call (asking ``recorder``, the app the pipeline wraps) and sends."""
    environ = {'REQUEST_METHOD': method, 'PATH_INFO': path, 'SCRIPT_NAME': ''}
    exchange = pipeline.classifier.classify(environ)
    found: dict[str, Any] = {'request': '%s %s' % (method, path),
                             'audited': exchange is not None}
    hit = pipeline.route_map.match(method, path)
    if hit is None:
        found['route'] = None
        if exchange is not None:               # unmatched_requests = audit
            route = exchange.route
            event_type = pipeline.emitter.cadf_event_type.format(event=route.event)
            found['cadf'] = ('%s (action %s, target %s: the service itself)'
                             % (event_type, route.action, route.target.type_uri))
        else:
            found['why_not'] = ('no route matches, unmatched_requests = %s'
                                % pipeline.settings.unmatched_requests)
        return found
    route, params = hit
    found.update(route='%s %s' % (route.method, route.path), params=params,
                 kind=_kind(route), action=route.action, event=route.event,
                 target=route.target.type_uri,
                 target_from=_sources_text(route.target, params),
                 fetch=_fetched(pipeline, recorder, exchange, environ),
                 observe=route.observe, level=_levels(pipeline, route))
    for fmt, (_, text) in _sends(pipeline, route).items():
        found[fmt] = text
    return found


def _fetch_pattern(pipeline: Pipeline, route: route_maps.Route) -> str | None:
    """The API path (with the route's parameters) of the record the filter fetches
    before such a call with these settings, or None."""
    if not pipeline.emitter.needs_prefetch(route):
        return None
    if route.record is not None:
        if route.changes is not None:
            if max(pipeline.policy.levels(route)) >= audit_policy.REQUEST:
                return route.record + ' (old values)'
            return None
        return route.record + ' (by name)'
    params = {name: '{%s}' % name for name in _params(route)}
    return glance_events.prefetch_path(glance_events.RULES[route.usage],
                                       types.SimpleNamespace(route=route, params=params))


def _fetched(pipeline: Pipeline, recorder: 'RecordingApp', exchange,
             environ: dict) -> list[str]:
    """The paths the filter's emitter fetches before this call, as in the filter."""
    if exchange is None or not pipeline.emitter.needs_prefetch(exchange.route):
        return []
    del recorder.paths[:]
    pipeline.emitter.prefetch(exchange, environ)
    return list(recorder.paths)


class RecordingApp:
    """Stands in for the service's app: notes each path asked for, answers 404."""

    def __init__(self):
        self.paths: list[str] = []

    def __call__(self, environ, start_response):
        self.paths.append(environ['PATH_INFO'])
        start_response('404 Not Found', [('Content-Type', 'application/json')])
        return [b'{}']


# -- text ---------------------------------------------------------------------------------

def render_match(found: dict) -> str:
    lines = ['request: %s' % found['request']]
    if found['route'] is None:
        lines.append('route: none of the map matches')
    else:
        lines += ['route: %s' % found['route'],
                  'params: %s' % (' '.join('%s=%s' % kv for kv in sorted(found['params'].items()))
                                  or 'none'),
                  'kind: %s, action: %s, event: %s' % (found['kind'], found['action'],
                                                       found['event']),
                  'target: %s%s' % (found['target'], ' from %s' % found['target_from']
                                    if found['target_from'] else ''),
                  'fetched before the call: %s' % _fetch_text(found)]
        if found['observe']:
            lines.append('observed: %s bytes' % found['observe'])
        lines.append('audit policy level: %s' % ' or '.join(found['level']))
    if found['audited']:
        lines.append('audited: yes' + (', as an unmatched call' if found['route'] is None
                                       else ''))
    else:
        lines.append('audited: no' + (' (%s)' % found['why_not'] if 'why_not' in found
                                      else ''))
    for fmt in ('cadf', 'glance'):
        if fmt in found:
            lines.append('%s: %s' % (fmt, found[fmt]))
    return '\n'.join(lines)


def _fetch_text(found: dict) -> str:
    return ', '.join('GET %s' % path for path in found['fetch']) or 'nothing'


def render_table(pipeline: Pipeline, rows: list[dict]) -> str:
    settings = _settings(pipeline)
    head = ['route map: %d routes from %s' % (len(rows), ', '.join(settings['route_map'])),
            'formats %s; audit_reads %s, audit_lists %s, unmatched_requests %s'
            % (','.join(settings['formats']), _bool(settings['audit_reads']),
               _bool(settings['audit_lists']), settings['unmatched_requests']),
            'audit policy: %s' % settings['audit_policy']]
    cells = [[title for _, title in COLUMNS]]
    for row in rows:
        cells.append([_cell(row[key]) for key, _ in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    table = ['  '.join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
             for line in cells]
    return '\n'.join(head + [''] + table)


def _settings(pipeline: Pipeline) -> dict:
    settings = pipeline.settings
    return {'route_map': list(pipeline.route_map.sources), 'formats': pipeline.formats,
            'audit_reads': settings.audit_reads, 'audit_lists': settings.audit_lists,
            'unmatched_requests': settings.unmatched_requests,
            'record_lookups': settings.record_lookups,
            'disabled_events': list(settings.disabled_events),
            'audit_policy': pipeline.policy.source}


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ','.join(value) or '-'
    return '-' if value is None else str(value)


def _bool(value: bool) -> str:
    return 'true' if value else 'false'
