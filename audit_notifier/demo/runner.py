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

"""``audit-notifier demo``: the audit filter at work on a local sample image API.

Builds the pipeline in code (:class:`~audit_notifier.demo.sample_app.DemoAuth`, the
audit filter, :class:`~audit_notifier.demo.sample_app.SampleImageAPI`: the fake
auth and its fixed tokens are never a paste factory a service could load), serves
it on 127.0.0.1 on an ephemeral port (wsgiref, one thread per request), makes a
scripted series of real HTTP calls (create, upload, download, update, a forbidden
delete, delete, a read of the deleted image) and prints, after each call, the
notifications it produced.  They are caught where oslo.messaging's ``log`` driver writes them (the
logger ``oslo.messaging.notification``); after each call the runner waits until
the server has closed the response (the moment the filter finishes a download)
and the filter's sender has sent everything, so every notification is shown under
the call that caused it.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import shutil
import socketserver
import sys
import tempfile
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from audit_notifier.demo import sample_app
from audit_notifier.render import changes, describe, is_cadf

NOTIFICATION_LOGGER = 'oslo.messaging.notification'
UPLOAD_SIZE = 3 * 1024 * 1024
_PRIORITY_ORDER = {'DEBUG': 0, 'INFO': 1, 'AUDIT': 2, 'WARN': 3, 'ERROR': 4, 'CRITICAL': 5,
                   'SAMPLE': 6}
WAIT = 30.0            # seconds: a safety net against hangs, not a measurement
# The audit filter's keys (as in a [filter:audit] paste section) the demo runs with;
# --set KEY=VALUE changes or adds others.
FILTER_KEYS = {'formats': 'cadf,glance', 'publisher_id': 'image.demo', 'trail': 'true'}
# Keys the demo owns: notifications must reach the log driver it reads, the journal
# is a fresh temporary directory (never a service's), and the configuration is an
# empty one of its own (a service's conf file never leaks in).
_OWN_KEYS = frozenset({'driver', 'journal_dir', 'spool_dir', 'oslo_config_config',
                       'oslo_config_project', 'oslo_config_program', 'oslo_config_file'})


class DemoError(Exception):
    """The demo cannot go on; the message is one line for the user."""


# -- the pipeline ---------------------------------------------------------------------

def filter_keys(settings: list[str] | tuple = ()) -> dict[str, str]:
    """The audit filter's keys: :data:`FILTER_KEYS` changed by ``KEY=VALUE`` items."""
    keys = dict(FILTER_KEYS)
    for item in settings:
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep or not key:
            raise DemoError('--set %s: write KEY=VALUE, e.g. --set formats=cadf' % item)
        if key in _OWN_KEYS:
            raise DemoError('--set %s: the demo sets %s itself (log driver, temporary '
                            'journal, empty configuration)' % (item, key))
        keys[key] = value.strip()
    return keys


def build(keys: dict[str, str], journal_dir: str):
    """(WSGI app, audit filter): DemoAuth -> audit filter -> sample image API."""
    from oslo_config import cfg

    from audit_notifier._config import ConfigError
    from audit_notifier.middleware import filter_factory
    conf = cfg.ConfigOpts()
    conf([], default_config_files=[], default_config_dirs=[])
    # The filter also logs a ConfigError (a service's log is where operators look);
    # here the one error line says it, not Python's last-resort handler as well.
    quiet = logging.NullHandler()
    logging.getLogger('audit_notifier').addHandler(quiet)
    try:
        audit = filter_factory({}, **keys, driver='log', journal_dir=journal_dir,
                               oslo_config_config=conf)(sample_app.SampleImageAPI())
    except ConfigError as exc:
        raise DemoError(_one_line(exc))
    finally:
        logging.getLogger('audit_notifier').removeHandler(quiet)
    return sample_app.DemoAuth(audit), audit


# -- catching notifications ---------------------------------------------------------------

class NotificationCapture(logging.Handler):
    """Collects the envelopes oslo.messaging's log driver writes, in order."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self._items: list[dict] = []
        self._items_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            envelope = json.loads(record.getMessage())
        except ValueError:
            envelope = {'event_type': record.name[len(NOTIFICATION_LOGGER) + 1:],
                        'priority': record.levelname, 'payload': record.getMessage()}
        with self._items_lock:
            self._items.append(envelope)

    def drain(self) -> list[dict]:
        with self._items_lock:
            items, self._items = self._items, []
        return items

    def install(self) -> None:
        logger = logging.getLogger(NOTIFICATION_LOGGER)
        self._saved = (logger.level, logger.propagate)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        logger.addHandler(self)

    def uninstall(self) -> None:
        logger = logging.getLogger(NOTIFICATION_LOGGER)
        logger.removeHandler(self)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]


# -- serving --------------------------------------------------------------------------------

class _Finished:
    """The response body, handed on; its close() marks the request as done."""

    def __init__(self, body, done):
        self._body = body
        self._done = done

    def __iter__(self):
        return iter(self._body)

    def close(self):
        try:
            close = getattr(self._body, 'close', None)
            if close is not None:
                close()
        finally:
            self._done()


class RequestTracker:
    """Outermost WSGI layer: knows when the server has closed every response."""

    def __init__(self, app):
        self.app = app
        self._active = 0
        self._cond = threading.Condition()

    def __call__(self, environ, start_response):
        with self._cond:
            self._active += 1
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._done()
            raise
        return _Finished(body, self._done)

    def _done(self):
        with self._cond:
            self._active -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):       # no access log on the terminal
        pass


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


# -- the scripted calls ------------------------------------------------------------------

class Call:
    def __init__(self, story, method, path, user, expect, body=None, content_type=None):
        self.story = story
        self.method = method
        self.path = path
        self.user = user
        self.expect = expect
        self.body = body
        self.content_type = content_type


def _token(user: str) -> str:
    for token, identity in sample_app.DEMO_TOKENS.items():
        if identity['user_name'] == user:
            return token
    raise DemoError('no demo token for user %s' % user)


def demo_data() -> bytes:
    """The uploaded image: UPLOAD_SIZE bytes, the same in every run."""
    return random.Random(20140417).randbytes(UPLOAD_SIZE)   # test data, not a secret  # nosec B311


def script(data: bytes) -> list[Call]:
    """The calls of the demo; ``{id}`` is the image created by the first one."""
    size = '%.1f MiB' % (len(data) / 1048576.0)
    patch = [{'op': 'replace', 'path': '/name', 'value': 'demo-cirros-0.6'},
             {'op': 'add', 'path': '/os_distro', 'value': 'cirros'},
             {'op': 'replace', 'path': '/visibility', 'value': 'community'}]
    create = {'name': 'demo-cirros', 'disk_format': 'raw', 'container_format': 'bare',
              'visibility': 'private', 'hw_architecture': 'x86_64'}
    return [
        Call('alice creates an image', 'POST', '/v2/images', 'alice', 201,
             json.dumps(create).encode(), 'application/json'),
        Call('alice uploads %s of image data' % size, 'PUT', '/v2/images/{id}/file',
             'alice', 204, data, 'application/octet-stream'),
        Call('alice downloads it', 'GET', '/v2/images/{id}/file', 'alice', 200),
        Call('alice renames it and makes it a community image', 'PATCH',
             '/v2/images/{id}', 'alice', 200, json.dumps(patch).encode(),
             'application/openstack-images-v2.1-json-patch'),
        Call('bob, of another project, tries to delete it', 'DELETE', '/v2/images/{id}',
             'bob', 403),
        Call('alice deletes it', 'DELETE', '/v2/images/{id}', 'alice', 204),
        Call('alice asks for it again', 'GET', '/v2/images/{id}', 'alice', 404),
    ]


def _request(port: int, call: Call, path: str):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=WAIT)
    try:
        headers = {'X-Auth-Token': _token(call.user), 'Accept': 'application/json',
                   'User-Agent': 'audit-notifier-demo'}
        if call.content_type:
            headers['Content-Type'] = call.content_type
        conn.request(call.method, path, body=call.body, headers=headers)
        response = conn.getresponse()
        md5 = hashlib.md5(usedforsecurity=False)
        kept, received = [], 0
        while True:
            chunk = response.read(256 * 1024)
            if not chunk:
                break
            received += len(chunk)
            md5.update(chunk)
            if received <= 1024 * 1024:
                kept.append(chunk)
        return response, b''.join(kept), received, md5.hexdigest()
    finally:
        conn.close()


# -- printing ---------------------------------------------------------------------------

def _one_line(exc: BaseException) -> str:
    text = ' '.join(str(exc).split())
    return text or type(exc).__name__


# -- the demo ----------------------------------------------------------------------------

def run(json_mode: bool = False, settings: list[str] | tuple = ()) -> int:
    """Run the demo; 0 on success, 1 (after one line on stderr) on failure.

    ``settings`` are ``KEY=VALUE`` items for the audit filter (``--set``).
    """
    out = sys.stdout
    capture = NotificationCapture()
    capture.install()
    try:
        _run(json_mode, settings, out, capture)
    except DemoError as exc:
        print('audit-notifier demo: error: %s' % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('audit-notifier demo: interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (demo | head): stop quietly, as other tools do.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    finally:
        capture.uninstall()
    return 0


def _run(json_mode: bool, settings, out, capture: NotificationCapture) -> None:
    started = time.monotonic()
    keys = filter_keys(settings)
    journal_dir = tempfile.mkdtemp(prefix='audit-notifier-demo-')
    audit = None
    try:
        app, audit = build(keys, journal_dir)
        _serve_and_call(json_mode, keys, app, audit, out, capture, started)
    finally:
        if audit is not None:
            _close(audit)
        shutil.rmtree(journal_dir, ignore_errors=True)


def _close(audit) -> None:
    audit.delivery.close()


def _serve_and_call(json_mode, keys, app, audit, out, capture, started) -> None:
    tracker = RequestTracker(app)
    try:
        server = _Server(('127.0.0.1', 0), _QuietHandler)
    except OSError as exc:
        raise DemoError('cannot listen on 127.0.0.1: %s' % _one_line(exc))
    server.set_app(tracker)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                              name='audit-notifier-demo-server', daemon=True)
    thread.start()

    def say(text=''):
        if not json_mode:
            print(text, file=out, flush=True)

    try:
        say('audit-notifier demo: an image API behind the audit filter at '
            'http://127.0.0.1:%d' % port)
        say('  pipeline: demo auth (stands in for auth_token) -> audit filter -> sample '
            'image API')
        say('  audit filter: %s driver=log' % ' '.join('%s=%s' % item
                                                       for item in keys.items()))
        say()
        data = demo_data()
        expected_md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        image_id = None
        envelopes: list[dict] = []
        calls = script(data)
        for number, call in enumerate(calls, 1):
            if '{id}' in call.path and image_id is None:
                raise DemoError('no image to work on: the create call returned no id')
            path_now = call.path.replace('{id}', image_id or '')
            try:
                response, body, received, md5 = _request(port, call, path_now)
            except (OSError, http.client.HTTPException) as exc:
                raise DemoError('call %d %s %s failed: %s' % (number, call.method, path_now,
                                                              _one_line(exc)))
            if response.status != call.expect:
                raise DemoError('call %d %s %s answered %d %s, expected %d' % (
                    number, call.method, path_now, response.status, response.reason,
                    call.expect))
            if number == 1:
                try:
                    image_id = json.loads(body)['id']
                except (ValueError, KeyError, TypeError):
                    raise DemoError('the create call returned no image id')
            if call.method == 'GET' and call.path.endswith('/file') and (
                    received != len(data) or md5 != expected_md5):
                raise DemoError('the download returned %d bytes (md5 %s), expected %d '
                                '(md5 %s)' % (received, md5, len(data), expected_md5))
            if not tracker.wait_idle(WAIT):
                raise DemoError('the server did not finish call %d within %d s'
                                % (number, WAIT))
            if not audit.delivery.flush(WAIT):
                raise DemoError('the audit filter still had events queued %d s after call %d'
                                % (WAIT, number))
            got = capture.drain()
            envelopes.extend(got)
            say('%d. %s: %s %s -> %d %s' % (number, call.story, call.method, path_now,
                                            response.status, response.reason))
            for envelope in got:
                if json_mode:
                    print(json.dumps(envelope), file=out, flush=True)
                else:
                    say('     ' + describe(envelope))
                    for line in changes(envelope):      # the PATCH's change record
                        say('       ' + line)
            if not got:
                say('     (no notification)')
        if json_mode:
            # The trail's final digests (audit.digest), published when the filter's
            # delivery stops: with them the output is a whole trail for verify.
            _close(audit)
            for envelope in capture.drain():
                print(json.dumps(envelope), file=out, flush=True)
        by_priority: dict[str, int] = {}
        for envelope in envelopes:
            by_priority[envelope.get('priority')] = by_priority.get(envelope.get('priority'),
                                                                    0) + 1
        cadf = sum(1 for e in envelopes if is_cadf(e))
        counters = audit.delivery.counters
        say()
        say('%d calls, %d notifications (%s): %d Glance-format, %d CADF; send errors %d, '
            'dropped %d; %.1f s' % (
                len(calls), len(envelopes),
                ', '.join('%d %s' % (n, p) for p, n in sorted(
                    by_priority.items(), key=lambda item: _PRIORITY_ORDER.get(item[0], 9))),
                len(envelopes) - cadf, cadf, counters.get('send_errors', 0),
                counters.get('dropped', 0), time.monotonic() - started))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT)
