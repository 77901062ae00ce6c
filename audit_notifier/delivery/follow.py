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

"""Import follows: Glance's import completion events, when Glance's own notifier is off.

An accepted import call (``POST /v2/images/{id}/import`` answered 202, ``POST
/v2/tasks`` of type ``import`` answered 201) returns before Glance's task executor
has run the import.  When the sender builds the finished call, it registers a
*follow* (:meth:`Follower.watch`); the sender's loop then polls the image and task
records (:meth:`Follower.poll`) with in-process GETs to the wrapped app
(:class:`~audit_notifier.lookup.SubRequester`), as the caller: the identity headers
the journal record holds (auth_token's X-User-Id, X-Project-Id, X-Roles ...), never
a token.  Once the task has ended, the completion events are built with
:func:`audit_notifier.events.glance.import_completion`, in Glance's order.

Everything here runs in the sender thread; nothing on the request path.  Bounds:
at most ``follow_imports_max`` follows at once (a further import is not followed:
counted ``follows_refused`` and logged, rate-limited), each for at most
``follow_imports_timeout`` seconds from its call (then given up: counted
``follows_given_up`` and logged, rate-limited); each follow is polled after 0.5 s,
then after twice the previous pause, up to 10 s; at most :data:`POLL_BATCH` follows
(two or three in-process GETs each, about 1-3 ms of Glance time per GET) are
polled per sender step.  With a journal directory the follows are kept in
``<owner>.follows.json`` (written by the sender thread whenever they change, mode
0600, holding only what the journal record holds); the sender of a later process
adopts the file of a process that is gone and finishes its follows.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
import uuid

from oslo_config import cfg

from audit_notifier.delivery import journal as journal_mod
from audit_notifier.events import glance as glance_events
from audit_notifier.exchange import Exchange
from audit_notifier.facts import Facts

LOG = logging.getLogger(__name__)

follow_opts = [
    cfg.BoolOpt('follow_imports', default=True,
                help='Glance format: after an accepted image import (POST /v2/images/{id}/'
                     'import, 202) or legacy import task (POST /v2/tasks, 201), follow the '
                     'image and task records in the background (in-process GETs to the '
                     'wrapped app as the caller, from the sender thread) and, once the '
                     'import has ended, send the completion notifications Glance\'s own '
                     'notifier sends (task.processing, image.prepare, image.upload, '
                     'image.activate, image.update, task.success or task.failure, '
                     'task.run). Needs record_lookups. Off: only the notifications of the '
                     'import call itself.'),
    cfg.IntOpt('follow_imports_timeout', default=3600, min=10,
               help='Seconds after the import call at which an import still running is no '
                    'longer followed (counted as follows_given_up and logged).'),
    cfg.IntOpt('follow_imports_max', default=1000, min=1,
               help='Most imports followed at once per process; a further import is not '
                    'followed (counted as follows_refused and logged).'),
]

FIRST_PAUSE = 0.5
MAX_PAUSE = 10.0
POLL_BATCH = 20
FINAL = ('success', 'failure')
_ID_NAMESPACE = uuid.UUID('0c5b7f0e-3d4a-4b8e-9a51-6f2d1c7e8b90')    # the builder's
SUFFIX = '.follows.json'
COUNTERS = ('follows_started', 'follows_done', 'follows_given_up', 'follows_refused')


class Follower:
    """The follows of one sender; every method runs in that sender's thread."""

    def __init__(self, emitter, subrequests, directory: str | None, owner: str, stats, *,
                 timeout: float, limit: int, clock=time.time, monotonic=time.monotonic):
        self.emitter = emitter
        self.subrequests = subrequests
        self.directory = directory
        self.owner = owner
        self.stats = stats
        self.timeout = timeout
        self.limit = limit
        self.clock = clock                  # wall time: follows outlive the process
        self.monotonic = monotonic
        self.follows: dict = {}             # key -> follow (a dict of plain values)
        self._due: dict = {}                # key -> monotonic time of its next poll
        self.counters = dict.fromkeys(COUNTERS, 0)

    @property
    def path(self) -> str | None:
        if self.directory is None:
            return None
        return os.path.join(self.directory, self.owner + SUFFIX)

    # -- registering ----------------------------------------------------------------------
    def watch(self, exchange, stream: str) -> None:
        """Called by the builder with each finished call: follow it if it is an
        accepted import.  Never raises (a failure is logged and counted as refused)."""
        try:
            follow = self._follow_of(exchange, stream)
            if follow is not None:
                self.add(follow)
        except Exception:
            self.counters['follows_refused'] += 1
            self.stats.limited(logging.ERROR, 'follow-watch', 'audit_notifier: could not '
                               'register the follow of an import call; its completion '
                               'notifications will not be sent', exc_info=True)

    @staticmethod
    def _follow_of(exchange, stream: str) -> dict | None:
        route = exchange.route
        if route.usage not in ('image.import', 'task.create'):
            return None                         # most calls: one comparison
        code = exchange.status_code
        follow = {'key': '%s/%s' % (stream, exchange.call), 'q': list(exchange.facts),
                  'since': exchange.finished_at or exchange.started_at, 'tries': 0,
                  'image': None, 'task': None}
        if route.usage == 'image.import' and code == 202:
            follow.update(kind='import', image=exchange.params.get('image_id'))
            return follow if follow['image'] else None
        if route.usage == 'task.create' and code == 201:
            body = Facts(exchange, None).body_json()
            if isinstance(body, dict) and body.get('type') == 'import' and body.get('id'):
                follow.update(kind='task', task=str(body['id']))
                return follow
        return None

    def add(self, follow: dict) -> bool:
        if follow['key'] in self.follows:
            return False                         # a journal replayed after a restart
        if len(self.follows) >= self.limit:
            self.counters['follows_refused'] += 1
            self.stats.limited(logging.WARNING, 'follow-refused', 'audit_notifier: %d imports '
                               'are followed already (follow_imports_max); the import %s is '
                               'not followed and its completion notifications will not be '
                               'sent', len(self.follows), follow.get('image') or
                               follow.get('task'))
            return False
        self.follows[follow['key']] = follow
        self._due[follow['key']] = self.monotonic() + self._pause(follow)
        self.counters['follows_started'] += 1
        self.save()
        return True

    @staticmethod
    def _pause(follow: dict) -> float:
        return min(MAX_PAUSE, FIRST_PAUSE * (2 ** min(follow.get('tries', 0), 10)))

    # -- polling --------------------------------------------------------------------------
    def next_due(self) -> float | None:
        """Monotonic time of the next poll, or None when nothing is followed."""
        return min(self._due.values()) if self._due else None

    def poll(self) -> tuple[list, list]:
        """Poll the follows that are due (at most POLL_BATCH).  Returns (keys of the
        follows that ended, [(fmt, envelope)] of their notifications): the caller
        publishes them, then calls :meth:`finished` with the keys.  Never raises."""
        now = self.monotonic()
        due = sorted((t, k) for k, t in self._due.items() if t <= now)[:POLL_BATCH]
        ended, built = [], []
        changed = False
        for _, key in due:
            follow = self.follows[key]
            notes = None
            try:
                notes = self._check(follow)
            except Exception:
                self.stats.limited(logging.ERROR, 'follow-poll', 'audit_notifier: polling '
                                   'the import %s failed; it is tried again',
                                   follow.get('image') or follow.get('task'), exc_info=True)
            if key not in self.follows:          # given up: the record is gone
                continue
            if notes is not None:
                ended.append(key)
                built.extend(self._envelopes(key, notes))
                continue
            if self.clock() - follow['since'] > self.timeout:
                self._give_up(key, 'still running after follow_imports_timeout')
                changed = True
                continue
            follow['tries'] = follow.get('tries', 0) + 1
            self._due[key] = now + self._pause(follow)
        if changed:
            self.save()
        return ended, built

    def finished(self, keys: list) -> None:
        """The notifications of these follows were published: forget them."""
        for key in keys:
            if self.follows.pop(key, None) is not None:
                self.counters['follows_done'] += 1
            self._due.pop(key, None)
        if keys:
            self.save()

    def _give_up(self, key: str, why: str) -> None:
        follow = self.follows.pop(key)
        self._due.pop(key, None)
        self.counters['follows_given_up'] += 1
        self.stats.limited(logging.WARNING, 'follow-gave-up', 'audit_notifier: stopped '
                           'following the import of %s %s (%s); its completion '
                           'notifications are not sent', follow['kind'],
                           follow.get('image') or follow.get('task'), why)

    def _check(self, follow: dict):
        """[Notification] when the import has ended, [] when there is nothing to
        send (the record is gone: given up), None while it runs."""
        environ = Exchange(None, {}, follow['q'], 0.0).request
        if follow['kind'] == 'import':
            return self._check_import(follow, environ)
        return self._check_task(follow, environ)

    def _get(self, environ, path):
        return self.subrequests.get_json(environ, path)

    def _check_import(self, follow, environ):
        code, image = self._get(environ, '/v2/images/%s' % follow['image'])
        if code in (403, 404):
            self._give_up(follow['key'], 'the image is gone (%s)' % code)
            self.save()
            return None
        if image is None:
            return None
        lock = image.get('os_glance_import_task')
        if lock:                                 # Glance's import lock: still running
            if follow['task'] != lock:
                follow['task'] = lock
                self.save()
            return None
        task = self._import_task(follow, environ)
        if task is None or task.get('status') not in FINAL:
            return None
        return glance_events.import_completion(
            task, image, self.clock(), legacy=False,
            default_backend=self.emitter.glance_settings.default_backend)

    def _import_task(self, follow, environ):
        """The import task, once the image's lock is gone: from the image's task list
        (readable by the image's owner), else GET /v2/tasks/{id} (admin)."""
        listing = self._get(environ, '/v2/images/%s/tasks' % follow['image'])[1]
        tasks = listing.get('tasks') if isinstance(listing, dict) else None
        if tasks:
            request_id = environ.get('openstack.request_id')
            for task in tasks:
                if follow['task'] and task.get('id') == follow['task']:
                    return task
            for task in tasks:
                if request_id and task.get('request_id') == request_id:
                    return task
            if not follow['task']:
                return max(tasks, key=lambda t: t.get('created_at') or '')
        if follow['task']:
            return self._get(environ, '/v2/tasks/%s' % follow['task'])[1]
        return None

    def _check_task(self, follow, environ):
        code, task = self._get(environ, '/v2/tasks/%s' % follow['task'])
        if code in (403, 404):
            self._give_up(follow['key'], 'the task is gone (%s)' % code)
            self.save()
            return None
        if task is None or task.get('status') not in FINAL:
            return None
        image = None
        image_id = (task.get('result') or {}).get('image_id') \
            if isinstance(task.get('result'), dict) else None
        if task['status'] == 'success' and image_id:
            image = self._get(environ, '/v2/images/%s' % image_id)[1]
        return glance_events.import_completion(
            task, image, self.clock(), legacy=True,
            default_backend=self.emitter.glance_settings.default_backend)

    def _envelopes(self, key: str, notes) -> list:
        out = []
        for index, note in enumerate(notes):
            if not self.emitter.filter.enabled(note.event_type):
                continue
            message_id = str(uuid.uuid5(_ID_NAMESPACE, '%s/follow/%d' % (key, index)))
            out.append((note.fmt, self.emitter.envelope(note, message_id)))
        return out

    # -- persistence ----------------------------------------------------------------------
    def save(self) -> None:
        """Write the follows (sender thread; a few hundred bytes per follow)."""
        path = self.path
        if path is None:
            return
        try:
            if not self.follows:
                journal_mod.remove(path)
                return
            tmp = path + '.tmp'
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, journal_mod.FILE_MODE)
            with os.fdopen(fd, 'w') as f:
                json.dump(list(self.follows.values()), f, default=str)
            os.replace(tmp, path)
        except OSError as exc:
            self.stats.add('journal_errors')
            self.stats.limited(logging.ERROR, 'follow-save', 'audit_notifier: cannot write '
                               '%s (%s); the imports followed now are not resumed after a '
                               'restart', path, exc.strerror or exc)

    def adopt(self) -> int:
        """Take over the follows of processes that are gone (their journal lock is
        free); returns how many were adopted.  Never raises."""
        if self.directory is None:
            return 0
        adopted = 0
        for path in glob.glob(os.path.join(glob.escape(self.directory), '*' + SUFFIX)):
            owner = os.path.basename(path)[:-len(SUFFIX)]
            if owner == self.owner:
                continue
            try:
                adopted += self._adopt_one(owner, path)
            except Exception:
                self.stats.limited(logging.ERROR, 'follow-adopt', 'audit_notifier: could not '
                                   'adopt the import follows in %s', path, exc_info=True)
        return adopted

    def _adopt_one(self, owner: str, path: str) -> int:
        lock = os.path.join(self.directory, owner + '.lock')
        fd = journal_mod.try_lock(lock)
        if fd is None:
            return 0                            # alive, or being adopted by another
        try:
            with open(path) as f:
                follows = json.load(f)
            count = 0
            for follow in follows if isinstance(follows, list) else ():
                if isinstance(follow, dict) and follow.get('key') and \
                        follow.get('kind') in ('import', 'task'):
                    follow['tries'] = 0
                    count += self.add(follow)
            LOG.info('audit_notifier: following %d import(s) left by process %s', count,
                     owner)
            journal_mod.remove(path)
            if not glob.glob(os.path.join(glob.escape(self.directory),
                                          glob.escape(owner) + '.*.journal')):
                journal_mod.remove(lock)
            return count
        finally:
            os.close(fd)
