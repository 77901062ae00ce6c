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

"""From configuration to a running pipeline: settings, route map, emitter, delivery.

Shared by the WSGI filter and the out-of-band notifier API, so both read the same
``[audit_notifier]`` options (paste keys or keyword overrides first) and send
through the same formats, drivers and delivery.  Every configuration error is
raised here, at start-up, as one line, and logged once at ERROR first.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from typing import Any

import oslo_messaging.opts
from oslo_config import cfg

from audit_notifier import _config, routes
from audit_notifier import policy as audit_policy
from audit_notifier.classify import Classifier
from audit_notifier.delivery import record
from audit_notifier.delivery.drivers import (NOTIFICATIONS_GROUP, check_transport_url,
                                             resolve_drivers, transport_url_in_effect)
from audit_notifier.delivery.handoff import Delivery
from audit_notifier.delivery.leaves import OsloLeaf
from audit_notifier.emitter import Emitter, EventFilter
from audit_notifier.events import glance as glance_events
from audit_notifier.lookup import SubRequester
from audit_notifier.opts import ALL_OPTS
from audit_notifier.redaction import Redactor

# The package's logger, not this module's: operators filter on "audit_notifier".
LOG = logging.getLogger('audit_notifier')


class Pipeline:
    """Everything behind one filter (or notifier) instance."""

    def __init__(self, overrides: dict[str, Any] | None = None, app=None):
        try:
            self._assemble(dict(overrides or {}), app)
            return
        except _config.ConfigError as exc:
            error = exc
        # Fail closed, and say why where operators look: services send the root logger
        # to their own log (oslo.log); the WSGI server's traceback may go elsewhere.  One
        # line, logged outside the except block: oslo.log appends the exception being
        # handled to an ERROR line, which would repeat the message.
        LOG.error('%s', error)
        raise error

    def _assemble(self, overrides: dict[str, Any], app) -> None:
        conf = _config.conf_from_paste(overrides)
        settings = _config.Settings(conf, ALL_OPTS, paste=overrides)
        for group, opts in oslo_messaging.opts.list_opts():
            if group == NOTIFICATIONS_GROUP:
                conf.register_opts(opts, group=group)
        self.conf = conf
        self.settings = settings
        self.route_map = routes.load(settings.route_map, settings.route_map_overrides,
                                     usage_rules=glance_events.RULES)
        service = self.route_map.service
        if settings.refused_priority:       # the option overrides the map's priority
            service = dataclasses.replace(
                service, client_error_priority=settings.refused_priority.upper())
        self.formats = list(dict.fromkeys(settings.formats))
        if not self.formats:
            raise _config.config_error('formats', 'empty', 'set cadf, glance or cadf,glance')
        template = settings.cadf_event_type or service.cadf_event_type
        routes.check_event_template(template, 'option cadf_event_type')
        self.publisher_id = settings.publisher_id or '%s.%s' % (service.publisher,
                                                                socket.gethostname())
        redactor = Redactor(settings.redact_names)
        self.policy = audit_policy.load(settings.audit_policy, settings.capture_limit)
        silent = [r for r in self.route_map.routes
                  if audit_policy.NONE in self.policy.levels(r)]
        if silent:          # an auditor's choice, said once where operators look
            LOG.info('audit_notifier: audit policy %s: %d route(s) send no CADF event for '
                     'some or all calls (level none): %s', self.policy.source, len(silent),
                     ', '.join('%s %s' % r.key for r in silent[:20]))
        glance_settings = glance_events.Settings(
            lookups=settings.record_lookups, failures=settings.usage_failures,
            default_backend=_default_backend(conf))
        self.emitter = Emitter(
            formats=self.formats, publisher_id=self.publisher_id, service=service,
            cadf_event_type=template, event_filter=EventFilter(settings.disabled_events),
            audit_reads=settings.audit_reads, audit_lists=settings.audit_lists,
            glance_settings=glance_settings,
            subrequests=SubRequester(app) if app is not None else None,
            resource_info=settings.cadf_resource_info, redactor=redactor)
        self.classifier = Classifier(
            self.route_map, settings.audit_reads, settings.audit_lists,
            settings.unmatched_requests == 'audit', 'cadf' in self.formats,
            'glance' in self.formats, redactor, self.policy)
        if settings.sender == 'external':
            check_external_sender(settings.delivery_mode, self.route_map, self.emitter)
        self.leaves()                       # the bus settings are checked now, at start-up
        self.delivery = Delivery(self.emitter, self.classifier.route_for, self.leaves,
                                 settings, _response_headers(self.route_map))

    def leaves(self) -> dict:
        """A fresh leaf per format (the sender of each process makes its own)."""
        conf, settings = self.conf, self.settings

        def pick(name):
            value = settings.get(name)
            return value if value else _config.fallback(conf, NOTIFICATIONS_GROUP, name)
        transport_url = pick('transport_url')     # None: oslo.messaging picks [DEFAULT]'s
        in_effect, option = transport_url_in_effect(conf, settings.transport_url)
        drivers = resolve_drivers(pick('driver') or [], in_effect)
        if any(d in ('messaging', 'messagingv2', 'routing') for d in drivers):
            check_transport_url(conf, in_effect, option)
        topics = pick('topics') or ['notifications']
        return {fmt: OsloLeaf(conf, drivers, settings.get(fmt + '_topics') or topics,
                              transport_url, settings.retry, settings.rabbit_batch_publish)
                for fmt in ('cadf', 'glance')}


def check_external_sender(delivery_mode: str, route_map, emitter) -> None:
    """sender = external: the sender process reads the journal, and it has no app
    to ask: no event may need a look-up after the call (a look-up before it,
    journaled with the call, is fine).  Checked with or without the app: the
    filter, ``audit-notifier send`` and ``audit-notifier check`` agree."""
    if delivery_mode != 'journal':
        raise _config.config_error('sender', 'external needs the journal (the sender process '
                                   'reads it)', 'set delivery_mode = journal, or sender = '
                                   'thread')
    needing = [r for r in route_map.routes if emitter.may_look_up(r)]
    if needing:
        raise _config.config_error(
            'sender', 'external, but the events of %d route(s) (e.g. %s %s) need a record '
            'look-up after the call, which only the API process can make'
            % (len(needing), needing[0].method, needing[0].path),
            'set record_lookups = false, or sender = thread')


def _response_headers(route_map) -> set:
    """Response headers the journal keeps: those event building reads."""
    names = set(record.BASE_HEADERS)
    for route in route_map.routes:
        target = route.target
        for sources in (target.id, target.name) + tuple(s for _, s in target.attachments):
            names.update(ref for kind, ref in sources if kind == 'header')
    return names


def _default_backend(conf: cfg.ConfigOpts) -> str | None:
    """Glance's default store when multi-store is on (image.prepare's backend field)."""
    if not _config.fallback(conf, 'DEFAULT', 'enabled_backends'):
        return None
    return _config.fallback(conf, 'glance_store', 'default_backend')
