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

"""Response and stream observation (PEP 3333), without buffering anything.

The app is called directly, never through ``webob.Request.get_response`` (which
buffers the whole body of a generator app that calls ``start_response`` lazily).
``start_response`` is wrapped to capture status and headers; the body is handed on
chunk by chunk, counted with ``len(chunk)`` where the route needs byte counts, and
its ``close()`` forwarded.  Completion is the end of iteration or ``close()``,
whichever comes first; ``close()`` without the end means the client went away.
Before the first chunk of a streamed body is handed on, the call is submitted as
``responded`` (journaled), and again as ``finished`` at its end.

When a call needs neither counting nor its body and its status is already known
when the app returns (webob apps call ``start_response`` before returning), the
app's own iterable is returned untouched, so ``wsgi.file_wrapper`` keeps working.

An upload's ``wsgi.input`` is wrapped in an :class:`InputProbe` offering exactly the
reading methods of the input (see there); a chunked upload that the app reads with
``uwsgi.chunked_read()`` is counted by :mod:`audit_notifier.uwsgi_input`.  At audit
policy level request and above, a JSON request body (never an upload's) is teed by a
:class:`CaptureInput` up to ``capture_limit``; at request_response a JSON response is
kept by reference as error bodies are (at most MAX_BODY, never a download's).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable

from audit_notifier import uwsgi_input
from audit_notifier.exchange import FINISHED, MAX_BODY, RESPONDED, STARTED, Exchange

Submit = Callable[[str, Exchange], None]
# policy.REQUEST_RESPONSE: the response body is kept (by reference, at most MAX_BODY)
RESPONSE_LEVEL = 3


def call_observed(app, environ: dict, start_response, exchange: Exchange,
                  submit: Submit) -> Iterable[bytes]:
    def capture_start_response(status, headers, exc_info=None):
        exchange.status = status
        exchange.headers = headers
        return start_response(status, headers, exc_info)

    route = exchange.route
    chunked_reads = None
    if exchange.captured is not None:   # a JSON body at level request+ (never image data)
        body_input = environ.get('wsgi.input')
        if body_input is not None:
            environ['wsgi.input'] = CaptureInput(body_input, exchange)
    elif route.observe == 'upload':
        body_input = environ.get('wsgi.input')
        if body_input is not None:
            probe = InputProbe(body_input, exchange, submit)
            environ['wsgi.input'] = probe
            if uwsgi_input.wrapped and uwsgi_input.is_chunked(environ):
                chunked_reads = uwsgi_input.credit_chunked_reads(probe._seen)
    try:
        body = app(environ, capture_start_response)
    except BaseException as exc:
        exchange.raised = type(exc).__name__
        finish(exchange, submit)
        raise
    finally:
        if chunked_reads is not None:
            uwsgi_input.stop(chunked_reads)
    if exchange.status is not None and route.observe != 'download':
        failed = exchange.status[:1] in ('4', '5')
        respond_capture = exchange.capture and exchange.level >= RESPONSE_LEVEL
        if not route.wants_body and not failed and not respond_capture:
            finish(exchange, submit)
            return body
        if type(body) is list:          # webob's Response: the body is already in memory
            exchange.body = body if _small(body) else None
            if exchange.body is None and respond_capture:   # its size, for "truncated"
                exchange.response_size = sum(map(len, body))
            finish(exchange, submit)
            return body
    return ObservedBody(body, exchange, submit)


def finish(exchange: Exchange, submit: Submit) -> None:
    if exchange.finished_at is None:
        exchange.finished_at = time.time()
        submit(FINISHED, exchange)


def _small(chunks: list) -> bool:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_BODY:
            return False
    return True


class ObservedBody:
    """The app's iterable, handed on chunk by chunk, with close() forwarded."""

    __slots__ = ('_body', '_exchange', '_submit')

    def __init__(self, body: Iterable[bytes], exchange: Exchange, submit: Submit):
        self._body = body
        self._exchange = exchange
        self._submit = submit

    def __iter__(self):
        exchange = self._exchange
        keep = None                     # decided at the first chunk, once the status is known
        kept = None
        kept_len = 0
        try:
            for chunk in self._body:
                exchange.bytes_sent += len(chunk)
                if keep is None:
                    keep = (exchange.route.wants_body or
                            (exchange.status or '')[:1] in ('4', '5') or
                            (exchange.capture and exchange.level >= RESPONSE_LEVEL and
                             exchange.route.observe != 'download'))
                    kept = [] if keep else None
                    # Journaled before the first byte leaves: a crash now still
                    # reports the call (as incomplete).
                    self._submit(RESPONDED, exchange)
                if keep:
                    kept_len += len(chunk)
                    if kept_len <= MAX_BODY:
                        kept.append(chunk)
                    else:
                        keep = False
                        kept = None
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            exchange.raised = type(exc).__name__
            finish(exchange, self._submit)
            raise
        exchange.completed = True
        exchange.body = kept
        finish(exchange, self._submit)

    def close(self) -> None:
        try:
            close = getattr(self._body, 'close', None)
            if close is not None:
                close()
        finally:
            finish(self._exchange, self._submit)


def _read(self, *args):
    data = self._input.read(*args)
    self._seen(data)
    return data


def _readline(self, *args):
    data = self._input.readline(*args)
    self._seen(data)
    return data


def _readlines(self, *args):
    lines = self._input.readlines(*args)
    for line in lines:
        self._seen(line)
    if not lines:
        self._seen(b'')
    return lines


def _iter(self):
    for chunk in self._input:
        self._seen(chunk)
        yield chunk


def _next(self):
    chunk = next(self._input)
    self._seen(chunk)
    return chunk


# The reading methods a probe copies from its input, with their probing versions.
_READERS = (('read', _read), ('readline', _readline), ('readlines', _readlines),
            ('__iter__', _iter), ('__next__', _next))
# (wrapper class, which reading methods) -> its subclass with exactly those methods
# (at most 32 per wrapper), made on first use.
_READER_CLASSES: dict[tuple, type] = {}


def _with_readers_of(wrapper: type, body_input) -> object:
    """A new, uninitialised ``wrapper`` instance whose class has exactly the
    reading methods ``body_input`` has (cached; 5 ``hasattr`` and a dict look-up)."""
    has = tuple([hasattr(body_input, name) for name, _ in _READERS])
    cls = _READER_CLASSES.get((wrapper, has))
    if cls is None:
        methods = {name: method for (name, method), present in zip(_READERS, has) if present}
        cls = type(wrapper.__name__, (wrapper,), dict(methods, __slots__=()))
        _READER_CLASSES[(wrapper, has)] = cls
    return object.__new__(cls)


class InputProbe:
    """Delegates to ``wsgi.input``; the first read marks the start of an upload.

    It never reads on its own: the app pulls the data exactly as before.  Apps pick
    how to read by what the input offers (Glance's ``CooperativeReader`` iterates an
    input without ``read``), so a probe has exactly the reading methods of the input
    it wraps: ``InputProbe(...)`` makes the probe from the subclass for that set of
    methods (cached; 5 ``hasattr`` and a dict look-up per upload).  Any other
    attribute is the input's own.
    """

    __slots__ = ('_input', '_exchange', '_submit')

    def __new__(cls, body_input, exchange: Exchange, submit: Submit):
        return _with_readers_of(InputProbe, body_input)

    def __init__(self, body_input, exchange: Exchange, submit: Submit):
        self._input = body_input
        self._exchange = exchange
        self._submit = submit

    def _seen(self, data) -> None:
        exchange = self._exchange
        if not exchange.upload_started:
            exchange.upload_started = True
            self._submit(STARTED, exchange)
        if data:
            exchange.bytes_received += len(data)

    def __getattr__(self, name):
        return getattr(self._input, name)


class CaptureInput:
    """Delegates to ``wsgi.input`` and keeps a copy of what the app reads, up to a cap.

    Levels request and request_response, JSON bodies only (never an upload's image
    data: those routes are not captured).  Like :class:`InputProbe` it never reads
    on its own and offers exactly the reading methods of its input; the app gets the
    very objects the input returned.  At most ``exchange.capture`` bytes are ever
    held: when the body goes past the cap the copy is dropped and only counted
    (``exchange.captured`` None, ``exchange.captured_size`` the bytes read).
    Request path: a ``bytearray`` append per read.
    """

    __slots__ = ('_input', '_exchange')

    def __new__(cls, body_input, exchange: Exchange):
        return _with_readers_of(CaptureInput, body_input)

    def __init__(self, body_input, exchange: Exchange):
        self._input = body_input
        self._exchange = exchange

    def _seen(self, data) -> None:
        if not data:
            return
        exchange = self._exchange
        exchange.captured_size += len(data)
        kept = exchange.captured
        if kept is not None:
            if exchange.captured_size <= exchange.capture:
                kept += data
            else:
                exchange.captured = None

    def __getattr__(self, name):
        return getattr(self._input, name)
