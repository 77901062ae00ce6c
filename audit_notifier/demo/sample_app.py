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

"""A small in-memory image API that answers like Glance v2, and a demo auth filter.

Used by ``audit-notifier demo`` (:mod:`audit_notifier.demo.runner` wraps it in
the filter in code) so the audit filter can be watched end to end without
OpenStack: no database, no store, no Keystone, nothing but the standard library
(plain WSGI, no WebOb).  What it copies from Glance 33 (``glance/api/v2/images.py``,
``image_data.py``, ``policy.py``) is what the audit filter looks at:

* routes and statuses: ``GET``/``POST /v2/images`` (200 / 201 + ``Location``),
  ``GET``/``PATCH``/``DELETE /v2/images/{id}`` (200 / 200 / 204),
  ``PUT``/``GET /v2/images/{id}/file`` (204 / 200), ``PUT``/``DELETE
  /v2/images/{id}/tags/{tag}`` (204), ``POST /v2/images/{id}/actions/deactivate``
  and ``reactivate`` (204); any other method on those paths is 405 with ``Allow``;
* the image view, with Glance's keys in Glance's order, and ``x-openstack-request-id``;
* PATCH only with ``application/openstack-images-v2.1-json-patch`` (or v2.0's),
  415 otherwise; read-only and reserved attributes refused with 403;
* errors as WebOb words them for Glance: ``{"message", "code", "title"}`` JSON;
* the upload reads ``wsgi.input`` in chunks (never the whole body at once) and moves
  the image queued -> saving -> active, with ``size``, ``virtual_size`` (raw),
  ``checksum`` (md5), ``os_hash_algo`` sha512 and ``os_hash_value``; a failed
  upload puts it back to queued;
* the download is a generator that calls ``start_response`` only when first
  iterated, with ``Content-Length`` and ``Content-MD5``, as Glance's is;
* visibility and ownership as Glance's default policies (2023.2 and later) apply
  them: an image the caller cannot see is 404, one it can see but not change is
  403 ``You are not authorized to complete <rule> action.``; writes need the
  ``member`` (or ``admin``) role.

Not there: members, stage/import, tasks, locations, Range requests, quotas.

:class:`DemoAuth` stands in for keystonemiddleware's ``auth_token``: it removes
identity headers sent by the client, maps a demo token to the headers auth_token
sets (``X-Identity-Status``, ``X-User-Id``, ``X-Project-Id``, ``X-Roles`` ...),
puts ``keystone.token_info`` and ``keystone.token_auth`` in the environ and, like
auth_token, leaves ``X-Auth-Token`` in place; a call without a known token goes on
marked ``Invalid`` (Glance's ``delay_auth_decision = true``) and gets Glance's 401.
Neither is a paste factory: nothing here can be named in a service's pipeline.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import http
import json
import re
import threading
import uuid

CHUNK_SIZE = 64 * 1024
PATCH_TYPES = {'application/openstack-images-v2.0-json-patch': 4,
               'application/openstack-images-v2.1-json-patch': 10}

# Demo identities, as Keystone would describe them in a project-scoped token.
# The tokens are not secrets, but the audit filter must never show them anyway.
DEMO_TOKENS = {
    'demo-token-alice-5d41402abc4b2a76b9719d91': {
        'user_id': '4d9b8e4ad1b64f4f9b1a3c7e2f5d6a01', 'user_name': 'alice',
        'project_id': 'b7e1f3c2a4d54e6f8a9b0c1d2e3f4a5b', 'project_name': 'demo',
        'roles': ['member', 'reader']},
    'demo-token-bob-7d793037a0760186574b0282': {
        'user_id': '9a8b7c6d5e4f40312a1b2c3d4e5f6a7b', 'user_name': 'bob',
        'project_id': 'c3d4e5f6a7b84c9d0e1f2a3b4c5d6e7f', 'project_name': 'other',
        'roles': ['member', 'reader']},
    'demo-token-admin-e4da3b7fbbce2345d7772b06': {
        'user_id': '0f1e2d3c4b5a49687766554433221100', 'user_name': 'admin',
        'project_id': 'a1b2c3d4e5f647a8b9c0d1e2f3a4b5c6', 'project_name': 'admin',
        'roles': ['admin', 'member', 'reader']},
}
DEMO_DOMAIN = {'id': 'default', 'name': 'Default'}

# glance/api/v2/images.py RequestDeserializer
_DISALLOWED = ('direct_url', 'self', 'file', 'schema', 'stores')
_READONLY = ('created_at', 'updated_at', 'status', 'checksum', 'size', 'virtual_size',
             'direct_url', 'self', 'file', 'schema', 'id', 'os_hash_algo', 'os_hash_value')
_RESERVED = ('location', 'deleted', 'deleted_at')
_RESERVED_NS = 'os_glance'
_BASE = ('checksum', 'created_at', 'container_format', 'disk_format', 'id', 'min_disk',
         'min_ram', 'name', 'size', 'virtual_size', 'status', 'tags', 'owner', 'updated_at',
         'visibility', 'protected', 'os_hidden')
_VIEW_ATTRS = ('name', 'disk_format', 'container_format', 'visibility', 'size',
               'virtual_size', 'status', 'checksum', 'protected', 'min_ram', 'min_disk',
               'owner', 'os_hidden', 'os_hash_algo', 'os_hash_value')
_VISIBILITIES = ('public', 'private', 'shared', 'community')
_DISK_FORMATS = ('ami', 'ari', 'aki', 'vhd', 'vhdx', 'vmdk', 'raw', 'qcow2', 'vdi', 'iso',
                 'ploop')
_CONTAINER_FORMATS = ('ami', 'ari', 'aki', 'bare', 'ovf', 'ova', 'docker', 'compressed')
_UUID = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                   r'[0-9a-fA-F]{12}$')


def _isotime(when: datetime.datetime) -> str:
    """glance.common.timeutils.isotime: 2026-11-23T14:17:31Z."""
    return when.strftime('%Y-%m-%dT%H:%M:%SZ')


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


class Image:
    """One image: Glance's domain attributes, its extra properties and its data."""

    def __init__(self, image_id: str, owner: str):
        now = _now()
        self.id = image_id
        self.name = None
        self.disk_format = None
        self.container_format = None
        self.visibility = 'shared'          # Glance's default since Rocky
        self.size = None
        self.virtual_size = None
        self.status = 'queued'
        self.checksum = None
        self.protected = False
        self.min_ram = 0
        self.min_disk = 0
        self.owner = owner
        self.os_hidden = False
        self.os_hash_algo = None
        self.os_hash_value = None
        self.created_at = now
        self.updated_at = now
        self.tags: list[str] = []
        self.extra_properties: dict[str, str] = {}
        self.data: bytes | None = None

    def touch(self) -> None:
        self.updated_at = _now()

    def view(self) -> dict:
        """ResponseSerializer._format_image: extra properties first, then the rest."""
        view = dict(self.extra_properties)
        for key in _VIEW_ATTRS:
            view[key] = getattr(self, key)
        view['id'] = self.id
        view['created_at'] = _isotime(self.created_at)
        view['updated_at'] = _isotime(self.updated_at)
        view['tags'] = list(self.tags)
        view['self'] = '/v2/images/%s' % self.id
        view['file'] = '/v2/images/%s/file' % self.id
        view['schema'] = '/v2/schemas/image'
        return view


class Caller:
    """The identity auth_token left in the environ (what Glance's context reads)."""

    def __init__(self, environ: dict):
        self.confirmed = environ.get('HTTP_X_IDENTITY_STATUS') == 'Confirmed'
        self.user_id = environ.get('HTTP_X_USER_ID')
        self.project_id = environ.get('HTTP_X_PROJECT_ID') or environ.get('HTTP_X_TENANT_ID')
        self.roles = {r.strip().lower() for r in
                      (environ.get('HTTP_X_ROLES') or '').split(',') if r.strip()}

    @property
    def is_admin(self) -> bool:
        return 'admin' in self.roles

    def can_write(self) -> bool:
        return self.is_admin or 'member' in self.roles

    def can_see(self, image: Image) -> bool:
        return (self.is_admin or image.owner == self.project_id or
                image.visibility in ('public', 'community'))

    def owns(self, image: Image) -> bool:
        return self.is_admin or (image.owner == self.project_id and self.can_write())


def _status_line(status: int) -> str:
    return '%d %s' % (status, http.HTTPStatus(status).phrase)


class Request:
    """The parts of a request the handlers read (webob.Request's names for them)."""

    def __init__(self, environ: dict):
        self.environ = environ

    @property
    def content_type(self) -> str:
        return self.environ.get('CONTENT_TYPE', '').split(';')[0].strip()

    @property
    def content_length(self) -> int | None:
        try:
            return int(self.environ.get('CONTENT_LENGTH') or '')
        except ValueError:
            return None

    def read_body(self) -> bytes:
        return self.environ['wsgi.input'].read(self.content_length or 0)


class Response:
    """A complete answer: status, headers and a body already in memory."""

    def __init__(self, status: int, body: bytes = b'', headers: list | None = None):
        self.status = status
        self.body = body
        self.headers = list(headers or ())

    def __call__(self, environ, start_response):
        start_response(_status_line(self.status), self.headers)
        return [] if environ.get('REQUEST_METHOD') == 'HEAD' else [self.body]


# webob's explanation of the errors raised without one
_EXPLANATIONS = {
    401: 'This server could not verify that you are authorized to access the document '
         'you requested. Either you supplied the wrong credentials (e.g., bad password), '
         'or your browser does not understand how to supply the credentials required.',
    404: 'The resource could not be found.',
    411: 'Content-Length header required.',
}


class HTTPError(Exception):
    """An error answer, worded as webob words Glance's errors for a JSON client."""

    def __init__(self, status: int, explanation: str | None = None, detail: str = '',
                 headers: list | None = None):
        super().__init__(_status_line(status))
        self.status = status
        self.explanation = explanation or _EXPLANATIONS.get(status, '')
        self.detail = detail
        self.headers = list(headers or ())

    def response(self, environ: dict) -> Response:
        if self.status == 405:
            message = 'The method %s is not allowed for this resource. <br /><br />\n%s' % (
                environ.get('REQUEST_METHOD'), self.detail)
        elif self.status == 415:
            message = ('The request media type %s is not supported by this server.\n'
                       '<br /><br />\n%s' % (Request(environ).content_type or None,
                                             self.detail))
        else:
            message = '%s<br /><br />\n%s\n\n' % (self.explanation, self.detail)
        body = json.dumps({'message': message, 'code': _status_line(self.status),
                           'title': http.HTTPStatus(self.status).phrase}).encode()
        return Response(self.status, body, self.headers + [
            ('Content-Length', str(len(body))), ('Content-Type', 'application/json')])


def _forbidden(rule: str) -> HTTPError:
    return HTTPError(403, 'You are not authorized to complete %s action.' % rule)


def _bad_request(msg: str) -> HTTPError:
    return HTTPError(400, msg)


def _host_url(environ: dict) -> str:
    """scheme://host[:port] of the request, without the default port (as webob)."""
    scheme = environ['wsgi.url_scheme']
    host = environ.get('HTTP_HOST') or '%s:%s' % (environ['SERVER_NAME'],
                                                  environ['SERVER_PORT'])
    default = {'http': ':80', 'https': ':443'}.get(scheme)
    if default and host.endswith(default):
        host = host[:-len(default)]
    return '%s://%s' % (scheme, host)


class ImageData:
    """The download response: a generator app that calls start_response lazily.

    Glance hands webob the store's iterator as ``app_iter``; nothing is sent, and
    no status is known, until the server pulls the first chunk.  So here.
    """

    def __init__(self, data: bytes, checksum: str, chunk_size: int):
        self.data = data
        self.headers = [('Content-Type', 'application/octet-stream'),
                        ('Content-MD5', checksum),
                        ('Content-Length', str(len(data)))]
        self.chunk_size = chunk_size

    def __call__(self, environ, start_response):
        return self._send(start_response)

    def _send(self, start_response):
        start_response('200 OK', self.headers)
        view = memoryview(self.data)
        for offset in range(0, len(self.data), self.chunk_size):
            yield bytes(view[offset:offset + self.chunk_size])


class SampleImageAPI:
    """The WSGI app: an image API with Glance v2's routes and answers, in memory."""

    def __init__(self, chunk_size: int = CHUNK_SIZE):
        self.chunk_size = chunk_size
        self.images: dict[str, Image] = {}
        self._lock = threading.RLock()

    # -- dispatch ------------------------------------------------------------------------
    def __call__(self, environ, start_response):
        request_id = environ.get('openstack.request_id') or 'req-%s' % uuid.uuid4()
        try:
            return self._dispatch(environ, start_response, request_id)
        except HTTPError as err:
            response = err.response(environ)
            response.headers.append(('x-openstack-request-id', request_id))
            return response(environ, start_response)

    def _dispatch(self, environ, start_response, request_id):
        caller = Caller(environ)
        if not caller.confirmed:
            # Glance's context middleware, after auth_token with delay_auth_decision.
            raise HTTPError(401)
        method = environ.get('REQUEST_METHOD', 'GET')
        parts = [p for p in environ.get('PATH_INFO', '').split('/') if p]
        if parts[:2] != ['v2', 'images']:
            raise HTTPError(404)
        allowed, args = self._route(parts[2:])
        if allowed is None:
            raise HTTPError(404)
        if method not in allowed:
            raise HTTPError(405, headers=[('Allow', ', '.join(allowed))])
        response = allowed[method](Request(environ), caller, *args)
        response.headers.append(('x-openstack-request-id', request_id))
        return response(environ, start_response)

    def _route(self, rest):
        """(method -> handler, path arguments) for the path below /v2/images."""
        if not rest:
            return {'GET': self.index, 'POST': self.create}, ()
        if len(rest) == 1:
            return {'GET': self.show, 'PATCH': self.update, 'DELETE': self.delete}, rest
        if len(rest) == 2 and rest[1] == 'file':
            return {'GET': self.download, 'PUT': self.upload}, rest[:1]
        if len(rest) == 3 and rest[1] == 'actions' and rest[2] == 'deactivate':
            return {'POST': self.deactivate}, rest[:1]
        if len(rest) == 3 and rest[1] == 'actions' and rest[2] == 'reactivate':
            return {'POST': self.reactivate}, rest[:1]
        if len(rest) == 3 and rest[1] == 'tags':
            return {'PUT': self.add_tag, 'DELETE': self.delete_tag}, (rest[0], rest[2])
        return None, ()

    # -- helpers -------------------------------------------------------------------------
    def _get(self, caller: Caller, image_id: str, rule: str = 'get_image') -> Image:
        """ImageAPIPolicy: invisible -> 404, visible but not the caller's -> 403."""
        image = self.images.get(image_id)
        if image is None or not caller.can_see(image):
            raise HTTPError(404, 'No image found with ID %s' % image_id)
        if rule != 'get_image' and not caller.owns(image):
            raise _forbidden(rule)
        return image

    @staticmethod
    def _json_body(request: Request):
        if not request.content_length:
            raise _bad_request('Body expected in request.')
        try:
            return json.loads(request.read_body())
        except ValueError:
            raise _bad_request('Malformed JSON in request body.')

    @staticmethod
    def _json_response(data, status: int = 200) -> Response:
        body = json.dumps(data, ensure_ascii=False).encode('utf-8')
        return Response(status, body, [('Content-Length', str(len(body))),
                                       ('Content-Type', 'application/json')])

    @staticmethod
    def _no_content() -> Response:
        # webob's headers for an empty answer, which Glance's 204s carry
        return Response(204, b'', [('Content-Type', 'text/html; charset=UTF-8'),
                                   ('Content-Length', '0')])

    @staticmethod
    def _check_value(key: str, value) -> None:
        """The parts of Glance's image schema a client is likely to trip over."""
        if key == 'visibility' and value not in _VISIBILITIES:
            raise _bad_request("Provided object does not match schema 'image': %r is not "
                               "one of %s" % (value, list(_VISIBILITIES)))
        if key == 'disk_format' and value not in _DISK_FORMATS + (None,):
            raise _bad_request("Invalid disk format '%s' for image." % value)
        if key == 'container_format' and value not in _CONTAINER_FORMATS + (None,):
            raise _bad_request("Invalid container format '%s' for image." % value)
        if key in ('min_ram', 'min_disk') and (not isinstance(value, int) or value < 0):
            raise _bad_request("Provided object does not match schema 'image': %r is not "
                               "of type 'integer'" % (value,))
        if key in ('protected', 'os_hidden') and not isinstance(value, bool):
            raise _bad_request("Provided object does not match schema 'image': %r is not "
                               "of type 'boolean'" % (value,))
        if key == 'name' and value is not None and (not isinstance(value, str) or
                                                    len(value) > 255):
            raise _bad_request("Provided object does not match schema 'image': 'name' "
                               "must be a string of at most 255 characters")
        if key not in _BASE and not isinstance(value, str):
            raise _bad_request("Provided object does not match schema 'image': %r is not "
                               "of type 'string'" % (value,))

    @staticmethod
    def _check_key(key: str, readonly=_READONLY) -> None:
        if key in readonly:
            raise HTTPError(403, "Attribute '%s' is read-only." % key)
        if key in _RESERVED or key.startswith(_RESERVED_NS):
            raise HTTPError(403, "Attribute '%s' is reserved." % key)

    @staticmethod
    def _check_visibility(caller: Caller, visibility) -> None:
        if visibility == 'public' and not caller.is_admin:
            raise _forbidden('publicize_image')

    # -- /v2/images ----------------------------------------------------------------------
    def index(self, request, caller):
        with self._lock:
            images = [img.view() for img in sorted(self.images.values(),
                                                   key=lambda i: i.created_at, reverse=True)
                      if caller.can_see(img)]
        return self._json_response({'images': images, 'first': '/v2/images',
                                    'schema': '/v2/schemas/images'})

    def create(self, request, caller):
        if not caller.can_write():
            raise _forbidden('add_image')
        body = self._json_body(request)
        if not isinstance(body, dict):
            raise _bad_request("Provided object does not match schema 'image': %r is not "
                               "of type 'object'" % (body,))
        for key in _DISALLOWED:
            if key in body:
                self._check_key(key, _DISALLOWED)
        for key in _READONLY:
            if key in body and key != 'id':
                self._check_key(key)
        for key, value in body.items():
            if key != 'tags':
                self._check_key(key, ())
                self._check_value(key, value)
        image_id = body.get('id') or str(uuid.uuid4())
        if not isinstance(image_id, str) or not _UUID.match(image_id):
            raise _bad_request("Provided object does not match schema 'image': %r does not "
                               "match the image id pattern" % (image_id,))
        owner = body.get('owner') if caller.is_admin and body.get('owner') else \
            caller.project_id
        if body.get('owner') and body['owner'] != caller.project_id and not caller.is_admin:
            raise HTTPError(403, 'You are not permitted to create images owned by %r.'
                            % body['owner'])
        self._check_visibility(caller, body.get('visibility'))
        image = Image(image_id, owner)
        for key, value in body.items():
            if key in ('id', 'owner'):
                continue
            if key == 'tags':
                image.tags = list(dict.fromkeys(str(t) for t in value or []))
            elif key in _BASE:
                setattr(image, key, value)
            else:
                image.extra_properties[key] = value
        with self._lock:
            if image_id in self.images:
                raise HTTPError(409, 'An image with identifier %s already exists' % image_id)
            self.images[image_id] = image
            view = image.view()
        response = self._json_response(view, 201)
        response.headers.append(('Location', '%s/v2/images/%s' % (
            _host_url(request.environ), image_id)))
        return response

    # -- /v2/images/{id} -----------------------------------------------------------------
    def show(self, request, caller, image_id):
        with self._lock:
            return self._json_response(self._get(caller, image_id).view())

    def update(self, request, caller, image_id):
        content_type = request.content_type
        if content_type not in PATCH_TYPES:
            allowed = ', '.join(sorted(PATCH_TYPES))
            raise HTTPError(415, detail='Image PATCH expects Content-Type one of: %s'
                            % allowed, headers=[('Accept-Patch', allowed)])
        body = self._json_body(request)
        if not isinstance(body, list):
            raise _bad_request('Request body must be a JSON array of operation objects.')
        changes = [self._change(raw, PATCH_TYPES[content_type]) for raw in body]
        with self._lock:
            image = self._get(caller, image_id, 'modify_image')
            staged = copy.deepcopy(image.extra_properties)
            attrs = {}
            for op, key, value in changes:
                if key in _BASE:
                    if op == 'remove':
                        raise HTTPError(403, 'Cannot remove %s attribute.' % key)
                    if key == 'visibility':
                        self._check_visibility(caller, value)
                    attrs[key] = value
                elif op == 'remove':
                    if key not in staged:
                        raise HTTPError(409, 'Property %s does not exist.' % key)
                    del staged[key]
                else:
                    if op == 'replace' and key not in staged:
                        raise HTTPError(409, 'Property %s does not exist.' % key)
                    staged[key] = value
            for key, value in attrs.items():
                if key == 'tags':
                    image.tags = list(dict.fromkeys(str(t) for t in value or []))
                else:
                    setattr(image, key, value)
            image.extra_properties = staged
            image.touch()
            return self._json_response(image.view())

    def _change(self, raw, draft: int):
        if not isinstance(raw, dict):
            raise _bad_request('Operations must be JSON objects.')
        if draft == 10:
            op = raw.get('op')
            if op not in ('add', 'remove', 'replace'):
                raise _bad_request('Invalid operation: `%s`. It must be one of the '
                                   'following: add, remove, replace.' % op)
            if 'path' not in raw:
                raise _bad_request("Unable to find 'path' in JSON Schema change")
            path = raw['path']
        else:
            ops = [k for k in ('add', 'remove', 'replace') if k in raw]
            if len(ops) != 1:
                raise _bad_request('Operation objects must contain exactly one member '
                                   'named "add", "remove", or "replace".')
            op = ops[0]
            path = raw[op]
        if not isinstance(path, str) or not path.startswith('/') or path.count('/') != 1:
            raise _bad_request("Invalid JSON pointer for this resource: '%s'" % path)
        key = path[1:].replace('~1', '/').replace('~0', '~').strip()
        self._check_key(key)
        value = None
        if op != 'remove':
            if 'value' not in raw:
                raise _bad_request('Operation "%s" requires a member named "value".' % op)
            value = raw['value']
            if key != 'tags':
                self._check_value(key, value)
        return op, key, value

    def delete(self, request, caller, image_id):
        with self._lock:
            image = self._get(caller, image_id, 'delete_image')
            if image.protected:
                raise HTTPError(403, 'Image %s is protected and cannot be deleted.'
                                % image_id)
            del self.images[image_id]
        return self._no_content()

    # -- /v2/images/{id}/file ------------------------------------------------------------
    def upload(self, request, caller, image_id):
        content_type = request.content_type
        if content_type != 'application/octet-stream':
            raise HTTPError(415, detail='Invalid content type %s' % (content_type or 'None'))
        expected = request.content_length
        environ = request.environ
        if expected is None and not environ.get('wsgi.input_terminated'):
            raise HTTPError(411)
        with self._lock:
            image = self._get(caller, image_id, 'upload_image')
            if image.container_format is None or image.disk_format is None:
                raise _bad_request('Properties disk_format, container_format must be set '
                                   'prior to saving data.')
            if image.status != 'queued':
                raise HTTPError(409, 'Image status transition from %s to saving is not '
                                'allowed' % image.status)
            image.status = 'saving'
            image.touch()
        md5, sha512 = hashlib.md5(usedforsecurity=False), hashlib.sha512()
        chunks, received = [], 0
        stream = environ['wsgi.input']
        try:
            while expected is None or received < expected:
                want = self.chunk_size if expected is None else \
                    min(self.chunk_size, expected - received)
                chunk = stream.read(want)
                if not chunk:
                    break
                received += len(chunk)
                md5.update(chunk)
                sha512.update(chunk)
                chunks.append(chunk)
            if expected is not None and received != expected:
                raise _bad_request('Size mismatch: expected %d bytes, got %d bytes'
                                   % (expected, received))
        except BaseException:
            with self._lock:
                image.status = 'queued'
                image.touch()
            raise
        with self._lock:
            if self.images.get(image_id) is not image:
                raise HTTPError(410, 'Image %s could not be found after upload. The image '
                                'may have been deleted during the upload.' % image_id)
            image.data = b''.join(chunks)
            image.size = received
            image.virtual_size = received if image.disk_format == 'raw' else None
            image.checksum = md5.hexdigest()
            image.os_hash_algo = 'sha512'
            image.os_hash_value = sha512.hexdigest()
            image.status = 'active'
            image.touch()
        return self._no_content()

    def download(self, request, caller, image_id):
        with self._lock:
            image = self._get(caller, image_id, 'get_image')
            if image.status == 'deactivated' and not caller.is_admin:
                raise HTTPError(403, 'The requested image has been deactivated. Image '
                                'data download is forbidden.')
            data, checksum = image.data, image.checksum
        if data is None:
            return Response(204)            # Glance's "Image <id> has no data."
        return ImageData(data, checksum, self.chunk_size)

    # -- tags and actions ----------------------------------------------------------------
    def add_tag(self, request, caller, image_id, tag):
        with self._lock:
            image = self._get(caller, image_id, 'modify_image')
            if tag not in image.tags:
                image.tags.append(tag)
            image.touch()
        return self._no_content()

    def delete_tag(self, request, caller, image_id, tag):
        with self._lock:
            image = self._get(caller, image_id, 'modify_image')
            if tag not in image.tags:
                raise HTTPError(404, 'Tag %s not found.' % tag)
            image.tags.remove(tag)
            image.touch()
        return self._no_content()

    def deactivate(self, request, caller, image_id):
        return self._set_active(caller, image_id, 'deactivate', 'active', 'deactivated')

    def reactivate(self, request, caller, image_id):
        return self._set_active(caller, image_id, 'reactivate', 'deactivated', 'active')

    def _set_active(self, caller, image_id, rule, source, target):
        with self._lock:
            image = self._get(caller, image_id, rule)
            if not caller.is_admin:
                raise _forbidden(rule)
            if image.status not in (source, target):
                raise _forbidden(rule)
            image.status = target
            image.touch()
        return self._no_content()


# -- the demo auth filter --------------------------------------------------------------

_AUTH_HEADERS = ('X-Service-Catalog', 'X-Identity-Status', 'X-Service-Identity-Status',
                 'X-Is-Admin-Project', 'X-Role', 'X-User', 'X-Tenant-Id', 'X-Tenant-Name',
                 'X-Tenant', 'OpenStack-System-Scope')
_AUTH_TEMPLATES = ('X%s-Domain-Id', 'X%s-Domain-Name', 'X%s-Project-Id', 'X%s-Project-Name',
                   'X%s-Project-Domain-Id', 'X%s-Project-Domain-Name', 'X%s-User-Id',
                   'X%s-User-Name', 'X%s-User-Domain-Id', 'X%s-User-Domain-Name',
                   'X%s-Roles')


def _environ_key(header: str) -> str:
    return 'HTTP_' + header.upper().replace('-', '_')


_AUTH_ENVIRON_KEYS = tuple(_environ_key(h) for h in _AUTH_HEADERS) + tuple(
    _environ_key(t % prefix) for t in _AUTH_TEMPLATES for prefix in ('', '-Service'))


class DemoTokenAuth:
    """Stands in for auth_token's ``keystone.token_auth`` (a keystoneauth plugin):
    the part the audit filter reads to trust the identity headers."""

    def __init__(self, user: dict | None):
        self.user = user

    @property
    def has_user_token(self) -> bool:
        return self.user is not None


class DemoAuth:
    """keystonemiddleware.auth_token's effect on a request, for the demo tokens, as
    Glance configures it (``delay_auth_decision = true``): a call without a known
    token goes on marked ``X-Identity-Status: Invalid``, and the image API answers
    401 as Glance's context middleware does.  Built in code by the demo only: no
    paste factory or entry point offers it to a service's pipeline."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        for key in _AUTH_ENVIRON_KEYS:           # a client may not fake its identity
            environ.pop(key, None)
        environ.pop('keystone.token_info', None)
        token = environ.get('HTTP_X_AUTH_TOKEN') or environ.get('HTTP_X_STORAGE_TOKEN')
        identity = DEMO_TOKENS.get(token) if token else None
        environ['keystone.token_auth'] = DemoTokenAuth(identity)
        if identity is None:
            environ['HTTP_X_IDENTITY_STATUS'] = 'Invalid'
            return self.app(environ, start_response)
        headers = {
            'X-Identity-Status': 'Confirmed',
            'X-Roles': ','.join(identity['roles']),
            'X-Project-Id': identity['project_id'],
            'X-Project-Name': identity['project_name'],
            'X-Project-Domain-Id': DEMO_DOMAIN['id'],
            'X-Project-Domain-Name': DEMO_DOMAIN['name'],
            'X-User-Id': identity['user_id'],
            'X-User-Name': identity['user_name'],
            'X-User-Domain-Id': DEMO_DOMAIN['id'],
            'X-User-Domain-Name': DEMO_DOMAIN['name'],
            'X-Is-Admin-Project': 'True' if 'admin' in identity['roles'] else 'False',
        }
        # auth_token's deprecated aliases, still set today.
        headers.update({'X-Role': headers['X-Roles'], 'X-User': headers['X-User-Name'],
                        'X-Tenant-Id': headers['X-Project-Id'],
                        'X-Tenant-Name': headers['X-Project-Name'],
                        'X-Tenant': headers['X-Project-Name']})
        for name, value in headers.items():
            environ[_environ_key(name)] = value
        environ['keystone.token_info'] = self._token_info(identity)
        return self.app(environ, start_response)

    @staticmethod
    def _token_info(identity: dict) -> dict:
        """A Keystone v3 token body, as auth_token stores it (never the token itself)."""
        now = _now()
        domain = dict(DEMO_DOMAIN)
        return {'token': {
            'methods': ['password'],
            'user': {'id': identity['user_id'], 'name': identity['user_name'],
                     'domain': domain},
            'project': {'id': identity['project_id'], 'name': identity['project_name'],
                        'domain': dict(domain)},
            'roles': [{'id': uuid.uuid5(uuid.NAMESPACE_OID, r).hex, 'name': r}
                      for r in identity['roles']],
            'is_domain': False,
            'issued_at': now.strftime('%Y-%m-%dT%H:%M:%S.000000Z'),
            'expires_at': (now + datetime.timedelta(hours=1)).strftime(
                '%Y-%m-%dT%H:%M:%S.000000Z'),
            'audit_ids': [uuid.uuid4().hex[:22]],
        }}
