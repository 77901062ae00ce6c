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

"""A notification as a consumer receives or stores it: the AMQP message body, or a
line of a captured trail.  Used by ``audit-notifier tail`` and ``verify``."""

from __future__ import annotations

import json


def oslo_message(body: bytes | str) -> dict:
    """The notification in ``body``: the ``oslo.message`` envelope of messagingv2
    unwrapped (messaging, v1, sends it bare), every key kept (oslo.messaging's
    ``_unique_id`` and ``_context_*`` too).  ValueError if it is none."""
    if isinstance(body, bytes):
        body = body.decode('utf-8')
    outer = json.loads(body)
    if not isinstance(outer, dict):
        raise ValueError('not a JSON object')
    inner = outer
    if 'oslo.message' in outer:
        if not isinstance(outer['oslo.message'], str):
            raise ValueError('oslo.message is not a JSON text')
        inner = json.loads(outer['oslo.message'])
    if not isinstance(inner, dict) or 'event_type' not in inner:
        raise ValueError('not an oslo.messaging notification')
    return inner
