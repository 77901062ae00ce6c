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

"""Child process of test_glance_to_rabbitmq.py: the REAL Glance app with the audit
filter publishing to RabbitMQ.

Glance keeps its configuration in the process-global CONF and may be loaded only
once per process (tests/functional/glance_app.py), and tests/functional starts its
own; so the broker test runs Glance here, in a process of its own, through the same
harness (GlanceEnv.start + load_app).

    python glance_child.py <base_dir> <spec.json> <result.json>

spec: {"audit_filter": {...paste keys...}, "conf_overrides": {...}, "upload_size": n}
result: image ids, each call's status, every envelope the filter handed to the bus
(copied before publishing), Glance's own notifications (test driver), the
delivery counters and the control_exchange the filter's transport used.

This is a helper module, not a test file.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'functional'))
sys.path.insert(0, HERE)

import broker_helpers as bh   # noqa: E402
import glance_app             # noqa: E402


def run(base_dir, spec):
    from oslo_config import cfg

    env = glance_app.GlanceEnv().start(base_dir, conf_overrides=spec.get('conf_overrides'))
    app = env.load_app(audit_filter=spec['audit_filter'], name='broker')
    mw = glance_app.find_audit_middleware(app)
    envelopes = bh.record_envelopes(mw.delivery)
    glance_app.reset_notifications()
    steps = []

    def call(step, method, path, **kw):
        r = env.request(method, path, app=app, **kw)
        ctype = r.headers.get('Content-Type') or ''
        steps.append({'step': step, 'status': r.status, 'length': len(r.body),
                      'json': r.json if 'json' in ctype and r.body else None,
                      'text': None if 'json' in ctype else r.text[:300]})
        return r

    a = call('create_a', 'POST', '/v2/images', body={
        'name': 'broker-a', 'disk_format': 'raw', 'container_format': 'bare'}).json['id']
    b = call('create_b', 'POST', '/v2/images', body={
        'name': 'broker-b', 'disk_format': 'raw', 'container_format': 'bare'}).json['id']
    data = glance_app.PatternStream(spec['upload_size'], seed=7)
    call('upload_a', 'PUT', '/v2/images/%s/file' % a, body=data,
         content_type='application/octet-stream')
    call('download_a', 'GET', '/v2/images/%s/file' % a)
    call('patch_a', 'PATCH', '/v2/images/%s' % a,
         body=[{'op': 'replace', 'path': '/name', 'value': 'broker-a2'}],
         content_type='application/openstack-images-v2.1-json-patch')
    call('delete_b', 'DELETE', '/v2/images/%s' % b)
    call('delete_a', 'DELETE', '/v2/images/%s' % a)
    flushed = mw.delivery.flush(30.0)
    counters = dict(mw.delivery.counters)
    result = {
        'image_a': a, 'image_b': b, 'upload_md5': data.md5, 'steps': steps,
        'flushed': flushed, 'counters': counters, 'envelopes': list(envelopes),
        'glance_own': env.glance_own_notifications(),
        'control_exchange': cfg.CONF.control_exchange,
        'publisher_id': mw.emitter.publisher_id,
    }
    for leaf in mw.delivery.leaves.values():
        transport = getattr(leaf, '_transport', None)
        if transport is not None:
            result.setdefault('exchanges', []).append(
                getattr(transport._driver, '_default_exchange', None))
    mw.delivery.stop()           # closes the leaves
    return result


def main(argv):
    base_dir, spec_file, out_file = argv[1:4]
    with open(spec_file) as f:
        spec = json.load(f)
    try:
        result = run(base_dir, spec)
    except Exception:
        result = {'error': traceback.format_exc()}
    with open(out_file, 'w') as f:
        json.dump(result, f, default=str)
    return 0 if 'error' not in result else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
