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

"""The bus leaves without a broker (a closed port stands for a bus that is down), and
the contract test of every private oslo.messaging / py-amqp name we use, against the
versions installed."""

from __future__ import annotations

import logging

import oslo_messaging
import pytest
from oslo_config import cfg

from audit_notifier.delivery import leaves, oslo_private, process_hooks
from audit_notifier.delivery.rabbit_batch import RabbitBatchSender

DOWN_URL = 'rabbit://guest:guest@127.0.0.1:1/'


def envelope(i: int) -> dict:
    return {'message_id': 'm-%d' % i, 'publisher_id': 'image.test', 'event_type': 'image.x',
            'priority': 'INFO', 'payload': {'i': i}, 'timestamp': '2026-12-02 10:00:00.000000'}


# -- the contract: every private name is there, with the parameters we pass -----------------

def test_every_private_name_exists_in_the_installed_versions():
    assert oslo_private.missing(oslo_private.PLAIN) == []
    assert oslo_private.missing(oslo_private.FAST) == []


def test_private_attributes_of_a_live_rabbit_transport():
    conf = cfg.ConfigOpts()
    transport = oslo_messaging.get_notification_transport(conf, url=DOWN_URL)
    try:
        driver = transport._driver
        assert isinstance(driver, oslo_private.get(
            'oslo_messaging._drivers.impl_rabbit.RabbitDriver'))
        assert driver._url.transport == 'rabbit'
        assert driver._default_exchange == conf.control_exchange
        assert driver.conf.oslo_messaging_rabbit.rabbit_quorum_queue is False
        assert RabbitBatchSender.for_transport(transport, ['t'], 0) is not None
    finally:
        transport.cleanup()


def test_missing_reports_absent_names_and_changed_signatures():
    def changed(target, ctxt):
        pass
    oslo_private_names = {'audit_notifier.delivery.oslo_private.get': ('dotted',),
                          'audit_notifier.delivery.oslo_private.nothing_here': (),
                          __name__ + '.changed_signature': ('target', 'retry')}
    globals()['changed_signature'] = changed
    assert oslo_private.missing(oslo_private_names) == [
        'audit_notifier.delivery.oslo_private.nothing_here (absent)',
        __name__ + '.changed_signature (no parameter retry)']


# -- the plain leaf ------------------------------------------------------------------------

def test_plain_leaf_raises_bus_unavailable_when_the_bus_is_down():
    leaf = leaves.OsloLeaf(cfg.ConfigOpts(), ['messagingv2'], ['t'], DOWN_URL, 0)
    try:
        with pytest.raises(leaves.BusUnavailable, match='Connection refused'):
            leaf.publish_many([envelope(1), envelope(2)])
        assert not leaf.batched
    finally:
        leaf.close()


def test_without_send_notification_the_public_driver_is_used_and_failures_still_seen(
        monkeypatch, caplog):
    monkeypatch.setitem(oslo_private.PLAIN,
                        'oslo_messaging.transport.Transport._no_such_method', ())
    monkeypatch.setattr(process_hooks, '_send_failures', None)
    leaf = leaves.OsloLeaf(cfg.ConfigOpts(), ['messagingv2'], ['t'], DOWN_URL, 0)
    try:
        with caplog.at_level(logging.DEBUG):
            with pytest.raises(leaves.BusUnavailable, match='Could not send notification'):
                leaf.publish_many([envelope(1)])
        # oslo's own ERROR line (it carries the whole payload) was taken, not logged
        assert not any('Could not send notification' in r.getMessage()
                       for r in caplog.records)
        assert sum('failed sends are recognised from its driver' in r.getMessage()
                   for r in caplog.records) == 1
    finally:
        leaf.close()
        logging.getLogger(process_hooks.SEND_FAILED_LOGGER).removeFilter(
            process_hooks._send_failures)


def test_plain_leaf_does_not_call_between(monkeypatch):
    """The plain path waits for each message's confirm (the GIL is let go then): the
    sender's GIL yield (``between``) is for batched publishes only."""
    leaf = leaves.OsloLeaf(cfg.ConfigOpts(), ['messagingv2'], ['t'], 'fake:///', 0)
    steps = []
    monkeypatch.setattr(leaf, '_send_direct',
                        lambda envelope, ctxt: steps.append(envelope['message_id']))
    try:
        leaf.publish_many([envelope(1), envelope(2)], between=lambda: steps.append('between'))
        assert not leaf.batched
        assert steps == [envelope(1)['message_id'], envelope(2)['message_id']]
    finally:
        leaf.close()


def test_a_bug_in_a_driver_is_not_a_bus_outage(monkeypatch):
    leaf = leaves.OsloLeaf(cfg.ConfigOpts(), ['test'], ['t'], None, 0)
    leaf.publish_many([envelope(1)])                  # sets the drivers up

    def broken(ctxt, message, priority, retry):
        raise TypeError('Object of type set is not JSON serializable')
    monkeypatch.setattr(leaf._others[0], 'notify', broken)
    with pytest.raises(TypeError):
        leaf.publish_many([envelope(2)])

    def refused(ctxt, message, priority, retry):
        raise oslo_messaging.MessageDeliveryFailure('no broker')
    monkeypatch.setattr(leaf._others[0], 'notify', refused)
    with pytest.raises(leaves.BusUnavailable, match='no broker'):
        leaf.publish_many([envelope(3)])


# -- the fast leaf -------------------------------------------------------------------------

def test_fast_leaf_is_used_when_asked_for_and_everything_is_there():
    leaf = leaves.OsloLeaf(cfg.ConfigOpts(), ['messagingv2'], ['t'], DOWN_URL, 0, batch=True)
    try:
        with pytest.raises(leaves.BusUnavailable):
            leaf.publish_many([envelope(1)])
        assert leaf.batched
    finally:
        leaf.close()


def test_fast_leaf_falls_back_with_one_warning_when_a_private_name_is_missing(
        monkeypatch, caplog):
    monkeypatch.setitem(oslo_private.FAST,
                        'oslo_messaging._drivers.impl_rabbit.Connection._gone', ())
    monkeypatch.setattr(leaves, '_warned', set())
    with caplog.at_level(logging.WARNING):
        # checked when the leaf is made (at start-up), warned once per process
        leaf = leaves.OsloLeaf(cfg.ConfigOpts(), ['messagingv2'], ['t'], DOWN_URL, 0,
                               batch=True)
        leaves.OsloLeaf(cfg.ConfigOpts(), ['messagingv2'], ['t'], DOWN_URL, 0, batch=True)
    assert not leaf.batch
    try:
        with caplog.at_level(logging.WARNING):
            with pytest.raises(leaves.BusUnavailable):
                leaf.publish_many([envelope(1)])
            with pytest.raises(leaves.BusUnavailable):
                leaf.publish_many([envelope(2)])
        assert not leaf.batched
        warnings = [r.getMessage() for r in caplog.records
                    if 'rabbit_batch_publish is on' in r.getMessage()]
        assert len(warnings) == 1
        assert 'impl_rabbit.Connection._gone (absent)' in warnings[0]
    finally:
        leaf.close()
