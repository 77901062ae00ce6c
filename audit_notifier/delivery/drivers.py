"""oslo.messaging notification drivers, checked at start-up, publishing envelopes.

The filter builds the oslo.messaging envelope itself (``message_id``,
``publisher_id``, ``event_type``, ``priority``, ``payload``, ``timestamp``) so that
a notification keeps its ``message_id`` and ``timestamp`` when it is retried or
replayed from the spool: a consumer recognises duplicates by ``message_id``.

For the ``messaging``/``messagingv2`` drivers the envelope goes straight to the
transport, because oslo.messaging's driver swallows send errors and logs the whole
payload; here a failure raises, so the sender can keep the notification.  Other
drivers (log, test, noop, routing) are oslo.messaging's own, called as they are.

Batched publishing to RabbitMQ is in :mod:`.rabbit_batch`.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable

import oslo_messaging
from oslo_config import cfg
from stevedore import named

from audit_notifier._config import ConfigError
from audit_notifier.delivery.rabbit_batch import RabbitBatchSender

LOG = logging.getLogger(__name__)

NAMESPACE = 'oslo.messaging.notify.drivers'
NOTIFICATIONS_GROUP = 'oslo_messaging_notifications'

delivery_opts = [
    cfg.MultiStrOpt('driver',
                    help='oslo.messaging notification driver(s): messagingv2, messaging, log, '
                         'routing, test or noop; the 2014 Glance names logging and rabbit are '
                         'accepted, and kafka means messagingv2 over a kafka:// transport_url. '
                         'Default: [oslo_messaging_notifications] driver, else noop.'),
    cfg.StrOpt('transport_url', secret=True,
               help='Message bus for these notifications, e.g. rabbit://user:pass@host:5672/. '
                    'Default: [oslo_messaging_notifications] transport_url, else the '
                    'service\'s own transport_url.'),
    cfg.ListOpt('topics',
                help='Topics for all formats. Default: [oslo_messaging_notifications] topics '
                     '(notifications).'),
    cfg.ListOpt('cadf_topics',
                help='Topics for CADF notifications only, e.g. audit. Default: topics.'),
    cfg.ListOpt('glance_topics',
                help='Topics for Glance-format notifications only. Default: topics.'),
    cfg.IntOpt('retry', default=0, min=0, max=3,
               help='Connection retries of one publish before the sender treats the bus as '
                    'down and keeps the notification for later. Bounded on purpose: '
                    'oslo.messaging\'s default (-1, forever) would stall the sender, and '
                    'each retry waits longer (retry=2 blocks a sender 6 s when the bus is '
                    'down).'),
]
# Glance 2014 notifier_strategy names and their oslo.messaging drivers.
ALIASES = {'logging': 'log', 'rabbit': 'messaging', 'default': 'noop'}
_DIRECT = {'messaging': 1.0, 'messagingv2': 2.0}


def available_drivers() -> list[str]:
    from importlib.metadata import entry_points
    return sorted(ep.name for ep in entry_points(group=NAMESPACE))


def resolve_drivers(names: Iterable[str], transport_url: str | None) -> list[str]:
    """Map configured names to oslo.messaging driver names, or fail clearly."""
    resolved = []
    known = available_drivers()
    for name in names:
        name = name.strip()
        if not name:
            continue
        if name == 'qpid':
            raise ConfigError(
                "audit_notifier: option driver: 'qpid' is no longer available (oslo.messaging "
                "dropped its qpid/AMQP 1.0 driver); set driver = messagingv2 with a rabbit:// "
                "or kafka:// transport_url")
        if name == 'kafka':
            if not transport_url or not transport_url.startswith('kafka://'):
                raise ConfigError(
                    "audit_notifier: option driver: 'kafka' sends through a kafka:// transport "
                    "but transport_url is %s; set transport_url = kafka://host:9092"
                    % (_scheme(transport_url) if transport_url else 'not set'))
            name = 'messagingv2'
        name = ALIASES.get(name, name)
        if name not in known:
            raise ConfigError('audit_notifier: option driver: unknown notification driver %r; '
                              'use one of %s' % (name, ', '.join(known)))
        if name not in resolved:
            resolved.append(name)
    return resolved or ['noop']


def check_transport_url(conf: cfg.ConfigOpts, url: str | None) -> None:
    """Fail at start-up on a transport URL oslo.messaging cannot use."""
    if not url:
        return
    try:
        parsed = oslo_messaging.TransportURL.parse(conf, url)
    except Exception:
        # The parser's message may quote a password: only the scheme is ever shown.
        raise ConfigError('audit_notifier: option transport_url: cannot parse %s; check host '
                          'and port and percent-encode special characters in user and '
                          'password, e.g. rabbit://user:pass@host:5672/' % _scheme(url))
    from importlib.metadata import entry_points
    transports = sorted(ep.name for ep in entry_points(group='oslo.messaging.drivers'))
    if parsed.transport not in transports:
        raise ConfigError('audit_notifier: option transport_url: no oslo.messaging transport '
                          'for %r; use one of %s' % (parsed.transport, ', '.join(transports)))


def _scheme(url: str) -> str:
    # Never echo credentials: only the scheme of a transport URL is shown.
    return url.split('://', 1)[0] + '://...' if '://' in url else 'an invalid URL'


class Publisher:
    """Sends envelopes to one set of topics through the configured drivers.

    ``publish`` and ``publish_many`` raise when a message could not be handed to
    the bus.  The transport and drivers are created at first use, in the process
    that publishes (never before a fork).
    """

    def __init__(self, conf: cfg.ConfigOpts, drivers: list[str], topics: list[str],
                 transport_url: str | None, retry: int):
        self.conf = conf
        self.drivers = drivers
        self.topics = topics
        self.transport_url = transport_url
        self.retry = retry
        self._lock = threading.Lock()
        self._transport = None
        self._others = None
        self._fast: RabbitBatchSender | None = None
        self._versions = [_DIRECT[d] for d in drivers if d in _DIRECT]

    @property
    def needs_bus(self) -> bool:
        return any(d in _DIRECT or d == 'routing' for d in self.drivers)

    @property
    def batched(self) -> bool:
        """True when messaging/messagingv2 publish in AMQP transactions (after setup)."""
        return self._fast is not None

    def _setup(self):
        with self._lock:
            if self._others is not None:
                return
            transport = None
            if self.needs_bus:
                transport = oslo_messaging.get_notification_transport(
                    self.conf, url=self.transport_url)
            fast = None
            if transport is not None and self._versions:
                fast = RabbitBatchSender.for_transport(transport, self.topics, self.retry)
            others = [d for d in self.drivers if d not in _DIRECT and d != 'noop']
            manager = None
            if others:
                manager = named.NamedExtensionManager(
                    NAMESPACE, names=others, invoke_on_load=True, invoke_args=[self.conf],
                    invoke_kwds={'topics': self.topics, 'transport': transport})
            self._transport = transport
            self._fast = fast
            self._others = [ext.obj for ext in manager.extensions] if manager else []

    def publish(self, envelope: dict) -> None:
        """Send one envelope through every driver; raises on failure."""
        self._send([envelope])

    def publish_many(self, envelopes: Iterable[dict]) -> None:
        """Send envelopes in order, all or nothing: when this raises, none of them
        counts as sent (some may have reached the bus and may arrive twice)."""
        envelopes = list(envelopes)
        if envelopes:
            self._send(envelopes)

    def _send(self, envelopes: list) -> None:
        if self._others is None:
            self._setup()
        if self._versions:
            if self._fast is not None:
                self._fast.send(envelopes, self._versions)
            else:
                for envelope in envelopes:
                    self._send_oslo(envelope)
        for envelope in envelopes:
            for driver in self._others:
                driver.notify({}, dict(envelope), envelope['priority'], self.retry)

    def _send_oslo(self, envelope: dict) -> None:
        priority = envelope['priority'].lower()
        for version in self._versions:
            for topic in self.topics:
                target = oslo_messaging.Target(topic='%s.%s' % (topic, priority))
                # A copy: oslo.messaging adds keys (_unique_id ...) to the dict it sends.
                self._transport._send_notification(target, {}, dict(envelope),
                                                   version=version, retry=self.retry)

    def cleanup(self) -> None:
        transport, self._transport, self._others = self._transport, None, None
        fast, self._fast = self._fast, None
        if fast is not None:
            fast.close()
        if transport is not None:
            try:
                transport.cleanup()
            except Exception:
                pass


