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

"""Run the REAL Magnum 23 API in-process (no sockets) for functional tests.

This is a reusable helper module, not a test file.  It loads Magnum's pecan
app from a generated ``api-paste.ini`` exactly as ``magnum.wsgi.api`` does
(``service.prepare_service`` + ``paste.deploy.loadapp``), with:

* SQLite under ``base_dir``.  Magnum's alembic migrations cannot run on
  SQLite (ALTER of constraints), so the schema comes from
  ``models.Base.metadata.create_all`` + an alembic ``stamp`` of head (done
  in-process without alembic's ``env.py``, which would re-configure logging),
  and the file is switched to ``journal_mode=WAL`` (the in-process conductor
  threads and the API thread otherwise hit "database is locked").
* ``transport_url = fake:/`` and **Magnum's conductor RPC endpoints running
  in this process** on that transport (oslo.messaging threading executor), so
  cluster create/update/resize/delete really run through
  ``magnum.conductor.handlers.cluster_conductor`` with the test-only fake
  driver and Magnum emits its OWN CADF notifications
  (``magnum.cluster.create|update|delete``, publisher
  ``container-infra.localhost``).
* ``[oslo_messaging_notifications] driver = test``: every notification
  (Magnum's own, the audit middleware's, ...) is appended synchronously to
  ``oslo_messaging.notify._impl_test.NOTIFICATIONS``.
* The real authtoken filter (Magnum's ``AuthTokenMiddleware``, public routes
  ``/`` and ``/v1``) with ``keystonemiddleware.fixture.AuthTokenFixture``:
  :data:`TOKENS` are full ``keystoneauth1.fixture.V3Token`` tokens carrying a
  service catalog (``image`` -> :data:`GLANCE_URL`), because Magnum builds an
  ``AccessInfoPlugin`` from ``keystone.token_info`` for its openstacksdk
  calls.  Magnum does NOT use ``delay_auth_decision``: missing/bad tokens get
  401 from authtoken itself, so a filter placed after authtoken never sees
  them.
* The test-only cluster driver ``fake_magnum_driver`` (this directory),
  registered WITHOUT pip: a generated ``fake_magnum_driver-0.0.1.dist-info``
  with entry point ``magnum.drivers: fake_k8s`` is put on ``sys.path`` (see
  :func:`register_fake_driver`), which both ``importlib.metadata`` (Magnum's
  ``Driver.load_entry_points``) and stevedore (``DriverManager``) honour.

Pipeline (``[composite:main]`` ``/`` -> ``api``; ``/healthcheck``)::

    cors http_proxy_to_wsgi request_id osprofiler authtoken [audit] api_v1

IMAGE VALIDATION: A STAND-IN GLANCE, IN-PROCESS, NO SOCKET.
Magnum validates a cluster template's ``image_id`` through openstacksdk
(``find_image`` -> ``GET /v2/images/{id}``; twice per template create).  The
real Glance app (tests/functional/glance_app.py) cannot share the process
with Magnum: both keep their whole configuration in the one global
``oslo_config.cfg.CONF`` and re-parse it at start-up (``CONF(args,
project=...)`` drops the other service's config files; both read
``[DEFAULT]`` / ``[database] connection`` / ``[oslo_messaging_*]`` from it).
So this harness answers Magnum's image GETs with :class:`FakeGlance`, a tiny
WSGI app serving the images in :data:`IMAGES` (``os_distro=ubuntu``; one
without ``os_distro``), and routes ``http://glance.magnum-test.invalid``
to it through a ``requests`` transport adapter (``requests.Session.
get_adapter`` patched for that URL prefix only) -- no socket, no thread.
Every request it gets is kept in ``env.glance_requests``.

ONE MAGNUM PER PROCESS (and not together with the Glance harness): Magnum's
config is the global ``cfg.CONF``, its DB facade, RPC transport and notifier
are module globals.  :meth:`MagnumEnv.start` may run once per process (use the
session fixture ``magnum_env``); :meth:`MagnumEnv.load_app` builds another
pipeline (e.g. other ``[filter:audit]`` items) on the same config/DB/
conductor.  Run ``tests/magnum`` in its own pytest process (``pytest
tests/magnum``), not in the same process as tests that use ``glance_env``.

ASYNC CONDUCTOR: ``POST /v1/clusters`` and friends return 202 after an RPC
*cast*; the conductor handles it in another thread.  Call
:meth:`MagnumEnv.wait_idle` (counts messages sent to the conductor topic
until their dispatch returns) before looking at Magnum's notifications.
Cluster statuses stay ``*_IN_PROGRESS`` (as with Heat) until
:meth:`MagnumEnv.sync_cluster_status` runs Magnum's periodic
``ClusterUpdateJob`` once (admin context, like the real periodic task); the
fake driver then reports ``*_COMPLETE`` and Magnum sends its
``outcome: success`` notification (and destroys ``DELETE_COMPLETE``
clusters).  :meth:`MagnumEnv.wait_for_cluster` does both.

Logging: ``prepare_service`` calls ``oslo_log.log.setup``, which replaces the
root logger's handlers; logs go to ``<base_dir>/magnum-api.log``.

Typical use (see ``conftest.py``)::

    env = MagnumEnv().start(tmp_dir)                  # ~2-3 s, once per session
    r = env.request('POST', '/v1/clustertemplates', body={...})
    env.wait_idle(); env.magnum_own_notifications()
"""

import contextlib
import datetime
import io
import json as jsonlib
import os
import sqlite3
import sys
import threading
import time
import urllib.parse

import webob
import webob.headers

try:
    from tests.support.peer import (Response, all_notifications, reset_notifications,
                                    wait_for_notification as _wait_for_notification)
    from tests.support.peer import ini_escape as _ini_escape
except ImportError:          # run as a script: put the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    from tests.support.peer import (Response, all_notifications, reset_notifications,
                                    wait_for_notification as _wait_for_notification)
    from tests.support.peer import ini_escape as _ini_escape


HERE = os.path.dirname(os.path.abspath(__file__))

MAGNUM_HOST = 'localhost'
MAGNUM_PUBLISHER_ID = 'container-infra.' + MAGNUM_HOST
MAGNUM_PUBLISHER_PREFIX = 'container-infra.'
PASTE_APP_NAME = 'main'
#: newest microversion of Magnum 23 (magnum/api/controllers/versions.py)
MAX_MICROVERSION = '1.14'
DEFAULT_MICROVERSION = MAX_MICROVERSION

#: where the service catalog says Glance is; served in-process by FakeGlance
GLANCE_URL = 'http://glance.magnum-test.invalid:9292'

#: token id -> (user_id, project_id, roles); same as shared/peers/glance_serve.py
TOKENS = {
    'admin-token': ('u-admin', 'p-demo', ['admin', 'member', 'reader']),
    'member-token': ('u-member', 'p-demo', ['member', 'reader']),
    'other-token': ('u-other', 'p-other', ['member', 'reader']),
    'reader-token': ('u-reader', 'p-demo', ['reader']),
}

IMAGE_ID = '5d3a0c4e-7c61-4d43-9a52-2f0b1b6a9d01'
IMAGE_NO_DISTRO_ID = '5d3a0c4e-7c61-4d43-9a52-2f0b1b6a9d02'
#: images FakeGlance serves (all public)
IMAGES = {
    IMAGE_ID: {'name': 'magnum-ubuntu', 'os_distro': 'ubuntu'},
    IMAGE_NO_DISTRO_ID: {'name': 'no-distro', 'os_distro': None},
}

BASE_PIPELINE = ('cors http_proxy_to_wsgi request_id osprofiler authtoken '
                 '{audit}api_v1')

FAKE_DRIVER_NAME = 'fake_k8s'
FAKE_DRIVER_DIST = 'fake_magnum_driver-0.0.1.dist-info'

_LOCK = threading.Lock()
_ACTIVE_ENV = None  # the one MagnumEnv started in this process


# --------------------------------------------------------------------------
# notifications (oslo.messaging "test" driver)
# --------------------------------------------------------------------------


def magnum_own_notifications():
    """Envelopes emitted by Magnum itself (publisher ``container-infra.*``)."""
    return [m for m in all_notifications()
            if str(m.get('publisher_id', '')).startswith(
                MAGNUM_PUBLISHER_PREFIX)]


def other_notifications():
    """Envelopes NOT emitted by Magnum itself (e.g. the audit middleware)."""
    return [m for m in all_notifications()
            if not str(m.get('publisher_id', '')).startswith(
                MAGNUM_PUBLISHER_PREFIX)]


def wait_for_notification(predicate, timeout=10.0, interval=0.02, source=None):
    """Poll until ``predicate(envelope)`` holds for one of the service's own
    notifications (``predicate`` may be an event_type string)."""
    return _wait_for_notification(predicate, timeout, interval, source or magnum_own_notifications)


# --------------------------------------------------------------------------
# responses
# --------------------------------------------------------------------------


def call_wsgi(app, environ):
    """Call a WSGI app, consume and close its iterable -> :class:`Response`."""
    captured = {}
    written = []

    def start_response(status, headers, exc_info=None):
        if exc_info is not None and 'status' in captured:
            raise exc_info[1].with_traceback(exc_info[2])
        captured['status'] = status
        captured['headers'] = headers
        return written.append

    result = app(environ, start_response)
    try:
        chunks = list(written)
        for chunk in result:
            chunks.append(chunk)
    finally:
        close = getattr(result, 'close', None)
        if close is not None:
            close()
    return Response(captured['status'], captured['headers'], b''.join(chunks))


# --------------------------------------------------------------------------
# stand-in Glance (in-process, reached through a requests adapter)
# --------------------------------------------------------------------------

class FakeGlance(object):
    """Answers the image calls Magnum 23 makes through openstacksdk.

    ``GET /`` (version document), ``GET /v2/images/{id}`` and
    ``GET /v2/images[?name=..|id=..]``.  A token from :data:`TOKENS` is
    required (401 otherwise, like Glance behind authtoken).  Images are the
    :data:`IMAGES` (+ :meth:`add_image`), all public, owner ``p-admin``.
    """

    def __init__(self, images=None):
        self.images = {}
        for image_id, props in (images or IMAGES).items():
            self.add_image(image_id, **props)
        #: (method, path, query string, token) per request, in order
        self.requests = []
        self._lock = threading.Lock()

    def add_image(self, image_id, name, os_distro='ubuntu', **extra):
        image = {
            'id': image_id, 'name': name, 'status': 'active',
            'visibility': 'public', 'protected': False, 'owner': 'p-admin',
            'disk_format': 'qcow2', 'container_format': 'bare',
            'size': 1024, 'min_disk': 0, 'min_ram': 0, 'tags': [],
            'checksum': None, 'os_hash_algo': None, 'os_hash_value': None,
            'created_at': '2026-01-01T00:00:00Z',
            'updated_at': '2026-01-01T00:00:00Z',
            'self': '/v2/images/%s' % image_id,
            'file': '/v2/images/%s/file' % image_id,
            'schema': '/v2/schemas/image',
        }
        if os_distro is not None:
            image['os_distro'] = os_distro
        image.update(extra)
        self.images[image_id] = image
        return image

    @staticmethod
    def _json(start_response, status, obj):
        body = jsonlib.dumps(obj).encode()
        start_response(status, [('Content-Type', 'application/json'),
                                ('Content-Length', str(len(body)))])
        return [body]

    def __call__(self, environ, start_response):
        method = environ['REQUEST_METHOD']
        path = environ.get('PATH_INFO', '') or '/'
        query = environ.get('QUERY_STRING', '')
        token = environ.get('HTTP_X_AUTH_TOKEN')
        with self._lock:
            self.requests.append((method, path, query, token))
        if path.rstrip('/') in ('', '/v2') and method == 'GET':
            return self._json(start_response, '300 Multiple Choices', {
                'versions': [{
                    'id': 'v2.18', 'status': 'CURRENT',
                    'links': [{'rel': 'self',
                               'href': GLANCE_URL + '/v2/'}]}]})
        if token not in TOKENS:
            return self._json(start_response, '401 Unauthorized',
                              {'code': 401, 'title': 'Unauthorized',
                               'message': 'bad token'})
        if method != 'GET':
            return self._json(start_response, '405 Method Not Allowed',
                              {'code': 405, 'title': 'Method Not Allowed',
                               'message': 'FakeGlance is read-only'})
        parts = [p for p in path.split('/') if p]
        if parts[:2] == ['v2', 'images'] and len(parts) == 3:
            image = self.images.get(parts[2])
            if image is None:
                return self._json(start_response, '404 Not Found',
                                  {'code': 404, 'title': 'Not Found',
                                   'message': 'No image found with ID %s'
                                   % parts[2]})
            return self._json(start_response, '200 OK', image)
        if parts == ['v2', 'images']:
            params = urllib.parse.parse_qs(query)
            found = list(self.images.values())
            for key in ('name', 'id', 'os_distro', 'status', 'visibility'):
                if key in params:
                    found = [i for i in found
                             if str(i.get(key)) in params[key]]
            return self._json(start_response, '200 OK', {
                'images': found, 'schema': '/v2/schemas/images',
                'first': '/v2/images'})
        return self._json(start_response, '404 Not Found',
                          {'code': 404, 'title': 'Not Found',
                           'message': 'FakeGlance: no route %s' % path})


def _requests_adapter_class():
    import requests
    import requests.adapters
    import requests.structures
    import requests.utils

    class WSGIAdapter(requests.adapters.BaseAdapter):
        """A requests transport that calls a WSGI app in-process."""

        def __init__(self, app, prefix):
            super().__init__()
            self.app = app
            self.prefix = prefix

        def send(self, request, stream=False, timeout=None, verify=True,
                 cert=None, proxies=None):
            url = urllib.parse.urlsplit(request.url)
            body = request.body
            if body is None:
                body = b''
            elif isinstance(body, str):
                body = body.encode('utf-8')
            elif not isinstance(body, (bytes, bytearray)):
                body = b''.join(body)
            path = url.path or '/'
            wreq = webob.Request.blank(
                path + ('?' + url.query if url.query else ''),
                method=request.method, headers=dict(request.headers),
                base_url='%s://%s' % (url.scheme, url.netloc))
            wreq.environ['REMOTE_ADDR'] = '127.0.0.1'
            if body:
                wreq.environ['wsgi.input'] = io.BytesIO(bytes(body))
                wreq.environ['CONTENT_LENGTH'] = str(len(body))
            wresp = call_wsgi(self.app, wreq.environ)
            resp = requests.Response()
            resp.status_code = wresp.status
            resp.reason = wresp.status_line.split(' ', 1)[1]
            resp.headers = requests.structures.CaseInsensitiveDict(
                wresp.header_list)
            resp.encoding = requests.utils.get_encoding_from_headers(
                resp.headers)
            resp.raw = io.BytesIO(wresp.body)
            resp._content = wresp.body
            resp._content_consumed = True
            resp.url = request.url
            resp.request = request
            resp.connection = self
            return resp

        def close(self):
            pass

    return WSGIAdapter


# --------------------------------------------------------------------------
# config files
# --------------------------------------------------------------------------


def _paste_ini(audit_filter):
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
    return """\
# generated by tests/magnum/magnum_app.py
[composite:{app}]
paste.composite_factory = magnum.api:root_app_factory
/: api
/healthcheck: healthcheck

[pipeline:api]
pipeline = {pipeline}

[app:api_v1]
paste.app_factory = magnum.api.app:app_factory

[filter:authtoken]
acl_public_routes = /, /v1
paste.filter_factory = magnum.api.middleware.auth_token:AuthTokenMiddleware.factory

{audit_section}
[filter:osprofiler]
paste.filter_factory = magnum.common.profiler:WsgiMiddleware.factory

[filter:request_id]
paste.filter_factory = oslo_middleware:RequestId.factory

[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
oslo_config_project = magnum

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory
backends = disable_by_file
disable_by_file_path = /nonexistent/healthcheck_disable

[filter:http_proxy_to_wsgi]
paste.filter_factory = oslo_middleware.http_proxy_to_wsgi:HTTPProxyToWSGI.factory
oslo_config_project = magnum
""".format(app=PASTE_APP_NAME, pipeline=BASE_PIPELINE.format(audit=audit),
           audit_section=audit_section)


def _magnum_conf(base, paste_file, conf_overrides=None):
    keystone = {
        'auth_url': 'http://127.0.0.1:5000/v3',
        'auth_type': 'password',
        'username': 'magnum',
        'password': 'unused',
        'project_name': 'service',
        'user_domain_name': 'Default',
        'project_domain_name': 'Default',
    }
    sections = {
        'DEFAULT': {
            'debug': 'False',
            'use_stderr': 'False',
            'log_file': os.path.join(base, 'magnum-api.log'),
            'host': MAGNUM_HOST,
            'state_path': base,
            'transport_url': 'fake:/',
            # a conductor call must never hang a test for the default 60 s
            'rpc_response_timeout': '10',
            'periodic_enable': 'False',
        },
        'api': {
            'host': '127.0.0.1',
            'port': '9511',
            'api_paste_config': paste_file,
            'workers': '1',
        },
        'database': {
            'connection': 'sqlite:///%s' % os.path.join(base, 'magnum.sqlite'),
        },
        'oslo_messaging_notifications': {
            'driver': 'test',
        },
        'oslo_concurrency': {'lock_path': os.path.join(base, 'lock')},
        'oslo_policy': {'policy_file': os.path.join(base, 'policy.yaml')},
        'certificates': {
            # 'local' fails on py3 (write() str vs bytes) -> CREATE_FAILED
            'cert_manager_type': 'x509keypair',
            'storage_path': os.path.join(base, 'certs'),
        },
        # never contacted: fetch_token is replaced by AuthTokenFixture
        'keystone_authtoken': dict(
            keystone, www_authenticate_uri='http://127.0.0.1:5000/v3'),
        'keystone_auth': dict(keystone),
        'cinder': {
            # > 0: Magnum skips the Nova flavor root-disk lookup (no Nova here)
            'default_boot_volume_size': '10',
        },
        'glance_client': {
            'region_name': 'RegionOne',
            'endpoint_type': 'publicURL',
        },
    }
    for section, values in (conf_overrides or {}).items():
        sections.setdefault(section, {}).update(
            {k: str(v) for k, v in values.items()})
    out = ['# generated by tests/magnum/magnum_app.py']
    for section, values in sections.items():
        out.append('[%s]' % section)
        out.extend('%s = %s' % (k, v) for k, v in values.items())
        out.append('')
    return '\n'.join(out)


def register_fake_driver(site_dir):
    """Make ``fake_magnum_driver`` visible as the ``magnum.drivers`` entry
    point ``fake_k8s`` without pip: write a minimal ``.dist-info`` into
    ``site_dir`` and append ``site_dir`` and this directory to ``sys.path``.

    ``importlib.metadata`` scans ``sys.path`` for ``*.dist-info``; stevedore's
    entry-point cache is keyed on a hash of ``sys.path``, so it rescans too.
    Idempotent.
    """
    dist = os.path.join(site_dir, FAKE_DRIVER_DIST)
    os.makedirs(dist, exist_ok=True)
    with open(os.path.join(dist, 'METADATA'), 'w') as f:
        f.write('Metadata-Version: 2.1\nName: fake-magnum-driver\n'
                'Version: 0.0.1\nSummary: test-only Magnum driver\n')
    with open(os.path.join(dist, 'entry_points.txt'), 'w') as f:
        f.write('[magnum.drivers]\n%s = fake_magnum_driver:Driver\n'
                % FAKE_DRIVER_NAME)
    with open(os.path.join(dist, 'top_level.txt'), 'w') as f:
        f.write('fake_magnum_driver\n')
    for path in (HERE, site_dir):
        if path not in sys.path:
            sys.path.append(path)
    import importlib
    importlib.invalidate_caches()
    from importlib import metadata
    names = [ep.name for ep in metadata.entry_points(group='magnum.drivers')]
    if FAKE_DRIVER_NAME not in names:
        raise RuntimeError('fake driver entry point not visible: %s' % names)


# --------------------------------------------------------------------------
# the environment
# --------------------------------------------------------------------------

class MagnumEnv(object):
    """The real Magnum API app + in-process conductor.  One per process."""

    def __init__(self):
        self.base_dir = None
        self.app = None
        self.conf_file = None
        self.paste_file = None
        self.audit_filter = None
        self.auth_fixture = None
        self.glance = None
        self.conductor = None
        self.timings = {}
        self._patches = []
        self._extra_apps = 0
        self._pending = 0
        self._pending_cv = threading.Condition()
        self._conductor_errors = []

    # ---------------------------------------------------------------- setup
    def start(self, base_dir, audit_filter=None, conf_overrides=None):
        """Write config, create the DB, install the auth fixture, start the
        in-process conductor and load the app.

        :param base_dir: an (empty) directory that holds everything.
        :param audit_filter: None -> no audit filter; a dict -> add
            ``[filter:audit]`` (``audit_notifier.middleware:filter_factory``)
            with these items right after ``authtoken``.
        :param conf_overrides: ``{section: {key: value}}`` merged into the
            generated magnum.conf.
        :returns: self
        """
        global _ACTIVE_ENV
        with _LOCK:
            if _ACTIVE_ENV is not None:
                raise RuntimeError(
                    'a Magnum app is already loaded in this process (base_dir '
                    '%s): Magnum config is process-global, use one '
                    'session-scoped MagnumEnv and MagnumEnv.load_app() for '
                    'other pipelines' % _ACTIVE_ENV.base_dir)
            self._refuse_glance_harness()
            t0 = time.perf_counter()
            base = os.path.abspath(str(base_dir))
            self.base_dir = base
            for sub in ('etc', 'certs', 'lock', 'site'):
                os.makedirs(os.path.join(base, sub), exist_ok=True)
            etc = os.path.join(base, 'etc')
            self.conf_file = os.path.join(etc, 'magnum.conf')
            self.paste_file = os.path.join(etc, 'api-paste.ini')
            self.audit_filter = audit_filter
            with open(self.paste_file, 'w') as f:
                f.write(_paste_ini(audit_filter))
            with open(self.conf_file, 'w') as f:
                f.write(_magnum_conf(base, self.paste_file, conf_overrides))
            open(os.path.join(base, 'policy.yaml'), 'a').close()
            register_fake_driver(os.path.join(base, 'site'))
            t1 = time.perf_counter()

            self._install_auth_fixture()
            self._install_fake_glance()
            from magnum.common import service
            service.prepare_service(['magnum-api', '--config-file',
                                     self.conf_file])
            t2 = time.perf_counter()
            self._create_db()
            t3 = time.perf_counter()
            self._start_conductor()
            self.app = self._load_paste(self.paste_file)
            t4 = time.perf_counter()
            self.timings = {'files': t1 - t0, 'prepare_service': t2 - t1,
                            'db': t3 - t2, 'conductor+app': t4 - t3,
                            'total': t4 - t0}
            _ACTIVE_ENV = self
        return self

    @staticmethod
    def _refuse_glance_harness():
        mod = sys.modules.get('glance_app') or sys.modules.get(
            'tests.functional.glance_app')
        if mod is not None and getattr(mod, 'get_env', lambda: None)():
            raise RuntimeError(
                'the real Glance app (tests/functional/glance_app.py) is '
                'loaded in this process; Glance and Magnum both own the '
                'global oslo.config CONF and cannot share a process. Run '
                'tests/magnum in its own pytest process.')

    def _install_auth_fixture(self):
        from keystoneauth1 import fixture as ks_fixture
        from keystonemiddleware import fixture as ksm_fixture
        fx = ksm_fixture.AuthTokenFixture()
        fx.setUp()  # patches AuthProtocol.fetch_token until cleanUp()
        # default token lifetime is 1 h; long sessions must not expire
        expires = (datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None) + datetime.timedelta(days=365))
        for tok, (user, project, roles) in TOKENS.items():
            t = ks_fixture.V3Token(
                expires=expires, user_id=user, user_name=user,
                user_domain_id='default', user_domain_name='Default',
                project_id=project, project_name=project,
                project_domain_id='default', project_domain_name='Default',
                audit_id='audit-' + tok)
            for role in roles:
                t.add_role(name=role, id='r-' + role)
            svc = t.add_service('image', name='glance')
            svc.add_standard_endpoints(public=GLANCE_URL, internal=GLANCE_URL,
                                       admin=GLANCE_URL, region='RegionOne')
            fx.add_token(t, token_id=tok)
        self.auth_fixture = fx

    def _install_fake_glance(self):
        import requests
        self.glance = FakeGlance()
        adapter = _requests_adapter_class()(self.glance, GLANCE_URL)
        orig = requests.Session.get_adapter
        prefix = GLANCE_URL.lower()

        def get_adapter(session, url):
            if url.lower().startswith(prefix):
                return adapter
            return orig(session, url)

        requests.Session.get_adapter = get_adapter
        self._patches.append(
            lambda: setattr(requests.Session, 'get_adapter', orig))

    @property
    def glance_requests(self):
        """(method, path, query, token) of every request FakeGlance got."""
        return list(self.glance.requests)

    def _create_db(self):
        from alembic import migration as alembic_migration
        from alembic import script as alembic_script
        from oslo_db.sqlalchemy import enginefacade
        from magnum.db.sqlalchemy import migration, models
        import magnum.conf
        engine = enginefacade.writer.get_engine()
        models.Base.metadata.create_all(engine)
        # == alembic stamp head, without env.py (it calls logging.fileConfig)
        script = alembic_script.ScriptDirectory.from_config(
            migration._get_alembic_config())
        with engine.begin() as conn:
            ctx = alembic_migration.MigrationContext.configure(conn)
            ctx.stamp(script, 'head')
        engine.dispose()
        db_path = magnum.conf.CONF.database.connection.split(
            'sqlite:///', 1)[1]
        raw = sqlite3.connect(db_path, isolation_level=None)
        try:
            mode = raw.execute('PRAGMA journal_mode=WAL').fetchone()[0]
        finally:
            raw.close()
        if mode != 'wal':
            raise RuntimeError('could not switch %s to WAL: %s'
                               % (db_path, mode))
        self.alembic_version = migration.version()

    def _start_conductor(self):
        from magnum.common import rpc, rpc_service, short_id
        from magnum.conductor.handlers import (
            ca_conductor, cluster_conductor, conductor_listener,
            credential_conductor, federation_conductor, indirection_api,
            nodegroup_conductor)
        import magnum.conf
        topic = magnum.conf.CONF.conductor.topic
        endpoints = [indirection_api.Handler(), cluster_conductor.Handler(),
                     conductor_listener.Handler(),
                     credential_conductor.Handler(), ca_conductor.Handler(),
                     federation_conductor.Handler(),
                     nodegroup_conductor.Handler()]
        svc = rpc_service.Service.create(topic, short_id.generate_id(),
                                         endpoints, binary='magnum-conductor')
        # count every message sent to the conductor until its dispatch ends
        transport = rpc.TRANSPORT
        orig_send = transport._send

        def _send(target, *args, **kwargs):
            if target.topic == topic:
                with self._pending_cv:
                    self._pending += 1
            return orig_send(target, *args, **kwargs)

        transport._send = _send
        self._patches.append(lambda: transport.__dict__.pop('_send', None))
        dispatcher = svc._server.dispatcher
        orig_dispatch = dispatcher.dispatch

        def dispatch(incoming):
            try:
                return orig_dispatch(incoming)
            except Exception as exc:
                self._conductor_errors.append(
                    (incoming.message.get('method'), repr(exc)))
                raise
            finally:
                with self._pending_cv:
                    self._pending -= 1
                    self._pending_cv.notify_all()

        dispatcher.dispatch = dispatch
        svc.start()  # RPC server, threading executor; no periodic tasks
        self.conductor = svc

    def _load_paste(self, path):
        from paste import deploy
        return deploy.loadapp('config:' + path, name=PASTE_APP_NAME)

    def load_app(self, audit_filter=None, name=None):
        """Build ANOTHER WSGI app (new paste ini) on the same Magnum config,
        DB, conductor and notification capture.  Pass it as ``app=`` to
        :meth:`request`."""
        self._extra_apps += 1
        name = name or 'extra%d' % self._extra_apps
        path = os.path.join(self.base_dir, 'etc', 'api-paste-%s.ini' % name)
        with open(path, 'w') as f:
            f.write(_paste_ini(audit_filter))
        return self._load_paste(path)

    def stop(self):
        """Stop the conductor, remove the fixture and patches (Magnum's
        config, DB engine and transport stay in the process)."""
        global _ACTIVE_ENV
        if self.conductor is not None:
            try:
                self.conductor._server.stop()
                self.conductor._server.wait()
            except Exception:
                pass
            self.conductor = None
        while self._patches:
            self._patches.pop()()
        if self.auth_fixture is not None:
            self.auth_fixture.cleanUp()
            self.auth_fixture = None
        with _LOCK:
            if _ACTIVE_ENV is self:
                _ACTIVE_ENV = None

    @contextlib.contextmanager
    def override(self, name, value, group=None):
        """Temporarily override one Magnum config option (global CONF)."""
        from oslo_config import cfg
        cfg.CONF.set_override(name, value, group=group)
        try:
            yield
        finally:
            cfg.CONF.clear_override(name, group=group)

    # ----------------------------------------------------------- conductor
    def wait_idle(self, timeout=10.0):
        """Block until every message sent to the conductor has been
        dispatched (handler returned or raised).  Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._pending_cv:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError('%d conductor message(s) still pending'
                                       ' after %.1fs' % (self._pending,
                                                         timeout))
                self._pending_cv.wait(left)

    @property
    def conductor_errors(self):
        """(rpc method, repr(exception)) of conductor handlers that raised."""
        return list(self._conductor_errors)

    def sync_cluster_status(self):
        """Run Magnum's periodic ``sync_cluster_status`` once, synchronously:
        ``ClusterUpdateJob(admin ctx, cluster).update_status()`` for every
        cluster in ``*_IN_PROGRESS``.  The fake driver moves each to
        ``*_COMPLETE``; Magnum sends ``outcome: success`` (INFO) and destroys
        ``DELETE_COMPLETE`` clusters.  Returns [(uuid, new status)]."""
        from oslo_service import loopingcall
        from magnum.common import context as magnum_context
        from magnum import objects
        from magnum.objects import fields
        from magnum.service import periodic
        self.wait_idle()
        ctx = magnum_context.make_admin_context(all_tenants=True)
        magnum_context.set_ctx(ctx)
        done = []
        try:
            status = [fields.ClusterStatus.CREATE_IN_PROGRESS,
                      fields.ClusterStatus.UPDATE_IN_PROGRESS,
                      fields.ClusterStatus.DELETE_IN_PROGRESS,
                      fields.ClusterStatus.ROLLBACK_IN_PROGRESS]
            for cluster in objects.Cluster.list(
                    ctx, filters={'status': status}):
                job = periodic.ClusterUpdateJob(ctx, cluster)
                try:
                    job.update_status()
                except loopingcall.LoopingCallDone:
                    pass
                done.append((cluster.uuid, cluster.status))
        finally:
            magnum_context.set_ctx(None)
        return done

    def wait_for_cluster(self, ident, status, token='admin-token',
                         timeout=10.0, sync=True):
        """Poll ``GET /v1/clusters/{ident}`` until its status is ``status``
        (``'DELETED'``: until 404), running :meth:`sync_cluster_status`
        between polls when ``sync``.  Returns the last :class:`Response`."""
        deadline = time.monotonic() + timeout
        while True:
            self.wait_idle()
            r = self.request('GET', '/v1/clusters/%s' % ident, token=token)
            if status == 'DELETED' and r.status == 404:
                return r
            if r.status == 200 and r.json.get('status') == status:
                return r
            if time.monotonic() > deadline:
                raise TimeoutError('cluster %s: wanted %s, last %s %s'
                                   % (ident, status, r.status, r.text[:300]))
            if sync:
                self.sync_cluster_status()
            else:
                time.sleep(0.05)

    # ----------------------------------------------------------- requests
    def environ(self, method, path, token='admin-token', body=None,
                headers=None, content_type=None,
                microversion=DEFAULT_MICROVERSION,
                accept='application/json', remote_addr='127.0.0.1',
                extra_environ=None):
        """Build a PEP 3333 environ.  ``body``: None, bytes, str or a
        dict/list (JSON; content type defaults to application/json).
        ``microversion``: sent as ``OpenStack-API-Version: container-infra
        <mv>`` (None: no header -> Magnum uses 1.1)."""
        hdrs = {}
        if accept:
            hdrs['Accept'] = accept
        if token is not None:
            hdrs['X-Auth-Token'] = token
        if microversion is not None:
            hdrs['OpenStack-API-Version'] = 'container-infra %s' % microversion
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
            env['wsgi.input'] = io.BytesIO(bytes(body))
            env['CONTENT_LENGTH'] = str(len(body))
        if content_type is not None:
            env['CONTENT_TYPE'] = content_type
        if extra_environ:
            env.update(extra_environ)
        return env

    def request(self, method, path, token='admin-token', body=None,
                headers=None, app=None, **kw):
        """Call the app in-process, consume and close the body.  Returns
        :class:`Response` (``status`` int, ``headers``, ``body``, ``json``,
        ``text``).  See :meth:`environ` for the keyword arguments."""
        env = self.environ(method, path, token=token, body=body,
                           headers=headers, **kw)
        return call_wsgi(app or self.app, env)

    # ------------------------------------------------------ conveniences
    def create_cluster_template(self, name='ct', token='admin-token',
                                image_id=IMAGE_ID, **extra):
        body = {'name': name, 'image_id': image_id, 'coe': 'kubernetes',
                'server_type': 'vm', 'external_network_id': None,
                'labels': {}}
        body.update(extra)
        return self.request('POST', '/v1/clustertemplates', token=token,
                            body=body)

    def create_cluster(self, template_id, name='cl', token='admin-token',
                       master_count=1, node_count=1, **extra):
        body = {'name': name, 'cluster_template_id': template_id,
                'master_count': master_count, 'node_count': node_count}
        body.update(extra)
        return self.request('POST', '/v1/clusters', token=token, body=body)

    # ------------------------------------------------------ notifications
    all_notifications = staticmethod(all_notifications)
    magnum_own_notifications = staticmethod(magnum_own_notifications)
    other_notifications = staticmethod(other_notifications)
    reset_notifications = staticmethod(reset_notifications)
    wait_for_notification = staticmethod(wait_for_notification)


def get_env():
    """The MagnumEnv started in this process, or None."""
    return _ACTIVE_ENV


def find_audit_middleware(app):
    """The AuditMiddleware instance inside a loaded pecan/paste pipeline (it walks
    every attribute: pecan keeps the next app in places a paste walk misses)."""
    from audit_notifier.middleware import AuditMiddleware
    seen = set()
    todo = [app]
    while todo:
        obj = todo.pop()
        if isinstance(obj, AuditMiddleware):
            return obj
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None))):
            continue
        seen.add(id(obj))
        if isinstance(obj, dict):
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            todo.extend(obj)
        elif hasattr(obj, '__dict__') and not isinstance(obj, type):
            todo.extend(vars(obj).values())
    raise AssertionError('no AuditMiddleware in the pipeline')
