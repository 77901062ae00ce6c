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

"""Child process of test_failure_pages.py: one failure of doc/source/admin/*.rst,
run the way the pages were made (doc/source/admin/index.rst, "How the lines on
these pages were made").

A service process as Glance sets one up: oslo.config's global CONF from a conf
file, oslo.log writing ``<work>/service.log`` in its default format, the control
exchange ``glance``, then a paste pipeline with keystonemiddleware's REAL
``auth_token`` (tokens from its ``AuthTokenFixture``), the audit filter and a small
image API; calls are made with webob.

    python failure_scenarios.py <scenario> <work_dir> <spec.json>

spec: {"paste_keys": {...}, "conf": "<[section] lines for the conf file>",
       "pipeline": "main" | "before", "calls": n, "headers": {...},
       "wait_for": ["log text", ...], "proxy_upstream": [host, port] | null,
       "run_as": "nobody" | null}
Prints one JSON line: {"status": [...], "initiators": [...], "error": "..."}.
With ``proxy_upstream``, a TCP proxy that refuses connections stands in front of
the broker (``{proxy_port}`` in the conf is its port) and lets them through once
the first ``wait_for`` text is logged.  ``run_as``: the user the filter is loaded
as (root only), as a service runs under its own user.

This is a helper module, not a test file.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)

TOKEN = 'alice-token'
USER_ID = '3f1c0b6a9d2e4c7f8a5b6c7d8e9f0a1b'
PROJECT_ID = '8d4e2f1a6b3c4d5e9f0a1b2c3d4e5f60'

PASTE = '''
[pipeline:main]
pipeline = authtoken audit app

[pipeline:before]
pipeline = audit authtoken app

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
delay_auth_decision = true

[filter:audit]
paste.filter_factory = audit_notifier.middleware:filter_factory
%s

[app:app]
paste.app_factory = tests.broker.failure_scenarios:app_factory
'''

IMAGES: dict = {}


def app_factory(global_conf, **local_conf):
    return image_api


def image_api(environ, start_response):
    """POST /v2/images creates, GET /v2/images/<id> shows, GET /v1/clusters lists."""
    method, path = environ['REQUEST_METHOD'], environ['PATH_INFO']
    if method == 'POST' and path == '/v2/images':
        image_id = str(uuid.uuid4())
        IMAGES[image_id] = {'id': image_id, 'name': 'cirros', 'status': 'queued'}
        return _json(start_response, '201 Created', IMAGES[image_id],
                     [('Location', '/v2/images/' + image_id)])
    if method == 'GET' and path.startswith('/v2/images/'):
        return _json(start_response, '200 OK', IMAGES.get(path.rsplit('/', 1)[1], {}))
    return _json(start_response, '200 OK', {'clusters': []})


def _json(start_response, status, doc, headers=()):
    body = json.dumps(doc).encode()
    start_response(status, [('Content-Type', 'application/json'),
                            ('Content-Length', str(len(body)))] + list(headers))
    return [body]


def _wait_for_log(path: str, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path, errors='replace') as f:
                if text in f.read():
                    return
        time.sleep(0.1)
    raise TimeoutError('%r never logged in %s' % (text, path))


def _drop_root(user: str) -> None:
    """Become ``user`` for what follows (a service's own user), keeping what is
    imported: the interpreter may live where that user cannot read."""
    import pwd
    entry = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)


def main(scenario: str, work: str, spec_path: str) -> dict:
    with open(spec_path) as f:
        spec = json.load(f)
    proxy = None
    conf_text = spec.get('conf', '')
    if spec.get('proxy_upstream'):
        from tests.support.tcp_proxy import TcpProxy
        proxy = TcpProxy(*spec['proxy_upstream'])
        proxy.start()
        proxy.refuse(True)
        conf_text = conf_text.replace('{proxy_port}', str(proxy.port))
    log_file = os.path.join(work, 'service.log')
    conf_file = os.path.join(work, 'service.conf')
    with open(conf_file, 'w') as f:
        f.write('[DEFAULT]\nlog_file = %s\n%s\n' % (log_file, conf_text))
    paste_file = os.path.join(work, 'paste.ini')
    with open(paste_file, 'w') as f:
        f.write(PASTE % '\n'.join('%s = %s' % kv for kv in spec.get('paste_keys', {}).items()))

    import oslo_messaging
    import webob
    from keystonemiddleware import fixture as ksm_fixture
    from oslo_config import cfg
    from oslo_log import log as logging
    from paste import deploy

    import audit_notifier.middleware  # noqa: F401  (loaded before run_as drops root)
    import keystonemiddleware.auth_token  # noqa: F401

    tokens = ksm_fixture.AuthTokenFixture()
    tokens.setUp()
    tokens.add_token_data(token_id=TOKEN, user_id=USER_ID, user_name='alice',
                          user_domain_id='default', project_id=PROJECT_ID,
                          project_name='demo', project_domain_id='default',
                          role_list=['member', 'reader'])
    logging.register_options(cfg.CONF)
    cfg.CONF(['--config-file', conf_file], project='glance')
    logging.setup(cfg.CONF, 'glance')
    oslo_messaging.set_transport_defaults('glance')      # as glance/notifier.py does
    if spec.get('run_as') and os.geteuid() == 0:
        _drop_root(spec['run_as'])
    result: dict = {'status': [], 'initiators': []}
    try:
        app = deploy.loadapp('config:' + paste_file, name=spec.get('pipeline', 'main'))
    except Exception as exc:
        result['error'] = '%s: %s' % (type(exc).__name__, exc)
        return result
    headers = dict(spec.get('headers', {}), **{'X-Auth-Token': TOKEN})
    for _ in range(spec.get('calls', 0)):
        if scenario == 'magnum':
            resp = webob.Request.blank('/v1/clusters', headers=headers).get_response(app)
            result['status'].append(resp.status_int)
            continue
        resp = webob.Request.blank('/v2/images', method='POST', body=b'{"name": "cirros"}',
                                   headers=dict(headers, **{'Content-Type':
                                                            'application/json'})
                                   ).get_response(app)
        result['status'].append(resp.status_int)
        resp = webob.Request.blank('/v2/images/' + resp.json['id'],
                                   headers=headers).get_response(app)
        result['status'].append(resp.status_int)
    for i, text in enumerate(spec.get('wait_for', [])):
        _wait_for_log(log_file, text)
        if proxy is not None and i == 0:
            proxy.heal()
    if scenario == 'misplaced':
        from oslo_messaging.notify import _impl_test
        from audit_notifier.middleware import AuditMiddleware
        audit = app
        while not isinstance(audit, AuditMiddleware):
            audit = audit._app
        assert audit.delivery.flush(30.0)
        result['initiators'] = [envelope['payload']['initiator']
                                for _, envelope, _, _ in _impl_test.NOTIFICATIONS
                                if envelope['event_type'] == 'audit.image.create']
    return result


if __name__ == '__main__':
    print(json.dumps(main(*sys.argv[1:4])))
    sys.stdout.flush()
