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

"""Fixtures of the delivery acceptance tests against the REAL shared RabbitMQ on
127.0.0.1:5672 (guest/guest).

``broker`` (session): RabbitMQ must answer an AMQP login; when it does not, the tests
FAIL with ``CI=true`` and are skipped (with the reason) elsewhere
(``tests.support.rabbit.peer_missing``).  A private vhost is used when rabbitmqctl
can make one.  The shared broker itself is never stopped, restarted or reconfigured:
every fault is injected by the per-test ``proxy`` (``tests/support/tcp_proxy.py``)
between the filter's process and the broker.  The ``listener`` consumes from the
broker directly.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _path in (HERE, ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import delivery_harness as dh  # noqa: E402
from tests.support.rabbit import HOST, PORT, peer_missing  # noqa: E402
from tests.support.tcp_proxy import TcpProxy  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'broker: needs a real RabbitMQ on 127.0.0.1:5672 (fails, never skips, '
                   'when CI=true)')


def pytest_terminal_summary(terminalreporter):
    if not dh.REPORT:
        return
    terminalreporter.section('delivery measurements (tests/delivery; recorded, not asserted)')
    for name, values in dh.REPORT.items():
        terminalreporter.write_line('%s: %s' % (name, json.dumps(values, sort_keys=True,
                                                                 default=str)))


_WATCH: list = []          # the session's BrokerWatch, once the broker fixture ran


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not _WATCH or not rep.failed:
        return
    watch = _WATCH[0]
    hits = watch.overlapping(call.start - time.time() + time.monotonic(),
                             call.stop - time.time() + time.monotonic())
    if hits:
        rep.sections.append((
            'shared broker outage (not caused by this test)',
            'The shared RabbitMQ on %s:%d went away during this test %d time(s) '
            '(stopped by another process on this machine, e.g. benchmarks/run.py '
            'stop_app); the exact counts asserted here do not hold then. Rerun when '
            'nothing else stops the broker. Down for: %s' % (
                HOST, PORT, len(hits), ', '.join(
                    '%.1f s' % ((o[1] or time.monotonic()) - o[0]) for o in hits))))


@pytest.fixture(scope='session')
def broker():
    error = dh.connect_error()
    if error is not None:
        peer_missing('RabbitMQ is not reachable on %s:%d as %s (%s)'
                     % (HOST, PORT, dh.USER, error))
    b = dh.Broker()
    b.make_vhost()
    watch = dh.BrokerWatch(b.amqp_url).start()
    _WATCH.append(watch)
    try:
        yield b
    finally:
        _WATCH.clear()
        watch.stop()
        b.drop_vhost()


@pytest.fixture
def names(request, broker):
    """(control exchange, topic) unique to the test; its queues deleted afterwards."""
    exchange, topic = dh.names(request.node.name.split('[')[0][5:25])
    yield exchange, topic
    broker.delete(exchange, [topic])


@pytest.fixture
def listener(broker, names):
    exchange, topic = names
    lst = dh.Listener(broker.transport_url, exchange, topic).start()
    try:
        yield lst
    finally:
        lst.stop()


@pytest.fixture
def proxy():
    """A TCP proxy in front of the shared broker: the filter's only way to it."""
    p = TcpProxy(HOST, PORT).start()
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def journal_dir(tmp_path):
    return str(tmp_path / 'journal')


@pytest.fixture
def servers():
    """Every Server a test starts is stopped (SIGKILL at worst) at teardown, and
    every Load still running."""
    started = []
    yield started
    for load in list(dh.Load.running):
        load.stop()
    for server in started:
        try:
            server.stop(timeout=15)
        except Exception:
            pass
