"""PEP 3333 streaming through the filter: nothing buffered, close() forwarded once,
exceptions unchanged, file_wrapper kept, uploads probed without reading the body."""

from __future__ import annotations

import io
import sys

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
