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

"""Bus options and their start-up checks: notification drivers, transport URL, topics.

The leaves that publish with them are in :mod:`.leaves`.
"""

from __future__ import annotations

import functools
import logging
from typing import Iterable

import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

from audit_notifier._config import ConfigError, config_error, fallback

LOG = logging.getLogger(__name__)

NAMESPACE = 'oslo.messaging.notify.drivers'
NOTIFICATIONS_GROUP = 'oslo_messaging_notifications'

bus_opts = [
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
    cfg.BoolOpt('rabbit_batch_publish', default=True,
                help='messaging/messagingv2 over rabbit://: publish batches of up to 100 '
                     'notifications in one AMQP transaction through audit_notifier\'s own kombu '
                     'connection (about 4x the throughput of oslo.messaging\'s one confirm '
                     'per message and half the API process\'s CPU per audited call; the '
                     'same bytes on the wire). It relies on private names of oslo.messaging '
                     'and py-amqp, checked at start-up: when one is missing or different, '
                     'oslo.messaging\'s own path is used, with one warning. false: always '
                     'oslo.messaging\'s own path.'),
    cfg.IntOpt('retry', default=0, min=0, max=3,
               help='Connection retries of one publish before the sender treats the bus as '
                    'down and keeps the notification for later. Bounded on purpose: '
                    'oslo.messaging\'s default (-1, forever) would stall the sender, and '
                    'each retry waits longer (retry=2 blocks a sender 6 s when the bus is '
                    'down).'),
]
# Glance 2014 notifier_strategy names and their oslo.messaging drivers.
ALIASES = {'logging': 'log', 'rabbit': 'messaging', 'default': 'noop'}


@functools.lru_cache(maxsize=None)
def _entry_points(group: str) -> tuple:
    """The installed entry points of ``group``, looked up once per process: the
    look-up reads the metadata of every installed distribution (~15 ms), and each
    filter construction needs two groups."""
    from importlib.metadata import entry_points
    return tuple(entry_points(group=group))


def available_drivers() -> list[str]:
    return sorted(ep.name for ep in _entry_points(NAMESPACE))


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


def transport_url_in_effect(conf: cfg.ConfigOpts, own: str | None) -> tuple[str | None, str]:
    """The URL oslo.messaging will publish to, and the option it comes from.

    oslo.messaging takes the filter's ``transport_url``, else
    ``[oslo_messaging_notifications] transport_url``, else ``[DEFAULT] transport_url``
    (its own default ``rabbit://`` when none is set); an empty value counts as unset
    in the first two.
    """
    if own:
        return own, 'transport_url'
    notifications = fallback(conf, NOTIFICATIONS_GROUP, 'transport_url')
    if notifications:
        return notifications, '[%s] transport_url' % NOTIFICATIONS_GROUP
    try:
        url = conf.transport_url
    except cfg.NoSuchOptError:
        # Registered as oslo.messaging registers it when it makes the transport.
        default_opts = dict(oslo_messaging.opts.list_opts())[None]
        conf.register_opts([o for o in default_opts if o.dest == 'transport_url'])
        url = conf.transport_url
    return url, '[DEFAULT] transport_url'


def check_transport_url(conf: cfg.ConfigOpts, url: str | None,
                        option: str = 'transport_url') -> None:
    """Fail at start-up on a transport URL that cannot work: unparsable, an unknown
    transport, a port out of range, or a transport whose library is missing.

    ``option`` names where the URL comes from.  Nothing connects: a bus that is down
    stays a run-time condition.  Messages show the scheme and host:port only.
    """
    if url is None:
        return
    if not url.strip():
        raise config_error(option, 'empty', 'set a URL such as rabbit://user:pass@host:5672/')
    try:
        parsed = oslo_messaging.TransportURL.parse(conf, url)
    except Exception:
        # The parser's message may quote a password: only the scheme is ever shown.
        raise config_error(option, 'cannot parse %s' % _scheme(url),
                           'check host and port and percent-encode special characters in '
                           'user and password, e.g. rabbit://user:pass@host:5672/')
    transports = {ep.name: ep for ep in _entry_points('oslo.messaging.drivers')}
    name = parsed.transport.split('+')[0]          # as oslo.messaging picks the driver
    if name not in transports:
        raise config_error(option, 'no oslo.messaging transport for %r' % parsed.transport,
                           'use one of %s' % ', '.join(sorted(transports)))
    for host in parsed.hosts:
        if host.port is not None and not 1 <= host.port <= 65535:
            raise config_error(option, 'port %d of %s is out of range'
                               % (host.port, _host_port(parsed.transport, host)),
                               'use a port from 1 to 65535')
    try:
        transports[name].load()                    # imports the driver, connects nothing
    except Exception as exc:
        raise config_error(option, 'oslo.messaging cannot load its %s transport (%s: %s)'
                           % (name, type(exc).__name__, ' '.join(str(exc).split())[:200]),
                           'install what it needs into the service\'s environment '
                           '(kafka:// needs confluent-kafka) or use another transport')


def _host_port(scheme: str, host) -> str:
    hostname = '[%s]' % host.hostname if ':' in (host.hostname or '') else host.hostname
    return '%s://%s:%s' % (scheme, hostname, host.port)


def _scheme(url: str) -> str:
    # Never echo credentials: only the scheme of a transport URL is shown.
    return url.split('://', 1)[0] + '://...' if '://' in url else 'an invalid URL'
