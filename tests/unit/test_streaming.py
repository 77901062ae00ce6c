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

"""PEP 3333 streaming through the filter: nothing buffered, close() forwarded once,
exceptions unchanged, file_wrapper kept, uploads probed without reading the body."""

from __future__ import annotations

import io
import sys
import threading
import types

import pytest

from audit_notifier import routes
from audit_notifier.events import glance as glance_events
from audit_notifier.exchange import STARTED, Exchange
from audit_notifier.observe import InputProbe, ObservedBody

IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'


class ClosingBody:
    """An app iterable that counts close() calls and what it produced."""

    def __init__(self, chunks, start=None):
        self.chunks = list(chunks)
        self.produced = []
        self.closed = 0
        self._start = start

    def __iter__(self):
        if self._start is not None:
            self._start()
        for chunk in self.chunks:
            self.produced.append(chunk)
            yield chunk

    def close(self):
        self.closed += 1


class FileWrapper:
    """A server's wsgi.file_wrapper."""

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        self.closed = 0

    def __iter__(self):
        while True:
            data = self.filelike.read(self.blksize)
            if not data:
                return
            yield data

    def close(self):
        self.closed += 1


def cadf_events(captured):
    return [e for e in captured.all() if e['event_type'].startswith('audit.')]


# -- lazy start_response and chunk-by-chunk streaming -----------------------------------

@pytest.mark.parametrize('method, path, formats', [
    ('GET', '/v2/images/%s/file' % IMAGE, 'cadf,glance'),    # download: counted
    ('GET', '/v2/images/%s' % IMAGE, 'cadf'),                 # read, status unknown at return
    ('POST', '/v2/images', 'cadf,glance'),                    # create: body kept (small)
    ('GET', '/v2/nothing/here', 'cadf'),                      # not audited at all
])
def test_generator_app_streams_chunk_by_chunk(make_filter, captured, wsgi, method, path,
                                              formats):
    produced = []
    chunks = [b'{"id": "%s"' % IMAGE.encode(), b', "name": "x"', b'}']

    def app(environ, start_response):
        def gen():
            start_response('200 OK', [('Content-Type', 'application/json')])
            for chunk in chunks:
                produced.append(chunk)
                yield chunk
        return gen()

    mw = make_filter(app, formats=formats)
    sr = wsgi.StartResponse()
    result = mw(wsgi.environ(method, path), sr)
    assert produced == [] and sr.calls == []
    it = iter(result)
    first = next(it)
    assert first is chunks[0]                   # handed on, not copied
    assert produced == chunks[:1]               # the app has not produced the second yet
    assert sr.calls == [('200 OK', [('Content-Type', 'application/json')], None)]
    second = next(it)
    assert second is chunks[1] and produced == chunks[:2]
    assert list(it) == chunks[2:]
    result.close()


def test_download_chunks_are_not_copied_and_counted(make_filter, captured, wsgi):
    chunks = [bytes([i]) * 1000 for i in range(5)]
    body = ClosingBody(chunks)

    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/octet-stream'),
                                  ('Content-Length', '5000')])
        return body

    mw = make_filter(app, formats='cadf,glance')
    sr = wsgi.StartResponse()
    result = mw(wsgi.environ('GET', '/v2/images/%s/file' % IMAGE), sr)
    assert isinstance(result, ObservedBody)
    out = list(result)
    assert all(a is b for a, b in zip(out, chunks)) and len(out) == 5
    result.close()
    assert body.closed == 1
    send = captured.one('image.send')
    assert (send['priority'], send['payload']['bytes_sent']) == ('INFO', 5000)
    [cadf] = cadf_events(captured)
    assert cadf['payload']['measurements'][0]['result'] == 5000


def test_legacy_write_and_exc_info_are_forwarded(make_filter, captured, wsgi):
    def app(environ, start_response):
        try:
            raise KeyError('boom')
        except KeyError:
            exc_info = sys.exc_info()
        write = start_response('500 Internal Server Error', [], exc_info)
        write(b'legacy')
        app.exc_info = exc_info
        return []

    mw = make_filter(app)
    sr = wsgi.StartResponse()
    result = mw(wsgi.environ('GET', '/v2/images/%s' % IMAGE), sr)
    assert list(result) == []
    assert sr.calls == [('500 Internal Server Error', [], app.exc_info)]
    assert sr.written == [b'legacy']
    [event] = cadf_events(captured)
    assert (event['payload']['outcome'], event['priority']) == ('failure', 'ERROR')


# -- close() -------------------------------------------------------------------------------

@pytest.mark.parametrize('method, path, lazy, consume', [
    ('GET', '/v2/images/%s/file' % IMAGE, False, 'all'),
    ('GET', '/v2/images/%s/file' % IMAGE, True, 'some'),
    ('GET', '/v2/images/%s/file' % IMAGE, True, 'none'),
    ('GET', '/v2/images/%s' % IMAGE, True, 'all'),
    ('GET', '/v2/images/%s' % IMAGE, False, 'all'),            # untouched iterable
    ('POST', '/v2/images', False, 'all'),                       # body kept for the target id
    ('POST', '/v2/images', True, 'some'),
    ('GET', '/v2/unknown', False, 'all'),                       # not audited
])
def test_close_is_forwarded_exactly_once(make_filter, captured, wsgi, method, path, lazy,
                                         consume):
    start = []

    def app(environ, start_response):
        def go():
            start_response('200 OK', [('Content-Type', 'application/json')])
        body = ClosingBody([b'{"id": ', b'"%s"}' % IMAGE.encode()], start=go if lazy else None)
        start.append(body)
        if not lazy:
            go()
        return body

    mw = make_filter(app)
    result = mw(wsgi.environ(method, path), wsgi.StartResponse())
    body = start[0]
    if consume == 'all':
        assert b''.join(result) == b''.join(body.chunks)
    elif consume == 'some':
        assert next(iter(result)) == body.chunks[0]
    assert body.closed == 0
    result.close()
    assert body.closed == 1
    expected = 0 if path == '/v2/unknown' else 1
    assert len(cadf_events(captured)) == expected


def test_one_event_when_exhausted_and_closed(make_filter, captured, wsgi):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', '3')])
        return ClosingBody([b'abc'])

    mw = make_filter(app, formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s/file' % IMAGE))
    assert captured.types() == ['image.send', 'audit.image.download']


# -- exceptions ------------------------------------------------------------------------------

class AppError(Exception):
    pass


@pytest.mark.parametrize('path', ['/v2/images/%s' % IMAGE, '/v2/images/%s/file' % IMAGE])
def test_exception_from_app_call_propagates_unchanged(make_filter, captured, wsgi, path):
    error = AppError('database is gone')

    def app(environ, start_response):
        raise error

    mw = make_filter(app)
    with pytest.raises(AppError) as raised:
        mw(wsgi.environ('GET', path), wsgi.StartResponse())
    assert raised.value is error
    [event] = cadf_events(captured)
    assert event['priority'] == 'ERROR'
    assert event['payload']['outcome'] == 'failure'
    assert event['payload']['reason'] == {'reasonType': 'exception', 'reasonCode': 'AppError'}


@pytest.mark.parametrize('path', ['/v2/images/%s' % IMAGE, '/v2/images/%s/file' % IMAGE])
def test_exception_during_iteration_propagates_unchanged(make_filter, captured, wsgi, path):
    error = AppError('store went away')

    def app(environ, start_response):
        def gen():
            start_response('200 OK', [('Content-Length', '300')])
            yield b'x' * 100
            raise error
        return gen()

    mw = make_filter(app, formats='cadf,glance')
    result = mw(wsgi.environ('GET', path), wsgi.StartResponse())
    it = iter(result)
    assert next(it) == b'x' * 100
    with pytest.raises(AppError) as raised:
        next(it)
    assert raised.value is error
    result.close()
    events = cadf_events(captured)
    assert len(events) == 1
    payload = events[0]['payload']
    assert (events[0]['priority'], payload['outcome'], payload['reason']) == \
        ('ERROR', 'failure', {'reasonType': 'exception', 'reasonCode': 'AppError'})
    if path.endswith('/file'):
        assert payload['measurements'][0]['result'] == 100
        send = captured.one('image.send')
        assert send['priority'] == 'ERROR'


# -- wsgi.file_wrapper ----------------------------------------------------------------------------

@pytest.mark.parametrize('path, paste, events', [
    ('/v2/schemas/image', {}, 0),                                    # not audited
    ('/v2/images/%s' % IMAGE, {}, 1),                                # audited, nothing counted
    ('/v2/images/%s' % IMAGE, {'formats': 'glance'}, 0),             # no usage rule
    ('/v2/images/%s/file' % IMAGE, {'audit_reads': 'false'}, 0),    # read not audited
])
def test_file_wrapper_is_returned_untouched(make_filter, captured, wsgi, path, paste, events):
    def app(environ, start_response):
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        return environ['wsgi.file_wrapper'](io.BytesIO(b'data' * 10))

    mw = make_filter(app, **paste)
    environ = wsgi.environ('GET', path)
    environ['wsgi.file_wrapper'] = FileWrapper
    result = mw(environ, wsgi.StartResponse())
    assert type(result) is FileWrapper
    result.close()
    assert result.closed == 1
    assert len(captured.all()) == events


def test_file_wrapper_on_a_download_is_counted_and_closed_once(make_filter, captured, wsgi):
    wrappers = []

    def app(environ, start_response):
        start_response('200 OK', [('Content-Length', '40')])
        wrappers.append(environ['wsgi.file_wrapper'](io.BytesIO(b'data' * 10), 16))
        return wrappers[0]

    mw = make_filter(app, formats='glance')
    environ = wsgi.environ('GET', '/v2/images/%s/file' % IMAGE)
    environ['wsgi.file_wrapper'] = FileWrapper
    sr, body = wsgi.run(mw, environ)
    assert body == b'data' * 10
    assert wrappers[0].closed == 1
    send = captured.one('image.send')
    assert (send['priority'], send['payload']['bytes_sent']) == ('INFO', 40)


# -- uploads: InputProbe --------------------------------------------------------------------------

class RichInput:
    """A server's wsgi.input with more than the PEP 3333 methods."""

    def __init__(self, data):
        self._buf = io.BytesIO(data)
        self.marker = 'server-specific'

    def read(self, *args):
        return self._buf.read(*args)

    def readline(self, *args):
        return self._buf.readline(*args)

    def readlines(self, *args):
        return self._buf.readlines(*args)

    def __iter__(self):
        return iter(self._buf)

    def chunked(self):
        return 'chunked-result'


def _upload_route():
    rm = routes.load('glance', usage_rules=glance_events.RULES)
    return rm.match('PUT', '/v2/images/%s/file' % IMAGE)[0]


def test_input_probe_delegates_and_starts_once():
    calls = []
    exchange = Exchange(_upload_route(), {'image_id': IMAGE}, [])
    data = b'line1\nline2\nline3\nline4\nrest'
    probe = InputProbe(RichInput(data), exchange, lambda phase, ex: calls.append((phase, ex)))
    assert calls == []
    assert probe.read(3) == b'lin'
    assert calls == [(STARTED, exchange)]
    assert probe.readline() == b'e1\n'
    assert probe.readlines(1) == [b'line2\n']
    assert list(probe) == [b'line3\n', b'line4\n', b'rest']
    assert probe.read() == b''
    assert probe.marker == 'server-specific'
    assert probe.chunked() == 'chunked-result'
    with pytest.raises(AttributeError):
        probe.no_such_attribute
    assert calls == [(STARTED, exchange)]
    assert exchange.upload_started is True
    assert exchange.bytes_received == len(data)


@pytest.mark.parametrize('first', ['read', 'readline', 'readlines', 'iter'])
def test_input_probe_empty_body_still_starts_once(first):
    calls = []
    exchange = Exchange(_upload_route(), {'image_id': IMAGE}, [])
    probe = InputProbe(io.BytesIO(b''), exchange, lambda phase, ex: calls.append(phase))
    for _ in range(2):
        if first == 'read':
            assert probe.read(10) == b''
        elif first == 'readline':
            assert probe.readline() == b''
        elif first == 'readlines':
            assert probe.readlines() == []
        else:
            assert list(probe) == []
    # iterating an empty body yields nothing to see: no start either
    assert calls == ([] if first == 'iter' else [STARTED])
    assert exchange.bytes_received == 0


def test_upload_through_filter(make_filter, captured, wsgi):
    data = b'header\n' + b'x' * 5000 + b'\nmore\nend'
    seen = {}

    def app(environ, start_response):
        stream = environ['wsgi.input']
        seen['first'] = stream.read(7)
        seen['line'] = stream.readline()
        seen['rest'] = b''.join(stream)
        seen['marker'] = stream.marker
        start_response('204 No Content', [])
        return []

    mw = make_filter(app, formats='cadf,glance')
    wsgi.run(mw, wsgi.environ('PUT', '/v2/images/%s/file' % IMAGE, body=RichInput(data),
                              CONTENT_LENGTH=str(len(data))))
    assert seen == {'first': b'header\n', 'line': b'x' * 5000 + b'\n', 'rest': b'more\nend',
                    'marker': 'server-specific'}
    types = captured.types()
    assert types.count('image.prepare') == 1
    assert types[:2] == ['image.update', 'image.prepare']
    assert types[-1] == 'audit.image.upload'
    cadf = captured.one('audit.image.upload')['payload']
    assert cadf['measurements'][0]['result'] == len(data)
    assert cadf['measurements'][0]['metric']['name'] == 'bytes_received'


# -- the request body is the app's alone ----------------------------------------------------------

class GuardedInput:
    """Fails (records) any read that happens before the app allows it."""

    def __init__(self, data):
        self._buf = io.BytesIO(data)
        self.allowed = False
        self.early = []
        self.reads = 0

    def _check(self, name):
        self.reads += 1
        if not self.allowed:
            self.early.append(name)
            raise AssertionError('wsgi.input.%s before the app read it' % name)

    def read(self, *args):
        self._check('read')
        return self._buf.read(*args)

    def readline(self, *args):
        self._check('readline')
        return self._buf.readline(*args)

    def readlines(self, *args):
        self._check('readlines')
        return self._buf.readlines(*args)

    def __iter__(self):
        self._check('__iter__')
        return iter(self._buf)

    def seek(self, *args):
        self._check('seek')

    def tell(self):
        self._check('tell')


@pytest.mark.parametrize('method, path, ctype', [
    ('PUT', '/v2/images/%s/file' % IMAGE, 'application/octet-stream'),
    ('PUT', '/v2/images/%s/stage' % IMAGE, 'application/octet-stream'),
    ('POST', '/v2/images', 'application/json'),
    ('PATCH', '/v2/images/%s' % IMAGE, 'application/openstack-images-v2.1-json-patch'),
    ('POST', '/v2/images/%s/members' % IMAGE, 'application/json'),
    ('DELETE', '/v2/images/%s' % IMAGE, 'application/json'),
    ('POST', '/v2/tasks', 'application/json'),
    ('PUT', '/v1/images/%s' % IMAGE, 'application/octet-stream'),
])
@pytest.mark.parametrize('app_reads', [True, False])
def test_request_body_is_never_read_by_the_filter(make_filter, captured, wsgi, method, path,
                                                  ctype, app_reads):
    payload = b'{"name": "x", "member": "m"}'
    guard = GuardedInput(payload)

    def app(environ, start_response):
        if environ.get('audit_notifier.subrequest'):
            start_response('200 OK', [('Content-Type', 'application/json')])
            return [b'{"id": "%s", "status": "active"}' % IMAGE.encode()]
        if app_reads:
            guard.allowed = True
            assert environ['wsgi.input'].read() == payload
            start_response('201 Created', [('Content-Type', 'application/json')])
            return [b'{"id": "%s", "member_id": "m"}' % IMAGE.encode()]
        start_response('413 Request Entity Too Large', [('Content-Type', 'text/plain')])
        return [b'too large']

    mw = make_filter(app, formats='cadf,glance', record_lookups='true',
                     unmatched_requests='audit')
    wsgi.run(mw, wsgi.environ(method, path, body=guard,
                              headers={'Content-Type': ctype,
                                       'Content-Length': str(len(payload))}))
    captured.all()                                  # the sender has built every event
    assert guard.early == []
    assert guard.reads == (1 if app_reads else 0)
    assert mw.delivery.counters['build_errors'] == 0
    assert len(captured.all()) >= 1


# -- requestPath is what the client asked for -----------------------------------------------------

@pytest.mark.parametrize('script_name', ['', '/image'])
def test_path_rewritten_by_app_does_not_change_request_path(make_filter, captured, wsgi,
                                                            script_name):
    def app(environ, start_response):
        # Glance's URL map moves /v2 into SCRIPT_NAME; others rewrite freely
        environ['SCRIPT_NAME'] += '/v2'
        environ['PATH_INFO'] = '/images/%s' % IMAGE
        environ['QUERY_STRING'] = 'rewritten=1'
        environ['PATH_INFO'] = '/somewhere/else'
        start_response('404 Not Found', [('Content-Type', 'text/plain')])
        return [b'no such image']

    mw = make_filter(app, formats='cadf,glance', usage_failures='true')
    environ = wsgi.environ('PATCH', '/v2/images/%s' % IMAGE, query='a=1',
                           SCRIPT_NAME=script_name)
    wsgi.run(mw, environ)
    cadf = captured.one('audit.image.update')['payload']
    assert cadf['requestPath'] == '%s/v2/images/%s?a=1' % (script_name, IMAGE)
    assert cadf['target']['id'] == IMAGE
    update = captured.one('image.update')
    assert update['priority'] == 'WARN'
    assert update['payload'].startswith('PATCH %s/v2/images/%s failed: 404 Not Found'
                                        % (script_name, IMAGE))


# -- the probe offers exactly the reading methods of its input (issue 8, item 1) ----------

READING_METHODS = ('read', 'readline', 'readlines', '__iter__', '__next__')


class IterableOnly:
    """Glance's own tests' StreamSim: a body that can only be iterated."""

    def __init__(self, chunks):
        self.chunks = chunks

    def __iter__(self):
        return iter(self.chunks)


class ReadOnly:
    def __init__(self, data):
        self._buf = io.BytesIO(data)

    def read(self, *args):
        return self._buf.read(*args)


def _generator(chunks):
    yield from chunks


class GlanceStyleReader:
    """What Glance's CooperativeReader does with an upload body: read() when the
    input has it, else iterate (glance/common/utils.py)."""

    def __init__(self, fd):
        self.fd = fd

    def chunks(self):
        if hasattr(self.fd, 'read'):
            while True:
                data = self.fd.read(4)
                if not data:
                    return
                yield data
        else:
            yield from self.fd.__iter__()


@pytest.mark.parametrize('make_input', [
    lambda chunks: IterableOnly(chunks),
    lambda chunks: _generator(chunks),
    lambda chunks: ReadOnly(b''.join(chunks)),
    lambda chunks: io.BytesIO(b''.join(chunks)),
    lambda chunks: RichInput(b''.join(chunks)),
], ids=['iterable-only', 'generator', 'read-only', 'BytesIO', 'rich'])
def test_input_probe_has_exactly_the_reading_methods_of_its_input(make_input):
    chunks = [b'Z' * 7, b'Y' * 5]
    body_input = make_input(chunks)
    calls = []
    exchange = Exchange(_upload_route(), {'image_id': IMAGE}, [])
    probe = InputProbe(body_input, exchange, lambda phase, ex: calls.append(phase))
    offered = {name: hasattr(probe, name) for name in READING_METHODS}
    assert offered == {name: hasattr(body_input, name) for name in READING_METHODS}
    assert isinstance(probe, InputProbe)
    assert b''.join(GlanceStyleReader(probe).chunks()) == b''.join(chunks)
    assert calls == [STARTED]
    assert exchange.bytes_received == 12


def test_input_probe_of_an_iterator_can_be_advanced_with_next():
    exchange = Exchange(_upload_route(), {'image_id': IMAGE}, [])
    calls = []
    probe = InputProbe(_generator([b'ab', b'cde']), exchange, lambda p, ex: calls.append(p))
    assert next(probe) == b'ab'
    assert list(probe) == [b'cde']
    with pytest.raises(StopIteration):
        next(probe)
    assert (calls, exchange.bytes_received) == ([STARTED], 5)


def test_input_probe_classes_are_made_once_per_set_of_methods():
    exchange = Exchange(_upload_route(), {'image_id': IMAGE}, [])
    submit = lambda phase, ex: None                                   # noqa: E731
    first = InputProbe(IterableOnly([]), exchange, submit)
    second = InputProbe(IterableOnly([b'x']), exchange, submit)
    other = InputProbe(io.BytesIO(b''), exchange, submit)
    assert type(first) is type(second)
    assert type(first) is not type(other)
    assert not hasattr(first, 'read') and hasattr(other, 'read')


@pytest.mark.parametrize('make_body', [
    lambda data: IterableOnly([data]),              # Glance's test_image_size_cap
    lambda data: _generator([data]),                # Glance's test_chunked_image_upload_*
], ids=['iterable-only', 'generator'])
def test_iterable_only_upload_through_filter(make_filter, captured, wsgi, make_body):
    data = b'Z' * 129
    seen = {}

    def app(environ, start_response):
        seen['has_read'] = hasattr(environ['wsgi.input'], 'read')
        seen['data'] = b''.join(GlanceStyleReader(environ['wsgi.input']).chunks())
        start_response('204 No Content', [])
        return []

    mw = make_filter(app, formats='cadf,glance')
    sr, body = wsgi.run(mw, wsgi.environ('PUT', '/v2/images/%s/file' % IMAGE,
                                         body=make_body(data),
                                         headers={'Transfer-Encoding': 'chunked'}))
    assert (sr.status, body) == ('204 No Content', b'')
    assert seen == {'has_read': False, 'data': data}
    assert captured.types() == ['image.update', 'image.prepare', 'image.upload',
                                'image.activate', 'image.update', 'audit.image.upload']
    [measurement] = captured.one('audit.image.upload')['payload']['measurements']
    assert (measurement['metric']['name'], measurement['result']) == ('bytes_received', 129)


# -- uWSGI: chunked uploads read with uwsgi.chunked_read() (issue 8, item 2) --------------

class FakeUwsgi(types.ModuleType):
    """The ``uwsgi`` module of uWSGI's embedded interpreter: ``chunked_read()`` hands
    out the body of the chunked request the calling thread serves, one chunk a call,
    then b''."""

    def __init__(self):
        super().__init__('uwsgi')
        self.bodies = {}                      # thread id -> chunks still to read
        self.handed_out = []

        def chunked_read(timeout=None):
            chunks = self.bodies.get(threading.get_ident())
            chunk = chunks.pop(0) if chunks else b''
            self.handed_out.append(chunk)
            return chunk
        self.chunked_read = chunked_read


@pytest.fixture
def fake_uwsgi(monkeypatch):
    module = FakeUwsgi()
    monkeypatch.setitem(sys.modules, 'uwsgi', module)
    return module


def glance_uwsgi_app(returned, barrier=None):
    """An app that reads a chunked body as Glance does under uWSGI
    (glance/common/wsgi.py _UWSGIChunkFile): uwsgi.chunked_read() until b''."""
    def app(environ, start_response):
        import uwsgi
        got = []
        while True:
            data = uwsgi.chunked_read()
            if not data:
                break
            got.append(data)
            if barrier is not None and len(got) == 1:
                barrier.wait(30)              # both uploads are half-way now
        returned.append(got)
        start_response('204 No Content', [])
        return []
    return app


def _chunked_put(wsgi, path):
    # wsgi.input is never read: reading it fails the test
    return wsgi.environ('PUT', path, body=GuardedInput(b''),
                        headers={'Transfer-Encoding': 'chunked'})


@pytest.mark.parametrize('path, usage', [
    ('/v2/images/%s/file' % IMAGE, ['image.update', 'image.prepare', 'image.upload',
                                    'image.activate', 'image.update']),
    ('/v2/images/%s/stage' % IMAGE, ['image.update', 'image.update']),
])
def test_uwsgi_chunked_upload_is_observed(make_filter, captured, wsgi, fake_uwsgi, path,
                                          usage):
    chunks = [b'a' * 1000, b'b' * 24, b'c']
    fake_uwsgi.bodies[threading.get_ident()] = list(chunks)
    returned = []
    mw = make_filter(glance_uwsgi_app(returned), formats='cadf,glance')
    environ = _chunked_put(wsgi, path)
    sr, body = wsgi.run(mw, environ)
    assert (sr.status, body) == ('204 No Content', b'')
    # the very objects uwsgi handed out, unchanged
    assert len(returned[0]) == 3 and all(a is b for a, b in zip(returned[0], chunks))
    assert environ['wsgi.input']._input.reads == 0
    types_ = captured.types()
    assert types_ == usage + [types_[-1]] and types_[-1].startswith('audit.image.')
    [measurement] = captured.all()[-1]['payload']['measurements']
    assert (measurement['metric']['name'], measurement['result']) == ('bytes_received', 1025)


def test_uwsgi_wrapper_is_installed_once_and_credits_nothing_else(make_filter, captured,
                                                                  wsgi, fake_uwsgi):
    returned = []
    app = glance_uwsgi_app(returned)
    make_filter(app, formats='cadf')
    wrapper = fake_uwsgi.chunked_read
    mw = make_filter(app, formats='cadf')           # a second filter: no second wrapper
    assert fake_uwsgi.chunked_read is wrapper
    me = threading.get_ident()
    # outside any call: the data as it was
    fake_uwsgi.bodies[me] = [b'loose']
    assert fake_uwsgi.chunked_read() is fake_uwsgi.handed_out[-1] == b'loose'
    # a chunked call of a route that is not an upload is not counted
    fake_uwsgi.bodies[me] = [b'{"name": "x"}']
    wsgi.run(mw, wsgi.environ('POST', '/v2/images', body=GuardedInput(b''),
                              headers={'Transfer-Encoding': 'chunked'}))
    # a Content-Length upload is counted from wsgi.input only (this app never reads it)
    fake_uwsgi.bodies[me] = [b'not-a-chunked-request']
    wsgi.run(mw, wsgi.environ('PUT', '/v2/images/%s/file' % IMAGE, body=b'12345'))
    # the chunked upload after them counts its own bytes only
    fake_uwsgi.bodies[me] = [b'xyz']
    wsgi.run(mw, _chunked_put(wsgi, '/v2/images/%s/file' % IMAGE))
    events = captured.all()
    assert [e['event_type'] for e in events] == ['audit.image.create', 'audit.image.upload',
                                                 'audit.image.upload']
    assert 'measurements' not in events[0]['payload']
    assert 'measurements' not in events[1]['payload']               # no upload started
    assert events[2]['payload']['measurements'][0]['result'] == 3


def test_uwsgi_concurrent_chunked_uploads_count_their_own_bytes(make_filter, captured, wsgi,
                                                                fake_uwsgi):
    barrier = threading.Barrier(2)
    returned = []
    mw = make_filter(glance_uwsgi_app(returned, barrier), formats='cadf')
    sizes = {'3f1b4a52-9c57-4d0e-8a3e-000000000001': 3000,
             '3f1b4a52-9c57-4d0e-8a3e-000000000002': 700}
    errors = []

    def upload(image_id):
        try:
            size = sizes[image_id]
            fake_uwsgi.bodies[threading.get_ident()] = [b'x' * (size - 100), b'y' * 100]
            wsgi.run(mw, _chunked_put(wsgi, '/v2/images/%s/file' % image_id))
        except BaseException as exc:          # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload, args=(i,)) for i in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    got = {e['payload']['target']['id']: e['payload']['measurements'][0]['result']
           for e in captured.all()}
    assert got == sizes


# -- byte measurements only for image data (issue 8, item 3) -------------------------------

ERROR_PAGE = (b'<html>\n <head>\n  <title>403 Forbidden</title>\n </head>\n <body>\n'
              b'  <h1>403 Forbidden</h1>\n  You are not authorized to complete '
              b'get_image_data action.<br /><br />\n\n\n\n </body>\n</html>')


@pytest.mark.parametrize('status, body, measured', [
    ('200 OK', b'image-data' * 10, 100),
    ('206 Partial Content', b'image-data', 10),
    ('204 No Content', b'', None),                     # Glance: the store has no data
    ('403 Forbidden', ERROR_PAGE, None),
    ('404 Not Found', b'404 Not Found\n\nNo image found with ID x\n\n   ', None),
    ('500 Internal Server Error', b'{"message": "boom"}', None),
])
def test_download_measures_image_data_only(make_filter, captured, wsgi, status, body,
                                           measured):
    def app(environ, start_response):
        def gen():
            start_response(status, [('Content-Type', 'application/octet-stream'),
                                    ('Content-Length', str(len(body)))])
            if body:
                yield body
        return gen()

    mw = make_filter(app, formats='cadf,glance')
    sr, sent = wsgi.run(mw, wsgi.environ('GET', '/v2/images/%s/file' % IMAGE))
    assert (sr.status, sent) == (status, body)
    cadf = captured.one('audit.image.download')['payload']
    if measured is None:
        assert 'measurements' not in cadf
    else:
        assert cadf['measurements'] == [{'result': measured, 'metric': cadf_metric('bytes_sent')}]
    send = captured.one('image.send')
    if status[0] == '2':
        assert (send['priority'], send['payload']['bytes_sent']) == ('INFO', len(body))
    else:
        # Glance sends no image.send for a failed download; ours is the failure
        # text (no bytes_sent dict), whose explanation part other tests check
        assert send['priority'] == ('WARN' if status[0] == '4' else 'ERROR')
        assert isinstance(send['payload'], str)
        assert send['payload'].startswith('GET /v2/images/%s/file failed: %s: '
                                          % (IMAGE, status))


@pytest.mark.parametrize('reads', [False, True])
def test_upload_measures_bytes_only_once_the_upload_started(make_filter, captured, wsgi,
                                                            reads):
    def app(environ, start_response):
        if reads:
            environ['wsgi.input'].read()
            start_response('413 Request Entity Too Large', [('Content-Type', 'text/plain')])
            return [b'The incoming image is too large']
        start_response('403 Forbidden', [('Content-Type', 'text/plain')])
        return [b'You are not authorized to complete upload_image action.']

    mw = make_filter(app, formats='cadf')
    wsgi.run(mw, wsgi.environ('PUT', '/v2/images/%s/file' % IMAGE, body=b'x' * 300))
    cadf = captured.one('audit.image.upload')['payload']
    if reads:
        assert cadf['measurements'] == [{'result': 300,
                                         'metric': cadf_metric('bytes_received')}]
    else:
        assert 'measurements' not in cadf


def cadf_metric(name):
    from audit_notifier.events import cadf
    return {'bytes_sent': cadf.BYTES_SENT_METRIC,
            'bytes_received': cadf.BYTES_RECEIVED_METRIC}[name]
