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

"""From exchanges to notifications: formats, event filter, envelopes.

Runs in the sender thread, except :meth:`Emitter.prefetch`: the record a call will
change or destroy is read before the app runs, on the request path (one in-process
GET to the wrapped app, only for the routes that name such a record).  Each enabled
format contributes
its notifications for an exchange phase (Glance-format usage events first, in
Glance's own order, then the CADF audit record of the call); disabled event types
are dropped; each survivor gets its oslo.messaging envelope.
"""

from __future__ import annotations

import fnmatch
import logging
import re

from oslo_config import cfg

from audit_notifier import changes
from audit_notifier import policy as audit_policy
from audit_notifier.events import Notification, cadf, envelope_time
from audit_notifier.events import glance as glance_events
from audit_notifier.exchange import FINISHED, Exchange
from audit_notifier.facts import Facts
from audit_notifier.redaction import DEFAULT as DEFAULT_REDACTOR, Redactor
from audit_notifier.logs import LimitedLog

LOG = logging.getLogger(__name__)
_LIMITED = LimitedLog(LOG)

FORMATS = ('cadf', 'glance')
_UUID = re.compile(r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?'
                   r'[0-9a-fA-F]{12}$')

emitter_opts = [
    cfg.ListOpt('formats', default=['cadf'],
                item_type=cfg.types.String(choices=list(FORMATS)),
                help='Payload formats to emit, one or both: cadf (a CADF audit event per '
                     'API call) and glance (the exact usage notifications Glance itself '
                     'sends, as Ceilometer reads them: image.create, image.upload, '
                     'image.send ...).'),
    cfg.StrOpt('publisher_id',
               help='publisher_id of every notification. Default: the route map\'s '
                    'publisher and this host name, e.g. image.<host> for Glance.'),
    cfg.StrOpt('cadf_event_type',
               help='event_type of CADF notifications, where {event} stands for the '
                    'route\'s event name (image.create ...). Default: the route map\'s, '
                    '"audit.{event}" for Glance (so CADF and Glance-format notifications '
                    'never share an event_type), "{event}" for Magnum.'),
    cfg.BoolOpt('cadf_resource_info', default=False,
                help='Add "resource_info" (the target id) to CADF payloads, as the 2016 Magnum '
                     'user guide\'s example shows; Magnum\'s code never sent it. With '
                     'cadf_event_type = "{event}d" this reproduces that example '
                     '(magnum.bay.created).'),
    cfg.ListOpt('disabled_events', default=[],
                help='Notifications not to send, by event_type: an exact name, a group '
                     'prefix (image disables image.*, image.member disables image.member.*) '
                     'or a shell-style pattern (audit.image.read*).'),
    cfg.BoolOpt('record_lookups', default=True,
                help='Glance format: fetch image and member records that a response does '
                     'not carry by an in-process GET to the wrapped app with the caller\'s '
                     'identity: one Glance GET per download, tag, action or stage step, two '
                     'per upload (its start and its end), one before the call for deletes. '
                     'Off: such fields are null. Magnum map: one GET of the cluster after '
                     'each cluster write, for Magnum\'s cluster_data attachment (off: no '
                     'attachment). Audit policy level request and above: one GET before '
                     'each update with a changes rule, for the old values of its changes '
                     'attachment (off: no old values).'),
    cfg.BoolOpt('usage_failures', default=True,
                help='Glance format: send a WARN (4xx) or ERROR (5xx) notification with a '
                     'text payload for a failed call. Off: only the failure notifications '
                     'Glance itself sends (ERROR image.upload after a failed store write, '
                     'ERROR image.send for a broken download).'),
    cfg.StrOpt('refused_priority', ignore_case=True,
               choices=[('error', 'ERROR, read by Ceilometer\'s event pipeline; the priority '
                                  'Magnum gives every failure'),
                        ('warn', 'WARN, the Glance map\'s priority in earlier releases: '
                                 'Ceilometer never reads it'),
                        ('info', 'INFO, read by Ceilometer\'s event pipeline (and offered '
                                 'to its meter pipeline, which has no definition for it)')],
               help='Priority of the CADF event of a call the service refused (a 4xx: '
                    'authentication, policy, not found, conflict ...). Not set: the route '
                    'map\'s client_error_priority, ERROR in both shipped maps. Ceilometer\'s '
                    'event pipeline reads only INFO and ERROR notifications. Glance-format '
                    'text notifications of refused calls stay WARN (usage_failures).'),
]


class EventFilter:
    """Glance's disabled_notifications semantics, plus shell-style patterns."""

    def __init__(self, patterns):
        self._exact = set()
        self._globs = []
        for pattern in patterns:
            pattern = pattern.strip()
            if not pattern:
                continue
            if any(c in pattern for c in '*?['):
                self._globs.append(pattern)
            else:
                self._exact.add(pattern)
        self._cache: dict[str, bool] = {}

    def enabled(self, event_type: str) -> bool:
        verdict = self._cache.get(event_type)
        if verdict is None:
            parts = event_type.split('.')
            prefixes = {'.'.join(parts[:i]) for i in range(1, len(parts) + 1)}
            verdict = not (prefixes & self._exact or
                           any(fnmatch.fnmatchcase(event_type, g) for g in self._globs))
            if len(self._cache) < 4096:        # event types are few; stay bounded anyway
                self._cache[event_type] = verdict
        return verdict


class Emitter:
    """Builds the notifications of one exchange phase, with their envelopes."""

    def __init__(self, *, formats, publisher_id: str, service, cadf_event_type: str,
                 event_filter: EventFilter, audit_reads: bool, audit_lists: bool,
                 glance_settings: glance_events.Settings, subrequests=None,
                 resource_info: bool = False, redactor: Redactor = DEFAULT_REDACTOR):
        self.formats = tuple(formats)
        self.redactor = redactor
        self.service = service
        self.publisher_id = publisher_id
        self.cadf_event_type = cadf_event_type
        self.filter = event_filter
        self.glance_settings = glance_settings
        self.resource_info = resource_info
        self._subrequests = subrequests if glance_settings.lookups else None
        self._cadf_kinds = {'write'} | ({'read'} if audit_reads else set()) | \
            ({'list'} if audit_lists else set())
        self.observer = {'typeURI': service.type_uri,
                         'id': cadf.observer_id(publisher_id), 'name': service.name}

    @property
    def subrequests(self):
        """The in-process sub-requester, or None (record_lookups off, or no app)."""
        return self._subrequests

    def notifications(self, phase: str, exchange: Exchange) -> list[Notification]:
        facts = Facts(exchange, self._subrequests, self.redactor)
        route = exchange.route
        notes: list[Notification] = []
        if phase == FINISHED and exchange.status_invalid:
            _LIMITED(logging.WARNING, 'status-line', 'audit_notifier: the app answered %s %s '
                     'with the status line %r, which has no status code; audited with '
                     'outcome unknown', route.method, route.path, exchange.status[:40])
        if 'glance' in self.formats and route.usage is not None:
            rule = glance_events.RULES[route.usage]
            notes.extend(rule.run(phase, facts, self.glance_settings))
        if ('cadf' in self.formats and phase == FINISHED and route.kind in self._cadf_kinds
                and exchange.level != audit_policy.NONE):
            note = cadf.build(facts, self.observer, self.cadf_event_type, self.service)
            if self.resource_info:
                note.payload['resource_info'] = note.payload['target']['id']
            if exchange.level >= audit_policy.REQUEST:
                attachments = changes.attachments(facts, exchange.level)
                if attachments:
                    note.payload['attachments'] = attachments
            notes.append(note)
        return [n for n in notes if self.filter.enabled(n.event_type)]

    def envelope(self, note: Notification, message_id: str) -> dict:
        return {'message_id': message_id,
                'publisher_id': self.publisher_id,
                'event_type': note.event_type,
                'priority': note.priority,
                'payload': note.payload,
                'timestamp': envelope_time(note.timestamp)}

    def looks_up(self, route) -> bool:
        """May building this route's events make a record look-up after the call
        (an in-process GET of the app, in the sender thread)?"""
        return self._subrequests is not None and self.may_look_up(route)

    def may_look_up(self, route) -> bool:
        """Would it, given the app: record_lookups on, and a Glance-format usage
        rule or a record attachment (Magnum's cluster_data)?"""
        return self.glance_settings.lookups and (route.target.data is not None or (
            'glance' in self.formats and route.usage is not None))

    def needs_prefetch(self, route) -> bool:
        """Does this route fetch a record before the app runs?"""
        if self._subrequests is None:
            return False
        if route.record is not None and 'cadf' in self.formats:
            return True
        return ('glance' in self.formats and route.usage is not None and
                glance_events.RULES[route.usage].prefetch is not None)

    def prefetch(self, exchange: Exchange, environ: dict) -> None:
        """Fetch, before the app runs, a record the call will destroy (a delete), the
        record of a resource the path names by name rather than by UUID, or, at audit
        policy level request and above, the record an update changes (the old values
        of its changes attachment; secret-named fields masked before it is kept).

        Request path (one in-process GET to the wrapped app, as the caller)."""
        route = exchange.route
        if self._subrequests is None:
            return
        if route.record is not None:
            if route.changes is not None:
                # The old values of the changes attachment: the record as it is now.
                if exchange.level >= audit_policy.REQUEST:
                    self._fetch(exchange, environ, route.record.format(**exchange.params),
                                mask=True)
            elif not any(_UUID.match(v) for v in exchange.params.values()):
                path = route.record.format(**exchange.params)
                self._fetch(exchange, environ, path)
            return
        if 'glance' not in self.formats or route.usage is None:
            return
        path = glance_events.prefetch_path(glance_events.RULES[route.usage], exchange)
        if path is not None:
            self._fetch(exchange, environ, path)

    def _fetch(self, exchange: Exchange, environ: dict, path: str, mask: bool = False) -> None:
        try:
            record = self._subrequests.get_json(environ, path)[1]
            # What may carry store credentials never reaches the journal.
            exchange.prefetched = {k: v for k, v in record.items()
                                   if k not in glance_events.SECRET_KEYS} if record else record
            if mask and record:         # old values: secret-named fields masked too
                exchange.prefetched = self.redactor.document(exchange.prefetched)
        except Exception:
            _LIMITED(logging.WARNING, 'prefetch', 'audit_notifier: could not fetch %s before '
                     'the call; its notifications carry only the id', path, exc_info=True)
