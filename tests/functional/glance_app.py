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

"""Run the REAL Glance 33 API in-process (no sockets) for functional tests.

This is a reusable helper module, not a test file.  It loads the upstream
Glance WSGI application exactly as a WSGI server would
(``glance.common.wsgi_app.init_app()``), with:

* SQLite + the ``file`` store, everything under one ``base_dir``;
* the real ``keystonemiddleware.auth_token`` filter (``delay_auth_decision =
  true``) whose ``fetch_token`` is replaced by
  ``keystonemiddleware.fixture.AuthTokenFixture``: the static tokens in
  :data:`TOKENS` are accepted, everything else is ``X-Identity-Status:
  Invalid`` (then 401 from Glance's context middleware);
* optionally the project's ``audit_notifier`` paste filter right after
  ``authtoken``;
* oslo.messaging's ``test`` notification driver, so every notification
  (Glance's own, publisher ``image.localhost``, and anything else that uses
  the global config, e.g. the audit middleware) is appended synchronously to
  ``oslo_messaging.notify._impl_test.NOTIFICATIONS``.

Pipeline (``[paste_deploy] flavor = functest``)::

    cors http_proxy_to_wsgi versionnegotiation osprofiler authtoken [audit] context rootapp

Typical use (see ``conftest.py``)::

    env = GlanceEnv().start(tmp_dir)                 # ~2.5 s, once per session
    r = env.request('POST', '/v2/images', body={'name': 'x', ...})
    assert r.status == 201, r.text
    env.glance_own_notifications()                   # envelopes from Glance itself

ONE GLANCE PER PROCESS.  Glance keeps its whole configuration in the global
``oslo_config.cfg.CONF`` (parsed once by ``init_app``), registers glance_store
options and stores globally, creates a global DB engine and a global task
thread pool.  So :meth:`GlanceEnv.start` may be called only once per process
(use a session-scoped fixture).  To get *another pipeline* (e.g. a different
audit filter configuration) in the same process use
:meth:`GlanceEnv.load_app`, which writes another paste ini and builds a new
WSGI app on top of the same config/DB/stores.  Never call ``CONF.reset()`` /
``CONF.clear()`` and never use ``oslo_config.fixture.Config`` on the global
``cfg.CONF`` while the Glance app is in use: ``reset()`` clears the parsed
config files and Glance silently falls back to defaults (``/etc/glance``,
no DB, ...).  Use :meth:`GlanceEnv.override` for temporary option changes.

Logging: ``init_app`` calls ``oslo_log.log.setup``, which REPLACES the root
logger's handlers.  The generated config sends all logs to
``<base_dir>/glance-api.log`` (``use_stderr = False``) to keep test output
clean; look there when a call unexpectedly returns 500.
"""

import contextlib
import datetime
import io
import json as jsonlib
import os
import subprocess
import sys
import threading
import time

import webob
import webob.headers

try:
    from tests.support.peer import (Response, all_notifications, reset_notifications,
                                    wait_for_notification as _wait_for_notification)
    from tests.support.peer import find_node, ini_escape as _ini_escape
except ImportError:          # run as a script: put the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    from tests.support.peer import (Response, all_notifications, reset_notifications,
                                    wait_for_notification as _wait_for_notification)
    from tests.support.peer import find_node, ini_escape as _ini_escape


GLANCE_PUBLISHER_ID = 'image.localhost'
# The one port web-download and legacy task imports may read from (import_filtering_opts).
IMPORT_SOURCE_PORT = 18080
PASTE_FLAVOR = 'functest'
PASTE_APP_NAME = 'glance-api'

#: token id -> (user_id, project_id, roles); same as shared/peers/glance_serve.py
TOKENS = {
    'admin-token': ('u-admin', 'p-demo', ['admin', 'member', 'reader']),
    'member-token': ('u-member', 'p-demo', ['member', 'reader']),
    'other-token': ('u-other', 'p-other', ['member', 'reader']),
    'reader-token': ('u-reader', 'p-demo', ['reader']),
}

BASE_PIPELINE = ('cors http_proxy_to_wsgi versionnegotiation osprofiler '
                 'authtoken {audit}context rootapp')

_LOCK = threading.Lock()
_ACTIVE_ENV = None  # the one GlanceEnv started in this process


# --------------------------------------------------------------------------
# notifications (oslo.messaging "test" driver)
# --------------------------------------------------------------------------


def glance_own_notifications():
    """Envelopes emitted by Glance itself (publisher_id ``image.localhost``)."""
    return [m for m in all_notifications()
            if m.get('publisher_id') == GLANCE_PUBLISHER_ID]


def other_notifications():
    """Envelopes NOT emitted by Glance itself (e.g. the audit middleware)."""
    return [m for m in all_notifications()
            if m.get('publisher_id') != GLANCE_PUBLISHER_ID]


def wait_for_notification(predicate, timeout=10.0, interval=0.02, source=None):
    """Poll until ``predicate(envelope)`` holds for one of the service's own
    notifications (``predicate`` may be an event_type string)."""
    return _wait_for_notification(predicate, timeout, interval, source or glance_own_notifications)


# --------------------------------------------------------------------------
# responses
# --------------------------------------------------------------------------


class StreamingResponse(object):
    """A WSGI response whose body has NOT been consumed yet (PEP 3333).

    ``read_chunks(n)`` pulls ``n`` chunks from the app's iterable, ``close()``
    calls the iterable's ``close()`` exactly like a WSGI server does when the
    client goes away.  Use as a context manager to always close.
    """

    def __init__(self, environ, result, captured, written):
        self.environ = environ
        self._result = result
        self._iter = iter(result)
        self._captured = captured
        self._buffer = list(written)  # data passed to the legacy write()
        self.closed = False
        self.exhausted = False
        if 'status' not in captured:
            # generator apps call start_response on the first next()
            self._pull()

    def _pull(self):
        try:
            self._buffer.append(next(self._iter))
            return True
        except StopIteration:
            self.exhausted = True
            return False

    @property
    def status_line(self):
        return self._captured['status']

    @property
    def status(self):
        return int(self.status_line.split(' ', 1)[0])

    @property
    def header_list(self):
        return list(self._captured['headers'])

    @property
    def headers(self):
        return webob.headers.ResponseHeaders(self.header_list)

    def read_chunks(self, n):
        """Return the next ``n`` chunks (fewer if the body ends)."""
        chunks = []
        while len(chunks) < n:
            if not self._buffer and not self._pull():
                break
            chunks.append(self._buffer.pop(0))
        return chunks

    def read_all(self):
        chunks = []
        while True:
            got = self.read_chunks(64)
            if not got:
                return b''.join(chunks)
            chunks.extend(got)

    def close(self):
        if not self.closed:
            self.closed = True
            close = getattr(self._result, 'close', None)
            if close is not None:
                close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PatternStream(io.RawIOBase):
    """A read-only file of ``size`` deterministic pseudo-random bytes.

    Streams a large upload without building it in memory twice; exposes
    ``md5``/``sha512`` hexdigests of what was read so far.
    """

    def __init__(self, size, seed=0, block=1024 * 1024):
        import hashlib
        import random
        self.size = size
        self._block = random.Random(seed).randbytes(block)
        self._pos = 0
        self._md5 = hashlib.md5()
        self._sha512 = hashlib.sha512()

    def readable(self):
        return True

    def __len__(self):
        return self.size

    def read(self, n=-1):
        left = self.size - self._pos
        if n is None or n < 0 or n > left:
            n = left
        out = bytearray()
        while len(out) < n:
            off = (self._pos + len(out)) % len(self._block)
            out += self._block[off:off + n - len(out)]
        data = bytes(out)
        self._pos += len(data)
        self._md5.update(data)
        self._sha512.update(data)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    @property
    def md5(self):
        return self._md5.hexdigest()

    @property
    def sha512(self):
        return self._sha512.hexdigest()


# --------------------------------------------------------------------------
# the environment
# --------------------------------------------------------------------------


def _paste_ini(audit_filter, flavor=PASTE_FLAVOR):
    audit = ''
    audit_section = ''
    if audit_filter is not None:
        audit = 'audit '
        lines = ['[filter:audit]',
                 'paste.filter_factory = audit_notifier.middleware:filter_factory']
        for key, value in dict(audit_filter).items():
            if key == 'paste.filter_factory':
                lines[1] = 'paste.filter_factory = %s' % value
                continue
            lines.append('%s = %s' % (key, _ini_escape(value)))
        audit_section = '\n'.join(lines) + '\n'
    pipeline = BASE_PIPELINE.format(audit=audit)
    return """\
# generated by tests/functional/glance_app.py
[composite:{app}-{flavor}]
paste.composite_factory = glance.api:root_app_factory
/: api
/healthcheck: healthcheck

[composite:api]
paste.composite_factory = glance.api:pipeline_factory
{flavor} = {pipeline}

[composite:rootapp]
paste.composite_factory = glance.api:root_app_factory
/: apiversions
/v2: apiv2app

[app:apiversions]
paste.app_factory = glance.api.versions:create_resource

[app:apiv2app]
paste.app_factory = glance.api.v2.router:API.factory

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory
backends = disable_by_file
disable_by_file_path = /nonexistent/healthcheck_disable

[filter:versionnegotiation]
paste.filter_factory = glance.api.middleware.version_negotiation:VersionNegotiationFilter.factory

[filter:context]
paste.filter_factory = glance.api.middleware.context:ContextMiddleware.factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true

{audit_section}
[filter:osprofiler]
paste.filter_factory = osprofiler.web:WsgiMiddleware.factory

[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = glance
oslo_config_program = glance-api

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware:HTTPProxyToWSGI.factory
""".format(app=PASTE_APP_NAME, flavor=flavor, pipeline=pipeline,
           audit_section=audit_section)


def install_auth_fixture():
    """keystonemiddleware's AuthTokenFixture with the TOKENS, valid for a year (the
    default 1 h would expire in long sessions); it patches AuthProtocol.fetch_token
    until its cleanUp()."""
    from keystonemiddleware import fixture as ksm_fixture
    fx = ksm_fixture.AuthTokenFixture()
    fx.setUp()
    expires = (datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) +
               datetime.timedelta(days=365))
    for tok, (user, project, roles) in TOKENS.items():
        fx.add_token_data(token_id=tok, expires=expires, user_id=user, user_name=user,
                          user_domain_id='default', project_id=project,
                          project_name=project, project_domain_id='default',
                          role_list=roles)
    return fx


def store_sections(base: str) -> dict:
    """glance-api.conf sections of a file store (and Glance's staging and tasks
    stores) under ``base``."""
    return {
        'glance_store': {'default_backend': 'fs'},
        'fs': {'filesystem_store_datadir': os.path.join(base, 'images') + '/'},
        'os_glance_staging_store': {
            'filesystem_store_datadir': os.path.join(base, 'staging') + '/'},
        'os_glance_tasks_store': {
            'filesystem_store_datadir': os.path.join(base, 'tasks') + '/'},
    }


def _api_conf(base, paste_file, conf_overrides=None):
    sections = {
        'DEFAULT': {
            'debug': 'False',
            'use_stderr': 'False',
            'log_file': os.path.join(base, 'glance-api.log'),
            'enabled_backends': 'fs:file',
            # must be set (sqlite_migration); also used as the stage host
            'worker_self_reference_url': 'http://127.0.0.1:9292',
            'image_cache_dir': os.path.join(base, 'cache'),
            'enabled_import_methods': '[glance-direct,web-download]',
        },
        'database': {
            # A writer waits up to 60 s for another's lock (pysqlite's default is
            # 5 s), as on a server database; see _sqlite_writers_queue.
            'connection': 'sqlite:///%s?timeout=60' % os.path.join(base, 'glance.sqlite'),
        },
        **store_sections(base),
        'paste_deploy': {'flavor': PASTE_FLAVOR, 'config_file': paste_file},
        'oslo_messaging_notifications': {
            'driver': 'test',
            # never touch a broker: the test driver ignores the transport
            'transport_url': 'fake:/',
        },
        'keystone_authtoken': {
            # never contacted: fetch_token is replaced by AuthTokenFixture
            'www_authenticate_uri': 'http://127.0.0.1:5000/v3',
            'auth_url': 'http://127.0.0.1:5000/v3',
            'auth_type': 'password',
            'username': 'glance',
            'password': 'unused',
            'project_name': 'service',
            'user_domain_name': 'Default',
            'project_domain_name': 'Default',
        },
        'oslo_policy': {
            'policy_file': os.path.join(base, 'policy.yaml'),
            'enforce_new_defaults': 'True',
            'enforce_scope': 'True',
        },
        'import_filtering_opts': {
            'allowed_schemes': '[http,https]',
            'allowed_hosts': '[127.0.0.1]',
            'allowed_ports': '[%d]' % IMPORT_SOURCE_PORT,
        },
    }
    for section, values in (conf_overrides or {}).items():
        sections.setdefault(section, {}).update(
            {k: str(v) for k, v in values.items()})
    out = ['# generated by tests/functional/glance_app.py']
    for section, values in sections.items():
        out.append('[%s]' % section)
        out.extend('%s = %s' % (k, v) for k, v in values.items())
        out.append('')
    return '\n'.join(out)


_QUEUED = []


def _sqlite_writers_queue():
    """Begin every SQLite transaction of this process ``BEGIN IMMEDIATE``.

    oslo.db begins Glance's transactions with a plain (deferred) ``BEGIN``: one
    that read first and writes later fails at once with "database is locked"
    when another connection committed meanwhile (SQLite's snapshot rule, which
    no busy timeout waits out).  A busy machine widens that window: Glance's
    own import thread and an API call writing the same image then fail with a
    500 (seen under a CPU hog).  Taking the write lock at BEGIN makes them wait
    their turn instead (the URL's ``timeout``), as row locks on Glance's
    production databases (MySQL, PostgreSQL) do.  The test process has no
    other SQLite engine.  Installed once per process.
    """
    if _QUEUED:
        return
    import sqlalchemy

    def immediate(conn, cursor, statement, parameters, context, executemany):
        if statement == 'BEGIN' and conn.dialect.name == 'sqlite':
            statement = 'BEGIN IMMEDIATE'
        return statement, parameters

    sqlalchemy.event.listen(sqlalchemy.engine.Engine, 'before_cursor_execute', immediate,
                            retval=True)
    _QUEUED.append(immediate)


class GlanceEnv(object):
    """The real Glance API app, loaded in-process.  One per process."""

    def __init__(self):
        self.base_dir = None
        self.app = None
        self.conf_file = None
        self.paste_file = None
        self.audit_filter = None
        self.auth_fixture = None
        self.timings = {}
        self._extra_apps = 0

    # ---------------------------------------------------------------- setup
    def start(self, base_dir, audit_filter=None, conf_overrides=None):
        """Write config, sync the DB, install the auth fixture, load the app.

        :param base_dir: an (empty) directory that holds everything.
        :param audit_filter: None -> no audit filter; a dict -> add
            ``[filter:audit]`` (``audit_notifier.middleware:filter_factory``)
            with these items right after ``authtoken``.
        :param conf_overrides: ``{section: {key: value}}`` merged into the
            generated glance-api.conf (e.g. ``{'DEFAULT':
            {'disabled_notifications': 'image.send'}}``).
        :returns: self
        """
        global _ACTIVE_ENV
        with _LOCK:
            if _ACTIVE_ENV is not None:
                raise RuntimeError(
                    'a Glance app is already loaded in this process (base_dir '
                    '%s): Glance config is process-global, use one '
                    'session-scoped GlanceEnv and GlanceEnv.load_app() for '
                    'other pipelines' % _ACTIVE_ENV.base_dir)
            t0 = time.perf_counter()
            base = os.path.abspath(str(base_dir))
            self.base_dir = base
            for sub in ('etc', 'images', 'staging', 'tasks', 'cache'):
                os.makedirs(os.path.join(base, sub), exist_ok=True)
            etc = os.path.join(base, 'etc')
            self.conf_file = os.path.join(etc, 'glance-api.conf')
            self.paste_file = os.path.join(etc, 'glance-api-paste.ini')
            self.audit_filter = audit_filter
            with open(self.paste_file, 'w') as f:
                f.write(_paste_ini(audit_filter))
            with open(self.conf_file, 'w') as f:
                f.write(_api_conf(base, self.paste_file, conf_overrides))
            open(os.path.join(base, 'policy.yaml'), 'a').close()

            self._db_sync()
            self._sqlite_wal()
            _sqlite_writers_queue()
            t1 = time.perf_counter()
            self._install_auth_fixture()
            self.app = self._init_app(etc)
            t2 = time.perf_counter()
            self.timings = {'db_sync': t1 - t0, 'init_app': t2 - t1,
                            'total': t2 - t0}
            _ACTIVE_ENV = self
        return self

    def _db_sync(self):
        # a subprocess: glance-manage parses the global CONF itself
        cmd = [sys.executable, '-m', 'glance.cmd.manage',
               '--config-file', self.conf_file, 'db_sync']
        proc = subprocess.run(cmd, cwd=self.base_dir, capture_output=True,
                              text=True, timeout=300)
        with open(os.path.join(self.base_dir, 'db_sync.log'), 'w') as f:
            f.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise RuntimeError('glance-manage db_sync failed (%d):\n%s'
                               % (proc.returncode, proc.stderr[-3000:]))

    def _sqlite_wal(self):
        """Put the SQLite DB in WAL mode (persistent in the file).

        Production Glance runs on MySQL/PostgreSQL, where readers never block
        writers.  SQLite's default rollback journal makes a read transaction of
        one thread (e.g. a GET served while an import task runs) fail another
        thread's write at once with "database is locked"; Glance's import task
        then dies silently in its thread pool.  WAL gives SQLite the same
        reader/writer concurrency.
        """
        import sqlite3
        conn = sqlite3.connect(os.path.join(self.base_dir, 'glance.sqlite'))
        try:
            mode = conn.execute('PRAGMA journal_mode=WAL').fetchone()[0]
        finally:
            conn.close()
        if mode.lower() != 'wal':
            raise RuntimeError('could not switch glance.sqlite to WAL (%s)' % mode)

    def _install_auth_fixture(self):
        self.auth_fixture = install_auth_fixture()

    def _init_app(self, etc):
        from glance.common import wsgi_app
        old = os.environ.get('OS_GLANCE_CONFIG_DIR')
        os.environ['OS_GLANCE_CONFIG_DIR'] = etc
        try:
            return wsgi_app.init_app()
        finally:
            if old is None:
                os.environ.pop('OS_GLANCE_CONFIG_DIR', None)
            else:
                os.environ['OS_GLANCE_CONFIG_DIR'] = old

    def load_app(self, audit_filter=None, name=None):
        """Build ANOTHER WSGI app (new paste ini) on the same Glance config.

        Same DB, stores and notification capture; only the paste pipeline
        differs (``audit_filter`` as in :meth:`start`).  Returns the app; pass
        it as ``app=`` to :meth:`request` / :meth:`open`.
        """
        from glance.common import config as glance_config
        self._extra_apps += 1
        name = name or 'extra%d' % self._extra_apps
        path = os.path.join(self.base_dir, 'etc',
                            'glance-api-paste-%s.ini' % name)
        with open(path, 'w') as f:
            f.write(_paste_ini(audit_filter))
        return glance_config.load_paste_app(PASTE_APP_NAME, conf_file=path)

    def stop(self):
        """Remove the auth fixture and forget this env (the Glance config,
        DB engine and thread pool stay in the process)."""
        global _ACTIVE_ENV
        if self.auth_fixture is not None:
            self.auth_fixture.cleanUp()
            self.auth_fixture = None
        with _LOCK:
            if _ACTIVE_ENV is self:
                _ACTIVE_ENV = None

    @contextlib.contextmanager
    def override(self, name, value, group=None):
        """Temporarily override one Glance config option (global CONF)."""
        from oslo_config import cfg
        cfg.CONF.set_override(name, value, group=group)
        try:
            yield
        finally:
            cfg.CONF.clear_override(name, group=group)

    # ----------------------------------------------------------- requests
    def environ(self, method, path, token='admin-token', body=None,
                headers=None, content_type=None, content_length=None,
                chunked=False, accept='application/json',
                remote_addr='127.0.0.1', extra_environ=None):
        """Build a PEP 3333 environ (via ``webob.Request.blank``).

        ``body``: None, bytes, str, a dict/list (JSON-encoded; content type
        defaults to application/json) or a readable file-like object that is
        streamed as ``wsgi.input``.  A file-like body uses ``content_length``
        (or ``len(body)``) as CONTENT_LENGTH, or, with ``chunked=True`` or no
        known length, ``Transfer-Encoding: chunked`` with
        ``wsgi.input_terminated`` (what cheroot/gunicorn give the app).
        """
        hdrs = {}
        if accept:
            hdrs['Accept'] = accept
        if token is not None:
            hdrs['X-Auth-Token'] = token
        hdrs.update(headers or {})
        req = webob.Request.blank(path, method=method, headers=hdrs)
        env = req.environ
        env['REMOTE_ADDR'] = remote_addr
        if body is not None:
            if isinstance(body, (dict, list)):
                body = jsonlib.dumps(body).encode('utf-8')
                content_type = content_type or 'application/json'
            elif isinstance(body, str):
                body = body.encode('utf-8')
            if isinstance(body, (bytes, bytearray, memoryview)):
                body = bytes(body)
                env['wsgi.input'] = io.BytesIO(body)
                env['CONTENT_LENGTH'] = str(len(body))
            else:  # file-like: stream it
                env['wsgi.input'] = body
                if content_length is None and not chunked:
                    try:
                        content_length = len(body)
                    except TypeError:
                        content_length = None
                if content_length is None or chunked:
                    env.pop('CONTENT_LENGTH', None)
                    env['HTTP_TRANSFER_ENCODING'] = 'chunked'
                    env['wsgi.input_terminated'] = True
                else:
                    env['CONTENT_LENGTH'] = str(content_length)
        if content_type is not None:
            env['CONTENT_TYPE'] = content_type
        if extra_environ:
            env.update(extra_environ)
        return env

    def open(self, method, path, app=None, **kw):
        """Call the WSGI app (PEP 3333) and return a :class:`StreamingResponse`
        without consuming the body (e.g. for interrupted downloads)."""
        app = app or self.app
        env = self.environ(method, path, **kw)
        captured = {}
        written = []

        def start_response(status, headers, exc_info=None):
            if exc_info is not None and 'status' in captured:
                raise exc_info[1].with_traceback(exc_info[2])
            captured['status'] = status
            captured['headers'] = headers
            return written.append

        result = app(env, start_response)
        return StreamingResponse(env, result, captured, written)

    def request(self, method, path, token='admin-token', body=None,
                headers=None, app=None, **kw):
        """Call the app in-process, consume and close the body.

        Returns :class:`Response` (``status`` int, ``headers`` case-insensitive,
        ``body`` bytes, ``json``, ``text``).  See :meth:`environ` for args.
        """
        resp = self.open(method, path, app=app, token=token, body=body,
                         headers=headers, **kw)
        try:
            data = resp.read_all()
        finally:
            resp.close()
        return Response(resp.status_line, resp.header_list, data)

    def interrupted_download(self, image_id, chunks=2, token='admin-token',
                             headers=None, app=None):
        """GET /v2/images/{id}/file, read ``chunks`` chunks, then close() the
        iterable (a client disconnect).  Returns (StreamingResponse, bytes)."""
        resp = self.open('GET', '/v2/images/%s/file' % image_id, app=app,
                         token=token, headers=headers)
        try:
            data = b''.join(resp.read_chunks(chunks))
        finally:
            resp.close()
        return resp, data

    # ------------------------------------------------------ notifications
    all_notifications = staticmethod(all_notifications)
    glance_own_notifications = staticmethod(glance_own_notifications)
    other_notifications = staticmethod(other_notifications)
    reset_notifications = staticmethod(reset_notifications)
    wait_for_notification = staticmethod(wait_for_notification)


def get_env():
    """The GlanceEnv started in this process, or None."""
    return _ACTIVE_ENV


# --------------------------------------------------------------------------
# the audit filter inside a loaded pipeline
# --------------------------------------------------------------------------

def find_audit_middleware(app):
    """The ``audit_notifier.middleware.AuditMiddleware`` instance inside a
    pipeline built by :meth:`GlanceEnv.load_app`.  Raises LookupError."""
    from audit_notifier.middleware import AuditMiddleware
    return find_node(app, AuditMiddleware)


class AuditPipeline(object):
    """One Glance pipeline with audit_notifier after authtoken.

    ``publisher_id`` must be unique per pipeline: it tells this filter's
    notifications apart from Glance's own (``image.localhost``) and from other
    pipelines' in the shared oslo.messaging test-driver list.
    """

    def __init__(self, env, audit_filter, name=None):
        if not audit_filter.get('publisher_id'):
            raise ValueError('give every audit pipeline its own publisher_id')
        self.env = env
        self.publisher_id = audit_filter['publisher_id']
        self.audit_filter = dict(audit_filter)
        self.app = env.load_app(audit_filter=self.audit_filter, name=name)
        self.mw = find_audit_middleware(self.app)
        assert self.mw.emitter.publisher_id == self.publisher_id

    def flush(self):
        """Wait until the sender thread has published everything submitted."""
        assert self.mw.delivery.flush(30.0), 'audit sender did not drain'

    def ours(self):
        """This filter's notification envelopes, oldest first."""
        return [m for m in all_notifications()
                if m.get('publisher_id') == self.publisher_id]

    def request(self, method, path, **kw):
        return self.env.request(method, path, app=self.app, **kw)

    def interrupted_download(self, image_id, **kw):
        return self.env.interrupted_download(image_id, app=self.app, **kw)


@contextlib.contextmanager
def import_source(payload: bytes):
    """A loopback HTTP server Glance's imports may read from: ``payload`` for every
    path, 404 for a path containing ``missing``.  Yields its base URL."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if 'missing' in self.path:
                self.send_response(404)
                self.send_header('Content-Length', '0')
                self.end_headers()
                return
            self.send_response(200)
            self.send_header('Content-Type', 'application/octet-stream')
            self.send_header('Content-Length', str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', IMPORT_SOURCE_PORT), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:%d/' % IMPORT_SOURCE_PORT
    finally:
        server.shutdown()
        server.server_close()
