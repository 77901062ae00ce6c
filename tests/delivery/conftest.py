"""Fixtures of the delivery acceptance tests against a REAL RabbitMQ on 127.0.0.1:5672.

``broker`` (session): RabbitMQ must answer an AMQP login; when it does not, the tests
FAIL with ``CI=true`` and are skipped (with the reason) elsewhere.  A private vhost is
used when rabbitmqctl can make one.  Whatever a test does with ``stop_app``, the
broker is started again in every teardown (``outage`` fixture) and at interpreter exit.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
for _path in (HERE, ROOT):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import delivery_harness as dh  # noqa: E402
from tests.support.rabbit import peer_missing  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'broker: needs a real RabbitMQ on 127.0.0.1:5672 (fails, never skips, '
                   'when CI=true)')


def pytest_terminal_summary(terminalreporter):
    if not dh.REPORT:
        return
    import json
    terminalreporter.section('delivery measurements (tests/delivery)')
    for name, values in dh.REPORT.items():
        terminalreporter.write_line('%s: %s' % (name, json.dumps(values, sort_keys=True,
                                                                 default=str)))


@pytest.fixture(scope='session')
def broker():
    error = dh.connect_error()
    if error is not None:
        reason = 'RabbitMQ is not reachable on %s:%d as %s (%s)' % (dh.HOST, dh.PORT,
                                                                     dh.USER, error)
        peer_missing(reason)
    b = dh.Broker()
    b.make_vhost()
    try:
        yield b
    finally:
        b.ensure_running()
        b.drop_vhost()


@pytest.fixture
def outage(broker):
    """The broker, with a guarantee: running again after the test, whatever happened."""
    if shutil.which('rabbitmqctl') is None:
        reason = 'rabbitmqctl is not installed: cannot simulate an outage (stop_app)'
        peer_missing(reason)
    try:
        yield broker
    finally:
        broker.ensure_running()


@pytest.fixture
def names(request, broker):
    """(control exchange, topic) unique to the test; its queues deleted afterwards."""
    exchange, topic = dh.names(request.node.name.split('[')[0][5:25])
    yield exchange, topic
    broker.ensure_running()
    broker.delete(exchange, [topic])


@pytest.fixture
def listener(broker, names):
    exchange, topic = names
    lst = dh.Listener(broker.transport_url, exchange, topic).start()
    try:
        yield lst
    finally:
        broker.ensure_running()
        lst.stop()


@pytest.fixture
def servers():
    """Every Server a test starts is stopped (SIGKILL at worst) at teardown."""
    started = []
    yield started
    for load in list(dh.Load.running):
        load.stop()
    for server in started:
        try:
            server.stop(timeout=10)
        except Exception:
            pass
