"""Typed settings from the service's conf file, overridable by paste-ini keys.

Operators configure the filter in the service's own conf file (``[audit_notifier]``
in glance-api.conf or magnum.conf); keys in the ``[filter:audit]`` section of the
paste ini override those values, as keystonemiddleware allows.  Paste hands every
key over as a string, so each one is parsed with its option's own type: the string
``False`` is false here (SAP's fork reads it as true).

Every problem is reported once, at start-up, as a single-line ``ConfigError`` that
names the option and says how to fix it.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from oslo_config import cfg

GROUP = 'audit_notifier'

# Keys paste (or keystonemiddleware-style deployments) may pass that are not options.
_PASTE_CONTROL_KEYS = frozenset({'oslo_config_project', 'oslo_config_file',
                                 'oslo_config_config', 'oslo_config_program'})


class ConfigError(ValueError):
    """A configuration problem found at start-up; the message is one line."""


def config_error(option: str, problem: str, fix: str) -> ConfigError:
    return ConfigError('audit_notifier: option %s: %s; %s' % (option, problem, fix))


def conf_from_paste(local_conf: Mapping[str, Any]) -> cfg.ConfigOpts:
    """The ConfigOpts to read: the service's global CONF unless paste names another."""
    given = local_conf.get('oslo_config_config')
    if given is not None:
        return given
    project = local_conf.get('oslo_config_project')
    if project:
        conf = cfg.ConfigOpts()
        files = local_conf.get('oslo_config_file')
        conf([], project=project,
             default_config_files=[files] if files else None,
             validate_default_values=True)
        return conf
    return cfg.CONF


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
                self._values[name] = self._parse_paste(opt, paste[name])
            else:
                self._values[name] = self._read_conf(opt)

    def _parse_paste(self, opt: cfg.Opt, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        try:
            if isinstance(opt, cfg.MultiOpt):
                return [opt.type(v.strip()) for v in raw.split(',') if v.strip()]
            value = opt.type(raw.strip())
        except (ValueError, TypeError) as exc:
            raise config_error(opt.dest, 'invalid value %r in the paste ini (%s)'
                               % (_shown(opt, raw), _one_line(exc)),
                               'expected %s' % _expected(opt))
        return value

    def _read_conf(self, opt: cfg.Opt) -> Any:
        try:
            return getattr(self.conf[self.group], opt.dest)
        except (cfg.ConfigFileValueError, ValueError) as exc:
            raise config_error(opt.dest, 'invalid value in [%s] (%s)'
                               % (self.group, _one_line(exc)),
                               'expected %s' % _expected(opt))

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


def _shown(opt: cfg.Opt, raw: str) -> str:
    return '***' if getattr(opt, 'secret', False) else raw


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
