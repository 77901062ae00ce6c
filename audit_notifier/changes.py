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

"""What a call changed, and what it sent and got: the CADF event's attachments.

Built in the sender thread, from what the journal kept of the call (the request
body the app read, already redacted on the request path; the record fetched
before the call; the response at level request_response).  Parsing JSON and the
structural redaction happen here, never on the request path.

Attachments (CADF ``attachments`` of the event, ``typeURI mime:application/json``):

``changes``
    Routes with a ``changes`` rule in the route map, at level request and above:
    a list of ``{op, path, value[, old]}``.  ``old`` is the value the record
    fetched before the call had at ``path`` (record_lookups on; absent when the
    field did not exist or no record was fetched).
``request``
    Other writes with a JSON body: the body, redacted.
``response``
    Level request_response: the JSON response, redacted.

A body larger than capture_limit is not kept: its attachment is ``{"truncated":
true, "bytes": <size>}``.  One whose secrets could not be masked in place is
``{"withheld": true}``.
"""

from __future__ import annotations

import json
from typing import Any

from audit_notifier.redaction import MASK, Redactor

JSON_TYPE = 'mime:application/json'
# How the route map's ``changes`` rules read a call.
KINDS = frozenset({'json-patch', 'fields', 'tag-add', 'tag-remove', 'deactivate',
                   'reactivate'})
# Request fields whose record field has another name (Magnum's upgrade).
_FIELD_NAMES = {'cluster_template': 'cluster_template_id'}


def attachments(facts, level: int) -> list[dict]:
    """The content attachments of one call's CADF event at ``level`` (2: request,
    3: request_response).  Sender thread; bounded by capture_limit."""
    exchange = facts.exchange
    route = exchange.route
    redactor = facts.redactor
    found = []
    body = _parsed(exchange.captured)
    if route.changes is not None:
        changes = extract(route.changes, body, exchange.prefetched, facts, redactor)
        if changes is not None:
            found.append(_attachment('changes', changes))
    if not found and exchange.captured_size:
        if exchange.captured is None:
            content = ({'withheld': True} if exchange.withheld
                       else {'truncated': True, 'bytes': exchange.captured_size})
        elif body is _INVALID:
            content = {'invalid_json': True, 'bytes': exchange.captured_size}
        else:
            content = redactor.document(body)
        found.append(_attachment('request', content))
    if level >= 3:
        if exchange.response is not None:
            response = _parsed(exchange.response)
            if response is not _INVALID and response is not None:
                found.append(_attachment('response', redactor.document(response)))
        elif exchange.response_size:
            found.append(_attachment('response', {'truncated': True,
                                                  'bytes': exchange.response_size}))
    return found


def _attachment(name: str, content: Any) -> dict:
    return {'typeURI': JSON_TYPE, 'name': name, 'content': content}


_INVALID = object()


def _parsed(data):
    if not data:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return _INVALID


def extract(kind: str, body, record: dict | None, facts, redactor: Redactor) -> list | None:
    """The changes a call asked for, as ``[{op, path, value, old}]``, or None when
    the request does not say (no body kept, not the expected shape)."""
    if kind == 'tag-add' or kind == 'tag-remove':
        tag = facts.param('tag_value')
        if tag is None:
            return None
        change = {'op': 'add' if kind == 'tag-add' else 'remove', 'path': '/tags',
                  'value': tag}
        if isinstance(record, dict) and 'tags' in record:
            change['old'] = record['tags']
        return [change]
    if kind in ('deactivate', 'reactivate'):
        change = {'op': 'replace', 'path': '/status',
                  'value': 'deactivated' if kind == 'deactivate' else 'active'}
        return [_with_old(change, record, ['status'], redactor)]
    if kind == 'fields':
        if not isinstance(body, dict):
            return None
        return [_with_old({'op': 'replace', 'path': '/' + _FIELD_NAMES.get(key, key),
                           'value': _value(value, [key], redactor)},
                          record, [_FIELD_NAMES.get(key, key)], redactor)
                for key, value in body.items()]
    if kind == 'json-patch':
        if not isinstance(body, list) or not all(isinstance(op, dict) for op in body):
            return None
        changes = []
        for op in body:
            path = op.get('path')
            segments = _pointer(path) if isinstance(path, str) else None
            change = {'op': str(op.get('op')), 'path': path}
            if 'from' in op:
                change['from'] = op['from']
            if 'value' in op:
                change['value'] = _value(op['value'], segments or [], redactor)
            if segments is not None:
                _with_old(change, record, segments, redactor)
            changes.append(change)
        return changes
    return None


def _pointer(path: str) -> list[str] | None:
    """A JSON pointer's segments (``/a~1b/c`` -> ``['a/b', 'c']``), or None."""
    if not path.startswith('/'):
        return None
    return [seg.replace('~1', '/').replace('~0', '~') for seg in path[1:].split('/')]


def _with_old(change: dict, record, segments: list, redactor: Redactor) -> dict:
    """Add ``old``: the record's value at ``segments``, when it has one."""
    if not isinstance(record, dict) or not segments:
        return change
    value: Any = record
    for seg in segments:
        if isinstance(value, dict) and seg in value:
            value = value[seg]
        elif isinstance(value, list) and seg.isdigit() and int(seg) < len(value):
            value = value[int(seg)]
        else:
            return change
    change['old'] = _value(value, segments, redactor)
    return change


def _value(value, segments: list, redactor: Redactor):
    """A value at a path: masked when a segment of the path names a secret."""
    if any(redactor.hidden_or_secret(seg) for seg in segments):
        return MASK
    return redactor.document(value)
