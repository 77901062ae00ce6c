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

"""Every private name of oslo.messaging, kombu and py-amqp that audit_notifier uses.

Nothing else in the package touches a private name of a dependency.  Two users:

* the plain leaf (:class:`~audit_notifier.delivery.leaves.OsloLeaf`) sends each
  envelope with ``Transport._send_notification``, the call oslo.messaging's own
  ``messaging`` driver makes, because that driver swallows send errors (it logs
  them with the whole payload) and the sender must know a notification failed.
  Without it the leaf uses the public driver and learns of failures from the
  driver's error log record (see ``OsloLeaf``);
* the fast leaf (:mod:`.rabbit_batch`, ``rabbit_batch_publish = true``, the default)
  rebuilds oslo.messaging's RabbitMQ notification path on one kombu connection.

:func:`missing` checks at start-up that every name of a user exists (and that the
callables take the arguments we pass); a user whose names are not all there is not
used: the fast leaf falls back to the plain leaf with one warning, the plain leaf
to the public driver.  ``tests/unit/test_leaves.py`` runs the same check against
the installed versions in CI (the contract test).
"""

from __future__ import annotations

import importlib
import inspect

#: Private names of the plain leaf: (dotted path, parameters it must accept).
PLAIN = {
    'oslo_messaging.transport.Transport._send_notification':
        ('target', 'ctxt', 'message', 'version', 'retry'),
}

#: Private names of the fast RabbitMQ leaf.
FAST = {
    'oslo_messaging._drivers.impl_rabbit.RabbitDriver': (),
    'oslo_messaging._drivers.impl_rabbit.Connection._transform_transport_url':
        ('url', 'host'),
    'oslo_messaging._drivers.impl_rabbit.Connection._fetch_ssl_params': (),
    'oslo_messaging._drivers.impl_rabbit.Connection._get_quorum_configurations':
        ('driver_conf',),
    'oslo_messaging._drivers.impl_rabbit.Connection._get_ssl_server_hostname': ('url',),
    'oslo_messaging._drivers.impl_rabbit.Connection.validate_ssl_version': (),
    'oslo_messaging._drivers.impl_rabbit._get_queue_arguments':
        ('rabbit_ha_queues', 'rabbit_queue_ttl', 'rabbit_quorum_queue',
         'rabbit_quorum_queue_config', 'rabbit_stream_fanout'),
    'oslo_messaging._drivers.amqp._add_unique_id': ('msg',),
    'oslo_messaging._drivers.amqp.pack_context': ('msg', 'context'),
    'oslo_messaging._drivers.common.serialize_msg': ('raw_msg',),
    'amqp.method_framing.frame_writer': ('connection', 'transport'),
    'amqp.serialization.dumps': ('format', 'values'),
    'amqp.spec.Basic.Publish': (),
}

#: Private attributes of live objects the fast leaf reads; checked on the object when
#: the leaf is set up (``RabbitBatchSender.for_transport``), and the frame shortcut is
#: checked byte for byte against kombu's own publish at every connect.
FAST_ATTRIBUTES = (
    'Transport._driver', 'RabbitDriver._url', 'RabbitDriver.conf',
    'RabbitDriver._default_exchange', 'amqp.Channel.prepare_message',
    'amqp.basic_message.Message._serialize_properties',
    'amqp.Connection.frame_writer', "kombu transport option 'frame_writer'",
)


def get(dotted: str):
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = dotted.split('.')
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module('.'.join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def missing(names: dict) -> list[str]:
    """The names (with the reason) that are absent or do not take our arguments."""
    problems = []
    for dotted, params in names.items():
        try:
            obj = get(dotted)
        except (ImportError, AttributeError):
            problems.append('%s (absent)' % dotted)
            continue
        if params:
            try:
                accepted = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue                    # a builtin: nothing to compare
            if not any(p.kind == p.VAR_KEYWORD for p in accepted.values()):
                absent = [p for p in params if p not in accepted]
                if absent:
                    problems.append('%s (no parameter %s)' % (dotted, ', '.join(absent)))
    return problems
