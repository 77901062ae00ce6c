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

"""Glance's own usage notifications (image.*), as metering consumers read them.

Payloads follow Glance 33's ``glance/notifier.py`` field for field:
``format_image_notification``, ``format_image_member_notification``, the v2
``image.send`` dict, and a plain text message for WARN/ERROR.  Records come from
the response body (create, PATCH, members) or an in-process look-up
(:mod:`audit_notifier.lookup`).  ``locations``, ``direct_url`` and task ``input``
never appear.  Deliberate differences from Glance are listed in
doc/source/reference/events.rst.

A route names its rule with ``usage: <rule>``; :data:`RULES` is the registry.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Callable

from audit_notifier import identity
from audit_notifier.events import (ERROR, INFO, INVALID_STATUS, Notification, expected_bytes,
                                   iso_time, outcome_of)
from audit_notifier.exchange import FINISHED, IDENTITY_KEY, STARTED

# Keys of the v2 image view that are not extra properties.
_VIEW_CORE = frozenset({
    'id', 'name', 'status', 'created_at', 'updated_at', 'min_disk', 'min_ram',
    'protected', 'checksum', 'owner', 'disk_format', 'container_format', 'size',
    'virtual_size', 'visibility', 'tags', 'os_hidden', 'os_hash_algo', 'os_hash_value',
    'locations', 'direct_url', 'self', 'file', 'schema', 'stores'})
# Never in a payload: they may carry store credentials.
SECRET_KEYS = frozenset({'location', 'locations', 'direct_url'})
IMAGE_FIELDS = ('id', 'name', 'status', 'created_at', 'updated_at', 'min_disk', 'min_ram',
                'protected', 'checksum', 'owner', 'disk_format', 'container_format',
                'size', 'virtual_size', 'is_public', 'visibility', 'properties', 'tags',
                'deleted', 'deleted_at')


@dataclasses.dataclass(frozen=True)
class Settings:
    lookups: bool = True         # fetch records the response does not carry
    failures: bool = True        # WARN/ERROR text notifications for failed calls
    default_backend: str | None = None   # [glance_store] default_backend of the service


@dataclasses.dataclass(frozen=True)
class Rule:
    """How one kind of API call turns into Glance notifications.

    ``build`` sees only what the rule asked for: the ``finished`` phase of a call
    that succeeded, plus the ``started`` phase with ``on_start``, plus failed calls
    with ``own_failures``; any other failed call is reported by :meth:`run` as one
    WARN/ERROR text notification named ``event``.
    """
    event: str                   # the notification a failed call is reported as
    build: Callable              # (phase, facts, settings) -> list[Notification]
    wants_body: bool = False     # needs the response body
    prefetch: str | None = None  # 'image' or 'member': record needed before the call
    on_start: bool = False       # also called when an upload starts (STARTED phase)
    own_failures: bool = False   # builds its own notifications for failed calls

    def run(self, phase: str, facts, settings: 'Settings') -> list:
        if phase == STARTED and not self.on_start:
            return []
        if phase == FINISHED and not self.own_failures and _failed(facts.exchange):
            return failure(self.event, facts, settings)
        return self.build(phase, facts, settings)


# -- payloads --------------------------------------------------------------------------

def image_payload(record: dict) -> dict:
    """format_image_notification from an API view (v2 image, or v1 {"image": ...})."""
    if isinstance(record.get('image'), dict):
        record = record['image']
    if 'visibility' not in record and 'is_public' in record:       # v1 registry dict
        payload = {k: v for k, v in record.items() if k not in SECRET_KEYS}
        payload.setdefault('properties', {})
        payload.setdefault('deleted', False)
        payload.setdefault('deleted_at', None)
        return payload
    return {
        'id': record.get('id'),
        'name': record.get('name'),
        'status': record.get('status'),
        'created_at': record.get('created_at'),
        'updated_at': record.get('updated_at'),
        'min_disk': record.get('min_disk'),
        'min_ram': record.get('min_ram'),
        'protected': record.get('protected'),
        'checksum': record.get('checksum'),
        'owner': record.get('owner'),
        'disk_format': record.get('disk_format'),
        'container_format': record.get('container_format'),
        'size': record.get('size'),
        'virtual_size': record.get('virtual_size'),
        'is_public': record.get('visibility') == 'public',
        'visibility': record.get('visibility'),
        'properties': {k: v for k, v in record.items() if k not in _VIEW_CORE},
        'tags': list(record.get('tags') or []),
        'deleted': False,
        'deleted_at': None,
    }


def unknown_image_payload(image_id: str) -> dict:
    """Every field Glance sends, only the id known (the record could not be fetched)."""
    payload = dict.fromkeys(IMAGE_FIELDS)
    payload.update(id=image_id, properties={}, tags=[], deleted=False)
    return payload


def member_payload(record: dict) -> dict:
    return {
        'image_id': record.get('image_id'),
        'member_id': record.get('member_id'),
        'status': record.get('status'),
        'created_at': record.get('created_at'),
        'updated_at': record.get('updated_at'),
        'deleted': False,
        'deleted_at': None,
    }


TASK_FIELDS = ('id', 'type', 'status', 'result', 'owner', 'message', 'expires_at',
               'created_at', 'updated_at', 'deleted', 'deleted_at')


def task_payload(task, when: float) -> dict:
    """format_task_notification from a task API view (dict) or a glance.domain.Task.

    ``input`` is never copied (it may carry credentials); ``result`` and ``message``
    are always None, as Glance sends them; a task without ``expires_at`` gets the
    time of the event, as Glance's isotime(None) does.
    """
    def field(name, attr=None):
        if isinstance(task, dict):
            value = task.get(name)
        else:
            value = getattr(task, attr or name, None)
        if hasattr(value, 'strftime'):
            value = value.strftime('%Y-%m-%dT%H:%M:%SZ')
        elif isinstance(value, str) and name.endswith('_at'):
            value = _isotime_text(value)
        return value
    return {
        'id': field('id', 'task_id'),
        'type': field('type'),
        'status': field('status'),
        'result': None,
        'owner': field('owner'),
        'message': None,
        'expires_at': field('expires_at') or iso_time(when),
        'created_at': field('created_at'),
        'updated_at': field('updated_at'),
        'deleted': False,
        'deleted_at': None,
    }


def _isotime_text(value: str) -> str:
    """A timestamp string in Glance's isotime format (whole seconds, Z).

    GET /v2/images/{id}/tasks returns raw database rows, whose times are JSON as
    ``2026-11-23T14:30:11.274139`` (naive UTC); Glance's notifications carry
    ``2026-11-23T14:30:11Z``.
    """
    try:
        parsed = datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc)
    return parsed.strftime('%Y-%m-%dT%H:%M:%SZ')


def import_lists(payload: dict) -> dict:
    props = payload.get('properties') or {}
    return {key: (props.get(key) or '').split(',') if props.get(key) else []
            for key in ('os_glance_importing_to_stores', 'os_glance_failed_import')}


# -- helpers ---------------------------------------------------------------------------

def _image_id(facts) -> str | None:
    return facts.source(facts.exchange.route.target.id)


def _api_prefix(facts) -> str:
    return '/' + facts.exchange.route.path.strip('/').split('/', 1)[0]


def _image_record(facts, settings: Settings, image_id: str | None) -> dict | None:
    if not settings.lookups or not image_id or _api_prefix(facts) != '/v2':
        return None
    return facts.lookup('/v2/images/%s' % image_id)


def _note(facts, event, priority, payload, shard, when=None) -> Notification:
    exchange = facts.exchange
    return Notification('glance', event, priority, payload, shard or '',
                        when or exchange.finished_at or exchange.started_at)


def _failed(exchange) -> bool:
    code = exchange.status_code
    return exchange.raised is not None or code is None or code >= 400


def failure(rule_event: str, facts, settings: Settings, message: str | None = None):
    """A failed call: one WARN (4xx) or ERROR (5xx) notification, text payload."""
    if not settings.failures:
        return []
    exchange = facts.exchange
    priority = outcome_of(exchange).priority
    if message is None:
        message = '%s %s failed: %s' % (exchange.request.get('REQUEST_METHOD'),
                                        exchange.request_path, _status_text(facts))
    return [_note(facts, rule_event, priority, facts.redactor.text(message),
                  _image_id(facts))]


def _status_text(facts) -> str:
    exchange = facts.exchange
    if exchange.raised:
        return 'internal error (%s)' % exchange.raised
    explanation = facts.error_text()
    if exchange.status_invalid:
        status = '%s %r' % (INVALID_STATUS, exchange.status[:40])
    else:
        status = exchange.status or 'no response'
    return '%s: %s' % (status, explanation) if explanation else status


def _mark_deleted(payload: dict, exchange) -> None:
    """What Glance's repo proxies add on remove: deleted and its time."""
    payload['deleted'] = True
    payload['deleted_at'] = iso_time(exchange.finished_at)


# -- rules -----------------------------------------------------------------------------

def _record_event(event: str, from_body: bool):
    """image.create / image.update: the record from the body, else a look-up."""
    def build(phase, facts, settings):
        record = facts.body_json() if from_body else None
        image_id = _image_id(facts)
        if not isinstance(record, dict) or not record:
            record = _image_record(facts, settings, image_id)
        payload = image_payload(record) if record else unknown_image_payload(image_id)
        return [_note(facts, event, INFO, payload, payload.get('id'))]
    return build


def _build_delete(phase, facts, settings):
    exchange = facts.exchange
    image_id = _image_id(facts)
    record = exchange.prefetched
    payload = image_payload(record) if record else unknown_image_payload(image_id)
    # Glance sends the image as its delete left it: status deleted, updated_at set
    # by the destroy (glance/db/__init__.py ImageRepo.remove), deleted_at now.
    payload['status'] = 'deleted'
    _mark_deleted(payload, exchange)
    payload['updated_at'] = payload['deleted_at']
    return [_note(facts, 'image.delete', INFO, payload, image_id)]


def _build_upload(phase, facts, settings):
    """PUT /file, in the order Glance 33 emits: image.update(saving) and image.prepare
    when the data starts to flow; image.upload, image.activate and image.update(active)
    once it is stored; on a failed store write ERROR image.upload (text) and
    image.update with the record as Glance left it (queued again)."""
    exchange = facts.exchange
    image_id = _image_id(facts)
    if phase == STARTED:
        return _upload_started(facts, settings, image_id)
    if _failed(exchange):
        notes = []
        if not exchange.upload_started:
            if not _store_failure(facts):
                return failure('image.upload', facts, settings)
            # The store failed before reading a byte (e.g. it could not open its
            # file): Glance had already saved "saving" and sent image.prepare.
            notes = _upload_started(facts, settings, image_id)
        notes.append(_note(facts, 'image.upload', ERROR,
                           facts.redactor.text(_upload_error_message(facts, image_id)),
                           image_id))
        return notes + _refreshed(facts, settings, image_id)
    record = _image_record(facts, settings, image_id)
    if record:
        payload = image_payload(record)
    else:
        # No record: what a successful PUT /file implies is still known.  Glance
        # uploads only to a queued image and activates it (set_data with
        # set_active), storing exactly the bytes it read.
        payload = unknown_image_payload(image_id)
        payload.update(status='active', size=exchange.bytes_received)
    upload = dict(payload)
    upload.update(import_lists(payload))
    notes = [_note(facts, 'image.upload', INFO, upload, image_id)]
    if payload.get('status') == 'active':
        notes.append(_note(facts, 'image.activate', INFO, dict(payload), image_id))
    notes.append(_note(facts, 'image.update', INFO, payload, image_id))
    return notes


def _upload_started(facts, settings, image_id) -> list:
    """image.update(saving) and image.prepare: Glance's set_data has begun."""
    exchange = facts.exchange
    payload = _record_at_start(facts, settings, image_id, 'saving')
    prepare = dict(payload)
    prepare.update(import_lists(payload))
    backend = exchange.request.get('HTTP_X_IMAGE_META_STORE') or settings.default_backend
    if backend:
        prepare['backend'] = backend
    when = exchange.started_at
    return [_note(facts, 'image.update', INFO, payload, image_id, when),
            _note(facts, 'image.prepare', INFO, prepare, image_id, when)]


def _build_stage(phase, facts, settings):
    """PUT /stage: image.update(uploading) when the data starts, image.update with the
    staged size (and os_glance_stage_host) when it is written, as Glance 33 does."""
    image_id = _image_id(facts)
    if phase == STARTED:
        payload = _record_at_start(facts, settings, image_id, 'uploading')
        payload['properties'].pop('os_glance_stage_host', None)
        return [_note(facts, 'image.update', INFO, payload, image_id,
                      facts.exchange.started_at)]
    return _refreshed(facts, settings, image_id)


def _record_at_start(facts, settings, image_id, status: str) -> dict:
    """The record as it stood when the data began to flow.

    The look-up runs in the sender, possibly after Glance has finished writing; what
    the write changes (status, size, checksum, updated_at) is set back to the
    values it had when the upload started.
    """
    record = _image_record(facts, settings, image_id)
    payload = image_payload(record) if record else unknown_image_payload(image_id)
    if payload.get('status') != status:
        payload.update(status=status, size=None, virtual_size=None, checksum=None,
                       updated_at=iso_time(facts.exchange.started_at))
    payload['properties'] = dict(payload['properties'])
    return payload


def _refreshed(facts, settings, image_id) -> list:
    record = _image_record(facts, settings, image_id)
    payload = image_payload(record) if record else unknown_image_payload(image_id)
    return [_note(facts, 'image.update', INFO, payload, image_id)]


# Glance's own messages for store failures; its HTTP error explanation repeats them.
_UPLOAD_MESSAGE_PREFIXES = (
    'Image storage media is full', 'Insufficient permissions on image storage media',
    'Filesystem store operation timed out', 'Cannot save data for image',
    'Unable to upload duplicate image data', 'Not allowed to upload image data',
    'Failed to upload image data')


# Prefixes glance/api/v2/image_data.py (upload) puts before an exception text that
# Glance's notifier reports bare ("... due to internal error: <exception text>").
_IMAGE_DATA_WRAPPERS = ('The incoming image is too large: ',
                        'Image exceeds the storage quota: ')


def _store_failure(facts) -> bool:
    """Did the failed upload reach Glance's set_data (a store or size error)?

    Glance's HTTP explanation then carries the message of its ERROR image.upload
    (or the wrapped exception text); policy, state and not-found errors do not.
    """
    error = facts.error_text()
    return bool(error) and (error.startswith(_UPLOAD_MESSAGE_PREFIXES + _IMAGE_DATA_WRAPPERS)
                            or ' could not be found after upload' in error)


def _upload_error_message(facts, image_id) -> str:
    """The text of Glance's ERROR image.upload (glance/notifier.py ImageProxy.set_data).

    Store errors put Glance's message in the HTTP explanation, which is used as is;
    everything else (size limits, bad data) reaches Glance's generic branch.
    """
    exchange = facts.exchange
    error = facts.error_text() or exchange.status or exchange.raised or 'unknown error'
    if error.startswith(_UPLOAD_MESSAGE_PREFIXES) or ' could not be found after upload' in error:
        return error
    # glance/api/v2/image_data.py wraps some exceptions in its HTTP explanation;
    # Glance's notification carries the bare exception text.
    for wrapper in _IMAGE_DATA_WRAPPERS:
        if error.startswith(wrapper):
            error = error[len(wrapper):]
            break
    return ('Failed to upload image data for image %s due to internal error: %s'
            % (image_id, error))


def _build_send(phase, facts, settings):
    """image.send: once the body has been handed to the server, or the client left."""
    exchange = facts.exchange
    if _failed(exchange) and not (exchange.status is None and exchange.raised is None):
        return failure('image.send', facts, settings)
    # (A client that left before a lazy app answered still gets the image.send dict,
    # at ERROR with what was sent: Ceilometer reads payload.bytes_sent.)
    image_id = _image_id(facts)
    record = _image_record(facts, settings, image_id)
    if record is None and isinstance(facts.body_json(), dict):
        record = facts.body_json()
    owner = record.get('owner') if record else None
    size = record.get('size') if record else None
    env = exchange.request
    project_id, user_id = _confirmed_caller(env)
    payload = {
        'bytes_sent': exchange.bytes_sent,
        'image_id': image_id,
        'owner_id': owner,
        'receiver_tenant_id': project_id,
        'receiver_user_id': user_id,
        'destination_ip': env.get('REMOTE_ADDR'),
    }
    expected = expected_bytes(exchange, size)
    complete = exchange.completed and (expected is None or expected == exchange.bytes_sent)
    return [_note(facts, 'image.send', INFO if complete else ERROR, payload, image_id)]


def _confirmed_caller(env: dict) -> tuple:
    """(project id, user id) of the caller when auth_token confirmed them, else
    (None, None): a Glance payload has no place to mark an unchecked claim."""
    if env.get(IDENTITY_KEY) != identity.CONFIRMED:
        return None, None
    return (env.get('HTTP_X_PROJECT_ID') or env.get('HTTP_X_TENANT_ID'),
            env.get('HTTP_X_USER_ID'))


def _build_member(event: str):
    def build(phase, facts, settings):
        record = facts.body_json()
        if not isinstance(record, dict) or 'member_id' not in record:
            record = {'image_id': facts.param('image_id'),
                      'member_id': facts.param('member_id')}
        return [_note(facts, event, INFO, member_payload(record), record.get('image_id'))]
    return build


def _build_member_delete(phase, facts, settings):
    exchange = facts.exchange
    record = exchange.prefetched or {'image_id': facts.param('image_id'),
                                     'member_id': facts.param('member_id')}
    payload = member_payload(record)
    _mark_deleted(payload, exchange)
    return [_note(facts, 'image.member.delete', INFO, payload, payload['image_id'])]


def _build_refresh(phase, facts, settings):
    """Calls that change an image without returning it: image.update from a look-up."""
    return _refreshed(facts, settings, _image_id(facts))


def _build_task_create(phase, facts, settings):
    """POST /v2/tasks: task.create from the 201 response (never its input)."""
    record = facts.body_json()
    if not isinstance(record, dict) or 'id' not in record:
        task_id = facts.source(facts.exchange.route.target.id)
        record = {'id': task_id}
    payload = task_payload(record, facts.exchange.finished_at)
    return [_note(facts, 'task.create', INFO, payload, payload['id'])]


def _build_task_delete(phase, facts, settings):
    """DELETE /v2/tasks/{id}: always 405 in Glance, reported as a failed task.delete."""
    payload = task_payload({'id': facts.param('task_id')},
                           facts.exchange.finished_at)
    _mark_deleted(payload, facts.exchange)
    return [_note(facts, 'task.delete', INFO, payload, payload['id'])]


def _build_import(phase, facts, settings):
    """POST /import (202): task.create for the import task Glance created, as
    Glance's own task.create shows it (status pending, expires_at the time of the
    call), then image.update with the image as the call left it."""
    exchange = facts.exchange
    image_id = _image_id(facts)
    notes = []
    task = _import_task(facts, settings, image_id)
    if task is not None:
        payload = task_payload(task, exchange.finished_at)
        created = payload['created_at'] or iso_time(exchange.started_at)
        payload.update(status='pending', created_at=created, updated_at=created,
                       expires_at=iso_time(exchange.finished_at))
        notes.append(_note(facts, 'task.create', INFO, payload, image_id))
    return notes + _refreshed(facts, settings, image_id)


def _import_task(facts, settings, image_id):
    """The import task of this call.

    While the import runs, the image carries its task id in os_glance_import_task
    (Glance's import lock); the task is then read with GET /v2/tasks/{id}, a pure
    read (admin-only by default: otherwise only what the call itself tells is
    known).  Only when the import is already over is the task looked for among
    the image's tasks: that GET also soft-deletes expired tasks in Glance's
    database (tasks_get_by_image opens a write session), and a write racing the
    import task can make it fail on SQLite.
    """
    if not settings.lookups or not image_id:
        return None
    record = _image_record(facts, settings, image_id)
    task_id = record.get('os_glance_import_task') if isinstance(record, dict) else None
    if task_id:
        task = facts.lookup('/v2/tasks/%s' % task_id)
        if isinstance(task, dict) and task.get('id') == task_id:
            return task
        return {'id': task_id, 'type': 'api_image_import',
                'owner': _confirmed_caller(facts.exchange.request)[0]}
    listing = facts.lookup('/v2/images/%s/tasks' % image_id)
    tasks = listing.get('tasks') if isinstance(listing, dict) else None
    if not tasks:
        return None
    request_id = facts.request_id()
    for task in tasks:
        if request_id and task.get('request_id') == request_id:
            return task
    return max(tasks, key=lambda t: t.get('created_at') or '')


# -- import completion (delivery/follow.py) ---------------------------------------------

def import_completion(task: dict, image: dict | None, when: float, legacy: bool,
                      default_backend: str | None = None) -> list[Notification]:
    """The notifications Glance's task executor sends for an import that has ended,
    in Glance 33's order, from the task record and the image record read after it
    ended (sender thread; no I/O here).

    Interoperable import (``legacy`` False; glance-direct, web-download,
    copy-image): task.processing, then on success image.prepare, image.upload,
    image.activate, image.update, image.update, task.success, task.run; on failure
    image.update (the image as the failure left it) and task.failure.  Legacy
    ``POST /v2/tasks`` import: task.processing, then on success image.create,
    image.update (queued), image.update (saving), image.prepare, image.upload,
    image.activate, image.update, image.update, task.success, task.run; on failure
    task.failure (the image Glance created and deleted is named nowhere in the task
    record).  Exact: every id, the final status, size, virtual_size, checksum,
    owner, name, formats, visibility, created_at, the final updated_at, the task's
    final status, created_at, updated_at and expires_at.  Reconstructed from the
    records: the intermediate image states (status, cleared size/checksum), the
    ``backend`` of image.prepare (the image's first store), the task's
    processing/run timestamps (its created_at) and every envelope timestamp (the
    time the end was seen).
    """
    done = task_payload(task, when)
    created = done['created_at']
    ok = done['status'] == 'success'
    shard = (image or {}).get('id') or done['id']
    events = [('task.processing', dict(done, status='processing', updated_at=created,
                                       expires_at=created))]
    if image is not None:
        final = image_payload(image)
        if not ok:
            if not legacy:
                events.append(('image.update', final))
        elif legacy:
            events.extend(_legacy_image_events(final))
        else:
            events.extend(_import_image_events(final, task, image, default_backend))
    events.append(('task.success' if ok else 'task.failure', done))
    if ok:      # Glance 33 sends task.run after the flow, with the task as first loaded
        events.append(('task.run', dict(done, status='pending', updated_at=created,
                                        expires_at=created)))
    return [Notification('glance', event, INFO, payload, shard, when)
            for event, payload in events]


def _with_lists(payload: dict, importing: list, failed: list) -> dict:
    return dict(payload, os_glance_importing_to_stores=importing,
                os_glance_failed_import=failed)


def _import_image_events(final: dict, task: dict, image: dict, default_backend) -> list:
    stores = [s for s in (image.get('stores') or '').split(',') if s]
    backend = stores[0] if stores else default_backend
    request = (task.get('input') or {}).get('import_req') if isinstance(
        task.get('input'), dict) else None
    method = ((request or {}).get('method') or {}).get('name')
    props = dict(final['properties'], os_glance_import_task=task.get('id'))
    importing = dict(props, os_glance_importing_to_stores=backend or '',
                     os_glance_failed_import='')
    # glance-direct imports the staged data, whose size Glance recorded when staging.
    staged = final['size'] if method == 'glance-direct' else None
    prepare = _with_lists(dict(final, status='importing', checksum=None, virtual_size=None,
                               size=staged, properties=importing),
                          [backend] if backend else [], [])
    if backend:
        prepare['backend'] = backend
    stored = dict(final, properties=importing)
    updated = dict(final, properties=dict(props, os_glance_importing_to_stores='',
                                          os_glance_failed_import=''))
    return [('image.prepare', prepare),
            ('image.upload', _with_lists(stored, [backend] if backend else [], [])),
            ('image.activate', dict(stored)),
            ('image.update', updated), ('image.update', dict(updated))]


def _legacy_image_events(final: dict) -> list:
    queued = dict(final, status='queued', size=None, checksum=None, virtual_size=None,
                  updated_at=final['created_at'])
    sized = dict(queued, virtual_size=final['virtual_size'])
    saving = dict(sized, status='saving')
    return [('image.create', queued), ('image.update', sized), ('image.update', saving),
            ('image.prepare', _with_lists(saving, [], [])),
            ('image.upload', _with_lists(final, [], [])),
            ('image.activate', dict(final)), ('image.update', dict(final)),
            ('image.update', dict(final))]


RULES: dict[str, Rule] = {
    'image.create': Rule('image.create', _record_event('image.create', True), wants_body=True),
    'image.update': Rule('image.update', _record_event('image.update', True), wants_body=True),
    'image.refresh': Rule('image.update', _build_refresh),
    'image.stage': Rule('image.update', _build_stage, on_start=True),
    'image.import': Rule('image.update', _build_import),
    'task.create': Rule('task.create', _build_task_create, wants_body=True),
    'task.delete': Rule('task.delete', _build_task_delete),
    'image.delete': Rule('image.delete', _build_delete, prefetch='image'),
    'image.upload': Rule('image.upload', _build_upload, on_start=True, own_failures=True),
    'image.send': Rule('image.send', _build_send, own_failures=True),
    'image.member.create': Rule('image.member.create', _build_member('image.member.create'),
                                wants_body=True),
    'image.member.update': Rule('image.member.update', _build_member('image.member.update'),
                                wants_body=True),
    'image.member.delete': Rule('image.member.delete', _build_member_delete,
                                prefetch='member'),
}


def prefetch_path(rule: Rule, exchange) -> str | None:
    """The record a rule needs before the call runs (a delete), as a v2 API path."""
    params = exchange.params
    if not exchange.route.path.startswith('/v2/'):
        return None
    if rule.prefetch == 'image' and params.get('image_id'):
        return '/v2/images/%s' % params['image_id']
    if rule.prefetch == 'member' and params.get('image_id') and params.get('member_id'):
        return '/v2/images/%s/members/%s' % (params['image_id'], params['member_id'])
    return None
