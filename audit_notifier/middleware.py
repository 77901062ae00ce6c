"""The audit filter: paste entry point and WSGI middleware.

``[filter:audit] paste.filter_factory = audit_notifier.middleware:filter_factory``,
placed right after ``authtoken``.  Per request it only classifies the call, keeps
the facts and hands them to the in-process queue; events are built and sent by the
sender thread (:mod:`audit_notifier.delivery.dispatcher`).  Any error of its own is
logged once and the API call goes on untouched.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import oslo_messaging.opts
from oslo_config import cfg

from audit_notifier import _config, routes
from audit_notifier.classify import Classifier
from audit_notifier.delivery.dispatcher import Dispatcher
from audit_notifier.delivery.drivers import (NOTIFICATIONS_GROUP, Publisher, check_transport_url,
                                             resolve_drivers)
from audit_notifier.emitter import Emitter, EventFilter
from audit_notifier.events import glance as glance_events
from audit_notifier.lookup import SUBREQUEST_KEY, SubRequester
from audit_notifier.observe import call_observed
from audit_notifier.opts import ALL_OPTS

LOG = logging.getLogger(__name__)


def filter_factory(global_conf: dict, **local_conf: Any):
    """paste.filter_factory: ``[filter:audit]`` keys override ``[audit_notifier]``."""
    conf = dict(global_conf or {})
    conf.update(local_conf)

    def audit_filter(app):
        return AuditMiddleware(app, local_conf)
    return audit_filter


def _register_messaging_opts(conf: cfg.ConfigOpts) -> None:
    for group, opts in oslo_messaging.opts.list_opts():
        if group == NOTIFICATIONS_GROUP:
            conf.register_opts(opts, group=group)


class AuditMiddleware:
    """WSGI middleware that turns audited API calls into notifications."""

    def __init__(self, app, paste_conf: dict | None = None):
        self._app = app
        paste_conf = dict(paste_conf or {})
        conf = _config.conf_from_paste(paste_conf)
        settings = _config.Settings(conf, ALL_OPTS, paste=paste_conf)
        _register_messaging_opts(conf)
        self.settings = settings

        self.route_map = routes.load(settings.route_map, settings.route_map_overrides,
                                     usage_rules=glance_events.RULES)
        service = self.route_map.service
        formats = list(dict.fromkeys(settings.formats))
        if not formats:
            raise _config.config_error('formats', 'empty', 'set cadf, glance or cadf,glance')
        template = settings.cadf_event_type or service.cadf_event_type
        routes.check_event_template(template, 'option cadf_event_type')
        publisher_id = settings.publisher_id or '%s.%s' % (service.publisher,
                                                           socket.gethostname())
        glance_settings = glance_events.Settings(
            lookups=settings.record_lookups, failures=settings.usage_failures,
            default_backend=_default_backend(conf))
        self.emitter = Emitter(
            formats=formats, publisher_id=publisher_id, service=service,
            cadf_event_type=template, event_filter=EventFilter(settings.disabled_events),
            audit_reads=settings.audit_reads, audit_lists=settings.audit_lists,
            glance_settings=glance_settings, subrequests=SubRequester(app))
        self.classifier = Classifier(
            self.route_map, settings.audit_reads, settings.audit_lists,
            settings.unmatched_requests == 'audit', 'cadf' in formats, 'glance' in formats)
        self.dispatcher = Dispatcher(self.emitter, self._publishers(conf, settings, formats),
                                     settings)
        # Routes whose usage rule needs the record before the app runs (deletes).
        self._prefetch = {id(r) for r in self.route_map.routes
                          if 'glance' in formats and r.usage is not None
                          and glance_events.RULES[r.usage].prefetch and settings.record_lookups}
        self._internal_error = RateLimitedLog(300)

    @staticmethod
    def _publishers(conf, settings, formats) -> dict:
        def pick(name):
            value = settings.get(name)
            return value if value else _config.fallback(conf, NOTIFICATIONS_GROUP, name)
        transport_url = pick('transport_url')
        drivers = resolve_drivers(pick('driver') or [], transport_url)
        publisher_drivers = drivers
        if any(d in ('messaging', 'messagingv2', 'routing') for d in drivers):
            check_transport_url(conf, transport_url)
        topics = pick('topics') or ['notifications']
        return {fmt: Publisher(conf, publisher_drivers, settings.get(fmt + '_topics') or topics,
                               transport_url, settings.retry)
                for fmt in formats}

    def __call__(self, environ, start_response):
        if environ.get(SUBREQUEST_KEY):
            return self._app(environ, start_response)
        try:
            exchange = self.classifier.classify(environ)
            if exchange is not None and id(exchange.route) in self._prefetch:
                self.emitter.prefetch(exchange)
        except Exception:
            self._internal_error(logging.ERROR, 'audit_notifier: classifying %s failed; '
                                 'the call goes on unaudited', environ.get('REQUEST_METHOD'))
            exchange = None
        if exchange is None:
            return self._app(environ, start_response)
        return call_observed(self._app, environ, start_response, exchange, self._submit)

    def _submit(self, phase, exchange) -> None:
        try:
            self.dispatcher.submit(phase, exchange)
        except Exception:
            self._internal_error(logging.ERROR, 'audit_notifier: queueing an event failed')


class RateLimitedLog:
    """At most one log line per ``interval`` seconds for a recurring condition."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self._last = -interval

    def __call__(self, level: int, msg: str, *args) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            LOG.log(level, msg, *args, exc_info=True)


def _default_backend(conf: cfg.ConfigOpts) -> str | None:
    """Glance's default store when multi-store is on (image.prepare's backend field)."""
    if not _config.fallback(conf, 'DEFAULT', 'enabled_backends'):
        return None
    return _config.fallback(conf, 'glance_store', 'default_backend')
