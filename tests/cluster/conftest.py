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

"""Fixtures of the tests that need a RabbitMQ CLUSTER: a private three-node
cluster on loopback (``tests/support/rabbit_cluster.py``), started once per test
session and fully separate from the shared broker on 127.0.0.1:5672.

``rabbit_cluster`` (session): a started :class:`RabbitCluster`; all three nodes
run when a test begins (a test that stops a node starts it again).  Without
``rabbitmq-server`` on the machine the tests are skipped, or FAIL under CI=true
(``tests.support.rabbit.peer_missing``).  Any other start failure is an error.
"""

from __future__ import annotations

import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.rabbit_cluster import start_or_peer_missing  # noqa: E402

START_TIMEOUT = 180.0


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'cluster: needs the private three-node RabbitMQ cluster (fails, '
                   'never skips, when CI=true and rabbitmq-server is missing)')


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here + os.sep):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope='session')
def rabbit_cluster():
    cluster = start_or_peer_missing(size=3, timeout=START_TIMEOUT)
    sys.stderr.write('\n[rabbit_cluster] %s started in %.1fs, AMQP ports %s\n'
                     % (', '.join(cluster.nodes), cluster.start_seconds, cluster.ports))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(rabbit_cluster):
    """The session cluster, checked to have every node running before the test
    and restored afterwards (a node a test stopped is started again)."""
    yield rabbit_cluster
    for i in range(rabbit_cluster.size):
        if not rabbit_cluster.is_running(i):
            rabbit_cluster.start_node(i)
