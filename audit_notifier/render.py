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

"""One line per notification for a person to read (``audit-notifier demo`` and ``tail``)."""

from __future__ import annotations

from audit_notifier.events.cadf import EVENT_TYPE_URI


def is_cadf(envelope: dict) -> bool:
    """True when the envelope carries a CADF event."""
    payload = envelope.get('payload')
    return isinstance(payload, dict) and payload.get('typeURI') == EVENT_TYPE_URI


def describe(envelope: dict) -> str:
    """One compact line for a person: priority, event_type and the key fields."""
    payload = envelope.get('payload')
    head = '%-5s %-20s' % (envelope.get('priority'), envelope.get('event_type'))
    if isinstance(payload, str):
        text = ' '.join(payload.split())
        return '%s "%s"' % (head, text if len(text) <= 200 else text[:197] + '...')
    if not isinstance(payload, dict):
        return '%s %r' % (head, payload)
    if is_cadf(envelope):
        target = payload.get('target') or {}
        reason = payload.get('reason') or {}
        initiator = payload.get('initiator') or {}
        fields = ['action=%s' % payload.get('action'),
                  'outcome=%s/%s' % (payload.get('outcome'), reason.get('reasonCode')),
                  'target=%s' % target.get('id'),
                  'by=%s' % (initiator.get('name') or initiator.get('id'))]
        for measurement in payload.get('measurements') or []:
            metric = measurement.get('metric') or {}
            fields.append('%s=%s' % (metric.get('name'), measurement.get('result')))
        return '%s %s' % (head, ' '.join(fields))
    if 'bytes_sent' in payload:
        return '%s image_id=%s bytes_sent=%s' % (head, payload.get('image_id'),
                                                 payload.get('bytes_sent'))
    if 'member_id' in payload:
        return '%s image_id=%s member_id=%s status=%s' % (
            head, payload.get('image_id'), payload.get('member_id'), payload.get('status'))
    fields = ['id=%s' % payload.get('id'), 'name=%s' % payload.get('name'),
              'status=%s' % payload.get('status'), 'size=%s' % payload.get('size')]
    if payload.get('deleted'):
        fields.append('deleted_at=%s' % payload.get('deleted_at'))
    return '%s %s' % (head, ' '.join(fields))


def changes(envelope: dict) -> list[str]:
    """The change record of a CADF event (its ``changes`` attachment), one line per
    change: ``/visibility: 'private' -> 'public'``; no lines for other events."""
    payload = envelope.get('payload')
    if not is_cadf(envelope):
        return []
    lines = []
    for attachment in payload.get('attachments') or []:
        content = attachment.get('content')
        if attachment.get('name') != 'changes' or not isinstance(content, list):
            continue
        for change in content:
            if not isinstance(change, dict):
                continue
            old = repr(change['old']) if 'old' in change else '(none)'
            new = repr(change['value']) if 'value' in change else '(removed)'
            lines.append('change %s %s: %s -> %s' % (change.get('op'), change.get('path'),
                                                     old, new))
    return lines
