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

"""Validate a CADF event dict with pycadf itself.

:func:`to_event` rebuilds real pycadf objects (``Event``, ``Resource``,
``Reason``, ``Host``, ``Attachment``, ``Measurement``, ``Metric``) from a dict
such as the ``payload`` of an ``audit.*`` notification.  Every CADF attribute
goes through pycadf's own validators (``ValidatorDescriptor``: a bad action,
outcome, typeURI or id raises ``ValueError`` at assignment); non-CADF extension
attributes of a resource (``initiator.project_id``, ``roles`` ...) are set with
``setattr``, which is what Magnum and keystonemiddleware do.

:func:`assert_valid` additionally requires ``Event.is_valid()`` and that
pycadf serialises the rebuilt event back to exactly the same dict
(``as_dict()`` round trip), so nothing in the payload is lost or reshaped.

Usage::

    from tests.support import cadf
    event = cadf.assert_valid(envelope['payload'])
"""

from __future__ import annotations

import copy
import re
import uuid
import warnings

from pycadf import attachment as cadf_attachment
from pycadf import cadftaxonomy
from pycadf import event as cadf_event
from pycadf import host as cadf_host
from pycadf import measurement as cadf_measurement
from pycadf import metric as cadf_metric
from pycadf import reason as cadf_reason
from pycadf import resource as cadf_resource

EVENT_TYPE_URI = 'http://schemas.dmtf.org/cloud/audit/1.0/event'
#: pycadf's eventTime format, e.g. 2026-11-23T12:33:20.291085+0000
EVENT_TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000$')

# Event attributes that are CADF (pycadf EVENT_KEYNAMES) plus the one
# extension keystonemiddleware has always set on its events.
_EVENT_KEYS = set(cadf_event.EVENT_KEYNAMES) | {'requestPath'}
_RESOURCE_CTOR = ('id', 'typeURI', 'name', 'ref', 'domain', 'geolocationId')
_RESOURCE_CADF = set(cadf_resource.RESOURCE_KEYNAMES)


class InvalidCADF(AssertionError):
    """The dict is not a CADF event pycadf accepts."""


def _host(value, where):
    if not isinstance(value, dict):
        raise InvalidCADF('%s.host is not a mapping: %r' % (where, value))
    unknown = set(value) - {'id', 'address', 'agent', 'platform'}
    if unknown:
        raise InvalidCADF('%s.host has non-CADF keys %s' % (where, sorted(unknown)))
    return cadf_host.Host(**value)


def _attachment(value, where):
    if not isinstance(value, dict) or set(value) != {'typeURI', 'name', 'content'}:
        raise InvalidCADF('%s: an attachment needs exactly typeURI, name and content: %r'
                          % (where, value))
    att = cadf_attachment.Attachment(**value)
    if not att.is_valid():
        raise InvalidCADF('%s: pycadf rejects attachment %r' % (where, value))
    return att


def to_resource(value, where='resource'):
    """A pycadf Resource from a dict; extension attributes via setattr."""
    if not isinstance(value, dict):
        raise InvalidCADF('%s is not a mapping: %r' % (where, value))
    value = dict(value)
    kwargs = {k: value.pop(k) for k in _RESOURCE_CTOR if k in value}
    host = value.pop('host', None)
    attachments = value.pop('attachments', None)
    addresses = value.pop('addresses', None)
    credential = value.pop('credential', None)
    try:
        with warnings.catch_warnings():
            # pycadf warns (only) on ids that are not UUIDs, e.g. Keystone user
            # ids of LDAP-backed domains; the tests check UUIDs where needed.
            warnings.simplefilter('ignore', UserWarning)
            res = cadf_resource.Resource(**kwargs)
        if host is not None:
            res.host = _host(host, where)
        if credential is not None:
            raise InvalidCADF('%s carries a credential: %r' % (where, credential))
        if addresses is not None:
            raise InvalidCADF('%s.addresses is not produced by this project' % where)
        for i, att in enumerate(attachments or ()):
            res.add_attachment(_attachment(att, '%s.attachments[%d]' % (where, i)))
    except ValueError as exc:
        raise InvalidCADF('%s: pycadf rejects it: %s (%r)' % (where, exc, kwargs))
    for key, val in value.items():        # non-CADF extensions (project_id, roles ...)
        if key in _RESOURCE_CADF:
            raise InvalidCADF('%s.%s is not handled by this validator' % (where, key))
        setattr(res, key, copy.deepcopy(val))
    if not res.is_valid():
        raise InvalidCADF('%s is not a valid pycadf Resource: %r' % (where, kwargs))
    return res


def _measurement(value, where):
    if not isinstance(value, dict) or set(value) - {'result', 'metric', 'metricId',
                                                    'calculatedBy'}:
        raise InvalidCADF('%s is not a CADF measurement: %r' % (where, value))
    value = dict(value)
    metric = value.pop('metric', None)
    try:
        if metric is not None:
            if set(metric) - {'metricId', 'unit', 'name'}:
                raise InvalidCADF('%s.metric has unknown keys: %r' % (where, metric))
            value['metric'] = cadf_metric.Metric(**metric)
            if not value['metric'].is_valid():
                raise InvalidCADF('%s.metric is not valid: %r' % (where, metric))
        if 'calculatedBy' in value:
            value['calculatedBy'] = to_resource(value['calculatedBy'],
                                                where + '.calculatedBy')
        meas = cadf_measurement.Measurement(**value)
    except ValueError as exc:
        raise InvalidCADF('%s: pycadf rejects it: %s' % (where, exc))
    if not meas.is_valid():
        raise InvalidCADF('%s is not a valid measurement' % where)
    return meas


def to_event(payload: dict) -> cadf_event.Event:
    """Rebuild a pycadf Event from a CADF dict (raises InvalidCADF)."""
    try:
        return _to_event(payload)
    except ValueError as exc:   # a pycadf validator refused a value
        raise InvalidCADF('pycadf rejects the event: %s' % exc) from exc


def _to_event(payload: dict) -> cadf_event.Event:
    if not isinstance(payload, dict):
        raise InvalidCADF('a CADF payload must be a dict, got %r' % (payload,))
    unknown = set(payload) - _EVENT_KEYS
    if unknown:
        raise InvalidCADF('non-CADF event keys %s' % sorted(unknown))
    if payload.get('typeURI') != EVENT_TYPE_URI:
        raise InvalidCADF('typeURI is %r, not %s' % (payload.get('typeURI'), EVENT_TYPE_URI))
    kwargs = {}
    for key in ('eventType', 'id', 'eventTime', 'action', 'outcome', 'initiatorId',
                'targetId', 'observerId', 'severity', 'name'):
        if key in payload:
            kwargs[key] = payload[key]
    for key in ('initiator', 'target', 'observer'):
        if key in payload:
            kwargs[key] = to_resource(payload[key], key)
    if 'reason' in payload:
        reason = payload['reason']
        if not isinstance(reason, dict) or set(reason) - {'reasonType', 'reasonCode',
                                                          'policyType', 'policyId'}:
            raise InvalidCADF('reason is not a CADF reason: %r' % (reason,))
        kwargs['reason'] = cadf_reason.Reason(**reason)
    with warnings.catch_warnings():
        warnings.simplefilter('error')          # pycadf only *warns* on non-UUID ids
        try:
            event = cadf_event.Event(**{k: v for k, v in kwargs.items()
                                        if k not in ('id', 'initiator')})
        except (ValueError, UserWarning) as exc:
            raise InvalidCADF('pycadf rejects the event: %s' % exc)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)   # non-UUID ids: checked below
        for key in ('id', 'initiator'):
            if key in kwargs:
                setattr(event, key, kwargs[key])
    for i, meas in enumerate(payload.get('measurements') or ()):
        try:
            event.add_measurement(_measurement(meas, 'measurements[%d]' % i))
        except ValueError as exc:
            raise InvalidCADF(str(exc))
    for i, att in enumerate(payload.get('attachments') or ()):
        event.add_attachment(_attachment(att, 'attachments[%d]' % i))
    if 'tags' in payload:
        for tag in payload['tags']:
            event.add_tag(tag)
    if 'reporterchain' in payload:
        raise InvalidCADF('reporterchain is not produced by this project')
    if 'requestPath' in payload:
        event.requestPath = payload['requestPath']
    return event


def assert_valid(payload: dict) -> cadf_event.Event:
    """pycadf accepts ``payload`` as a complete event and serialises it back
    to the same dict.  Also checks the formats pycadf 4 produces: a UUID event
    id and a ``+0000`` eventTime.  Returns the pycadf Event."""
    event = to_event(payload)
    if not event.is_valid():
        raise InvalidCADF('pycadf Event.is_valid() is False for %r' % (payload,))
    try:
        uuid.UUID(payload['id'])
    except (ValueError, TypeError, AttributeError):
        raise InvalidCADF('event id %r is not a UUID' % (payload.get('id'),))
    if not EVENT_TIME.match(payload['eventTime']):
        raise InvalidCADF('eventTime %r is not in pycadf format' % payload['eventTime'])
    if not cadftaxonomy.is_valid_action(payload['action']):
        raise InvalidCADF('action %r is not in the CADF taxonomy' % payload['action'])
    for key in ('initiator', 'target', 'observer'):
        type_uri = payload.get(key, {}).get('typeURI')
        if key in payload and not (isinstance(type_uri, str) and
                                   cadftaxonomy.is_valid_resource(type_uri)):
            raise InvalidCADF('%s.typeURI %r is not in the CADF resource taxonomy'
                              % (key, type_uri))
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        round_trip = event.as_dict()
    if round_trip != payload:
        raise InvalidCADF('pycadf does not serialise the event back unchanged:\n'
                          'ours:   %r\npycadf: %r' % (payload, round_trip))
    return event
