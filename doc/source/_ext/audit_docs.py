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

"""Sphinx directives that render audit_notifier's own data into the documentation.

Everything here reads files of this repository at build time, so the pages cannot
drift from them:

``.. route-table:: glance`` (or ``magnum``; option ``:prefix: /v1``)
    The routes of a shipped route map (``audit_notifier/routes/<name>.yaml``),
    loaded and validated by :func:`audit_notifier.routes.load`.

``.. captured-example:: <name>``
    One envelope of ``tests/functional/data/audit_notifier_examples.json`` (real
    notifications of audit_notifier in front of Glance 33), verbatim.

``.. glance-own:: <step> [<index>]``
    One notification (or, without index, all of them) that Glance 33 itself sent
    for a call, from ``tests/functional/data/glance33_own_notifications.json``.

``.. glance-own-sequences::``
    Table: every captured call and the notifications Glance 33 sent for it.

``.. magnum-own:: <step label>`` (option ``:index: N``)
    One notification Magnum 23 itself sent, from
    ``tests/magnum/data/magnum23_own_notifications.json``.

``.. format-differences:: glance`` / ``magnum-fields`` / ``magnum-events``
    The machine-checked difference lists
    (``tests/functional/data/glance_format_differences.yaml``,
    ``tests/magnum/data/magnum_cadf_differences.yaml``) as tables.

``.. release-notes-fallback::``
    The notes in ``releasenotes/notes`` rendered without git (used by conf.py only
    when reno cannot scan the repository).

Tables are built as docutils nodes (no RST text is generated from data), so no
character in the data can break the markup.
"""

from __future__ import annotations

import glob
import json
import os
import re

import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

EXAMPLES = os.path.join(REPO_ROOT, 'tests', 'functional', 'data',
                        'audit_notifier_examples.json')
GLANCE_OWN = os.path.join(REPO_ROOT, 'tests', 'functional', 'data',
                          'glance33_own_notifications.json')
GLANCE_DIFFERENCES = os.path.join(REPO_ROOT, 'tests', 'functional', 'data',
                                  'glance_format_differences.yaml')
MAGNUM_OWN = os.path.join(REPO_ROOT, 'tests', 'magnum', 'data',
                          'magnum23_own_notifications.json')
MAGNUM_DIFFERENCES = os.path.join(REPO_ROOT, 'tests', 'magnum', 'data',
                                  'magnum_cadf_differences.yaml')
NOTES_DIR = os.path.join(REPO_ROOT, 'releasenotes', 'notes')

# What each Glance-format rule of the route maps sends for a successful call, in
# order (audit_notifier/events/glance.py RULES).  A failed call sends the rule's
# event as one WARN/ERROR text notification (usage_failures), except where noted
# on the events page.
RULE_SUMMARY = {
    'image.create': 'image.create',
    'image.update': 'image.update',
    'image.refresh': 'image.update (record looked up)',
    'image.stage': 'image.update (uploading, at the first byte); image.update',
    'image.import': 'task.create (looked up); image.update',
    'image.delete': 'image.delete (record fetched before the call)',
    'image.upload': ('image.update (saving) and image.prepare at the first byte; '
                     'image.upload, image.activate, image.update'),
    'image.send': 'image.send (INFO, or ERROR when incomplete)',
    'image.member.create': 'image.member.create',
    'image.member.update': 'image.member.update',
    'image.member.delete': 'image.member.delete (record fetched before the call)',
    'task.create': 'task.create',
    'task.delete': 'task.delete',
}

_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')


# -- helpers ----------------------------------------------------------------------------

def _load_json(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def _load_yaml(path):
    with open(path, encoding='utf-8') as f:
        return yaml.safe_load(f)


def _pretty(data) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def _code(text: str, language: str = 'json') -> nodes.literal_block:
    block = nodes.literal_block(text, text)
    block['language'] = language
    return block


def _lit(text) -> nodes.literal:
    return nodes.literal(str(text), str(text))


def _para(*parts) -> nodes.paragraph:
    """A paragraph of strings (plain text) and inline nodes."""
    para = nodes.paragraph()
    for part in parts:
        if part is None:
            continue
        para += nodes.Text(part) if isinstance(part, str) else part
    return para


def _cell(value) -> nodes.entry:
    entry = nodes.entry()
    if value is None or value == '':
        return entry
    if isinstance(value, (nodes.paragraph, nodes.literal_block, nodes.bullet_list)):
        entry += value
    elif isinstance(value, nodes.Node):
        entry += _para(value)
    elif isinstance(value, (list, tuple)):
        para = nodes.paragraph()
        for i, part in enumerate(value):
            if i:
                para += nodes.Text(', ')
            para += nodes.Text(part) if isinstance(part, str) else part
        entry += para
    else:
        entry += nodes.paragraph(text=str(value))
    return entry


def make_table(headers, rows, widths=None, classes=()) -> nodes.table:
    table = nodes.table(classes=['audit-table'] + list(classes))
    tgroup = nodes.tgroup(cols=len(headers))
    table += tgroup
    for width in widths or [1] * len(headers):
        tgroup += nodes.colspec(colwidth=width)
    thead = nodes.thead()
    tgroup += thead
    row = nodes.row()
    for header in headers:
        row += _cell(header)
    thead += row
    tbody = nodes.tbody()
    tgroup += tbody
    for values in rows:
        row = nodes.row()
        for value in values:
            row += _cell(value)
        tbody += row
    return table


def _template_path(path: str) -> str:
    """A captured path with its ids replaced by the route's parameter names."""
    parts = path.split('/')
    names = {'images': '{image_id}', 'clusters': '{cluster_ident}', 'tasks': '{task_id}',
             'members': '{member_id}', 'clustertemplates': '{clustertemplate_ident}',
             'nodegroups': '{nodegroup_ident}'}
    for i in range(1, len(parts)):
        if _UUID.fullmatch(parts[i]) and parts[i - 1] in names:
            parts[i] = names[parts[i - 1]]
    return '/'.join(parts)


def _sources(sources) -> str:
    out = []
    for kind, ref in sources:
        out.append('%s.%s' % (kind, '.'.join(ref) if isinstance(ref, tuple) else ref))
    return ' | '.join(out)


# -- route maps -------------------------------------------------------------------------

class RouteTable(SphinxDirective):
    """The routes of a shipped route map, as loaded and validated by the package."""

    required_arguments = 1
    option_spec = {'prefix': directives.unchanged}

    def run(self):
        from audit_notifier import routes
        from audit_notifier.events import glance as glance_events
        name = self.arguments[0]
        path = routes.resolve_map_path(name)
        self.env.note_dependency(path)
        route_map = routes.load(name, usage_rules=glance_events.RULES)
        template = route_map.service.cadf_event_type
        prefix = self.options.get('prefix')
        rows = []
        for route in route_map.routes:
            if prefix and not route.path.startswith(prefix):
                continue
            target = [_lit(route.target.type_uri)]
            if route.target.id:
                target.append(nodes.Text(' id: '))
                target.append(_lit(_sources(route.target.id)))
            else:
                target.append(nodes.Text(' id: the observer (no resource id)'))
            for att_name, srcs in route.target.attachments:
                target.append(nodes.Text(' attachment %s: ' % att_name))
                target.append(_lit(_sources(srcs)))
            usage = None
            if route.usage is not None:
                usage = _para(_lit(route.usage), ': ',
                              RULE_SUMMARY.get(route.usage, route.usage))
            kind = route.kind + (' (%s)' % route.observe if route.observe else '')
            rows.append([_lit(route.method), _lit(route.path), _lit(route.event),
                         _lit(template.format(event=route.event)), _lit(route.action),
                         kind, _para(*target), usage])
        if not rows:
            raise self.error('route map %s has no route under %s' % (name, prefix))
        headers = ['Method', 'Path', 'Event', 'CADF event_type', 'CADF action', 'Kind',
                   'CADF target (typeURI, source of id)', 'Glance-format rule: notifications']
        return [make_table(headers, rows, [6, 22, 14, 16, 10, 8, 26, 24])]


# -- captured notifications ---------------------------------------------------------------

class CapturedExample(SphinxDirective):
    """An envelope from tests/functional/data/audit_notifier_examples.json, verbatim."""

    required_arguments = 1
    option_spec = {'payload-only': directives.flag}

    def run(self):
        self.env.note_dependency(EXAMPLES)
        data = _load_json(EXAMPLES)
        name = self.arguments[0]
        for example in data['examples']:
            if example['name'] == name:
                break
        else:
            raise self.error('no example named %r in %s' % (name, EXAMPLES))
        envelope = example['envelope']
        shown = envelope['payload'] if 'payload-only' in self.options else envelope
        caption = _para(_lit(example['call']), ' answered %s: ' % example['http_status'],
                        example['about'], '.')
        return [caption, _code(_pretty(shown))]


def _glance_step(directive, step_name):
    directive.env.note_dependency(GLANCE_OWN)
    for step in _load_json(GLANCE_OWN)['steps']:
        if step['step'] == step_name:
            return step
    raise directive.error('no step %r in %s' % (step_name, GLANCE_OWN))


class GlanceOwn(SphinxDirective):
    """Notifications Glance 33 itself sent for one captured call."""

    required_arguments = 1
    optional_arguments = 1

    def run(self):
        step = _glance_step(self, self.arguments[0])
        notes = step['notifications']
        if len(self.arguments) > 1:
            notes = [notes[int(self.arguments[1])]]
        request = step['request']
        caption = _para('Glance 33.0.0, ', _lit('%s %s' % (request['method'], request['path'])),
                        ' answered %s; ' % step['status'],
                        'Glance\'s own notification%s (captured):' % ('' if len(notes) == 1
                                                                      else 's'))
        shown = notes[0] if len(notes) == 1 else notes
        return [caption, _code(_pretty(shown))]


class GlanceOwnSequences(SphinxDirective):
    """Every captured call and the notifications Glance 33 sent for it, in order."""

    def run(self):
        self.env.note_dependency(GLANCE_OWN)
        data = _load_json(GLANCE_OWN)
        rows = []
        for step in data['steps']:
            request = step['request']
            sent = [_lit('%s %s' % (n['event_type'], n['priority']))
                    for n in step['notifications']]
            rows.append([_lit(step['step']),
                         _lit('%s %s' % (request['method'], _template_path(request['path']))),
                         str(step['status']), sent or 'nothing'])
        return [make_table(['Step', 'Call', 'HTTP status', 'Glance 33 sent (in order)'],
                           rows, [18, 34, 8, 40])]


class MagnumOwn(SphinxDirective):
    """A notification Magnum 23 itself sent (captured)."""

    required_arguments = 1
    final_argument_whitespace = True
    option_spec = {'index': directives.nonnegative_int}

    def run(self):
        self.env.note_dependency(MAGNUM_OWN)
        label = ' '.join(self.arguments[0].split())
        for step in _load_json(MAGNUM_OWN)['steps']:
            if step['label'] == label:
                break
        else:
            raise self.error('no step labelled %r in %s' % (label, MAGNUM_OWN))
        notes = step['notifications']
        index = self.options.get('index', 0)
        note = notes[index]
        if step.get('method'):
            caption = _para('Magnum 23.0.0, ', _lit('%s %s' % (step['method'], step['path'])),
                            ' answered %s; Magnum\'s own notification (captured):'
                            % step['status'])
        else:
            caption = _para('Magnum 23.0.0, %s (no API call); Magnum\'s own notification '
                            '(captured):' % step['label'])
        return [caption, _code(_pretty(note))]


# -- difference lists ---------------------------------------------------------------------

def _text(value) -> str:
    if value is None:
        return '(nothing)'
    if isinstance(value, (list, tuple)):
        return ', '.join(str(v) for v in value)
    return ' '.join(str(value).split())


class FormatDifferences(SphinxDirective):
    required_arguments = 1

    def run(self):
        which = self.arguments[0]
        if which == 'glance':
            return self._glance()
        if which in ('magnum-fields', 'magnum-events'):
            if not os.path.exists(MAGNUM_DIFFERENCES):
                raise self.error('%s is missing' % MAGNUM_DIFFERENCES)
            self.env.note_dependency(MAGNUM_DIFFERENCES)
            data = _load_yaml(MAGNUM_DIFFERENCES)
            return self._magnum_fields(data) if which == 'magnum-fields' else \
                self._magnum_events(data)
        raise self.error('unknown difference list %r' % which)

    def _glance(self):
        self.env.note_dependency(GLANCE_DIFFERENCES)
        data = _load_yaml(GLANCE_DIFFERENCES)
        rows = []
        for diff in data['differences']:
            calls = diff['calls']
            calls = 'every call' if calls == '*' else [_lit(c) for c in calls]
            what = _para(nodes.strong(diff['id'], diff['id']), ' (%s)' % diff['kind'])
            where = _para(_lit(diff['event'] if diff['event'] != '*' else 'every event'),
                          ', field ', _lit(diff['field']))
            rows.append([what, where, calls, _text(diff['ours']), _text(diff['glance']),
                         _text(diff['reason'])])
        return [make_table(['Difference', 'Notification and field', 'Calls (scenario steps)',
                            'audit_notifier sends', 'Glance 33 sends', 'Why'],
                           rows, [14, 16, 12, 18, 16, 30])]

    def _magnum_fields(self, data):
        rows = []
        for diff in data['fields']:
            steps = diff.get('steps')
            field = _para(_lit(diff['field']))
            if steps:
                field += nodes.Text(' (%s)' % ', '.join(steps))
            ours = _text(diff.get('ours'))
            magnum = _text(diff.get('magnum'))
            rows.append([field, diff['presence'], ours, magnum, _text(diff.get('reason'))])
        return [make_table(['Field', 'Present in', 'audit_notifier', 'Magnum 23', 'Why'],
                           rows, [18, 8, 22, 22, 30])]

    def _magnum_events(self, data):
        rows = []
        for diff in data['events']:
            rows.append([diff['step'],
                         [_lit(e) for e in diff['ours']] or 'nothing',
                         [_lit(e) for e in diff['magnum']] or 'nothing',
                         _text(diff.get('reason'))])
        return [make_table(['Scenario step', 'audit_notifier (filter) sends',
                            'Magnum 23 sends', 'Why'], rows, [14, 22, 24, 40])]


# -- release notes without git ------------------------------------------------------------

_SECTIONS = (('prelude', 'Prelude'), ('features', 'New Features'),
             ('issues', 'Known Issues'), ('upgrade', 'Upgrade Notes'),
             ('deprecations', 'Deprecation Notes'), ('critical', 'Critical Issues'),
             ('security', 'Security Issues'), ('fixes', 'Bug Fixes'),
             ('other', 'Other Notes'))


class ReleaseNotesFallback(SphinxDirective):
    """releasenotes/notes/*.yaml rendered directly (no git history needed)."""

    option_spec = {'reporoot': directives.unchanged, 'relnotessubdir': directives.unchanged,
                   'branch': directives.unchanged, 'version': directives.unchanged,
                   'collapse-pre-releases': directives.flag,
                   'earliest-version': directives.unchanged,
                   'unreleased-version-title': directives.unchanged,
                   'ignore-notes': directives.unchanged}

    def run(self):
        notes = []
        for path in sorted(glob.glob(os.path.join(NOTES_DIR, '*.yaml'))):
            self.env.note_dependency(path)
            notes.append(_load_yaml(path) or {})
        lines = []
        for key, title in _SECTIONS:
            items = []
            for note in notes:
                value = note.get(key)
                if not value:
                    continue
                items.extend(value if isinstance(value, list) else [value])
            if not items:
                continue
            lines += ['.. rubric:: %s' % title, '']
            for item in items:
                body = str(item).strip().splitlines()
                lines += ['* ' + body[0]] + ['  ' + line for line in body[1:]] + ['']
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=NOTES_DIR), self.content_offset,
                                container)
        return container.children


def setup(app):
    app.add_directive('route-table', RouteTable)
    app.add_directive('captured-example', CapturedExample)
    app.add_directive('glance-own', GlanceOwn)
    app.add_directive('glance-own-sequences', GlanceOwnSequences)
    app.add_directive('magnum-own', MagnumOwn)
    app.add_directive('format-differences', FormatDifferences)
    app.add_directive('release-notes-fallback', ReleaseNotesFallback)
    return {'version': '1', 'parallel_read_safe': True, 'parallel_write_safe': True}
