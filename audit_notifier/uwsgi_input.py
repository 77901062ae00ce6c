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

"""Upload bodies that the app reads with ``uwsgi.chunked_read()``, not ``wsgi.input``.

Under uWSGI a request with ``Transfer-Encoding: chunked`` (what glanceclient sends)
is read by Glance through ``uwsgi.chunked_read()`` (glance/common/wsgi.py,
``Request.body_file`` -> ``_UWSGIChunkFile``); ``wsgi.input`` is never touched, so
the :class:`~audit_notifier.observe.InputProbe` alone would see no data: no upload
start (Glance's image.update ``saving`` and image.prepare) and no bytes_received.

So, inside uWSGI only (the ``uwsgi`` module imports only in its embedded
interpreter), :func:`install` replaces the module attribute ``uwsgi.chunked_read``
once per process, when the filter is built, with a wrapper that returns exactly what
the original returned and credits it to the upload being read in the current
context (thread or greenlet), if any.  The observer sets that upload with
:func:`credit_chunked_reads` only for calls of an upload route whose request is
chunked, for the duration of the app call (Glance reads the whole body before it
answers).

Cost: nothing for calls that are not chunked uploads; one ``ContextVar.get()`` per
``chunked_read()`` call, plus the byte count for a chunked upload (the same work as
a ``wsgi.input`` read).  ``chunked_read_nb`` (non-blocking, for async apps) is not
wrapped: Glance does not use it.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Callable

# The counter of the upload whose body this context is reading, if any.
_UPLOAD: contextvars.ContextVar[Callable[[bytes], None] | None] = contextvars.ContextVar(
    'audit_notifier_chunked_upload', default=None)

# True once uwsgi.chunked_read is wrapped in this process.
wrapped = False


def install() -> bool:
    """Wrap ``uwsgi.chunked_read`` (once per process) when running inside uWSGI."""
    global wrapped
    try:
        import uwsgi
    except ImportError:
        return False
    original = getattr(uwsgi, 'chunked_read', None)
    if original is None:
        return False
    if getattr(original, '_audit_notifier_wrapper', False):
        wrapped = True
        return True

    @functools.wraps(original)
    def chunked_read(*args, **kwargs):
        data = original(*args, **kwargs)
        seen = _UPLOAD.get()
        if seen is not None:
            seen(data)
        return data

    chunked_read._audit_notifier_wrapper = True
    uwsgi.chunked_read = chunked_read
    wrapped = True
    return True


def is_chunked(environ: dict) -> bool:
    return 'chunked' in environ.get('HTTP_TRANSFER_ENCODING', '').lower()


def credit_chunked_reads(seen: Callable[[bytes], None]) -> contextvars.Token:
    """Credit this context's ``chunked_read()`` data to ``seen`` until :func:`stop`."""
    return _UPLOAD.set(seen)


def stop(token: contextvars.Token) -> None:
    _UPLOAD.reset(token)
