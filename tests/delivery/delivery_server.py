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

"""A trivial JSON image API wrapped by the audit filter, for the delivery tests.

Run as a script (cheroot, one process)::

    python delivery_server.py CONFIG.json

or under gunicorn (the app is built from the file named by ``$DELIVERY_SERVER_CONFIG``)::

    DELIVERY_SERVER_CONFIG=CONFIG.json gunicorn --preload -w 2 delivery_server:app

The app is stateless (so any worker can answer any call):

* ``POST /v2/images`` -> 201 with a new image id
* ``GET/PATCH /v2/images/{id}`` -> 200 with the image
* ``DELETE /v2/images/{id}`` -> 204

Every response carries ``X-OpenStack-Request-Id`` (the client's ``X-Test-Request-Id``
when given, so a test can map each CADF event, via ``initiator.request_id``, to the
request that caused it) and ``X-Worker-Pid`` (the process that answered).

CONFIG keys: ``port``, ``journal_dir``, ``transport_url``, ``exchange`` (the
oslo.messaging ``control_exchange``), ``rabbit`` (extra ``[oslo_messaging_rabbit]``
options), ``threads`` (cheroot) and ``paste`` (the filter's paste keys).  The filter is
created at import time, in the main thread, as a paste pipeline would (so
``--preload`` loads it before the fork; its SIGTERM hook is installed then).

In front of the filter (not audited): ``GET /_delivery/snapshot`` answers the
process's ``mw.delivery.snapshot()`` as JSON (under gunicorn: of whichever worker
took the call).

This is a helper module, not a test file.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
import tempfile
import uuid

from oslo_config import cfg

import oslo_messaging.opts

from audit_notifier.middleware import AuditMiddleware

IMAGE_KEYS = {'status': 'queued', 'disk_format': 'raw', 'container_format': 'bare',
              'visibility': 'private'}


def image_app(environ, start_response):
    method = environ['REQUEST_METHOD']
    parts = environ.get('PATH_INFO', '').strip('/').split('/')
    rid = environ.get('HTTP_X_TEST_REQUEST_ID') or 'req-%s' % uuid.uuid4()
    headers = [('X-OpenStack-Request-Id', rid), ('X-Worker-Pid', str(os.getpid()))]
    length = int(environ.get('CONTENT_LENGTH') or 0)
    if length:
        environ['wsgi.input'].read(length)
    if parts[:2] != ['v2', 'images'] or len(parts) > 3:
        status, doc = '404 Not Found', {'error': 'not found'}
    elif len(parts) == 2 and method == 'POST':
        status, doc = '201 Created', dict(IMAGE_KEYS, id=str(uuid.uuid4()))
    elif len(parts) == 3 and method in ('GET', 'PATCH', 'PUT'):
        status, doc = '200 OK', dict(IMAGE_KEYS, id=parts[2])
    elif len(parts) == 3 and method == 'DELETE':
        status, doc = '204 No Content', None
    else:
        status, doc = '405 Method Not Allowed', {'error': 'method not allowed'}
    body = b'' if doc is None else json.dumps(doc).encode()
    if doc is not None:
        headers.append(('Content-Type', 'application/json'))
    headers.append(('Content-Length', str(len(body))))
    start_response(status, headers)
    return [body]


def make_conf(exchange: str, rabbit: dict | None = None) -> cfg.ConfigOpts:
    """A private ConfigOpts: control_exchange and [oslo_messaging_rabbit] options from a
    config file (rabbit options are registered only when the transport is made)."""
    lines = ['[DEFAULT]', 'control_exchange = %s' % exchange, '[oslo_messaging_rabbit]']
    lines += ['%s = %s' % (k, v) for k, v in sorted((rabbit or {}).items())]
    fd, path = tempfile.mkstemp(prefix='delivery-', suffix='.conf')
    with os.fdopen(fd, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        if group is None:
            conf.register_opts(opts)
    conf([], project='audit_notifier_delivery_tests', default_config_files=[path])
    os.unlink(path)   # parsed already
    return conf


def build(config: dict) -> AuditMiddleware:
    keys = dict(config.get('paste') or {})
    keys['oslo_config_config'] = make_conf(config['exchange'], config.get('rabbit'))
    keys.setdefault('journal_dir', config['journal_dir'])
    if config.get('transport_url'):
        keys.setdefault('transport_url', config['transport_url'])
    return AuditMiddleware(image_app, keys)


def with_control(mw: AuditMiddleware):
    """The filtered app, plus GET /_delivery/snapshot in front of the filter."""
    def app(environ, start_response):
        if environ.get('PATH_INFO') == '/_delivery/snapshot':
            body = json.dumps(mw.delivery.snapshot(), sort_keys=True).encode()
            start_response('200 OK', [('Content-Type', 'application/json'),
                                      ('Content-Length', str(len(body))),
                                      ('X-Worker-Pid', str(os.getpid()))])
            return [body]
        return mw(environ, start_response)
    app.mw = mw
    return app


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format='%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s')
    for noisy in ('amqp', 'kombu', 'stevedore'):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kill -USR2 <pid>: every thread's stack to the log (a stalled sender, say)
    faulthandler.register(signal.SIGUSR2, all_threads=True)


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


if __name__ == '__main__':
    _logging()
    CONFIG = _load(sys.argv[1])
    application = with_control(build(CONFIG))   # main thread: installs the SIGTERM hook
    from cheroot import wsgi
    server = wsgi.Server(('127.0.0.1', CONFIG['port']), application,
                         numthreads=CONFIG.get('threads', 10), request_queue_size=64)
    logging.getLogger('delivery_server').info('serving on 127.0.0.1:%d pid %d',
                                              CONFIG['port'], os.getpid())
    try:
        server.safe_start()
    finally:
        server.stop()
elif os.environ.get('DELIVERY_SERVER_CONFIG'):
    _logging()
    app = with_control(build(_load(os.environ['DELIVERY_SERVER_CONFIG'])))
