"""Packaging promises: the generated sample config is current, entry points resolve."""

import configparser
import os
import subprocess
import sys
from importlib.metadata import entry_points

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, 'etc', 'audit_notifier', 'audit_notifier.conf.sample')


def _generate(tmp_path):
    out = tmp_path / 'sample.conf'
    subprocess.run([sys.executable, '-m', 'oslo_config.generator', '--namespace',
                    'audit_notifier', '--wrap-width', '79', '--output-file', str(out)],
                   check=True, cwd=ROOT, capture_output=True)
    return out.read_text()


def test_sample_config_is_current(tmp_path):
    with open(SAMPLE) as f:
        committed = f.read()
    assert _generate(tmp_path) == committed, (
        'etc/audit_notifier/audit_notifier.conf.sample is stale: run '
        'oslo-config-generator --config-file etc/oslo-config-generator/audit_notifier.conf')


def test_sample_config_lists_every_option():
    from audit_notifier.opts import list_opts
    parser = configparser.ConfigParser()
    with open(SAMPLE) as f:
        text = f.read()
    [(group, opts)] = list_opts()
    assert group == 'audit_notifier'
    for opt in opts:
        assert '#%s =' % opt.dest in text, opt.dest
    parser.read_string(text)
    assert parser.has_section('audit_notifier')


def test_entry_points_resolve():
    paste = {ep.name: ep for ep in entry_points(group='paste.filter_factory')}
    from audit_notifier import middleware
    assert paste['audit_notifier'].load() is middleware.filter_factory
    opts = {ep.name: ep for ep in entry_points(group='oslo.config.opts')}
    from audit_notifier import opts as opts_module
    assert opts['audit_notifier'].load() is opts_module.list_opts
    scripts = {ep.name: ep for ep in entry_points(group='console_scripts')}
    from audit_notifier import cli
    assert scripts['audit-notifier'].load() is cli.main


def test_paste_egg_form_loads_the_filter(tmp_path):
    """The entry-point form operators may use: use = egg:audit-notifier#audit_notifier."""
    from paste import deploy
    ini = tmp_path / 'api-paste.ini'
    app_module = tmp_path / 'tinyapp.py'
    app_module.write_text(
        'def app_factory(global_conf, **local):\n'
        '    def app(environ, start_response):\n'
        '        start_response("200 OK", [("Content-Type", "text/plain")])\n'
        '        return [b"ok"]\n'
        '    return app\n')
    ini.write_text('[pipeline:main]\npipeline = audit app\n\n'
                   '[filter:audit]\nuse = egg:audit-notifier#audit_notifier\n'
                   'driver = noop\naudit_reads = False\n\n'
                   '[app:app]\npaste.app_factory = tinyapp:app_factory\n')
    sys.path.insert(0, str(tmp_path))
    try:
        app = deploy.loadapp('config:' + str(ini))
    finally:
        sys.path.remove(str(tmp_path))
    from audit_notifier.middleware import AuditMiddleware
    assert isinstance(app, AuditMiddleware)
    assert app.settings.audit_reads is False      # the paste string 'False' is false
