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

"""Fixtures for the tests against a REAL RabbitMQ on 127.0.0.1:5672 (guest/guest).

``rabbitmq`` (session): the broker must answer an AMQP connection.  When it does
not, ``rabbitmq-server -detached`` is tried and the broker is awaited up to
:data:`START_TIMEOUT` seconds.  Still unavailable: with ``CI=true`` every broker
test FAILS (never skips); elsewhere they are skipped with the reason.

``broker`` (session): an isolated place on that broker for this test session: a
fresh virtual host ``audit-notifier-test-<epoch>-<hex>`` (created with
``rabbitmqctl``, deleted at the end with everything in it), so stale queues of an
earlier or concurrent run never interfere.  When ``rabbitmqctl`` cannot create it
(e.g. a broker in a container) the default vhost is used and every exchange and
topic name gets a per-session suffix instead (``broker.name('audit')``); each
scenario deletes the queues it used.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
import uuid

import pytest

from tests.support.rabbit import (HOST, PORT, USER, amqp_url,
                                  connect_error as _connect_error, peer_missing,
                                  transport_url)
START_TIMEOUT = 60.0
VHOST_PREFIX = 'audit-notifier-test-'
STALE_VHOST_AGE = 2 * 3600


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'broker: needs a real RabbitMQ on 127.0.0.1:5672 (fails, never skips, '
                   'when CI=true)')


def _run(*cmd, timeout=30.0) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def _start_rabbitmq() -> str:
    """Try to start a local broker; a note on what was done."""
    if shutil.which('rabbitmq-server') is None:
        return 'rabbitmq-server is not installed'
    try:
        proc = _run('rabbitmq-server', '-detached')
    except Exception as exc:
        return 'rabbitmq-server -detached failed: %s' % exc
    note = 'ran rabbitmq-server -detached (rc %d)' % proc.returncode
    deadline = time.monotonic() + START_TIMEOUT
    if shutil.which('rabbitmqctl'):
        try:
            _run('rabbitmqctl', 'await_startup', '--timeout', str(int(START_TIMEOUT)),
                 timeout=START_TIMEOUT + 5)
        except Exception:
            pass
    while time.monotonic() < deadline and _connect_error() is not None:
        time.sleep(1.0)
    return note


@dataclasses.dataclass
class BrokerInfo:
    host: str = HOST
    port: int = PORT
    started_by_tests: bool = False


@pytest.fixture(scope='session')
def rabbitmq() -> BrokerInfo:
    error = _connect_error()
    if error is None:
        return BrokerInfo()
    note = _start_rabbitmq()
    error2 = _connect_error()
    if error2 is None:
        return BrokerInfo(started_by_tests=True)
    reason = ('RabbitMQ is not reachable on %s:%d as %s (%s; %s; after that: %s)'
              % (HOST, PORT, USER, error, note, error2))
    peer_missing(reason)


@dataclasses.dataclass
class Broker:
    """Where this session's tests talk to the broker."""
    vhost: str
    isolated: bool          # a private vhost: plain names; else suffixed names
    sid: str

    @property
    def transport_url(self) -> str:
        return transport_url(self.vhost)

    @property
    def amqp_url(self) -> str:
        return amqp_url(self.vhost)

    def name(self, base: str) -> str:
        """An exchange or topic name no other session uses."""
        return base if self.isolated else '%s_%s' % (base, self.sid)


def _rabbitmqctl(*args) -> subprocess.CompletedProcess | None:
    if shutil.which('rabbitmqctl') is None:
        return None
    try:
        return _run('rabbitmqctl', *args)
    except Exception:
        return None


def _delete_stale_vhosts() -> None:
    """Vhosts an earlier, crashed session left behind (older than 2 hours)."""
    proc = _rabbitmqctl('list_vhosts', '--quiet', '--no-table-headers')
    if proc is None or proc.returncode != 0:
        return
    now = time.time()
    for line in proc.stdout.split():
        m = re.fullmatch(re.escape(VHOST_PREFIX) + r'(\d+)-[0-9a-f]+', line.strip())
        if m and now - int(m.group(1)) > STALE_VHOST_AGE:
            _rabbitmqctl('delete_vhost', line.strip())


def _create_vhost(name: str) -> bool:
    proc = _rabbitmqctl('add_vhost', name)
    if proc is None or proc.returncode != 0:
        return False
    proc = _rabbitmqctl('set_permissions', '-p', name, USER, '.*', '.*', '.*')
    if proc is None or proc.returncode != 0 or _connect_error(name) is not None:
        _rabbitmqctl('delete_vhost', name)
        return False
    return True


@pytest.fixture(scope='session')
def broker(rabbitmq) -> Broker:
    sid = uuid.uuid4().hex[:10]
    _delete_stale_vhosts()
    vhost = '%s%d-%s' % (VHOST_PREFIX, int(time.time()), sid)
    if _create_vhost(vhost):
        yield Broker(vhost=vhost, isolated=True, sid=sid)
        _rabbitmqctl('delete_vhost', vhost)
    else:
        yield Broker(vhost='/', isolated=False, sid=sid)
