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

"""Is the message bus there?  One AMQP connection per broker, opened and closed.

For ``rabbit://`` transport URLs: each host of the URL gets a py-amqp connection
(login and virtual host included, TLS and login method as
``[oslo_messaging_rabbit]`` sets them for oslo.messaging) within a timeout, then
it is closed; nothing is declared or published.  What is shown of a broker is
``scheme://host:port``, never a user name or password.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl

import amqp
import amqp.exceptions
import oslo_messaging
import oslo_messaging.opts
from oslo_config import cfg

RABBIT_SCHEMES = ('rabbit', 'kombu')
RABBIT_GROUP = 'oslo_messaging_rabbit'
AMQP_PORT = 5672


@dataclasses.dataclass(frozen=True)
class Answer:
    broker: str                  # scheme://host:port
    problem: str | None          # None: connected and logged in


def safe_name(url: str) -> str:
    """``scheme://host:port,...`` of a transport URL: no user, no password, no path."""
    try:
        parsed = oslo_messaging.TransportURL.parse(cfg.ConfigOpts(), url)
    except Exception:
        return url.split('://', 1)[0] + '://...' if '://' in url else 'an invalid URL'
    default = AMQP_PORT if _is_rabbit(parsed.transport) else None
    return '%s://%s' % (parsed.transport,
                        ','.join(_host_port(h, default) for h in _hosts(parsed)))


def checkable(url: str) -> bool:
    return '://' in url and _is_rabbit(url.split('://', 1)[0])


def _is_rabbit(transport: str) -> bool:
    return transport.split('+')[-1] in RABBIT_SCHEMES


def probe(conf: cfg.ConfigOpts, url: str, timeout: float) -> list[Answer]:
    """One answer per broker of a ``rabbit://`` URL (see :func:`checkable`)."""
    parsed = oslo_messaging.TransportURL.parse(conf, url)
    options = _rabbit_options(conf)
    return [_connect(parsed, host, options, timeout) for host in _hosts(parsed)]


def _hosts(parsed) -> list:
    """The brokers oslo.messaging's rabbit driver uses: localhost when none is named."""
    if parsed.hosts or not _is_rabbit(parsed.transport):
        return parsed.hosts
    return [oslo_messaging.TransportHost('localhost')]


def _connect(parsed, host, options: dict, timeout: float) -> Answer:
    scheme = parsed.transport.split('+')[-1]
    name = '%s://%s' % (scheme, _host_port(host))
    connection = amqp.Connection(
        host=_host_port(host),
        userid=host.username or 'guest', password=host.password or 'guest',
        virtual_host=parsed.virtual_host or '/', connect_timeout=timeout,
        read_timeout=timeout, write_timeout=timeout, **options)
    try:
        connection.connect()
    except amqp.exceptions.AccessRefused:
        problem = 'login refused (check the user name and password in the URL)'
    except amqp.exceptions.NotAllowed:
        problem = 'the virtual host is unknown or not allowed to this user'
    except (socket.timeout, TimeoutError):
        problem = 'no answer within %g s' % timeout
    except ssl.SSLError as exc:
        problem = 'TLS failed (%s)' % (exc.reason or type(exc).__name__)
    except OSError as exc:
        problem = 'unreachable (%s)' % (exc.strerror or ' '.join(str(exc).split()))
    except Exception as exc:                # a broker's refusal may quote what it was sent
        problem = 'refused the connection (%s)' % type(exc).__name__
    else:
        try:
            connection.close()
        except Exception:                   # it answered; how it hung up does not matter
            connection.collect()
        return Answer(name, None)
    connection.collect()                    # drop the socket without waiting for the peer
    return Answer(name, problem)


def _rabbit_options(conf: cfg.ConfigOpts) -> dict:
    """py-amqp keyword arguments for oslo.messaging's TLS and login options."""
    if RABBIT_GROUP not in conf:
        conf.register_opts(dict(oslo_messaging.opts.list_opts())[RABBIT_GROUP],
                           group=RABBIT_GROUP)
    group = conf[RABBIT_GROUP]
    options = {'login_method': group.rabbit_login_method}
    if group.ssl:
        params = {}
        if group.ssl_key_file:
            params['keyfile'] = group.ssl_key_file
        if group.ssl_cert_file:
            params['certfile'] = group.ssl_cert_file
        if group.ssl_ca_file:
            params['ca_certs'] = group.ssl_ca_file
            params['cert_reqs'] = ssl.CERT_REQUIRED
        options['ssl'] = params or True
    return options


def _host_port(host, default: int | None = AMQP_PORT) -> str:
    hostname = host.hostname or 'localhost'
    if ':' in hostname:
        hostname = '[%s]' % hostname
    port = host.port or default
    return hostname if port is None else '%s:%d' % (hostname, port)
