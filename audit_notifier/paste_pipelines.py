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

"""The filter chains of a paste file and where the audit filter stands in each.

The file is read by paste.deploy itself (``loadwsgi``), so ``use =``, ``egg:``
names and ``%(here)s`` resolve as when the service loads it; each filter's factory
is imported to learn what it is, nothing is built and no app is created.  A chain
is a ``[pipeline:...]`` section or a whitespace-separated list of names in a
``[composite:...]`` section (Glance's ``[composite:api]`` keeps one per flavor);
composites and urlmaps are followed to the chains behind them, and a chain
reached through another chain's last element keeps the filters in front of it.
"""

from __future__ import annotations

import dataclasses
import warnings

from paste.deploy import loadwsgi

from audit_notifier import middleware

AUDIT, AUTH_TOKEN, OTHER, UNLOADABLE = 'audit', 'authtoken', 'other', 'unloadable'
_APP_PREFIXES = ('pipeline', 'composite', 'composit', 'app', 'application', 'filter-app')


@dataclasses.dataclass(frozen=True)
class Chain:
    """Filters in front of an app, outermost first, as one request meets them."""
    label: str                  # "[pipeline:main]", "[composite:api] keystone" ...
    filters: tuple              # ((section name, role), ...)


@dataclasses.dataclass(frozen=True)
class Placement:
    """The verdict on one chain that holds the audit filter (or should)."""
    level: str                  # OK, WARN or ERROR
    text: str


class PasteFile:
    """A paste file as paste.deploy reads it."""

    def __init__(self, path: str):
        self.path = path
        self.loader = loadwsgi.ConfigLoader(path)
        self.parser = self.loader.parser
        self.load_errors: dict[str, str] = {}   # filter name -> why it could not be loaded
        self.audit_sections: dict[str, dict] = {}   # filter name -> its paste keys
        self._roles: dict[str, str] = {}

    def chains(self, entry: str | None = None) -> list[Chain]:
        """Chains reachable from ``entry`` (an app, pipeline or composite name), or
        from every app-like section no other section refers to."""
        found: dict[tuple, Chain] = {}
        for name in [entry] if entry else self._roots():
            self._walk(name, (), found, set())
        return list(found.values())

    def role(self, name: str) -> str:
        """audit, authtoken, other, or unloadable (see :attr:`load_errors`)."""
        role = self._roles.get(name)
        if role is None:
            try:
                with warnings.catch_warnings():      # other projects' import-time notes
                    warnings.simplefilter('ignore')
                    context = self.loader.get_context(loadwsgi.FILTER, name)
            except Exception as exc:
                self.load_errors[name] = '%s: %s' % (type(exc).__name__,
                                                     ' '.join(str(exc).split()))
                role = UNLOADABLE
            else:
                role = _role_of(context.object)
                if role == AUDIT:
                    self.audit_sections[name] = dict(context.local_conf)
            self._roles[name] = role
        return role

    # -- the walk ---------------------------------------------------------------------------
    def find(self, name: str) -> str | None:
        """The section of the app, pipeline or composite ``name``, or None."""
        try:
            return self.loader.find_config_section(loadwsgi.APP, name)
        except LookupError:
            return None

    def _roots(self) -> list[str]:
        apps, referred = [], set()
        for section in self.parser.sections():
            prefix, _, name = section.partition(':')
            if prefix.strip() not in _APP_PREFIXES:
                continue
            apps.append(name.strip())
            for option in self.parser.options(section):
                referred.update(self.parser.get(section, option, raw=True).split())
        return [name for name in apps if name not in referred]

    def _walk(self, name: str, front: tuple, found: dict, seen: set) -> None:
        section = self.find(name)
        if section is None or section in seen:      # an egg: app, or a loop
            return
        seen = seen | {section}
        kind = section.split(':', 1)[0]
        if kind == 'pipeline':
            names = self.parser.get(section, 'pipeline').split()
            self._chain('[%s]' % section, names, front, found, seen)
        elif kind in ('composite', 'composit'):
            options = self.parser.options(section)
            defaults = self.parser.defaults()
            for key in options:
                if key in defaults or key == 'use' or key.startswith(('paste.', 'set ', 'get ')):
                    continue
                names = self.parser.get(section, key).split()
                if len(names) == 1:
                    self._walk(names[0], front, found, seen)
                elif names and all(self._is_section(n) for n in names):
                    self._chain('[%s] %s' % (section, key), names, front, found, seen)

    def _chain(self, label: str, names: list[str], front: tuple, found: dict,
               seen: set) -> None:
        filters = front + tuple((n, self.role(n)) for n in names[:-1])
        chain = Chain(label, filters)
        found.setdefault((label, filters), chain)
        self._walk(names[-1], filters, found, seen)

    def _is_section(self, name: str) -> bool:
        return any(s.partition(':')[2].strip() == name for s in self.parser.sections())


def _role_of(factory) -> str:
    if factory is middleware.filter_factory:
        return AUDIT
    # keystonemiddleware's filter_factory, or a subclass's factory (Magnum's
    # AuthTokenMiddleware.factory, a classmethod of an AuthProtocol subclass).
    owner = getattr(factory, '__self__', None)
    modules = [getattr(factory, '__module__', None) or '']
    if isinstance(owner, type):
        modules += [cls.__module__ for cls in owner.__mro__]
    if any(m == 'keystonemiddleware.auth_token' or
           m.startswith('keystonemiddleware.auth_token.') for m in modules):
        return AUTH_TOKEN
    return OTHER


def placement(chain: Chain) -> Placement | None:
    """Is the audit filter where it records confirmed identities: right after
    authtoken?  None for a chain with neither (a no-auth flavor, left alone)."""
    names = [n for n, _ in chain.filters]
    roles = [r for _, r in chain.filters]
    where = chain.label
    if AUDIT not in roles:
        if AUTH_TOKEN in roles:
            return Placement('WARN', '%s: authtoken but no audit filter: calls through this '
                                     'pipeline are not audited' % where)
        return None
    audit = roles.index(AUDIT)
    auth = [i for i, role in enumerate(roles) if role == AUTH_TOKEN]
    if not auth:
        return Placement('ERROR', '%s: %s without authtoken in front of it: every identity '
                                  'it records is an unconfirmed claim; put it right after '
                                  'authtoken' % (where, names[audit]))
    before = [i for i in auth if i < audit]
    if not before:
        return Placement('ERROR', '%s: %s before authtoken: every identity it records is an '
                                  'unconfirmed claim; move it right after authtoken'
                                  % (where, names[audit]))
    between = names[before[-1] + 1:audit]
    if between:
        return Placement('WARN', '%s: %s between %s and %s: a filter there can change the '
                                 'identity headers %s set, or answer calls %s never sees; '
                                 'put %s right after %s'
                                 % (where, ' '.join(between), names[before[-1]], names[audit],
                                    names[before[-1]], names[audit], names[audit],
                                    names[before[-1]]))
    return Placement('OK', '%s: %s right after %s' % (where, names[audit], names[before[-1]]))
