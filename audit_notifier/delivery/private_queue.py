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

"""A copy of the notifications on the bus, from a queue of one's own (``audit-notifier tail``).

oslo.messaging's rabbit driver publishes a notification to the service's
``control_exchange`` (a topic exchange) with routing key ``<topic>.<priority>``,
and declares the queue of that name, which Ceilometer and other listeners
consume.  Taking messages from that queue would take them away from those
consumers, so :class:`PrivateQueue` binds a queue of its own (server-named,
exclusive, auto-delete: it disappears with its connection) to ``<topic>.*`` of
every topic and gets a copy of each notification.  The exchange is declared
passively first, so that it is never changed; only when it does not exist yet
(nothing was published since the broker started) it is declared as
oslo.messaging declares it.  A queue limit (oldest dropped first) keeps a stalled
reader from growing the broker's memory.

Only RabbitMQ (``rabbit://`` transport URLs) is read.  :func:`source_from_config`
takes the bus (hosts, vhost, credentials, TLS, login method), exchange and topics
from the service's conf file as the filter and oslo.messaging read them; no URL
with credentials and no password is ever shown.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import ssl
import time
from typing import Callable
from urllib.parse import quote

#: control_exchange of the services whose route maps are shipped: each sets it as
#: its default (``oslo_messaging.set_transport_defaults``) when the conf file does not.
SERVICE_EXCHANGES = {'glance': 'glance', 'magnum': 'magnum'}
OSLO_DEFAULT_EXCHANGE = 'openstack'
CONNECT_TIMEOUT = 10.0
#: Messages the private queue may hold while its reader does not keep up (e.g. its
#: output is paused); beyond that the oldest are dropped, by the broker.
QUEUE_LIMIT = 10000
PREFETCH = 100
_POLL = 1.0          # seconds between heartbeat checks while no message arrives
_RABBIT_GROUP = 'oslo_messaging_rabbit'


class BusReadError(Exception):
    """The bus cannot be read; the message is one line without credentials."""


@dataclasses.dataclass
class Source:
    """Where the notifications are read."""
    urls: list[str]             # kombu URLs, one per broker host (credentials inside)
    shown: str                  # the same without user and password, for people
    exchange: str
    durable: bool               # as oslo.messaging declares the exchange
    auto_delete: bool
    topics: list[str]
    ssl: dict | bool
    login_method: str
    secrets: list[str]          # passwords: scrubbed from any error text
    drivers: list[str]          # the filter's notification drivers

    @property
    def routing_keys(self) -> list[str]:
        return ['%s.*' % topic for topic in self.topics]


# -- where to listen ----------------------------------------------------------------------

def source_from_config(config_files: list[str], fmt: str | None = None,
                       exchange: str | None = None,
                       topics: list[str] | None = None) -> Source:
    """The bus, exchange and topics the filter configured in these files publishes to.

    Topics: those of ``fmt`` (``cadf_topics``/``glance_topics``, else ``topics``,
    else ``[oslo_messaging_notifications] topics``), or of every format the filter
    sends; ``topics`` replaces them.  Exchange: ``exchange``, else
    ``[DEFAULT] control_exchange`` when the file sets it, else the service's own
    default (``glance``, ``magnum``), else oslo.messaging's (``openstack``).
    """
    import oslo_messaging
    from oslo_config import cfg

    from audit_notifier._config import ConfigError
    from audit_notifier.assembly import Pipeline
    from audit_notifier.delivery.drivers import transport_url_in_effect

    conf = cfg.ConfigOpts()
    try:
        conf([], project='audit_notifier', default_config_files=list(config_files))
    except cfg.Error as exc:
        raise BusReadError(_one_line(exc))
    logger = logging.getLogger('audit_notifier')
    propagate, logger.propagate = logger.propagate, False
    quiet = logging.NullHandler()
    logger.addHandler(quiet)           # the caller says it once, with the BusReadError
    try:
        # memory mode: reading the bus needs no journal directory (nor write access to it)
        pipeline = Pipeline({'oslo_config_config': conf, 'delivery_mode': 'memory',
                             'process_hooks': 'false'})
    except ConfigError as exc:
        raise BusReadError(str(exc))
    finally:
        logger.removeHandler(quiet)
        logger.propagate = propagate
    leaves = pipeline.leaves()
    if not topics:
        wanted = [fmt] if fmt else pipeline.formats
        topics = list(dict.fromkeys(t for f in wanted for t in leaves[f].topics))
    url, option = transport_url_in_effect(conf, pipeline.settings.transport_url)
    try:
        parsed = oslo_messaging.TransportURL.parse(conf, url)
    except Exception:
        raise BusReadError('%s: cannot parse the transport URL' % option)
    scheme = parsed.transport.split('+')[0]
    if scheme != 'rabbit':
        raise BusReadError('%s is a %s:// URL; only RabbitMQ (rabbit://) can be read'
                           % (option, scheme))
    rabbit = _RabbitOptions(conf, parsed.query)
    if not exchange:
        exchange = service_exchange(conf, pipeline.route_map.service.name)
    urls, shown, secrets = _kombu_urls(parsed)
    return Source(urls=urls, shown=shown, exchange=exchange,
                  durable=bool(rabbit.get('amqp_durable_queues') or
                               rabbit.get('rabbit_quorum_queue')),
                  auto_delete=bool(rabbit.get('amqp_auto_delete')), topics=topics,
                  ssl=_ssl_params(rabbit) if rabbit.get('ssl') else False,
                  login_method=rabbit.get('rabbit_login_method') or 'AMQPLAIN',
                  secrets=secrets,
                  drivers=list(dict.fromkeys(d for leaf in leaves.values()
                                             for d in leaf.drivers)))


def service_exchange(conf, service_name: str) -> str:
    """The exchange the service's notifications go to: ``[DEFAULT] control_exchange``
    when the conf file sets it, else the service's own default (what it passes to
    ``oslo_messaging.set_transport_defaults``), else oslo.messaging's."""
    default = SERVICE_EXCHANGES.get(service_name, OSLO_DEFAULT_EXCHANGE)
    return _control_exchange(conf) or default


def _control_exchange(conf) -> str | None:
    """``[DEFAULT] control_exchange`` when the conf file sets it, else None."""
    import oslo_messaging.opts
    opt = [o for o in dict(oslo_messaging.opts.list_opts())[None]
           if o.dest == 'control_exchange']
    conf.register_opts(opt)
    # Set by the operator (file, command line, environment), not a default: a
    # default changed in this process (the service's own set_transport_defaults,
    # when it runs here) says nothing about the conf file.
    if not conf.get_location('control_exchange').location.is_user_controlled:
        return None
    return conf.control_exchange


class _RabbitOptions:
    """``[oslo_messaging_rabbit]`` as oslo.messaging reads it: the URL's query first."""

    def __init__(self, conf, query: dict):
        import oslo_messaging.opts
        from oslo_config import cfg
        opts = dict(oslo_messaging.opts.list_opts())[_RABBIT_GROUP]
        try:
            conf.register_opts(opts, group=_RABBIT_GROUP)
        except cfg.DuplicateOptError:
            pass
        self._group = conf[_RABBIT_GROUP]
        self._opts = {opt.dest: opt for opt in opts}
        self._query = query or {}

    def get(self, name: str):
        if name in self._query and name in self._opts:
            try:
                return self._opts[name].type(self._query[name])
            except (TypeError, ValueError):
                raise BusReadError('transport URL: invalid %s=%s' % (name, self._query[name]))
        return getattr(self._group, name)


def _kombu_urls(parsed) -> tuple[list[str], str, list[str]]:
    """kombu URLs per host, as oslo.messaging's rabbit driver builds them (its
    defaults: guest/guest at localhost:5672), a credential-free rendering, and the
    passwords."""
    vhost = parsed.virtual_host or ''
    hosts = parsed.hosts or [None]
    urls, shown, secrets = [], [], []
    for host in hosts:
        username = (host and host.username) or 'guest'
        password = (host and host.password) or 'guest'     # oslo.messaging's default
        hostname = (host and host.hostname) or 'localhost'
        if ':' in hostname:
            hostname = '[%s]' % hostname
        port = (host and host.port) or 5672
        urls.append('amqp://%s:%s@%s:%d/%s' % (quote(username, safe=''),
                                               quote(password, safe=''), hostname, port,
                                               quote(vhost, safe='')))
        shown.append('%s:%d' % (hostname, port))
        secrets.append(password)
    return urls, 'rabbit://%s/%s' % (','.join(shown), vhost), secrets


def _ssl_params(rabbit: _RabbitOptions) -> dict | bool:
    """kombu's ssl argument for oslo.messaging's ssl_* options."""
    params: dict = {}
    if rabbit.get('ssl_key_file'):
        params['keyfile'] = rabbit.get('ssl_key_file')
    if rabbit.get('ssl_cert_file'):
        params['certfile'] = rabbit.get('ssl_cert_file')
    if rabbit.get('ssl_ca_file'):
        params['ca_certs'] = rabbit.get('ssl_ca_file')
        params['cert_reqs'] = ssl.CERT_REQUIRED
    return params or True


# -- reading ------------------------------------------------------------------------------

class PrivateQueue:
    """A private queue bound to the source's exchange, consumed until closed."""

    def __init__(self, source: Source):
        self.source = source
        self.queue: str | None = None       # its name, given by the broker
        self._conn = None
        self._channel = None

    def open(self) -> None:
        """Connect (each broker host in turn), make sure the exchange exists, declare
        and bind the queue."""
        import kombu
        source = self.source
        conn = kombu.Connection(';'.join(source.urls), connect_timeout=CONNECT_TIMEOUT,
                                ssl=source.ssl, login_method=source.login_method,
                                heartbeat=60, failover_strategy='round-robin')
        self._conn = conn
        try:
            conn.ensure_connection(max_retries=len(source.urls) - 1,
                                   interval_start=0, interval_step=0, interval_max=0,
                                   timeout=CONNECT_TIMEOUT * len(source.urls))
        except Exception as exc:
            raise BusReadError('cannot connect to %s: %s' % (source.shown, self._clean(exc)))
        try:
            channel = self._exchange_channel(conn)
            result = channel.queue_declare(
                queue='', exclusive=True, auto_delete=True,
                arguments={'x-queue-type': 'classic', 'x-max-length': QUEUE_LIMIT,
                           'x-overflow': 'drop-head'})
            self.queue = result.queue
            for key in source.routing_keys:
                channel.queue_bind(self.queue, source.exchange, key)
            channel.basic_qos(0, PREFETCH, False)
            self._channel = channel
        except conn.connection_errors + conn.channel_errors as exc:
            raise BusReadError('cannot bind a queue to exchange %s on %s: %s'
                               % (source.exchange, source.shown, self._clean(exc)))

    def _exchange_channel(self, conn):
        """A channel on which the exchange is known to exist (never redeclared with
        other arguments: a mismatch would close oslo.messaging's channels)."""
        source = self.source
        channel = conn.channel()
        try:
            channel.exchange_declare(source.exchange, 'topic', passive=True)
            return channel
        except conn.channel_errors as exc:
            if getattr(exc, 'reply_code', None) != 404:
                raise
        channel = conn.channel()           # the 404 closed the first one
        channel.exchange_declare(source.exchange, 'topic', durable=source.durable,
                                 auto_delete=source.auto_delete)
        return channel

    def consume(self, on_body: Callable[[bytes | str, str], bool],
                deadline: float | None) -> bool:
        """Call ``on_body(body, routing_key)`` per message until it returns False
        (True then) or ``deadline`` (time.monotonic()) passes (False then)."""
        conn, channel = self._conn, self._channel
        state = {'more': True}

        def callback(message):
            channel.basic_ack(message.delivery_tag)
            if state['more']:
                state['more'] = on_body(message.body, message.delivery_info['routing_key'])

        channel.basic_consume(self.queue, callback=callback)
        try:
            while state['more']:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                try:
                    conn.drain_events(timeout=_POLL if left is None else min(_POLL, left))
                except socket.timeout:
                    pass
                conn.heartbeat_check()
        except conn.connection_errors + conn.channel_errors as exc:
            raise BusReadError('lost the connection to %s: %s'
                               % (self.source.shown, self._clean(exc)))
        return True

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.release()          # the queue goes with the connection
            except Exception:           # nosec B110
                pass                    # leaving anyway: the broker drops the queue

    def _clean(self, exc: BaseException) -> str:
        text = ' '.join(str(exc).split()) or type(exc).__name__
        for secret in self.source.secrets:
            if len(secret) >= 3:
                text = text.replace(secret, '***').replace(quote(secret, safe=''), '***')
        return text[:300]


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split()) or type(exc).__name__
