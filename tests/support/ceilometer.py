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

"""Ceilometer's view of a notification: meters (samples) and event traits.

This applies Ceilometer's own definitions for Glance, copied verbatim from
``ceilometer/data/meters.d/meters.yaml`` and
``ceilometer/pipeline/data/event_definitions.yaml`` (HEAD, see
shared/reference/ground-truth.md section 4), with the JSONPath library
Ceilometer uses (``jsonpath-rw-ext``, falling back to ``jsonpath-ng``'s
extended parser which accepts the same expressions), following the logic of
``ceilometer/meter/notifications.py: MeterDefinition.to_samples`` and
``ceilometer/event/converter.py: TraitDefinition.to_trait``:

* a field is a JSONPath (a list means "the first one that matches", joined
  with ``|``); the first match whose value is not None wins;
* samples are built only from notifications Ceilometer's ``SampleEndpoint``
  receives: priorities INFO and SAMPLE (an ERROR image.send yields no sample);
* events are built only from notifications its ``EventEndpoint``
  receives: priorities INFO and ERROR (a WARN event never reaches the event
  pipeline); a trait whose value is missing (None) is
  left out; ``int`` and ``datetime`` traits are converted the way
  ``models.Trait.convert_value`` does and a value that cannot be converted
  raises (Ceilometer would drop the event with an error).

Usage::

    from tests.support import ceilometer
    ceilometer.samples(envelope)     # [{'name': 'image.size', 'volume': ...}, ...]
    ceilometer.event(envelope)       # {'event_type': ..., 'traits': {...}} or None
"""

from __future__ import annotations

import fnmatch

import yaml

try:   # what Ceilometer uses
    from jsonpath_rw_ext import parser as _jp_parser
    _PARSER = _jp_parser.ExtentedJsonPathParser()
except ImportError:   # same grammar for the expressions used here
    from jsonpath_ng.ext import parser as _jp_parser
    _PARSER = _jp_parser.ExtentedJsonPathParser()

# ceilometer/data/meters.d/meters.yaml (the Glance meters)
METERS_YAML = """
metric:
  - name: "image.size"
    event_type:
      - "image.upload"
      - "image.delete"
      - "image.update"
    type: "gauge"
    unit: B
    volume: $.payload.size
    resource_id: $.payload.id
    project_id: $.payload.owner

  - name: "image.download"
    event_type: "image.send"
    type: "delta"
    unit: "B"
    volume: $.payload.bytes_sent
    resource_id: $.payload.image_id
    user_id: $.payload.receiver_user_id
    project_id: $.payload.receiver_tenant_id

  - name: "image.serve"
    event_type: "image.send"
    type: "delta"
    unit: "B"
    volume: $.payload.bytes_sent
    resource_id: $.payload.image_id
    project_id: $.payload.owner_id
"""

# ceilometer/pipeline/data/event_definitions.yaml (the Glance definitions)
EVENTS_YAML = """
- event_type:
    - image.create
    - image.update
    - image.upload
    - image.delete
  traits: &glance_crud
    project_id:
      fields: payload.owner
    resource_id:
      fields: payload.id
    name:
      fields: payload.name
    status:
      fields: payload.status
    created_at:
      type: datetime
      fields: payload.created_at
    user_id:
      fields: payload.owner
    deleted_at:
      type: datetime
      fields: payload.deleted_at
    size:
      type: int
      fields: payload.size
- event_type: image.send
  traits: &glance_send
    receiver_project:
      fields: payload.receiver_tenant_id
    receiver_user:
      fields: payload.receiver_user_id
    user_id:
      fields: payload.owner_id
    image_id:
      fields: payload.image_id
    destination_ip:
      fields: payload.destination_ip
    bytes_sent:
      type: int
      fields: payload.bytes_sent
"""

# EventDefinition.DEFAULT_TRAITS that read the envelope (ctxt is empty here)
_DEFAULT_TRAITS = {'service': {'type': 'text', 'fields': 'publisher_id'}}

SAMPLE_PRIORITIES = ('INFO', 'SAMPLE')
EVENT_PRIORITIES = ('INFO', 'ERROR')
SAMPLE_ATTRIBUTES = ('volume', 'resource_id', 'user_id', 'project_id')


class Field:
    """declarative.Definition: a JSONPath (or list of them) evaluated on the
    notification; returns the first non-None value."""

    def __init__(self, spec):
        if isinstance(spec, (list, tuple)):
            spec = spec[0] if len(spec) == 1 else '|'.join('(%s)' % p for p in spec)
        self.spec = spec
        self._path = _PARSER.parse(spec)

    def parse(self, message):
        values = [m.value for m in self._path.find(message) if m.value is not None]
        return values[0] if values else None


def _definitions():
    meters = yaml.safe_load(METERS_YAML)['metric']
    for meter in meters:
        types = meter['event_type']
        meter['event_type'] = [types] if isinstance(types, str) else list(types)
        meter['fields'] = {attr: Field(meter[attr]) for attr in SAMPLE_ATTRIBUTES
                           if attr in meter}
    return meters, event_definitions(EVENTS_YAML)


def event_definitions(text: str) -> list[dict]:
    """Event definitions (a YAML list, as in event_definitions.yaml), loaded as
    Ceilometer loads them: the default traits added to each."""
    events = yaml.safe_load(text)
    for definition in events:
        types = definition['event_type']
        definition['event_type'] = [types] if isinstance(types, str) else list(types)
        traits = dict(_DEFAULT_TRAITS)
        traits.update(definition['traits'])
        definition['fields'] = {name: (cfg.get('type', 'text'), Field(cfg['fields']))
                                for name, cfg in traits.items()}
    return events


METERS, EVENT_DEFINITIONS = _definitions()


def _matches(event_type, patterns):
    return any(fnmatch.fnmatch(event_type, p) for p in patterns)


def samples(envelope: dict) -> list[dict]:
    """The samples Ceilometer's notification agent builds from ``envelope``."""
    if envelope.get('priority', '').upper() not in SAMPLE_PRIORITIES:
        return []
    out = []
    for meter in METERS:
        if not _matches(envelope['event_type'], meter['event_type']):
            continue
        sample = {'name': meter['name'], 'type': meter['type'], 'unit': meter['unit'],
                  'volume': None, 'resource_id': None, 'user_id': None,
                  'project_id': None}
        for attr, field in meter['fields'].items():
            value = field.parse(envelope)
            if value is not None:
                sample[attr] = value
        out.append(sample)
    return out


def _convert(trait_type, value):
    """ceilometer.event.models.Trait.convert_value."""
    if trait_type == 'int':
        return int(value)
    if trait_type == 'float':
        return float(value)
    if trait_type == 'datetime':
        # oslo_utils.timeutils.normalize_time(parse_isotime(value))
        from oslo_utils import timeutils
        return timeutils.normalize_time(timeutils.parse_isotime(value))
    return str(value)


# The definition doc/source/reference/events.rst recommends for the Glance map's CADF
# events (audit.image.*), which match none of Ceilometer's own.
AUDIT_EVENTS_YAML = """
- event_type: 'audit.*'
  traits:
    action: {fields: payload.action}
    outcome: {fields: payload.outcome}
    eventTime: {type: datetime, fields: payload.eventTime}
    user_id: {fields: payload.initiator.id}
    project_id: {fields: payload.initiator.project_id}
    initiator_name: {fields: payload.initiator.name}
    initiator_host_address: {fields: payload.initiator.host.address}
    request_id: {fields: payload.initiator.request_id}
    target_id: {fields: payload.target.id}
    target_typeURI: {fields: payload.target.typeURI}
    observer_id: {fields: payload.observer.id}
    requestPath: {fields: payload.requestPath}
    reason_code: {fields: payload.reason.reasonCode}
"""


def event(envelope: dict, extra_definitions: list | tuple = ()) -> dict | None:
    """The Ceilometer event (type and traits) for ``envelope``, or None when its
    priority is not one the event pipeline reads or no event definition matches
    (Ceilometer drops it unless a catch-all exists).  ``extra_definitions``
    (from event_definitions()) come after Ceilometer's own, as an operator's
    additions to event_definitions.yaml do."""
    if envelope.get('priority', '').upper() not in EVENT_PRIORITIES:
        return None
    for definition in reversed(list(EVENT_DEFINITIONS) + list(extra_definitions)):
        if not _matches(envelope['event_type'], definition['event_type']):
            continue
        traits = {}
        for name, (trait_type, field) in definition['fields'].items():
            value = field.parse(envelope)
            if value is None:
                continue
            if trait_type != 'text' and value == '':
                continue
            traits[name] = _convert(trait_type, value)
        return {'event_type': envelope['event_type'], 'message_id': envelope['message_id'],
                'generated': _generated(envelope.get('timestamp')), 'traits': traits}
    return None


def _generated(timestamp):
    if not timestamp:
        return None
    from oslo_utils import timeutils
    return timeutils.normalize_time(timeutils.parse_isotime(timestamp))


__all__ = ['samples', 'event', 'event_definitions', 'METERS', 'EVENT_DEFINITIONS',
           'AUDIT_EVENTS_YAML', 'Field']


#: Ceilometer's CADF trait definition for Magnum (ceilometer/pipeline/data/
#: event_definitions.yaml): under 'magnum.cluster.*' today, under 'magnum.bay.*' from
#: cf3f7c99 (2016-06) to 4b420650 (2017-10), the same traits.
_MAGNUM_TRAITS_YAML = """  traits:
    id:
      fields: payload.id
    typeURI:
      fields: payload.typeURI
    eventType:
      fields: payload.eventType
    eventTime:
      type: datetime
      fields: payload.eventTime
    action:
      fields: payload.action
    outcome:
      fields: payload.outcome
    initiator_id:
      fields: payload.initiator.id
    initiator_typeURI:
      fields: payload.initiator.typeURI
    initiator_name:
      fields: payload.initiator.name
    initiator_host_agent:
      fields: payload.initiator.host.agent
    initiator_host_address:
      fields: payload.initiator.host.address
    target_id:
      fields: payload.target.id
    target_typeURI:
      fields: payload.target.typeURI
    observer_id:
      fields: payload.observer.id
    observer_typeURI:
      fields: payload.observer.typeURI
"""


def magnum_event_definition(event_type: str) -> dict:
    """The definition as Ceilometer loads it, for 'magnum.cluster.*' or 'magnum.bay.*'."""
    (definition,) = yaml.safe_load("- event_type: '%s'\n%s" % (event_type, _MAGNUM_TRAITS_YAML))
    return definition
