"""``audit-notifier demo``: the audit filter at work on a local sample image API.

Loads ``demo-paste.ini`` (``demoauth audit sampleapp``), serves it on 127.0.0.1 on
an ephemeral port (wsgiref, one thread per request), makes a scripted series of
real HTTP calls (create, upload, download, update, a forbidden delete, delete, a
read of the deleted image) and prints, after each call, the notifications it
produced.  They are caught where oslo.messaging's ``log`` driver writes them (the
logger ``oslo.messaging.notification``); after each call the runner waits until
the server has closed the response (the moment the filter finishes a download)
and the filter's sender has sent everything, so every notification is shown under
the call that caused it.
"""

from __future__ import annotations

import configparser
import hashlib
import http.client
import json
import logging
import os
import random
import shutil
import socketserver
import sys
import sysconfig
import tempfile
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from audit_notifier.demo import sample_app

PASTE_NAME = 'demo-paste.ini'
NOTIFICATION_LOGGER = 'oslo.messaging.notification'
CADF_EVENT_URI = 'http://schemas.dmtf.org/cloud/audit/1.0/event'
UPLOAD_SIZE = 3 * 1024 * 1024
_PRIORITY_ORDER = {'DEBUG': 0, 'INFO': 1, 'AUDIT': 2, 'WARN': 3, 'ERROR': 4, 'CRITICAL': 5,
                   'SAMPLE': 6}
WAIT = 30.0            # seconds: a safety net against hangs, not a measurement
_HERE = os.path.dirname(os.path.abspath(__file__))


class DemoError(Exception):
    """The demo cannot go on; the message is one line for the user."""


# -- finding the paste file ---------------------------------------------------------------

def paste_candidates() -> list[str]:
    """Where demo-paste.ini is looked for, in order.

    1. the repository checkout: ``<package dir>/../etc/audit_notifier/``;
    2. where pbr installs ``[files] data_files``: ``<sys.prefix>/etc/audit_notifier/``,
       and the data directories of the default and user install schemes (``pip
       install --user`` puts it under ~/.local);
    3. the copy shipped inside the package (kept identical by a unit test).
    """
    package_root = os.path.dirname(os.path.dirname(_HERE))
    places = [os.path.join(package_root, 'etc', 'audit_notifier'),
              os.path.join(sys.prefix, 'etc', 'audit_notifier')]
    for scheme in (None, '%s_user' % os.name):
        try:
            data = sysconfig.get_path('data', scheme) if scheme else \
                sysconfig.get_path('data')
        except KeyError:
            continue
        places.append(os.path.join(data, 'etc', 'audit_notifier'))
    places.append(_HERE)
    seen, paths = set(), []
    for place in places:
        path = os.path.join(os.path.abspath(place), PASTE_NAME)
        if path not in seen:
            seen.add(path)
            paths.append(path)
    return paths


def find_paste(explicit: str | None = None) -> tuple[str, str]:
    """(absolute path, pipeline name) of the paste file to load."""
    if explicit:
        path, _, name = explicit.partition('#')
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(path):
            raise DemoError('no paste file at %s' % path)
        return path, name or 'main'
    for path in paste_candidates():
        if os.path.isfile(path):
            return path, 'main'
    raise DemoError('cannot find %s (looked in %s); give one with --paste PATH'
                    % (PASTE_NAME, ', '.join(os.path.dirname(p) for p in paste_candidates())))


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
    return random.Random(20140417).randbytes(UPLOAD_SIZE)


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

def describe(envelope: dict) -> str:
    """One compact line for a person: priority, event_type and the key fields."""
    payload = envelope.get('payload')
    head = '%-5s %-20s' % (envelope.get('priority'), envelope.get('event_type'))
    if isinstance(payload, str):
        text = ' '.join(payload.split())
        return '%s "%s"' % (head, text if len(text) <= 200 else text[:197] + '...')
    if not isinstance(payload, dict):
        return '%s %r' % (head, payload)
    if payload.get('typeURI') == CADF_EVENT_URI:
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


def _is_cadf(envelope: dict) -> bool:
    payload = envelope.get('payload')
    return isinstance(payload, dict) and payload.get('typeURI') == CADF_EVENT_URI


def _one_line(exc: BaseException) -> str:
    text = ' '.join(str(exc).split())
    return text or type(exc).__name__


def _pipeline_names(path: str, name: str) -> str | None:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
        return ' '.join(parser.get('pipeline:%s' % name, 'pipeline').split())
    except (configparser.Error, OSError):
        return None


def _find_audit(app):
    from audit_notifier.middleware import AuditMiddleware
    node, seen = app, set()
    while node is not None and id(node) not in seen:
        if isinstance(node, AuditMiddleware):
            return node
        seen.add(id(node))
        node = (getattr(node, '_app', None) or getattr(node, 'app', None) or
                getattr(node, 'application', None))
    return None


# -- the demo ----------------------------------------------------------------------------

def run(json_mode: bool = False, paste: str | None = None) -> int:
    """Run the demo; 0 on success, 1 (after one line on stderr) on failure."""
    out = sys.stdout
    capture = NotificationCapture()
    capture.install()
    try:
        _run(json_mode, paste, out, capture)
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


def _run(json_mode: bool, paste: str | None, out, capture: NotificationCapture) -> None:
    started = time.monotonic()
    path, name = find_paste(paste)
    journal_dir = tempfile.mkdtemp(prefix='audit-notifier-demo-')
    audit = None
    try:
        try:
            from paste.deploy import loadapp
            app = loadapp('config:%s' % path, name=name,
                          global_conf={'demo_journal_dir': journal_dir})
        except Exception as exc:
            raise DemoError('cannot load pipeline %r from %s: %s'
                            % (name, path, _one_line(exc)))
        audit = _find_audit(app)
        if audit is None:
            raise DemoError('pipeline %r in %s has no audit_notifier filter' % (name, path))
        used = audit.delivery.directory
        if used is not None and os.path.realpath(used) != os.path.realpath(journal_dir):
            raise DemoError('the audit filter in %s journals to %s; add "journal_dir = '
                            '%%(demo_journal_dir)s" to its section so the demo keeps away '
                            'from the journal of a service' % (path, used))
        _serve_and_call(json_mode, path, name, app, audit, out, capture, started)
    finally:
        if audit is not None:
            _close(audit)
        shutil.rmtree(journal_dir, ignore_errors=True)


def _close(audit) -> None:
    audit.delivery.close()


def _serve_and_call(json_mode, path, name, app, audit, out, capture, started) -> None:
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
        settings = audit.settings
        say('audit-notifier demo: an image API behind the audit filter at '
            'http://127.0.0.1:%d' % port)
        say('  pipeline %s (%s)' % (_pipeline_names(path, name) or name, path))
        drivers = []
        for publisher in audit.delivery.leaf_factory().values():
            for driver in getattr(publisher, 'drivers', None) or []:
                if driver not in drivers:
                    drivers.append(driver)
        say('  audit filter: formats=%s driver=%s publisher_id=%s' % (
            ','.join(settings.formats), ','.join(drivers) or '?',
            audit.emitter.publisher_id))
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
            if not got:
                say('     (no notification)')
        if not envelopes:
            raise DemoError('no notification reached the log driver: set driver = log in '
                            'the audit filter section of %s' % path)
        by_priority: dict[str, int] = {}
        for envelope in envelopes:
            by_priority[envelope.get('priority')] = by_priority.get(envelope.get('priority'),
                                                                    0) + 1
        cadf = sum(1 for e in envelopes if _is_cadf(e))
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
