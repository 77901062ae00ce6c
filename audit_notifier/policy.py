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

"""Audit policy: how much of each call its CADF event records.

Four levels, as Kubernetes' audit policy has them:

* ``none``: no CADF event (Glance-format usage notifications are still sent:
  metering depends on them);
* ``metadata``: the CADF event (who, what, which resource, outcome);
* ``request``: plus the JSON the caller sent, as the ``request`` or ``changes``
  attachment (redacted, capped);
* ``request_response``: plus the JSON the app answered (``response`` attachment).

A policy file is a list of rules, first match wins; a call no rule matches is at
``metadata``::

    rules:
      - level: none
        events: [image.read]          # route event names (shell patterns)
        roles: [service]              # optional: the CONFIRMED caller's roles
      - level: request_response
        methods: [PATCH]
        projects: [9a1d...]           # optional: confirmed project ids
      - level: metadata
        kinds: [read, list]
      - level: request
        kinds: [write]

Selectors: ``events``, ``methods``, ``kinds`` (of the route) and ``users``,
``projects``, ``roles`` (of the caller, believed only when auth_token confirmed
the token: :mod:`audit_notifier.identity`; an unconfirmed caller matches no rule
that names users, projects or roles).  A rule without selectors matches every call.

The file is validated when the filter loads; a mistake is one line naming the
file, the rule and the field.  A route's level is computed once at load unless a
rule that could match it names users, projects or roles; only then is it chosen
per call, on the request path (a dict look-up, a split of ``X-Roles``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import os
import threading
from typing import Any

from oslo_config import cfg
import yaml

from audit_notifier import identity
from audit_notifier._config import ConfigError, config_error

NONE = 0
METADATA = 1
REQUEST = 2
REQUEST_RESPONSE = 3
LEVELS = {'none': NONE, 'metadata': METADATA, 'request': REQUEST,
          'request_response': REQUEST_RESPONSE}
LEVEL_NAMES = {v: k for k, v in LEVELS.items()}

SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'policies')
#: Default and largest capture_limit (bytes).
DEFAULT_CAPTURE_LIMIT = 16 * 1024
MAX_CAPTURE_LIMIT = 64 * 1024

_RULE_KEYS = {'level', 'events', 'methods', 'kinds', 'users', 'projects', 'roles'}
_ROUTE_SELECTORS = ('events', 'methods', 'kinds')
_IDENTITY_SELECTORS = ('users', 'projects', 'roles')

policy_opts = [
    cfg.StrOpt('audit_policy', default='default',
               help='Audit policy: how much of each call its CADF event records, per '
                    'route and optionally per confirmed user, project or role (levels '
                    'none, metadata, request, request_response; doc/source/configuration/'
                    'policy.rst). A shipped policy (default: metadata for reads and '
                    'lists, request for writes; metadata: metadata for every call) or '
                    'the path of a YAML policy file.'),
    cfg.IntOpt('capture_limit', default=DEFAULT_CAPTURE_LIMIT, min=0, max=MAX_CAPTURE_LIMIT,
               help='Largest JSON request or response body (bytes) kept for levels '
                    'request and request_response. A larger body is not kept: its '
                    'attachment says truncated and gives its size. Image data is never '
                    'kept.'),
]


@dataclasses.dataclass(frozen=True)
class Rule:
    level: int
    events: tuple = ()
    methods: frozenset = frozenset()
    kinds: frozenset = frozenset()
    users: frozenset = frozenset()
    projects: frozenset = frozenset()
    roles: frozenset = frozenset()

    @property
    def by_identity(self) -> bool:
        return bool(self.users or self.projects or self.roles)

    def matches_route(self, route) -> bool:
        if self.methods and route.method not in self.methods:
            return False
        if self.kinds and route.kind not in self.kinds:
            return False
        if self.events and not any(fnmatch.fnmatchcase(route.event, p) for p in self.events):
            return False
        return True

    def matches_caller(self, environ: dict) -> bool:
        """Does the caller, as auth_token confirmed it, match (request path)?"""
        if not self.by_identity:
            return True
        if identity.status(environ) != identity.CONFIRMED:
            return False
        if self.users and environ.get('HTTP_X_USER_ID') not in self.users:
            return False
        if self.projects and (environ.get('HTTP_X_PROJECT_ID') or
                              environ.get('HTTP_X_TENANT_ID')) not in self.projects:
            return False
        if self.roles:
            roles = {r.strip() for r in (environ.get('HTTP_X_ROLES') or '').split(',')}
            if not roles & self.roles:
                return False
        return True


class Policy:
    """A validated policy; ``level_for(route, environ)`` is the level of one call."""

    def __init__(self, rules: list[Rule], source: str, capture_limit: int):
        self.rules = tuple(rules)
        self.source = source
        self.capture_limit = capture_limit
        self._fixed: dict[int, int] = {}          # id(route) -> level, when fixed
        self._per_call: dict[int, tuple] = {}     # id(route) -> the rules that may match

    def route_level(self, route) -> int | None:
        """The route's level when no rule about callers can decide it, else None
        (computed at load, cached)."""
        key = id(route)
        if key in self._fixed:
            return self._fixed[key]
        if key in self._per_call:
            return None
        candidates = []
        for rule in self.rules:
            if not rule.matches_route(route):
                continue
            candidates.append(rule)
            if not rule.by_identity:
                break
        if not candidates or not candidates[0].by_identity:
            level = candidates[0].level if candidates else METADATA
            self._fixed[key] = level
            return level
        self._per_call[key] = tuple(candidates)
        return None

    def levels(self, route) -> set[int]:
        """Every level a call of this route can get (for the route table)."""
        fixed = self.route_level(route)
        if fixed is not None:
            return {fixed}
        rules = self._per_call[id(route)]
        found = {r.level for r in rules}
        if rules[-1].by_identity:
            found.add(METADATA)
        return found

    def level_for(self, route, environ: dict) -> int:
        """The level of one call (request path: a dict look-up for most routes)."""
        level = self._fixed.get(id(route))
        if level is not None:
            return level
        level = self.route_level(route)
        if level is not None:
            return level
        for rule in self._per_call[id(route)]:
            if rule.matches_caller(environ):
                return rule.level
        return METADATA


def resolve_path(name_or_path: str) -> str:
    if os.sep not in name_or_path and not name_or_path.endswith(('.yaml', '.yml')):
        path = os.path.join(SHIPPED_DIR, name_or_path + '.yaml')
        if not os.path.isfile(path):
            shipped = sorted(f[:-5] for f in os.listdir(SHIPPED_DIR) if f.endswith('.yaml'))
            raise config_error('audit_policy', 'no shipped policy named %r' % name_or_path,
                               'use one of %s or the path of a YAML policy file'
                               % ', '.join(shipped))
        return path
    if not os.path.isfile(name_or_path):
        raise config_error('audit_policy', 'policy file %s does not exist' % name_or_path,
                           'fix the path, or use a shipped policy (default, metadata)')
    return name_or_path


def load(name_or_path: str, capture_limit: int = DEFAULT_CAPTURE_LIMIT,
         kinds=('write', 'read', 'list')) -> Policy:
    """Read and validate a policy file (at start-up)."""
    path = resolve_path(name_or_path)
    try:
        with open(path, encoding='utf-8') as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError('audit_notifier: cannot read audit policy %s (%s); check the path '
                          'and permissions' % (path, exc.strerror))
    digest = hashlib.sha256(text.encode('utf-8')).digest()
    key = os.path.abspath(path)
    with _PARSED_LOCK:
        cached = _PARSED.get(key)
    if cached is not None and cached[0] == digest:
        return Policy(list(cached[1]), path, capture_limit)
    rules = _parse(path, text, set(kinds))
    with _PARSED_LOCK:
        _PARSED[key] = (digest, tuple(rules))
    return Policy(rules, path, capture_limit)


# abspath -> (digest of its text, rules): parsed once per process while the file reads
# the same (each filter gets its own Policy: its per-route caches key on route ids).
_PARSED: dict[str, tuple[bytes, tuple]] = {}
_PARSED_LOCK = threading.Lock()


def _parse(path: str, text: str, kinds: set) -> list[Rule]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError('audit_notifier: audit policy %s is not valid YAML (%s); fix the '
                          'syntax' % (path, ' '.join(str(exc).split())))
    if not isinstance(doc, dict) or set(doc) != {'rules'}:
        raise _error(path, 'document', 'not a mapping with only the key rules',
                     'write rules: followed by a list of rules')
    raw_rules = doc['rules']
    if not isinstance(raw_rules, list) or not raw_rules:
        raise _error(path, 'rules', 'missing, empty or not a list', 'list at least one rule')
    return [_parse_rule(raw, path, i, kinds) for i, raw in enumerate(raw_rules)]


def _parse_rule(raw: Any, path: str, index: int, kinds: set) -> Rule:
    where = 'rule %d' % index
    if not isinstance(raw, dict):
        raise _error(path, where, 'not a mapping', 'give level: and optional selectors')
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise _error(path, where, 'unknown key %s' % sorted(unknown)[0],
                     'allowed keys: %s' % ', '.join(sorted(_RULE_KEYS)))
    level = raw.get('level')
    if level not in LEVELS:
        raise _error(path, where + '.level', 'missing or unknown level %r' % (level,),
                     'use one of %s' % ', '.join(LEVELS))
    values = {}
    for key in _ROUTE_SELECTORS + _IDENTITY_SELECTORS:
        if key not in raw:
            continue
        items = raw[key]
        if not isinstance(items, list) or not items or \
                not all(isinstance(i, str) and i for i in items):
            raise _error(path, '%s.%s' % (where, key), 'not a non-empty list of strings',
                         'write for example %s: [%s]' % (key, {
                             'events': 'image.update', 'methods': 'PATCH',
                             'kinds': 'write', 'users': '<user id>',
                             'projects': '<project id>', 'roles': 'admin'}[key]))
        if key == 'methods':
            items = [i.upper() for i in items]
        if key == 'kinds':
            bad = [i for i in items if i not in kinds]
            if bad:
                raise _error(path, where + '.kinds', 'unknown kind %r' % bad[0],
                             'use write, read or list')
        values[key] = tuple(items) if key == 'events' else frozenset(items)
    return Rule(LEVELS[level], **values)


def _error(path: str, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError('audit_notifier: audit policy %s, %s: %s; %s'
                       % (path, where, problem, fix))
