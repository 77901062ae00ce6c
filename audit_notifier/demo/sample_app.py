"""A small in-memory image API that answers like Glance v2, and a demo auth filter.

Used by ``audit-notifier demo`` (``etc/audit_notifier/demo-paste.ini``) so the
audit filter can be watched end to end without OpenStack: no database, no store,
no Keystone.  What it copies from Glance 33 (``glance/api/v2/images.py``,
``image_data.py``, ``policy.py``) is what the audit filter looks at:

* routes and statuses: ``GET``/``POST /v2/images`` (200 / 201 + ``Location``),
  ``GET``/``PATCH``/``DELETE /v2/images/{id}`` (200 / 200 / 204),
  ``PUT``/``GET /v2/images/{id}/file`` (204 / 200), ``PUT``/``DELETE
  /v2/images/{id}/tags/{tag}`` (204), ``POST /v2/images/{id}/actions/deactivate``
  and ``reactivate`` (204); any other method on those paths is 405 with ``Allow``;
* the image view, with Glance's keys in Glance's order, and ``x-openstack-request-id``;
* PATCH only with ``application/openstack-images-v2.1-json-patch`` (or v2.0's),
  415 otherwise; read-only and reserved attributes refused with 403;
* errors as webob renders them for Glance: ``{"message", "code", "title"}`` JSON;
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
auth_token, leaves ``X-Auth-Token`` in place; an unknown token gets auth_token's 401.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import re
import threading
import uuid

import webob
import webob.exc

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


class HTTPError(Exception):
    def __init__(self, exc: webob.exc.HTTPException):
        super().__init__(exc.status)
        self.exc = exc


def _forbidden(rule: str) -> HTTPError:
    return HTTPError(webob.exc.HTTPForbidden(
        explanation='You are not authorized to complete %s action.' % rule))


def _bad_request(msg: str) -> HTTPError:
    return HTTPError(webob.exc.HTTPBadRequest(explanation=msg))


class ImageData:
    """The download response: a generator app that calls start_response lazily.

    Glance hands webob the store's iterator as ``app_iter``; nothing is sent, and
    no status is known, until the server pulls the first chunk.  So here.
    """

    def __init__(self, data: bytes, checksum: str, chunk_size: int):
        self.data = data
        self.headers = {'Content-Type': 'application/octet-stream',
                        'Content-MD5': checksum,
                        'Content-Length': str(len(data))}
        self.chunk_size = chunk_size

    def __call__(self, environ, start_response):
        return self._send(start_response)

    def _send(self, start_response):
        start_response('200 OK', list(self.headers.items()))
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
            return self._error(err.exc, environ, start_response, request_id)

    def _dispatch(self, environ, start_response, request_id):
        caller = Caller(environ)
        if not caller.confirmed:
            # Glance's context middleware, after auth_token with delay_auth_decision.
            raise HTTPError(webob.exc.HTTPUnauthorized())
        method = environ.get('REQUEST_METHOD', 'GET')
        parts = [p for p in environ.get('PATH_INFO', '').split('/') if p]
        if parts[:2] != ['v2', 'images']:
            raise HTTPError(webob.exc.HTTPNotFound())
        allowed, args = self._route(parts[2:])
        if allowed is None:
            raise HTTPError(webob.exc.HTTPNotFound())
        if method not in allowed:
            raise HTTPError(webob.exc.HTTPMethodNotAllowed(
                headers=[('Allow', ', '.join(allowed))]))
        response = allowed[method](webob.Request(environ), caller, *args)
        response.headers['x-openstack-request-id'] = request_id
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

    def _error(self, exc, environ, start_response, request_id):
        # webob renders the error for the Accept header; Glance's clients ask for JSON.
        env = dict(environ)
        env['HTTP_ACCEPT'] = 'application/json'
        exc.headers['x-openstack-request-id'] = request_id
        return exc(env, start_response)

    # -- helpers -------------------------------------------------------------------------
    def _get(self, caller: Caller, image_id: str, rule: str = 'get_image') -> Image:
        """ImageAPIPolicy: invisible -> 404, visible but not the caller's -> 403."""
        image = self.images.get(image_id)
        if image is None or not caller.can_see(image):
            raise HTTPError(webob.exc.HTTPNotFound(
                explanation='No image found with ID %s' % image_id))
        if rule != 'get_image' and not caller.owns(image):
            raise _forbidden(rule)
        return image

    @staticmethod
    def _json_body(request: webob.Request):
        if not request.content_length:
            raise _bad_request('Body expected in request.')
        try:
            return json.loads(request.body)
        except ValueError:
            raise _bad_request('Malformed JSON in request body.')

    @staticmethod
    def _json_response(data, status: int = 200) -> webob.Response:
        response = webob.Response()
        response.status_int = status
        response.unicode_body = json.dumps(data, ensure_ascii=False)
        response.content_type = 'application/json'
        return response

    @staticmethod
    def _no_content() -> webob.Response:
        response = webob.Response()
        response.status_int = 204
        return response

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
            raise HTTPError(webob.exc.HTTPForbidden(
                explanation="Attribute '%s' is read-only." % key))
        if key in _RESERVED or key.startswith(_RESERVED_NS):
            raise HTTPError(webob.exc.HTTPForbidden(
                explanation="Attribute '%s' is reserved." % key))

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
            raise HTTPError(webob.exc.HTTPForbidden(
                explanation='You are not permitted to create images owned by %r.'
                % body['owner']))
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
                raise HTTPError(webob.exc.HTTPConflict(
                    explanation='An image with identifier %s already exists' % image_id))
            self.images[image_id] = image
            view = image.view()
        response = self._json_response(view, 201)
        response.location = '/v2/images/%s' % image_id
        return response

    # -- /v2/images/{id} -----------------------------------------------------------------
    def show(self, request, caller, image_id):
        with self._lock:
            return self._json_response(self._get(caller, image_id).view())

    def update(self, request, caller, image_id):
        content_type = request.content_type
        if content_type not in PATCH_TYPES:
            allowed = ', '.join(sorted(PATCH_TYPES))
            raise HTTPError(webob.exc.HTTPUnsupportedMediaType(
                headers={'Accept-Patch': allowed},
                detail='Image PATCH expects Content-Type one of: %s' % allowed))
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
                        raise HTTPError(webob.exc.HTTPForbidden(
                            explanation='Cannot remove %s attribute.' % key))
                    if key == 'visibility':
                        self._check_visibility(caller, value)
                    attrs[key] = value
                elif op == 'remove':
                    if key not in staged:
                        raise HTTPError(webob.exc.HTTPConflict(
                            explanation='Property %s does not exist.' % key))
                    del staged[key]
                else:
                    if op == 'replace' and key not in staged:
                        raise HTTPError(webob.exc.HTTPConflict(
                            explanation='Property %s does not exist.' % key))
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
                raise HTTPError(webob.exc.HTTPForbidden(
                    explanation='Image %s is protected and cannot be deleted.' % image_id))
            del self.images[image_id]
        return self._no_content()

    # -- /v2/images/{id}/file ------------------------------------------------------------
    def upload(self, request, caller, image_id):
        content_type = request.headers.get('Content-Type', '').split(';')[0].strip()
        if content_type != 'application/octet-stream':
            raise HTTPError(webob.exc.HTTPUnsupportedMediaType(
                detail='Invalid content type %s' % (content_type or 'None')))
        expected = request.content_length
        environ = request.environ
        if expected is None and not environ.get('wsgi.input_terminated'):
            raise HTTPError(webob.exc.HTTPLengthRequired())
        with self._lock:
            image = self._get(caller, image_id, 'upload_image')
            if image.container_format is None or image.disk_format is None:
                raise _bad_request('Properties disk_format, container_format must be set '
                                   'prior to saving data.')
            if image.status != 'queued':
                raise HTTPError(webob.exc.HTTPConflict(
                    explanation='Image status transition from %s to saving is not allowed'
                    % image.status))
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
                raise HTTPError(webob.exc.HTTPGone(
                    explanation='Image %s could not be found after upload. The image may '
                                'have been deleted during the upload.' % image_id))
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
                raise HTTPError(webob.exc.HTTPForbidden(
                    explanation='The requested image has been deactivated. Image data '
                                'download is forbidden.'))
            data, checksum = image.data, image.checksum
        if data is None:
            raise HTTPError(webob.exc.HTTPNoContent(
                explanation='Image %s has no data.' % image_id))
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
                raise HTTPError(webob.exc.HTTPNotFound(
                    explanation='Tag %s not found.' % tag))
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
    """keystonemiddleware.auth_token's effect on a request, for the demo tokens."""

    def __init__(self, app, tokens: dict | None = None, delay_auth_decision: bool = False,
                 www_authenticate_uri: str = 'http://127.0.0.1:5000'):
        self.app = app
        self.tokens = DEMO_TOKENS if tokens is None else tokens
        self.delay_auth_decision = delay_auth_decision
        self.www_authenticate_uri = www_authenticate_uri

    def __call__(self, environ, start_response):
        for key in _AUTH_ENVIRON_KEYS:           # a client may not fake its identity
            environ.pop(key, None)
        environ.pop('keystone.token_info', None)
        token = environ.get('HTTP_X_AUTH_TOKEN') or environ.get('HTTP_X_STORAGE_TOKEN')
        identity = self.tokens.get(token) if token else None
        environ['keystone.token_auth'] = DemoTokenAuth(identity)
        if identity is None:
            if not self.delay_auth_decision:
                return self._reject(environ, start_response)
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

    def _reject(self, environ, start_response):
        body = {'error': {'code': 401, 'title': 'Unauthorized',
                          'message': 'The request you have made requires authentication.'}}
        response = webob.exc.HTTPUnauthorized(
            body=json.dumps(body), charset='UTF-8', content_type='application/json',
            headers=[('WWW-Authenticate', 'Keystone uri="%s"' % self.www_authenticate_uri)])
        return response(environ, start_response)


def _bool(value) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on')


def app_factory(global_conf, **local_conf):
    """paste.app_factory for ``[app:sampleapp]``; ``chunk_size`` (bytes) optional."""
    return SampleImageAPI(chunk_size=int(local_conf.get('chunk_size', CHUNK_SIZE)))


def auth_filter_factory(global_conf, **local_conf):
    """paste.filter_factory for ``[filter:demoauth]``: ``delay_auth_decision``,
    ``www_authenticate_uri``, as keystonemiddleware's auth_token reads them."""
    delay = _bool(local_conf.get('delay_auth_decision', False))
    uri = local_conf.get('www_authenticate_uri', 'http://127.0.0.1:5000')

    def auth_filter(app):
        return DemoAuth(app, delay_auth_decision=delay, www_authenticate_uri=uri)
    return auth_filter
