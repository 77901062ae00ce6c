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

"""A FAITHFUL REPRODUCTION of Magnum 3.0.0's (2016) ``/v1/bays`` and
``/v1/baymodels`` API -- NOT the real Magnum.

Real Magnum no longer serves bays and baymodels: they were dropped in commit
``11bcc175`` ("Drop bay and baymodel from magnum", 2023-05-09) and are absent
from every release since **17.0.0**; the Magnum 23 installed for the other
tests in this directory answers 404 for them.  The 2016 API cannot be loaded
either (Magnum 3.0.0 needs Python 2 era libraries), so this module re-creates,
in a small webob app, exactly the parts that decide what an audit filter sees:
routes, methods, status codes, microversion handling and response bodies.

Source: ``magnum/api/controllers/v1/bay.py`` and ``baymodel.py`` at tag 3.0.0
(``5258fddf9d3d3b0beb4e57fca3af4579884f1e5c``, 2016-08-31):

* Microversions: header ``OpenStack-API-Version: container-infra <x.y>``,
  range 1.1 (the default when the header is absent) to 1.3
  (1.2 = "Async bay operations support", 1.3 = "Add bay rollback support";
  1.4 came with Ocata).  ``latest`` means 1.3.  Outside the range, or another
  service string: 406.  Every response carries ``OpenStack-API-Minimum-Version``,
  ``OpenStack-API-Maximum-Version`` and ``OpenStack-API-Version``.
* ``POST /v1/bays``: at 1.1 ``@expose(Bay, body=Bay, status_code=201)`` with a
  synchronous ``rpcapi.bay_create`` -> **201** and the full Bay (status
  ``CREATE_IN_PROGRESS``, the Heat ``stack_id``) plus a ``Location`` header;
  at 1.2+ ``@expose(BayID, body=Bay, status_code=202)`` with
  ``bay_create_async`` -> **202** ``{"uuid": ...}``.
* ``PATCH /v1/bays/{bay_ident}`` (JSON patch): 1.1 -> **200** Bay;
  1.2 -> **202** ``{"uuid"}``; 1.3 adds ``?rollback=<bool>`` (still 202).
* ``DELETE /v1/bays/{bay_ident}`` -> **204** (1.1 synchronous, 1.2+ async).
* ``GET /v1/bays`` (summary fields), ``GET /v1/bays/detail`` (all fields),
  ``GET /v1/bays/{bay_ident}`` (uuid or name) -> 200; unknown -> 404.
* ``/v1/baymodels``: ``GET`` list/detail/show 200, ``POST`` **201** full
  BayModel + ``Location``, ``PATCH`` 200 BayModel, ``DELETE`` 204; deleting a
  baymodel a bay still uses -> 400 (``BayModelReferenced``); a bay whose
  ``baymodel_id`` does not exist -> 400 (``ClusterTemplateNotFound`` with its
  code changed to 400 by ``Bay._set_baymodel_id``).
* Errors have Magnum's body ``{"errors": [{"request_id", "code", "status",
  "title", "detail", "links"}]}``.

Identity comes from the headers keystonemiddleware's auth_token sets
(``X-User-Id``, ``X-Project-Id`` ...); without ``X-Project-Id`` the app answers
401, as authtoken (no ``delay_auth_decision``) would.  Policy is the 3.0.0
default "admin or owner" for reads and writes of a bay/baymodel.

What is NOT reproduced: Heat (bays simply stay ``CREATE_IN_PROGRESS`` /
``UPDATE_IN_PROGRESS``; a deleted bay disappears at once), image/flavor/keypair
validation against Nova and Glance, and the conductor's own
``magnum.bay.*`` notifications (see tests/magnum/test_completion_api.py for
the out-of-band API that reports those).
"""

import datetime
import json
import re
import uuid as uuidlib

import webob

MIN_VERSION = (1, 1)
MAX_VERSION = (1, 3)
SERVICE = 'container-infra'
HOST_URL = 'http://localhost:9511'

_UUID = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
_BAY_NAME = re.compile(r'^[a-zA-Z][a-zA-Z0-9_.-]*$')

#: Bay API fields (objects.Bay.fields that the API type exposes), in order
BAY_FIELDS = ('uuid', 'name', 'baymodel_id', 'node_count', 'master_count',
              'bay_create_timeout', 'stack_id', 'status', 'status_reason',
              'discovery_url', 'api_address', 'coe_version', 'container_version',
              'node_addresses', 'master_addresses', 'created_at', 'updated_at')
#: Bay.unset_fields_except([...]) of the non-detail list
BAY_SUMMARY_FIELDS = ('uuid', 'name', 'baymodel_id', 'node_count', 'status',
                      'bay_create_timeout', 'master_count', 'stack_id')
#: fields a bay PATCH may not touch (BayPatchType.internal_attrs + read-only)
BAY_INTERNAL = ('/api_address', '/node_addresses', '/master_addresses', '/stack_id',
                '/uuid', '/id', '/created_at', '/updated_at', '/status',
                '/status_reason', '/coe_version', '/container_version')
#: BayModel API fields (3.0.0)
BAYMODEL_FIELDS = ('uuid', 'name', 'coe', 'image_id', 'flavor_id', 'master_flavor_id',
                   'dns_nameserver', 'keypair_id', 'external_network_id', 'fixed_network',
                   'fixed_subnet', 'network_driver', 'apiserver_port',
                   'docker_volume_size', 'cluster_distro', 'http_proxy', 'https_proxy',
                   'no_proxy', 'volume_driver', 'registry_enabled', 'labels',
                   'tls_disabled', 'public', 'server_type', 'insecure_registry',
                   'docker_storage_driver', 'master_lb_enabled', 'floating_ip_enabled',
                   'created_at', 'updated_at')
_BAYMODEL_DEFAULTS = {'registry_enabled': False, 'tls_disabled': False, 'public': False,
                      'server_type': 'vm', 'master_lb_enabled': False,
                      'floating_ip_enabled': True}
_COES = ('kubernetes', 'swarm', 'mesos')


class ApiError(Exception):
    def __init__(self, status, title, detail, headers=None):
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.headers = headers or {}


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _iso(value):
    # WSME renders the tz-aware datetimes of Magnum's objects with isoformat()
    return value.isoformat() if value is not None else None


class Bays2016App:
    """The 2016 bays/baymodels API (see the module docstring).  ``bays`` and
    ``baymodels`` are the in-memory "database" (uuid -> record)."""

    def __init__(self):
        self.bays = {}
        self.baymodels = {}
        self.requests = []          # (method, path, version) per request

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ, start_response):
        req = webob.Request(environ)
        version = None
        try:
            version = self._version(req)
            self.requests.append((req.method, req.path_info, version))
            resp = self._dispatch(req, version)
        except ApiError as exc:
            resp = self._error(req, exc)
        self._version_headers(resp, version)
        return resp(environ, start_response)

    def _version(self, req):
        header = req.headers.get('OpenStack-API-Version')
        if header is None:
            return MIN_VERSION
        try:
            service, value = header.split()
        except ValueError:
            raise ApiError(406, 'Not Acceptable',
                           'Invalid service type for OpenStack-API-Version header')
        if value.lower() == 'latest':
            return MAX_VERSION
        if service != SERVICE:
            raise ApiError(406, 'Not Acceptable',
                           'Invalid service type for OpenStack-API-Version header')
        try:
            version = tuple(int(i) for i in value.split('.'))
        except ValueError:
            version = ()
        if len(version) != 2:
            raise ApiError(406, 'Not Acceptable',
                           'Invalid value for OpenStack-API-Version header')
        if not MIN_VERSION <= version <= MAX_VERSION:
            raise ApiError(
                406, 'Not Acceptable',
                'Mutually exclusive versions requested. Version %d.%d requested but '
                'not supported by this service. The supported version range is: '
                '[%d.%d, %d.%d].' % (version + MIN_VERSION + MAX_VERSION))
        return version

    @staticmethod
    def _version_headers(resp, version):
        resp.headers['OpenStack-API-Minimum-Version'] = '%s %d.%d' % ((SERVICE,) + MIN_VERSION)
        resp.headers['OpenStack-API-Maximum-Version'] = '%s %d.%d' % ((SERVICE,) + MAX_VERSION)
        if version is not None:
            resp.headers['OpenStack-API-Version'] = '%s %d.%d' % ((SERVICE,) + version)

    @staticmethod
    def _error(req, exc):
        body = {'errors': [{'request_id': req.headers.get('X-Openstack-Request-Id', ''),
                            'code': 'client' if exc.status < 500 else 'server',
                            'status': exc.status, 'title': exc.title,
                            'detail': exc.detail, 'links': []}]}
        resp = _json_response(exc.status, body)
        resp.headers.update(exc.headers)
        return resp

    def _dispatch(self, req, version):
        if not req.headers.get('X-Project-Id'):
            raise ApiError(401, 'Unauthorized',
                           'The request you have made requires authentication.')
        parts = [p for p in req.path_info.split('/') if p]
        if len(parts) < 2 or parts[0] != 'v1' or parts[1] not in ('bays', 'baymodels'):
            raise ApiError(404, 'Not Found', 'The resource could not be found.')
        collection, rest = parts[1], parts[2:]
        handler = self._bays if collection == 'bays' else self._baymodels
        return handler(req, version, rest)

    # ------------------------------------------------------------------ bays
    def _bays(self, req, version, rest):
        method = req.method
        if not rest:
            if method == 'GET':
                return _json_response(200, {'bays': [self._bay_view(b, expand=False)
                                                     for b in self._visible(req, self.bays)]})
            if method == 'POST':
                return self._bay_create(req, version)
        elif len(rest) == 1 and rest[0] == 'detail':
            if method == 'GET':
                return _json_response(200, {'bays': [self._bay_view(b)
                                                     for b in self._visible(req, self.bays)]})
        elif len(rest) == 1:
            if method == 'GET':
                return _json_response(200, self._bay_view(self._bay(req, rest[0])))
            if method == 'PATCH':
                return self._bay_patch(req, version, rest[0])
            if method == 'DELETE':
                bay = self._bay(req, rest[0])
                del self.bays[bay['uuid']]
                return webob.Response(status=204, content_type=None)
        raise ApiError(405, 'Method Not Allowed',
                       'The method %s is not allowed for this resource.' % method)

    def _bay_create(self, req, version):
        body = _json_body(req)
        if not isinstance(body, dict):
            raise ApiError(400, 'Bad Request', 'Invalid input for field/attribute bay.')
        if 'baymodel_id' not in body:
            raise ApiError(400, 'Bad Request',
                           'Invalid input for field/attribute baymodel_id. Value: None. '
                           'Mandatory field missing.')
        baymodel = self._find(req, self.baymodels, body['baymodel_id'], 'ClusterTemplate',
                              missing_status=400)
        name = body.get('name')
        if name is not None and not _BAY_NAME.match(str(name)):
            raise ApiError(400, 'Bad Request',
                           'Invalid input for field/attribute name. Value: %r.' % name)
        now = _now()
        bay = {
            'uuid': str(uuidlib.uuid4()),
            'name': name or 'zeta-22-bay',
            'baymodel_id': baymodel['uuid'],
            'node_count': int(body.get('node_count', 1)),
            'master_count': int(body.get('master_count', 1)),
            'bay_create_timeout': int(body.get('bay_create_timeout', 60)),
            'stack_id': None,
            'status': 'CREATE_IN_PROGRESS',
            'status_reason': None,
            'discovery_url': body.get('discovery_url'),
            'api_address': None,
            'coe_version': None,
            'container_version': None,
            'node_addresses': [],
            'master_addresses': [],
            'created_at': now,
            'updated_at': None,
            'project_id': req.headers['X-Project-Id'],
            'user_id': req.headers.get('X-User-Id'),
        }
        self.bays[bay['uuid']] = bay
        if version == (1, 1):
            # synchronous bay_create: the conductor created the Heat stack
            bay['stack_id'] = str(uuidlib.uuid4())
            resp = _json_response(201, self._bay_view(bay))
            resp.location = '%s/v1/bays/%s' % (HOST_URL, bay['uuid'])
            return resp
        return _json_response(202, {'uuid': bay['uuid']})

    def _bay_patch(self, req, version, ident):
        if 'rollback' in req.GET and version < (1, 3):
            raise ApiError(400, 'Bad Request', 'Unknown argument: "rollback"')
        bay = self._bay(req, ident)
        patch = _json_body(req)
        changes = _apply_patch(patch, BAY_FIELDS, BAY_INTERNAL)
        for key, value in changes.items():
            if key in ('node_count', 'master_count', 'bay_create_timeout'):
                value = int(value)
            bay[key] = value
        bay['status'] = 'UPDATE_IN_PROGRESS'
        bay['updated_at'] = _now()
        if version == (1, 1):
            return _json_response(200, self._bay_view(bay))
        return _json_response(202, {'uuid': bay['uuid']})

    def _bay(self, req, ident):
        return self._find(req, self.bays, ident, 'Cluster')

    def _bay_view(self, bay, expand=True):
        fields = BAY_FIELDS if expand else BAY_SUMMARY_FIELDS
        view = {}
        for field in fields:
            value = bay.get(field)
            view[field] = _iso(value) if field in ('created_at', 'updated_at') else value
        view['links'] = _links('bays', bay['uuid'])
        return view

    # ------------------------------------------------------------ baymodels
    def _baymodels(self, req, version, rest):
        method = req.method
        if not rest:
            if method == 'GET':
                return _json_response(200, {'baymodels': [
                    self._baymodel_view(m) for m in self._visible(req, self.baymodels,
                                                                  public=True)]})
            if method == 'POST':
                return self._baymodel_create(req)
        elif len(rest) == 1 and rest[0] == 'detail':
            if method == 'GET':
                return _json_response(200, {'baymodels': [
                    self._baymodel_view(m) for m in self._visible(req, self.baymodels,
                                                                  public=True)]})
        elif len(rest) == 1:
            if method == 'GET':
                return _json_response(200, self._baymodel_view(self._baymodel(req, rest[0])))
            if method == 'PATCH':
                model = self._baymodel(req, rest[0])
                changes = _apply_patch(_json_body(req), BAYMODEL_FIELDS,
                                       ('/uuid', '/id', '/created_at', '/updated_at'))
                model.update(changes)
                model['updated_at'] = _now()
                return _json_response(200, self._baymodel_view(model))
            if method == 'DELETE':
                model = self._baymodel(req, rest[0])
                if any(b['baymodel_id'] == model['uuid'] for b in self.bays.values()):
                    raise ApiError(400, 'Bad Request',
                                   'ClusterTemplate %s is referenced by one or multiple '
                                   'clusters.' % model['uuid'])
                del self.baymodels[model['uuid']]
                return webob.Response(status=204, content_type=None)
        raise ApiError(405, 'Method Not Allowed',
                       'The method %s is not allowed for this resource.' % method)

    def _baymodel_create(self, req):
        body = _json_body(req)
        if not isinstance(body, dict):
            raise ApiError(400, 'Bad Request', 'Invalid input for field/attribute baymodel.')
        for mandatory in ('coe', 'image_id', 'keypair_id'):
            if not body.get(mandatory):
                raise ApiError(400, 'Bad Request',
                               'Invalid input for field/attribute %s. Value: None. '
                               'Mandatory field missing.' % mandatory)
        if body['coe'] not in _COES:
            raise ApiError(400, 'Bad Request',
                           "Invalid input for field/attribute coe. Value: '%s'."
                           % body['coe'])
        model = {field: body.get(field, _BAYMODEL_DEFAULTS.get(field))
                 for field in BAYMODEL_FIELDS}
        model.update({'uuid': str(uuidlib.uuid4()), 'name': body.get('name') or
                      'zeta-22-model', 'cluster_distro': 'fedora-atomic',
                      'created_at': _now(), 'updated_at': None,
                      'project_id': req.headers['X-Project-Id'],
                      'user_id': req.headers.get('X-User-Id')})
        self.baymodels[model['uuid']] = model
        resp = _json_response(201, self._baymodel_view(model))
        resp.location = '%s/v1/baymodels/%s' % (HOST_URL, model['uuid'])
        return resp

    def _baymodel(self, req, ident):
        return self._find(req, self.baymodels, ident, 'ClusterTemplate')

    def _baymodel_view(self, model):
        view = {}
        for field in BAYMODEL_FIELDS:
            value = model.get(field)
            view[field] = _iso(value) if field in ('created_at', 'updated_at') else value
        view['links'] = _links('baymodels', model['uuid'])
        return view

    # --------------------------------------------------------------- common
    @staticmethod
    def _allowed(req, record):
        roles = [r.strip() for r in req.headers.get('X-Roles', '').split(',')]
        return 'admin' in roles or record['project_id'] == req.headers.get('X-Project-Id')

    def _visible(self, req, table, public=False):
        return [r for r in table.values()
                if self._allowed(req, r) or (public and r.get('public'))]

    def _find(self, req, table, ident, kind, missing_status=404):
        """api_utils.get_resource: by uuid if it looks like one, else by name."""
        if _UUID.match(ident):
            record = table.get(ident)
        else:
            named = [r for r in table.values() if r.get('name') == ident]
            if len(named) > 1:
                raise ApiError(409, 'Conflict', 'Multiple %ss exist with same name. '
                               'Please use the %s uuid instead.' % (kind.lower(), kind.lower()))
            record = named[0] if named else None
        if record is None or not (self._allowed(req, record) or record.get('public')):
            raise ApiError(missing_status, 'Not Found' if missing_status == 404
                           else 'Bad Request', '%s %s could not be found.' % (kind, ident))
        if not self._allowed(req, record):
            raise ApiError(403, 'Forbidden', 'Policy doesn\'t allow %s to be performed.'
                           % kind.lower())
        return record


def _links(collection, uuid):
    return [{'href': '%s/v1/%s/%s' % (HOST_URL, collection, uuid), 'rel': 'self'},
            {'href': '%s/%s/%s' % (HOST_URL, collection, uuid), 'rel': 'bookmark'}]


def _json_response(status, body):
    resp = webob.Response(status=status, content_type='application/json', charset=None)
    resp.body = json.dumps(body).encode('utf-8')
    return resp


def _json_body(req):
    try:
        return json.loads(req.body or b'null')
    except ValueError:
        raise ApiError(400, 'Bad Request', 'The request body is not valid JSON.')


def _apply_patch(patch, fields, internal):
    """api_utils.apply_jsonpatch for the flat documents bays/baymodels are:
    replace/add/remove on top-level attributes -> {field: new value}."""
    if not isinstance(patch, list) or not patch:
        raise ApiError(400, 'Bad Request', 'Invalid input for field/attribute patch.')
    changes = {}
    for op in patch:
        if not isinstance(op, dict) or op.get('op') not in ('replace', 'add', 'remove'):
            raise ApiError(400, 'Bad Request', 'Invalid input for field/attribute patch.')
        path = op.get('path', '')
        if path in internal:
            raise ApiError(400, 'Bad Request',
                           "'%s' is an internal attribute and can not be updated" % path)
        field = path.lstrip('/')
        if field not in fields:
            raise ApiError(400, 'Bad Request',
                           "Couldn't apply patch '%s'. Reason: can't replace a "
                           "non-existent object '%s'" % (op, field))
        changes[field] = None if op['op'] == 'remove' else op.get('value')
    return changes
