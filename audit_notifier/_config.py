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

"""Typed settings from the service's conf file, overridable by paste-ini keys.

Operators configure the filter in the service's own conf file (``[audit_notifier]``
in glance-api.conf or magnum.conf); keys in the ``[filter:audit]`` section of the
paste ini override those values, as keystonemiddleware allows.  Paste hands every
key over as a string, so each one is parsed with its option's own type: the string
``False`` is false here (SAP's fork reads it as true).

Every problem is reported once, at start-up, as a single-line ``ConfigError`` that
names the option, the value as written (unless secret) and how to fix it, whether the
value came from paste or from the conf file.  An empty value of an option with a
default (a number, a boolean, a single string) is such a problem: oslo.config would
read it as None and the filter would break at request time.  An empty list or an
empty optional string means "not set".
"""

from __future__ import annotations

import configparser
import glob
import math
import os
import re
from typing import Any, Iterable, Mapping

from oslo_config import cfg, types

GROUP = 'audit_notifier'

# Keys paste (or keystonemiddleware-style deployments) may pass that are not options.
_PASTE_CONTROL_KEYS = frozenset({'oslo_config_project', 'oslo_config_file',
                                 'oslo_config_config', 'oslo_config_program'})


class ConfigError(ValueError):
    """A configuration problem found at start-up; the message is one line."""


def config_error(option: str, problem: str, fix: str) -> ConfigError:
    return ConfigError('audit_notifier: option %s: %s; %s' % (option, problem, fix))


def conf_from_paste(local_conf: Mapping[str, Any]) -> cfg.ConfigOpts:
    """The ConfigOpts to read: the service's global CONF unless paste names another.

    As oslo.middleware's ``ConfigurableMiddleware`` chooses it: ``oslo_config_config``
    (a ConfigOpts, from Python) as given; with ``oslo_config_project``, a ConfigOpts
    of its own, parsed without command-line arguments from ``oslo_config_file`` if
    given, else from the files oslo.config finds for that project and
    ``oslo_config_program`` (``~/.<project>/``, ``~/``, ``/etc/<project>/``, ``/etc/``:
    ``<project>.conf``, ``<program>.conf`` and their ``.conf.d`` directories).
    ``oslo_config_program`` or ``oslo_config_file`` without a project is an error
    here (oslo.middleware would silently read the service's CONF instead).
    """
    given = local_conf.get('oslo_config_config')
    if given is not None:
        return given
    project = local_conf.get('oslo_config_project')
    program = local_conf.get('oslo_config_program') or None
    config_file = local_conf.get('oslo_config_file') or None
    if not project:
        for key, value in (('oslo_config_program', program),
                           ('oslo_config_file', config_file)):
            if value:
                raise config_error(key, 'set without oslo_config_project, so it would be '
                                   'ignored', 'add oslo_config_project = <project> (e.g. '
                                   'glance) next to it, or remove it')
        return cfg.CONF
    conf = cfg.ConfigOpts()
    try:
        conf([], project=project, prog=program,
             default_config_files=[config_file] if config_file else None,
             validate_default_values=True)
    except cfg.Error as exc:
        raise _conf_files_error(exc, 'oslo_config_file' if config_file
                                else 'oslo_config_project')
    return conf


def _conf_files_error(exc: Exception, option: str) -> ConfigError:
    """A one-line error for conf files oslo.config could not use; never their text
    (a line oslo.config quotes may hold a password)."""
    if isinstance(exc, cfg.ConfigFilesNotFoundError):
        return config_error(option, 'no such conf file: %s' % ', '.join(exc.config_files),
                            'fix the path, or remove oslo_config_file to use the files '
                            'found for oslo_config_project')
    if isinstance(exc, cfg.ConfigFilesPermissionDeniedError):
        return config_error(option, 'cannot read %s' % ', '.join(exc.config_files),
                            'let the service user read it')
    if isinstance(exc, cfg.ConfigFileParseError):
        line = re.search(r':(\d+),', str(exc.msg))
        return config_error(option, 'cannot parse %s%s' % (
            exc.config_file, ' (line %s)' % line.group(1) if line else ''),
            'fix its syntax')
    return config_error(option, 'cannot load its conf files (%s)' % type(exc).__name__,
                        'check them with oslo-config-validator')


class Settings:
    """Option values for one filter instance: paste keys first, then the conf file.

    ``opts`` are the option lists declared next to the code that uses them and
    collected in :mod:`audit_notifier.opts`.
    """

    def __init__(self, conf: cfg.ConfigOpts, opts: Iterable[cfg.Opt],
                 paste: Mapping[str, Any] | None = None, group: str = GROUP):
        self.conf = conf
        self.group = group
        self._opts = {opt.dest: opt for opt in opts}
        conf.register_opts(list(self._opts.values()), group=group)
        self._values: dict[str, Any] = {}
        paste = dict(paste or {})
        # Deprecated names (spool_dir -> journal_dir ...) are accepted in paste too.
        for opt in self._opts.values():
            for old in opt.deprecated_opts:
                if old.name in paste and opt.dest not in paste:
                    paste[opt.dest] = paste.pop(old.name)
        unknown = sorted(k for k in paste
                         if k not in self._opts and k not in _PASTE_CONTROL_KEYS)
        if unknown:
            raise config_error(
                unknown[0], 'not a known key in the [filter:...] section of the paste ini',
                'remove it or use one of: %s' % ', '.join(sorted(self._opts)))
        for name, opt in self._opts.items():
            if name in paste:
                self._values[name] = self._from_paste(opt, paste[name])
            else:
                self._values[name] = self._from_conf(opt)

    def _from_paste(self, opt: cfg.Opt, raw: Any) -> Any:
        where = 'in the paste ini'
        if _blank(raw) and _needs_value(opt):
            raise _empty(opt, where)
        if raw is None or (_blank(raw) and _optional_choice(opt)):
            return None
        try:
            value = _convert(opt, raw)
        except (ValueError, TypeError) as exc:
            raise _invalid(opt, raw, where, _one_line(exc))
        if _not_finite(value):
            raise _invalid(opt, raw, where, 'not a finite number')
        return value

    def _from_conf(self, opt: cfg.Opt) -> Any:
        try:
            value = getattr(self.conf[self.group], opt.dest)
        except (cfg.ConfigSourceValueError, ValueError) as exc:
            if _optional_choice(opt):
                raw = _raw_conf_value(self.conf, self.group, opt)[0]
                if raw is not None and not raw.strip():
                    return None             # `refused_priority =` is unset, as in paste
            raise self._conf_invalid(opt, exc)
        if opt.multi and value:
            value = [v for v in value if v.strip()]     # `driver =` is unset, as in paste
        if (_blank(value) and _needs_value(opt)) or _not_finite(value):
            location = self.conf.get_location(opt.dest, self.group)
            where = self._conf_where(location.detail if location is not None and
                                     location.location == cfg.Locations.user else None)
            if _not_finite(value):
                raise _invalid(opt, str(value), where, 'not a finite number')
            raise _empty(opt, where)
        return value

    def _conf_invalid(self, opt: cfg.Opt, exc: Exception) -> ConfigError:
        """The paste-style line for a conf value oslo.config could not convert.

        oslo.config's own message names its internals (``LocationInfo(location=...``);
        the line is rebuilt from the text as written, parsed again with the option's
        type for the same explanation a paste key gets.
        """
        raw, location = _raw_conf_value(self.conf, self.group, opt)
        where = self._conf_where(location)
        if raw is None:                         # not from a file: the value is unknown
            reason = '' if opt.secret else ' (%s)' % _oslo_reason(exc)
            return config_error(opt.dest, 'invalid value %s%s' % (where, reason),
                                'expected %s' % _expected(opt))
        if _blank(raw):
            return _empty(opt, where)
        try:
            _convert(opt, raw)
        except (ValueError, TypeError) as again:
            return _invalid(opt, raw, where, _one_line(again))
        return _invalid(opt, raw, where, _oslo_reason(exc))

    def _conf_where(self, path: str | None) -> str:
        return 'in [%s] of %s' % (self.group, path) if path else 'in [%s]' % self.group

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, name: str) -> Any:
        return self._values[name]

    def items(self):
        return self._values.items()


def fallback(conf: cfg.ConfigOpts, group: str, name: str) -> Any:
    """An option of another group (oslo_messaging_notifications, DEFAULT ...), None if
    absent or not registered by the service."""
    try:
        if group in (None, 'DEFAULT'):
            return getattr(conf, name)
        return getattr(conf[group], name)
    except (cfg.NoSuchOptError, cfg.NoSuchGroupError, AttributeError, KeyError):
        return None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _needs_value(opt: cfg.Opt) -> bool:
    """A number, boolean or single string with a default: empty cannot mean anything
    (oslo.config would give None, and the filter would break at request time)."""
    return (opt.default not in (None, '') and not opt.multi
            and not isinstance(opt.type, types.List))


def _optional_choice(opt: cfg.Opt) -> bool:
    """A string of fixed choices without a default: empty means "not set" (oslo.config
    itself would refuse the empty string as no choice)."""
    return opt.default is None and bool(getattr(opt.type, 'choices', None))


def _not_finite(value: Any) -> bool:
    # nan passes oslo.config's range checks (every comparison is false); inf would
    # mean "wait forever" or "no limit", which no option offers
    return isinstance(value, float) and not math.isfinite(value)


def _convert(opt: cfg.Opt, raw: Any) -> Any:
    """A paste string (or a keyword argument of the Python API) as the option's type."""
    if opt.multi:
        items = raw.split(',') if isinstance(raw, str) else raw
        return [opt.type(str(v).strip()) for v in items if str(v).strip()]
    return opt.type(raw.strip() if isinstance(raw, str) else raw)


def _empty(opt: cfg.Opt, where: str) -> ConfigError:
    default = opt.default
    if isinstance(default, bool):
        default = str(default).lower()
    return config_error(opt.dest, 'empty value %s' % where,
                        'set %s, or remove the line to use the default %s'
                        % (_expected(opt), default))


def _invalid(opt: cfg.Opt, raw: Any, where: str, reason: str) -> ConfigError:
    if isinstance(raw, (list, tuple)):
        raw = ','.join(str(v) for v in raw)
    problem = 'invalid value %r %s' % (_shown(opt, raw), where)
    if not opt.secret:                          # the reason may quote the value
        problem += ' (%s)' % reason
    return config_error(opt.dest, problem, 'expected %s' % _expected(opt))


def _raw_conf_value(conf: cfg.ConfigOpts, group: str, opt: cfg.Opt) -> tuple:
    """The option's text as written in the service's conf files, and that file; else
    (None, None).  Deprecated names count (the new name first, as oslo.config reads).

    oslo.config offers no public call for the text before conversion, so the files it
    read (``config_file``, then ``config_dir``) are read again, the last one wins as
    in oslo.config; only to word an error.
    """
    paths = list(conf.config_file or ())
    dirs = conf.config_dir or ()
    for directory in [dirs] if isinstance(dirs, str) else dirs:    # a list since 9.x
        paths += sorted(glob.glob(os.path.join(directory, '*.conf')))
    names = [(group, opt.dest)] + [(old.group or group, old.name)
                                   for old in opt.deprecated_opts if old.name]
    found: tuple = (None, None)
    for path in paths:
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        try:
            parser.read(path)
        except (configparser.Error, OSError, UnicodeDecodeError):
            continue
        for name_group, name in reversed(names):     # the new name wins
            if parser.has_option(name_group, name):
                found = (parser.get(name_group, name), path)
    return found


def _oslo_reason(exc: BaseException) -> str:
    # "Value for option X from LocationInfo(...) is not valid: <reason>"
    text = _one_line(exc)
    return text.split(' is not valid: ', 1)[-1]


def _shown(opt: cfg.Opt, raw: Any) -> Any:
    return '***' if opt.secret else raw


def _one_line(exc: BaseException) -> str:
    return ' '.join(str(exc).split())


def _expected(opt: cfg.Opt) -> str:
    kind = type(opt).__name__
    choices = getattr(opt.type, 'choices', None)
    if choices:
        return 'one of %s' % ', '.join(str(c) for c in choices)
    item_choices = getattr(getattr(opt.type, 'item_type', None), 'choices', None)
    if item_choices:
        return 'a comma-separated list of %s' % ', '.join(str(c) for c in item_choices)
    return {
        'BoolOpt': 'a boolean (true or false)',
        'IntOpt': 'an integer%s' % _range(opt),
        'FloatOpt': 'a number%s' % _range(opt),
        'ListOpt': 'a comma-separated list',
        'MultiStrOpt': 'one or more strings',
    }.get(kind, 'a string')


def _range(opt: cfg.Opt) -> str:
    lo = getattr(opt.type, 'min', None)
    hi = getattr(opt.type, 'max', None)
    if lo is not None and hi is not None:
        return ' from %s to %s' % (lo, hi)
    if lo is not None:
        return ' of at least %s' % lo
    return ''
