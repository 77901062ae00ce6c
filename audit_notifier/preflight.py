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

"""``audit-notifier check``: will the filter work in this service, as configured?

Reads what the service reads (its conf files and paste file) and says, one line
each (``OK``, ``WARN`` or ``ERROR``): where the filter stands in each paste
pipeline, whether its options and route map load, whether the service user can
write the journal directory, whether the message bus answers, and which drivers
and topics each format goes to.  The options are checked by building the filter's
own :class:`~audit_notifier.assembly.Pipeline`, minus its journal and process
hooks: nothing is created, started or sent.  The exit status is 1 when any line
is an ERROR.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from typing import Any, Iterable, Mapping, TextIO

from oslo_config import cfg

from audit_notifier import _config, bus_probe, paste_pipelines, service_user
from audit_notifier.assembly import Pipeline, check_external_sender
from audit_notifier.delivery import external as external_mod
from audit_notifier.delivery.drivers import transport_url_in_effect
from audit_notifier.opts import ALL_OPTS

BUS_DRIVERS = ('messaging', 'messagingv2', 'routing')
# Where Glance ([paste_deploy] config_file) and Magnum ([api] api_paste_config)
# name their paste file.
_PASTE_OPTIONS = (('paste_deploy', 'config_file'), ('api', 'api_paste_config'))


class Report:
    """Prints each finding as it is made; remembers whether any was an ERROR."""

    def __init__(self, out: TextIO):
        self.out = out
        self.failed = False

    def __call__(self, level: str, text: str) -> None:
        self.failed = self.failed or level == 'ERROR'
        print('%s %s' % (level, text), file=self.out, flush=True)


def load_conf(config_files: Iterable[str]) -> cfg.ConfigOpts:
    """The service's conf files, read as oslo.config reads them."""
    conf = cfg.ConfigOpts()
    conf([], project='audit_notifier', default_config_files=list(config_files),
         default_config_dirs=[], validate_default_values=True)
    return conf


def offline_pipeline(conf: cfg.ConfigOpts, paste_keys: Mapping[str, Any],
                     app=None) -> Pipeline:
    """The filter's Pipeline for these paste keys and conf (wrapping ``app``), as
    the service builds it, but keeping records in memory and installing no process
    hooks: no journal directory is created and no thread is started (none starts
    before a call)."""
    # (sender = external needs the journal: check_sender checks its options instead)
    overrides = dict(paste_keys, delivery_mode='memory', process_hooks='false',
                     sender='thread')
    overrides['oslo_config_config'] = filter_conf(conf, paste_keys)
    return Pipeline(overrides, app=app)


def filter_conf(conf: cfg.ConfigOpts, paste_keys: Mapping[str, Any]) -> cfg.ConfigOpts:
    """The conf the filter reads: the service's, unless its paste keys name another."""
    if paste_keys.get('oslo_config_project') or paste_keys.get('oslo_config_file'):
        return _config.conf_from_paste({k: v for k, v in paste_keys.items()
                                        if k != 'oslo_config_config'})
    return conf


def run(config_files: list[str], paste: str | None = None, pipeline: str | None = None,
        user: str | None = None, timeout: float = 5.0, out: TextIO = sys.stdout) -> int:
    # What Pipeline logs on a configuration error is reported here, as one line.
    logging.getLogger('audit_notifier').addHandler(logging.NullHandler())
    report = Report(out)
    try:
        conf = load_conf(config_files)
    except cfg.Error as exc:
        report('ERROR', 'cannot read the conf files: %s' % ' '.join(str(exc).split()))
        return 1
    sections = check_paste(report, conf, config_files, paste, pipeline)
    for name, keys in sections.items():
        check_filter(report, conf, name, keys, user, timeout)
    return 1 if report.failed else 0


# -- the paste file -----------------------------------------------------------------------

def find_paste(conf: cfg.ConfigOpts, config_files: list[str]) -> str | None:
    """The paste file the service loads: named in its conf, or next to its last conf
    file (glance-api.conf -> glance-api-paste.ini, as Glance looks; api-paste.ini)."""
    for group, name in _PASTE_OPTIONS:
        if group not in conf:
            conf.register_opt(cfg.StrOpt(name), group=group)
        value = conf[group][name]
        if value:
            return value if os.path.isabs(value) else (conf.find_file(value) or value)
    if config_files:
        last = config_files[-1]
        for candidate in (last[:-len('.conf')] + '-paste.ini' if last.endswith('.conf')
                          else None, os.path.join(os.path.dirname(last), 'api-paste.ini')):
            if candidate and os.path.isfile(candidate):
                return candidate
    return None


def check_paste(report: Report, conf: cfg.ConfigOpts, config_files: list[str],
                path: str | None, entry: str | None) -> dict[str | None, dict]:
    """Report the filter's place in each pipeline; its sections' paste keys by name
    ({None: {}} without a usable paste file: the options are checked anyway)."""
    path = path or find_paste(conf, config_files)
    if path is None:
        report('ERROR', 'no paste file found next to the conf files or named in them; '
                        'give --paste (e.g. /etc/glance/glance-api-paste.ini)')
        return {None: {}}
    path = os.path.abspath(path)
    try:
        paste_file = paste_pipelines.PasteFile(path)
        if entry is not None and paste_file.find(entry) is None:
            report('ERROR', 'paste file %s has no pipeline, composite or app named %s; '
                            'give --pipeline one of its sections' % (path, entry))
            return {None: {}}
        chains = paste_file.chains(entry)
    except Exception as exc:                  # unreadable, not an ini file, a broken use =
        report('ERROR', 'cannot read paste file %s: %s: %s'
               % (path, type(exc).__name__, ' '.join(str(exc).split())))
        return {None: {}}
    report('OK', 'paste file %s' % path)
    for name, why in paste_file.load_errors.items():
        report('ERROR', '[filter:%s] of %s cannot be loaded (%s); the service would not '
                        'start' % (name, path, why))
    findings = [paste_pipelines.placement(chain) for chain in chains]
    if not paste_file.audit_sections:
        report('ERROR', '%s: no pipeline%s has the audit filter; add a [filter:audit] '
                        'section (paste.filter_factory = audit_notifier.middleware:'
                        'filter_factory) and put audit right after authtoken'
               % (path, ' reachable from %s' % entry if entry else ''))
        return {None: {}}
    for finding in findings:
        if finding is not None:
            report(finding.level, finding.text)
    return paste_file.audit_sections


# -- one audit filter section -------------------------------------------------------------

def check_filter(report: Report, conf: cfg.ConfigOpts, name: str | None, keys: dict,
                 user: str | None, timeout: float) -> None:
    try:
        own_conf = filter_conf(conf, keys)
        settings = _config.Settings(own_conf, ALL_OPTS, paste=keys)
        pipeline = offline_pipeline(conf, keys)
    except _config.ConfigError as exc:
        report('ERROR', str(exc))
        return
    except cfg.Error as exc:                  # oslo_config_file that cannot be read
        report('ERROR', 'cannot read the conf files [filter:%s] names: %s'
               % (name, ' '.join(str(exc).split())))
        return
    report('OK', 'options of %s[audit_notifier] are valid'
           % ('[filter:%s] and ' % name if name else ''))
    route_map = pipeline.route_map
    report('OK', 'route map: %d routes from %s'
           % (len(route_map.routes), ', '.join(route_map.sources)))
    check_journal(report, settings, user)
    check_sender(report, settings, pipeline)
    check_bus(report, pipeline, timeout)


def check_sender(report: Report, settings: _config.Settings, pipeline: Pipeline) -> None:
    """sender = external: what the filter checks at start-up, and is an
    audit-notifier send process serving the journals?"""
    if settings.sender != 'external':
        return
    try:
        check_external_sender(settings.delivery_mode, pipeline.route_map, pipeline.emitter)
    except _config.ConfigError as exc:
        report('ERROR', str(exc))
        return
    path = settings.journal_dir
    if external_mod.sender_running(path):
        report('OK', 'sender = external: audit-notifier send serves %s' % path)
    else:
        report('WARN', 'sender = external: no audit-notifier send process serves %s; start '
                       'it (etc/audit_notifier/audit-notifier-send.service): until then '
                       'notifications wait in the journals' % path)


def check_journal(report: Report, settings: _config.Settings, user_name: str | None) -> None:
    if settings.delivery_mode != 'journal':
        report('WARN', 'delivery_mode = %s: no journal; what is not sent when a process '
                       'ends is lost' % settings.delivery_mode)
        return
    path = settings.journal_dir
    try:
        user = service_user.lookup(user_name)
    except KeyError:
        report('ERROR', '--user %s: no such user' % user_name)
        return
    if not service_user.can_ask_as(user):
        report('WARN', 'journal_dir %s: not checked for user %s: only root can check as '
                       'another user' % (path, user.pw_name))
        return
    try:
        verdict = service_user.probe_as(user, path)
    except OSError as exc:
        report('WARN', 'journal_dir %s: not checked (%s)' % (path, exc))
        return
    fix = 'install -d -o %s -g %s -m 0700 %s' % (user.pw_name, service_user.group_name(user),
                                                 path)
    if verdict.answer == service_user.WRITABLE:
        report('OK', 'journal_dir %s: writable by %s' % (path, user.pw_name))
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o002:
            report('WARN', 'journal_dir %s: mode %04o: any user can add or remove journals '
                           '(forged or lost audit records); chmod 0700 %s' % (path, mode, path))
    elif verdict.answer == service_user.CREATABLE:
        report('OK', 'journal_dir %s: does not exist yet; %s can create it (the filter does '
                     'at start-up)' % (path, user.pw_name))
    elif verdict.answer == service_user.NOT_A_DIRECTORY:
        report('ERROR', 'journal_dir %s: %s is not a directory; set journal_dir to a '
                        'directory' % (path, verdict.where))
    elif verdict.where == path:
        report('ERROR', 'journal_dir %s: %s cannot write it (%s); run: %s'
               % (path, user.pw_name, service_user.describe(path), fix))
    else:
        report('ERROR', 'journal_dir %s: does not exist and %s cannot create it in %s (%s); '
                        'run: %s' % (path, user.pw_name, verdict.where,
                                     service_user.describe(verdict.where), fix))
    if user_name is None and os.geteuid() == 0:
        report('WARN', 'journal_dir %s: checked as root, who may write anywhere; give '
                       '--user with the service user (glance, magnum ...)' % path)


def check_bus(report: Report, pipeline: Pipeline, timeout: float) -> None:
    """Drivers and topics per format, then the bus they publish to."""
    leaves = pipeline.leaves()
    drivers = leaves['cadf'].drivers
    for fmt in pipeline.formats:
        leaf = leaves[fmt]
        line = '%s notifications: driver %s, topics %s' % (
            fmt, ', '.join(leaf.drivers), ', '.join(leaf.topics))
        if leaf.drivers == ['noop']:
            report('WARN', line + ': noop drops them; set driver = messagingv2 in '
                                  '[oslo_messaging_notifications]')
        else:
            report('OK', line)
    if not any(d in BUS_DRIVERS for d in drivers):
        return
    url, option = transport_url_in_effect(pipeline.conf, pipeline.settings.transport_url)
    source = "the filter's transport_url" if option == 'transport_url' else option
    if not bus_probe.checkable(url):
        report('WARN', 'bus %s (%s): not checked; only rabbit:// brokers are'
               % (bus_probe.safe_name(url), source))
        return
    answers = bus_probe.probe(pipeline.conf, url, timeout)
    reached = any(a.problem is None for a in answers)
    for answer in answers:
        if answer.problem is None:
            report('OK', 'bus %s: connected and logged in (%s)' % (answer.broker, source))
        else:
            report('WARN' if reached else 'ERROR', 'bus %s: %s (%s)'
                   % (answer.broker, answer.problem, source))
