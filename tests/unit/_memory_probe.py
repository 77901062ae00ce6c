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

"""Peak-RSS probe for test_memory.py, run in a fresh interpreter.

    python _memory_probe.py <stream|keep> <bytes>

Serves one ``GET /v2/images/{id}/file`` through the audit filter from a generator
app that yields fresh 64 KiB chunks (and calls start_response lazily), consuming the
WSGI iterable directly like a server.  ``stream`` drops each chunk once consumed;
``keep`` holds every chunk (the control: proves the probe sees buffering).  Prints
one JSON line: peak RSS before and after (KiB, VmHWM of /proc/self/status), bytes consumed and
the image.send / CADF byte counts.
"""

import gc
import json
import os
import shutil
import sys
import tempfile
import warnings

warnings.simplefilter('ignore')
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from oslo_config import cfg  # noqa: E402
from oslo_messaging.notify import _impl_test  # noqa: E402

from audit_notifier import middleware  # noqa: E402

CHUNK = 64 * 1024
IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'


def app_for(total):
    def app(environ, start_response):
        def gen():
            start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                      ('Content-Length', str(total))])
            sent = 0
            i = 0
            while sent < total:
                n = min(CHUNK, total - sent)
                # a fresh object every time, its memory written: nothing shared
                chunk = (i.to_bytes(8, 'big') * (CHUNK // 8))[:n]
                i += 1
                sent += n
                yield chunk
        return gen()
    return app


def peak_rss_kib() -> int:
    """This address space's peak RSS.  Not ru_maxrss: Linux keeps that across execve,
    so a probe started from a large process (pytest with Glance loaded) would start
    at the parent's high-water mark and see no growth at all."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise RuntimeError('no VmHWM in /proc/self/status')


def serve(mw, keep):
    environ = {'REQUEST_METHOD': 'GET', 'SCRIPT_NAME': '',
               'PATH_INFO': '/v2/images/%s/file' % IMAGE, 'QUERY_STRING': '',
               'SERVER_NAME': 'localhost', 'SERVER_PORT': '9292',
               'SERVER_PROTOCOL': 'HTTP/1.1', 'REMOTE_ADDR': '127.0.0.1',
               'wsgi.version': (1, 0), 'wsgi.url_scheme': 'http',
               'wsgi.input': None, 'wsgi.errors': sys.stderr, 'wsgi.multithread': True,
               'wsgi.multiprocess': False, 'wsgi.run_once': False}
    kept = []
    consumed = 0
    result = mw(environ, lambda status, headers, exc_info=None: None)
    try:
        for chunk in result:
            consumed += len(chunk)
            if keep:
                kept.append(chunk)
    finally:
        result.close()
    return consumed, kept


def main():
    mode, total = sys.argv[1], int(sys.argv[2])
    spool = tempfile.mkdtemp(prefix='audit-memprobe-')
    try:
        mw = middleware.filter_factory(
            {}, oslo_config_config=cfg.ConfigOpts(), driver='test', formats='cadf,glance',
            record_lookups='false', journal_dir=spool, stats_interval='0')(app_for)
        # warm up: threads started, code paths imported, a small download served
        mw._app = app_for(4 * CHUNK)
        serve(mw, keep=False)
        mw.delivery.flush()
        _impl_test.reset()
        mw._app = app_for(total)
        gc.collect()
        before = peak_rss_kib()
        consumed, kept = serve(mw, keep=(mode == 'keep'))
        after = peak_rss_kib()
        mw.delivery.flush()
        events = {m['event_type']: m for _, m, _, _ in _impl_test.NOTIFICATIONS}
        send = events.get('image.send')
        cadf = events.get('audit.image.download')
        print(json.dumps({
            'before_kib': before, 'after_kib': after, 'consumed': consumed,
            'kept_chunks': len(kept),
            'event_types': sorted(events),
            'send_bytes': send and send['payload']['bytes_sent'],
            'send_priority': send and send['priority'],
            'cadf_bytes': cadf and cadf['payload']['measurements'][0]['result'],
            'cadf_outcome': cadf and cadf['payload']['outcome'],
        }))
        mw.delivery.close()
    finally:
        shutil.rmtree(spool, ignore_errors=True)


if __name__ == '__main__':
    main()
