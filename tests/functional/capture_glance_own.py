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

"""Record Glance 33's OWN notifications, per API call, as ground truth.

Usage:  python tests/functional/capture_glance_own.py OUTFILE [BASE_DIR]

Loads the real Glance API in-process (tests/functional/glance_app.py, NO
audit filter), drives a scripted image life cycle and writes, for every call,
the HTTP status, the response headers, a short body summary and the exact
list of notifications Glance itself emitted (publisher_id image.localhost):
event_type, priority, publisher_id, payload -- in emission order.
Payload values are kept as they are (real data; ids/timestamps vary per run).
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import glance_app  # noqa: E402

MIB = 1024 * 1024
JSON_PATCH = 'application/openstack-images-v2.1-json-patch'
# headers whose values are run-specific noise are still recorded; these are
# the ones a reader usually wants
HEADERS_OF_INTEREST = ('Content-Type', 'Content-Length', 'Content-Range',
                       'Content-MD5', 'Location', 'Accept-Ranges',
                       'OpenStack-image-import-methods',
                       'OpenStack-image-store-ids',
                       'x-openstack-request-id')

STEPS = []


def own():
    return [{'event_type': m['event_type'], 'priority': m['priority'],
             'publisher_id': m['publisher_id'], 'payload': m['payload']}
            for m in glance_app.glance_own_notifications()]


def _headers(header_list):
    out = {}
    for k, v in header_list:
        if any(k.lower() == h.lower() for h in HEADERS_OF_INTEREST):
            out[k] = v
    return out


def _body_summary(resp_status, ctype, body, raw=False):
    if raw or (ctype or '').startswith('application/octet-stream'):
        return {'bytes': len(body)}
    if not body:
        return None
    try:
        obj = json.loads(body)
    except ValueError:
        return {'text': body[:300].decode('utf-8', 'replace')}
    if resp_status >= 400 or len(body) < 4000:
        return {'json': obj}
    return {'json_keys': sorted(obj) if isinstance(obj, dict) else None}


def record(name, method, path, token, status, header_list, body,
           notifications, raw=False, **extra):
    hdrs = _headers(header_list)
    ctype = dict((k.lower(), v) for k, v in header_list).get('content-type')
    step = {'step': name, 'request': {'method': method, 'path': path,
                                      'token': token},
            'status': status, 'headers': hdrs,
            'body': _body_summary(status, ctype, body, raw),
            'notifications': notifications}
    step.update(extra)
    STEPS.append(step)
    print('%-28s %-6s %-62s %s  %s' % (
        name, method, path[:62], status,
        [(n['event_type'], n['priority']) for n in notifications]),
        flush=True)
    return step


def call(env, name, method, path, token='admin-token', body=None,
         raw=False, expect=None, note=None, **kw):
    glance_app.reset_notifications()
    r = env.request(method, path, token=token, body=body, **kw)
    notes = own()
    extra = {'note': note} if note else {}
    if kw.get('headers'):
        extra['request_headers'] = kw['headers']
    if kw.get('content_type'):
        extra['request_content_type'] = kw['content_type']
    record(name, method, path, token, r.status, r.header_list, r.body,
           notes, raw=raw, **extra)
    if expect is not None and r.status != expect:
        print('   !! expected %s, got %s: %s' % (expect, r.status, r.text[:300]),
              file=sys.stderr)
    return r


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    outfile = sys.argv[1]
    own_tmp = len(sys.argv) <= 2
    base = sys.argv[2] if not own_tmp else tempfile.mkdtemp(
        prefix='glance-capture-')
    t0 = time.perf_counter()
    env = glance_app.GlanceEnv().start(base)
    print('glance loaded in %.2fs (%s) base=%s' % (
        time.perf_counter() - t0,
        {k: round(v, 2) for k, v in env.timings.items()}, base), flush=True)

    # ------------------------------------------------------------ image 1
    r = call(env, 'create_image', 'POST', '/v2/images', body={
        'name': 'gt-image', 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'private', 'audit_probe': 'x'}, expect=201)
    iid = r.json['id']
    img = '/v2/images/%s' % iid

    data = glance_app.PatternStream(20 * MIB, seed=1)
    call(env, 'upload_20MiB', 'PUT', img + '/file', body=data,
         content_type='application/octet-stream', expect=204)
    upload_md5 = data.md5

    r = call(env, 'get_image', 'GET', img, expect=200)
    assert r.json['checksum'] == upload_md5, (r.json['checksum'], upload_md5)

    r = call(env, 'download_full', 'GET', img + '/file', raw=True, expect=200)
    assert hashlib.md5(r.body).hexdigest() == upload_md5
    call(env, 'download_range_0_99', 'GET', img + '/file', raw=True,
         headers={'Range': 'bytes=0-99'}, expect=206)

    # interrupted download: PEP 3333, read 2 chunks, close()
    glance_app.reset_notifications()
    resp, got = env.interrupted_download(iid, chunks=2)
    time.sleep(0.2)  # nothing is asynchronous here; just be sure
    record('download_interrupted', 'GET', img + '/file', 'admin-token',
           resp.status, resp.header_list, got, own(), raw=True,
           note='app iterable closed after 2 chunks (%d bytes read)'
                % len(got))

    call(env, 'patch_json_patch', 'PATCH', img, body=[
        {'op': 'replace', 'path': '/name', 'value': 'gt-image-renamed'},
        {'op': 'add', 'path': '/prop2', 'value': 'v2'}],
        content_type=JSON_PATCH, expect=200)
    call(env, 'patch_wrong_media_type', 'PATCH', img, body=[
        {'op': 'replace', 'path': '/name', 'value': 'nope'}],
        content_type='application/json', expect=415)
    call(env, 'tag_add', 'PUT', img + '/tags/audit-tag', expect=204)
    call(env, 'tag_delete', 'DELETE', img + '/tags/audit-tag', expect=204)
    call(env, 'deactivate', 'POST', img + '/actions/deactivate', expect=204)
    call(env, 'reactivate', 'POST', img + '/actions/reactivate', expect=204)

    # members: Glance only allows members on visibility=shared images
    call(env, 'member_add_on_private', 'POST', img + '/members',
         body={'member': 'p-other'}, expect=403)
    call(env, 'patch_visibility_shared', 'PATCH', img, body=[
        {'op': 'replace', 'path': '/visibility', 'value': 'shared'}],
        content_type=JSON_PATCH, expect=200)
    call(env, 'member_add', 'POST', img + '/members',
         body={'member': 'p-other'}, expect=200)
    call(env, 'member_update_accept', 'PUT', img + '/members/p-other',
         token='other-token', body={'status': 'accepted'}, expect=200)
    call(env, 'member_delete', 'DELETE', img + '/members/p-other',
         expect=204)

    call(env, 'list_images', 'GET', '/v2/images', expect=200)
    call(env, 'forbidden_create_reader', 'POST', '/v2/images',
         token='reader-token', body={'name': 'no', 'disk_format': 'raw',
                                     'container_format': 'bare'},
         expect=403)
    call(env, 'invalid_json', 'POST', '/v2/images', body=b'{"name": ',
         content_type='application/json', expect=400)
    call(env, 'not_found', 'GET', '/v2/images/%s' % uuid.uuid4(),
         expect=404)
    call(env, 'delete_image', 'DELETE', img, expect=204)

    # ------------------------------------------------ image 2: glance-direct
    r = call(env, 'create_image2', 'POST', '/v2/images', body={
        'name': 'gt-staged', 'disk_format': 'raw',
        'container_format': 'bare', 'visibility': 'private'}, expect=201)
    sid = r.json['id']
    simg = '/v2/images/%s' % sid
    call(env, 'stage_1MiB', 'PUT', simg + '/stage',
         body=glance_app.PatternStream(MIB, seed=2),
         content_type='application/octet-stream', expect=204)

    glance_app.reset_notifications()
    r = env.request('POST', simg + '/import',
                    body={'method': {'name': 'glance-direct'}})
    n_at_response = len(own())
    polls = []
    status = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        g = env.request('GET', simg)
        status = g.json['status']
        polls.append(status)
        if status in ('active', 'killed', 'queued'):
            break
        time.sleep(0.05)
    try:  # task.run is sent after the whole flow, after the image is active
        glance_app.wait_for_notification('task.run', timeout=15)
        time.sleep(0.3)  # anything after task.run would show up here
    except TimeoutError as e:
        print('   !! %s' % e, file=sys.stderr)
    record('import_glance_direct', 'POST', simg + '/import', 'admin-token',
           r.status, r.header_list, r.body, own(),
           notifications_before_response=n_at_response,
           polls={'count': len(polls), 'statuses': sorted(set(polls)),
                  'final': status},
           note='notifications = everything until task.run (the GET polls '
                'emit none); the first notifications_before_response were '
                'already recorded when POST /import returned')
    call(env, 'get_image2', 'GET', simg, expect=200)

    # ---------------------------------- upload that fails: image_size_cap
    r = call(env, 'create_image3', 'POST', '/v2/images', body={
        'name': 'gt-too-big', 'disk_format': 'raw',
        'container_format': 'bare', 'visibility': 'private'}, expect=201)
    bid = r.json['id']
    with env.override('image_size_cap', MIB):
        call(env, 'upload_over_size_cap_chunked', 'PUT',
             '/v2/images/%s/file' % bid,
             body=glance_app.PatternStream(2 * MIB, seed=3), chunked=True,
             content_type='application/octet-stream', expect=413,
             note='image_size_cap = 1 MiB, 2 MiB chunked body')
    call(env, 'get_image3_after_failed_upload', 'GET', '/v2/images/%s' % bid)
    with env.override('image_size_cap', MIB):
        call(env, 'upload_over_size_cap_content_length', 'PUT',
             '/v2/images/%s/file' % bid,
             body=glance_app.PatternStream(2 * MIB, seed=3),
             content_type='application/octet-stream', expect=413,
             note='image_size_cap = 1 MiB, 2 MiB body with Content-Length')
    call(env, 'upload_size_header_mismatch', 'PUT',
         '/v2/images/%s/file' % bid,
         body=glance_app.PatternStream(2 * MIB, seed=3),
         headers={'x-openstack-image-size': '1000'},
         content_type='application/octet-stream', expect=400,
         note='x-openstack-image-size: 1000 but a 2 MiB body')
    call(env, 'delete_image2', 'DELETE', simg, expect=204)
    call(env, 'delete_image3', 'DELETE', '/v2/images/%s' % bid, expect=204)

    doc = {
        'description': "Glance 33.0.0 OWN notifications per API call "
                       "(publisher_id image.localhost, oslo.messaging test "
                       "driver), captured in-process by "
                       "tests/functional/capture_glance_own.py; no audit "
                       "filter in the pipeline. Payload values are real "
                       "data from one run.",
        'glance_version': _version('glance'),
        'oslo_messaging_version': _version('oslo.messaging'),
        'pipeline': glance_app.BASE_PIPELINE.format(audit=''),
        'tokens': {k: {'user_id': u, 'project_id': p, 'roles': r}
                   for k, (u, p, r) in glance_app.TOKENS.items()},
        'steps': STEPS,
    }
    with open(outfile, 'w') as f:
        json.dump(doc, f, indent=1, sort_keys=False)
        f.write('\n')
    print('wrote %s (%d steps) in %.1fs' % (outfile, len(STEPS),
                                            time.perf_counter() - t0))
    sys.stdout.flush()
    if own_tmp:
        shutil.rmtree(base, ignore_errors=True)
    # skip Glance's atexit pool draining noise after interpreter teardown
    os._exit(0)


def _version(dist):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == '__main__':
    main()
