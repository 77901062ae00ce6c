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

"""Notifications that happen outside an API call, with the filter's configuration.

Glance runs an import task in its executor after the API call has answered 202,
and Magnum learns that a cluster finished (``CREATE_COMPLETE`` ...) in its
conductor's periodic job.  Neither is visible to a WSGI filter, so a task executor
or a conductor hook calls this API instead; it reads the same ``[audit_notifier]``
options (keyword arguments override them, as paste keys do for the filter) and
sends through the same formats, drivers, journal and delivery::

    import audit_notifier
    notifier = audit_notifier.get_notifier()                 # [audit_notifier] of cfg.CONF
    notifier.task('task.processing', task, context=ctx)      # Glance format and/or CADF
    notifier.cluster('create', 'success', cluster, context=ctx)   # magnum.cluster.create

Order of Glance's own task events (Glance 33): task.create (API call), then in the
executor task.processing, the image.* events of the import, task.success or
task.failure, and task.run last.  In 2014 (Icehouse) task.run came first and every
payload carried the status before the change.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from audit_notifier.assembly import Pipeline
from audit_notifier.events import (ERROR, FAILURE, INFO, PENDING, SUCCESS, UNKNOWN,
                                   Notification, cadf)
from audit_notifier.events import glance as glance_events
from audit_notifier.events import records

TASK_EVENTS = ('task.create', 'task.run', 'task.processing', 'task.success', 'task.failure',
               'task.delete')
# CADF action and outcome of each task event.
_TASK_CADF = {'task.create': ('create', SUCCESS), 'task.run': ('start', SUCCESS),
              'task.processing': ('update', PENDING), 'task.success': ('update', SUCCESS),
              'task.failure': ('update', FAILURE), 'task.delete': ('delete', SUCCESS)}
OUTCOMES = (PENDING, SUCCESS, FAILURE)
CLUSTER_ACTIONS = ('create', 'update', 'delete')


class AuditNotifier:
    """Sends out-of-band audit and usage notifications."""

    def __init__(self, **overrides: Any):
        self.pipeline = Pipeline(overrides)
        self._emitter = self.pipeline.emitter
        self.delivery = self.pipeline.delivery

    def task(self, event_type: str, task, context=None) -> None:
        """A Glance task event: ``task`` is a glance.domain.Task or a task API view."""
        if event_type not in TASK_EVENTS:
            raise ValueError('event_type must be one of %s' % ', '.join(TASK_EVENTS))
        now = time.time()
        payload = glance_events.task_payload(task, now)
        notes = []
        if 'glance' in self._emitter.formats:
            # Glance sends every task event, task.failure included, at INFO.
            notes.append(Notification('glance', event_type, INFO, payload, payload['id'] or '',
                                      now))
        if 'cadf' in self._emitter.formats:
            action, outcome = _TASK_CADF[event_type]
            target = {'typeURI': 'service/storage/image/task', 'id': payload['id'] or UNKNOWN}
            if payload.get('type'):
                target['name'] = payload['type']
            notes.append(self._cadf(event_type, action, outcome, target, context, now))
        self.delivery.submit_built(notes)

    def cluster(self, action: str, outcome: str, cluster, context=None,
                resource: str = 'cluster') -> None:
        """A Magnum cluster (or 2016 bay) operation's outcome, as Magnum's conductor
        reports it: magnum.<resource>.<action>, failure at ERROR, else INFO."""
        if action not in CLUSTER_ACTIONS:
            raise ValueError('action must be one of %s' % ', '.join(CLUSTER_ACTIONS))
        if outcome not in OUTCOMES:
            raise ValueError('outcome must be one of %s' % ', '.join(OUTCOMES))
        if resource not in ('cluster', 'bay'):
            raise ValueError("resource must be 'cluster' or 'bay'")
        if 'cadf' not in self._emitter.formats:
            return                     # Magnum's notifications exist only as CADF events
        uuid = _get(cluster, 'uuid') or _get(cluster, 'id')
        target = {'typeURI': 'service/magnum/%s' % resource, 'id': uuid or UNKNOWN}
        if _get(cluster, 'name'):
            target['name'] = _get(cluster, 'name')
        if resource == 'cluster' and uuid:      # Magnum 9.0.0+: the cluster's record
            rule = records.CLUSTER_DATA
            target['attachments'] = [{'typeURI': rule.type_uri, 'name': rule.name,
                                      'content': records.content_of_object(rule, cluster)}]
        note = self._cadf('magnum.%s.%s' % (resource, action), action, outcome, target,
                          context, time.time())
        self.delivery.submit_built([note])

    def _cadf(self, event, action, outcome, target, context, when) -> Notification:
        observer = dict(self._emitter.observer)
        if self._emitter.service.observer_follows_target:
            observer['typeURI'] = target['typeURI']
        payload = cadf.event(action=action, outcome=outcome,
                             initiator=cadf.initiator_from_context(context), target=target,
                             observer=observer, when=when)
        if self._emitter.resource_info:
            payload['resource_info'] = target['id']
        return Notification('cadf', self._emitter.cadf_event_type.format(event=event),
                            ERROR if outcome == FAILURE else INFO, payload, target['id'], when)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.delivery.flush(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.delivery.close(timeout)


def _get(obj, name):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


_default: AuditNotifier | None = None
_default_lock = threading.Lock()


def get_notifier(**overrides: Any) -> AuditNotifier:
    """The process's notifier for the service's configuration (created once).

    With keyword arguments, a new notifier with those option overrides is returned.
    """
    global _default
    if overrides:
        return AuditNotifier(**overrides)
    with _default_lock:
        if _default is None:
            _default = AuditNotifier()
        return _default
