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

"""Side-by-side comparison of our Glance-format notifications with Glance's own.

A helper module, not a test file.  :func:`diff` pairs the notifications of one
API call and lists every difference a consumer could see, as
:class:`Difference` (call, event, field, kind, ours, glance):

* ``extra_notification`` / ``missing_notification``: a (event_type, priority)
  that only we / only Glance sent (counted per pair, so a missing second
  ``image.update`` shows up);
* ``extra_field`` / ``missing_field``: a payload key (or ``properties.<key>``)
  only in ours / only in Glance's;
* ``value``: the same key with different values (``<text>`` for text payloads);
* ``type``: one payload is text, the other a dict.

Timestamps that both sides fill in at their own moment (:data:`CLOCK_FIELDS`)
are not compared by value here; the tests check their format and the
differences file documents them.

:func:`load_documented` reads ``data/glance_format_differences.yaml``, the
machine-readable list of the deliberate differences the docs cite.
"""

from __future__ import annotations

import collections
import dataclasses
import os

import yaml

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
DIFFERENCES_FILE = os.path.join(DATA, 'glance_format_differences.yaml')
#: set by each side at its own moment (may differ by the time between them)
CLOCK_FIELDS = frozenset({'updated_at', 'deleted_at', 'expires_at'})
KINDS = frozenset({'extra_notification', 'missing_notification', 'extra_field',
                   'missing_field', 'value', 'type'})


@dataclasses.dataclass(frozen=True)
class Difference:
    call: str
    event: str
    field: str
    kind: str
    ours: object = None
    glance: object = None

    @property
    def key(self):
        return (self.call, self.event, self.field, self.kind)


def pair(ours, own):
    """Match notifications by (event_type, priority), the n-th with the n-th.

    Returns (pairs, only_ours, only_glance).
    """
    def by_kind(envelopes):
        groups = collections.OrderedDict()
        for m in envelopes:
            groups.setdefault((m['event_type'], m['priority']), []).append(m)
        return groups
    mine, theirs = by_kind(ours), by_kind(own)
    pairs, only_ours, only_glance = [], [], []
    for kind in list(mine) + [k for k in theirs if k not in mine]:
        a, b = mine.get(kind, []), theirs.get(kind, [])
        pairs.extend(zip(a, b))
        only_ours.extend(a[len(b):])
        only_glance.extend(b[len(a):])
    return pairs, only_ours, only_glance


def _payload_diffs(call, event, ours, glance):
    if isinstance(ours, dict) != isinstance(glance, dict):
        return [Difference(call, event, '<payload>', 'type', type(ours).__name__,
                           type(glance).__name__)]
    if not isinstance(ours, dict):
        if ours != glance:
            return [Difference(call, event, '<text>', 'value', ours, glance)]
        return []
    out = []
    flat_ours, flat_glance = _flatten(ours), _flatten(glance)
    for key in sorted(set(flat_ours) | set(flat_glance)):
        if key in CLOCK_FIELDS:
            continue
        if key not in flat_glance:
            out.append(Difference(call, event, key, 'extra_field', flat_ours[key], None))
        elif key not in flat_ours:
            out.append(Difference(call, event, key, 'missing_field', None,
                                  flat_glance[key]))
        elif flat_ours[key] != flat_glance[key]:
            out.append(Difference(call, event, key, 'value', flat_ours[key],
                                  flat_glance[key]))
    return out


def _flatten(payload):
    flat = {k: v for k, v in payload.items() if k != 'properties'}
    if 'properties' in payload:
        props = payload['properties']
        if isinstance(props, dict):
            flat['properties'] = '<mapping>'      # present on both sides
            flat.update({'properties.%s' % k: v for k, v in props.items()})
        else:
            flat['properties'] = props
    return flat


def diff(call, ours, own):
    """Every difference between our usage notifications and Glance's own."""
    pairs, only_ours, only_glance = pair(ours, own)
    out = [Difference(call, m['event_type'], '<notification>', 'extra_notification',
                      m['priority'], None) for m in only_ours]
    out += [Difference(call, m['event_type'], '<notification>', 'missing_notification',
                       None, m['priority']) for m in only_glance]
    for a, b in pairs:
        out.extend(_payload_diffs(call, a['event_type'], a['payload'], b['payload']))
    return out


def load_documented(path=DIFFERENCES_FILE):
    """The documented differences: a list of dicts (see the file header)."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    entries = doc['differences']
    for entry in entries:
        missing = {'id', 'calls', 'event', 'field', 'kind', 'ours', 'glance',
                   'reason'} - set(entry)
        assert not missing, 'entry %s lacks %s' % (entry.get('id'), sorted(missing))
        assert entry['kind'] in KINDS | {'clock'}, entry
    return entries


def documented_keys(entries):
    """{(call, event, field, kind): entry} for the per-call entries."""
    keys = {}
    for entry in entries:
        if entry['kind'] == 'clock':
            continue
        for call in entry['calls']:
            keys[(call, entry['event'], entry['field'], entry['kind'])] = entry
    return keys
