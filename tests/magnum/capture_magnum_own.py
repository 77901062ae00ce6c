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

"""Record Magnum 23's OWN notifications, per API call, as ground truth.

Usage:  python tests/magnum/capture_magnum_own.py OUTFILE [BASE_DIR]

Loads the real Magnum API + in-process conductor (tests/magnum/magnum_app.py,
NO audit filter), drives a scripted cluster-template / cluster life cycle and
writes, for every step, the HTTP status, some response headers, the response
body and the exact list of notifications Magnum itself emitted (publisher
``container-infra.localhost``): event_type, priority, publisher_id, payload --
in emission order.  After each HTTP call the harness waits until the
conductor has dispatched every RPC message, so conductor notifications are
attributed to the call that caused them.  Steps of kind ``periodic`` are not
HTTP calls: they run Magnum's periodic ``ClusterUpdateJob`` once
(``MagnumEnv.sync_cluster_status``), which is where Magnum sends its
``outcome: success`` notifications (admin context).
Payload values are kept as they are (real data; ids/timestamps vary per run).
"""

import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import magnum_app  # noqa: E402

HEADERS_OF_INTEREST = ('Content-Type', 'Content-Length', 'Location',
                       'OpenStack-API-Version', 'OpenStack-API-Minimum-Version',
                       'OpenStack-API-Maximum-Version', 'x-openstack-request-id',
                       'WWW-Authenticate')
STEPS = []


def own():
    return [{'event_type': m['event_type'], 'priority': m['priority'],
             'publisher_id': m['publisher_id'], 'payload': m['payload']}
            for m in magnum_app.magnum_own_notifications()]


def _headers(header_list):
    out = {}
    for k, v in header_list:
        if any(k.lower() == h.lower() for h in HEADERS_OF_INTEREST):
            out[k] = v
    return out


def _summary(notes):
    out = []
    for n in notes:
        p = n['payload']
        tgt = p.get('target', {})
        out.append('%s %s %s target=%s/%s' % (
            n['event_type'], n['priority'], p.get('outcome'),
            tgt.get('typeURI'), tgt.get('id')))
    return out


def call(env, label, method, path, token='admin-token', body=None,
         microversion=magnum_app.DEFAULT_MICROVERSION, headers=None):
    magnum_app.reset_notifications()
    t0 = time.perf_counter()
    r = env.request(method, path, token=token, body=body,
                    microversion=microversion, headers=headers)
    ms = (time.perf_counter() - t0) * 1000
    env.wait_idle()
    notes = own()
    try:
        rbody = r.json
    except ValueError:
        rbody = r.text
    step = {
        'label': label, 'kind': 'http', 'method': method, 'path': path,
        'token': token, 'microversion': microversion, 'request_body': body,
        'status': r.status, 'response_headers': _headers(r.header_list),
        'response_body': rbody, 'elapsed_ms': round(ms, 1),
        'notifications': notes,
    }
    STEPS.append(step)
    print('%-34s %-6s %-62s %s %s' % (label, method, path[:62], r.status,
                                      _summary(notes)), flush=True)
    return r


def periodic(env, label):
    magnum_app.reset_notifications()
    done = env.sync_cluster_status()
    notes = own()
    STEPS.append({'label': label, 'kind': 'periodic',
                  'what': 'MagnumEnv.sync_cluster_status() = one run of '
                          "Magnum's periodic ClusterUpdateJob.update_status "
                          '(admin context) per *_IN_PROGRESS cluster',
                  'clusters': [{'uuid': u, 'status_after': s}
                               for u, s in done],
                  'notifications': notes})
    print('%-34s %-6s %-62s %s %s' % (label, '-', 'sync_cluster_status',
                                      done, _summary(notes)), flush=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    outfile = os.path.abspath(sys.argv[1])
    base = sys.argv[2] if len(sys.argv) > 2 else None
    tmp = None
    if base is None:
        tmp = base = tempfile.mkdtemp(prefix='magnum-capture-')
    t0 = time.perf_counter()
    env = magnum_app.MagnumEnv().start(base)
    load_s = time.perf_counter() - t0
    try:
        run(env)
    finally:
        env.stop()
    meta = {
        'generator': 'tests/magnum/capture_magnum_own.py',
        'magnum_version': _version('magnum'),
        'oslo.messaging_version': _version('oslo.messaging'),
        'pycadf_version': _version('pycadf'),
        'publisher_id': magnum_app.MAGNUM_PUBLISHER_ID,
        'pipeline': magnum_app.BASE_PIPELINE.format(audit=''),
        'tokens': {k: {'user_id': v[0], 'project_id': v[1], 'roles': v[2]}
                   for k, v in magnum_app.TOKENS.items()},
        'image_validation': 'in-process stand-in Glance (FakeGlance) at %s'
                            % magnum_app.GLANCE_URL,
        'fake_driver': 'tests/magnum/fake_magnum_driver.py (entry point '
                       'magnum.drivers:fake_k8s); Heat-like: *_IN_PROGRESS '
                       'until the periodic job',
        'harness_load_seconds': round(load_s, 2),
        'glance_requests': [list(x) for x in env.glance_requests],
        'conductor_errors': env.conductor_errors,
    }
    os.makedirs(os.path.dirname(outfile), exist_ok=True)
    with open(outfile, 'w') as f:
        json.dump({'meta': meta, 'steps': STEPS}, f, indent=1,
                  sort_keys=False, default=str)
        f.write('\n')
    print('wrote %s (%d steps, load %.2fs)' % (outfile, len(STEPS), load_s))
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def run(env):
    ct_body = {'name': 'ct-capture', 'image_id': magnum_app.IMAGE_ID,
               'coe': 'kubernetes', 'server_type': 'vm',
               'external_network_id': None, 'labels': {}}
    call(env, 'versions (public)', 'GET', '/v1/', token=None)
    call(env, 'no token', 'GET', '/v1/clustertemplates', token=None)
    call(env, 'bogus token', 'GET', '/v1/clustertemplates', token='bogus')
    r = call(env, 'clustertemplate create', 'POST', '/v1/clustertemplates',
             body=ct_body)
    ct = r.json['uuid']
    call(env, 'clustertemplate create (reader)', 'POST',
         '/v1/clustertemplates', token='reader-token',
         body=dict(ct_body, name='ct-reader'))
    call(env, 'clustertemplate create (no os_distro)', 'POST',
         '/v1/clustertemplates',
         body=dict(ct_body, name='ct-nodistro',
                   image_id=magnum_app.IMAGE_NO_DISTRO_ID))
    call(env, 'clustertemplate show', 'GET', '/v1/clustertemplates/%s' % ct)
    call(env, 'clustertemplate list', 'GET', '/v1/clustertemplates')
    call(env, 'clustertemplate patch', 'PATCH',
         '/v1/clustertemplates/%s' % ct,
         body=[{'op': 'replace', 'path': '/name', 'value': 'ct-capture-2'}])

    cl_body = {'name': 'cl-capture', 'cluster_template_id': ct,
               'master_count': 1, 'node_count': 1}
    call(env, 'cluster create (reader)', 'POST', '/v1/clusters',
         token='reader-token', body=dict(cl_body, name='cl-reader'))
    r = call(env, 'cluster create', 'POST', '/v1/clusters', body=cl_body)
    cl = r.json['uuid']
    call(env, 'cluster show (in progress)', 'GET', '/v1/clusters/%s' % cl)
    periodic(env, 'periodic sync (create)')
    call(env, 'cluster show (complete)', 'GET', '/v1/clusters/%s' % cl)
    call(env, 'cluster list', 'GET', '/v1/clusters')
    call(env, 'nodegroup list', 'GET', '/v1/clusters/%s/nodegroups' % cl)
    call(env, 'cluster resize', 'POST', '/v1/clusters/%s/actions/resize' % cl,
         body={'node_count': 2}, microversion='1.7')
    call(env, 'cluster patch while UPDATE_IN_PROGRESS', 'PATCH',
         '/v1/clusters/%s' % cl,
         body=[{'op': 'replace', 'path': '/node_count', 'value': 3}])
    periodic(env, 'periodic sync (resize)')
    call(env, 'cluster patch node_count', 'PATCH', '/v1/clusters/%s' % cl,
         body=[{'op': 'replace', 'path': '/node_count', 'value': 3}])
    periodic(env, 'periodic sync (patch)')
    call(env, 'cluster show (after update)', 'GET', '/v1/clusters/%s' % cl)
    call(env, 'cluster show (not found)', 'GET',
         '/v1/clusters/00000000-0000-4000-8000-000000000000')
    call(env, 'cluster delete (other project)', 'DELETE',
         '/v1/clusters/%s' % cl, token='other-token')
    call(env, 'clustertemplate delete (in use)', 'DELETE',
         '/v1/clustertemplates/%s' % ct)

    # a create that fails inside the conductor (fake driver raises)
    r = call(env, 'cluster create (driver fails)', 'POST', '/v1/clusters',
             body=dict(cl_body, name='fail-capture'))
    bad = r.json['uuid']
    call(env, 'cluster show (CREATE_FAILED)', 'GET', '/v1/clusters/%s' % bad)
    call(env, 'cluster delete (failed one)', 'DELETE',
         '/v1/clusters/%s' % bad)

    call(env, 'cluster delete', 'DELETE', '/v1/clusters/%s' % cl)
    call(env, 'cluster show (DELETE_IN_PROGRESS)', 'GET',
         '/v1/clusters/%s' % cl)
    periodic(env, 'periodic sync (delete)')
    call(env, 'cluster show (gone)', 'GET', '/v1/clusters/%s' % cl)
    call(env, 'clustertemplate delete', 'DELETE',
         '/v1/clustertemplates/%s' % ct)
    call(env, 'clustertemplate show (gone)', 'GET',
         '/v1/clustertemplates/%s' % ct)


if __name__ == '__main__':
    sys.exit(main())
