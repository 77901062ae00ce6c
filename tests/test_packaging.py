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

"""Packaging promises: the generated sample config is current, entry points resolve."""

import ast
import configparser
import hashlib
import os
import re
import subprocess
import sys
from importlib.metadata import distribution, entry_points, packages_distributions

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


# -- LICENSE and the header of every source file -----------------------------------

#: sha256 of the Apache License 2.0 exactly as the ASF publishes it
#: (https://www.apache.org/licenses/LICENSE-2.0.txt, appendix included).
APACHE_2_SHA256 = 'cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30'
#: The notice OpenStack projects put at the top of each source file (hacking H102/H103).
APACHE_HEADER = ('# Licensed under the Apache License, Version 2.0 (the "License"); you may\n'
                 '# not use this file except in compliance with the License. You may obtain\n'
                 '# a copy of the License at\n'
                 '#\n'
                 '#      http://www.apache.org/licenses/LICENSE-2.0\n'
                 '#\n'
                 '# Unless required by applicable law or agreed to in writing, software\n'
                 '# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT\n'
                 '# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the\n'
                 '# License for the specific language governing permissions and limitations\n'
                 '# under the License.\n')
#: Directories of build, test and tool output, never of source.
NOT_SOURCE = {'build', 'dist', '__pycache__'}


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(ROOT, 'setup.cfg'))
    return parser


def _python_files(top=ROOT):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.')
                             and d not in NOT_SOURCE and not d.endswith('.egg-info'))
        for name in sorted(filenames):
            if name.endswith('.py'):
                yield os.path.join(dirpath, name)


def test_license_is_the_apache_license_2_0():
    with open(os.path.join(ROOT, 'LICENSE'), 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest() == APACHE_2_SHA256
    assert _setup_cfg()['metadata']['license'] == 'Apache-2.0'


def test_every_python_file_starts_with_the_apache_header():
    checked, missing = [], []
    for path in _python_files():
        with open(path, encoding='utf-8') as f:
            text = f.read()
        if not text.strip():
            continue            # an empty __init__.py: hacking forbids a comment-only file (H104)
        if text.startswith('#!'):
            text = text.split('\n', 1)[1]           # the interpreter line stays first
        checked.append(os.path.relpath(path, ROOT))
        if not text.startswith(APACHE_HEADER):
            missing.append(checked[-1])
    assert {'audit_notifier/middleware.py', 'tests/test_packaging.py',
            'benchmarks/run.py', 'setup.py'} <= set(checked)
    assert missing == [], 'no Apache header at the top (after any #! line) of: %s' % missing


# -- requirements -------------------------------------------------------------------

#: Imported by the package yet provided by no distribution: the uWSGI server embeds
#: ``uwsgi`` into its interpreter (uwsgi_input.py imports it only there).
HOST_PROVIDED = {'uwsgi'}


def _canonical(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()         # PEP 503


def _third_party_imports(package_dir: str) -> set[str]:
    """Dotted names of the absolute imports, outside the stdlib and the package itself,
    of every module under ``package_dir``."""
    names = set()
    for path in _python_files(package_dir):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names.update('%s.%s' % (node.module, alias.name) for alias in node.names)
    return {name for name in names
            if name.split('.')[0] not in sys.stdlib_module_names
            and name.split('.')[0] != 'audit_notifier'}


def _distribution_of(module: str, owners: list[str]) -> str:
    """The one of ``owners`` (distributions shipping the module's top-level name) that
    ships ``module`` itself: paste.deploy is PasteDeploy's, though Paste ships paste/."""
    if len(owners) == 1:
        return owners[0]
    parts = module.split('.')
    for depth in range(len(parts), 1, -1):
        stem = '/'.join(parts[:depth])
        shipping = {name for name in owners
                    if any(str(f) in (stem + '.py', stem + '/__init__.py')
                           for f in distribution(name).files or ())}
        if shipping:
            assert len(shipping) == 1, (module, shipping)
            return shipping.pop()
    raise AssertionError('%s: none of %s ships it' % (module, owners))


def _requirement_names(path: str) -> set[str]:
    names = set()
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                names.add(_canonical(re.match(r'[A-Za-z0-9._-]+', line).group(0)))
    return names


def test_requirements_are_the_runtime_imports():
    owners = packages_distributions()
    needed = {}
    for module in sorted(_third_party_imports(os.path.join(ROOT, 'audit_notifier'))):
        top = module.split('.')[0]
        if top in HOST_PROVIDED:
            continue
        assert top in owners, '%s is imported but no installed distribution has it' % module
        needed.setdefault(_canonical(_distribution_of(module, owners[top])), module)
    declared = _requirement_names(os.path.join(ROOT, 'requirements.txt'))
    assert declared == set(needed), (
        'requirements.txt must name what audit_notifier imports: missing %s, never imported %s'
        % (sorted(set(needed) - declared), sorted(declared - set(needed))))


def test_test_requirements_are_the_one_list():
    """tox and the README's test command install test-requirements.txt; an extra in
    setup.cfg would be a second list that drifts from it."""
    assert not _setup_cfg().has_section('extras')
    assert '-r{toxinidir}/test-requirements.txt' in _tox_ini()['testenv']['deps'].split()


def test_classifiers_match_python_requires():
    metadata = _setup_cfg()['metadata']
    minimum = int(re.fullmatch(r'>=\s*3\.(\d+)', metadata['python_requires'].strip()).group(1))
    minors = sorted(int(m) for m in
                    re.findall(r'Programming Language :: Python :: 3\.(\d+)$',
                               metadata['classifier'], re.M))
    assert minors == list(range(minimum, minimum + len(minors))), (minimum, minors)


# -- tox ----------------------------------------------------------------------------

def _tox_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(ROOT, 'tox.ini'))
    return parser


def _pytest_paths(commands: str) -> list[str]:
    paths = []
    for line in commands.strip().splitlines():
        words = line.split()
        if words[:3] == ['python', '-m', 'pytest']:
            paths.append([w for w in words[3:] if not w.startswith(('-', '{'))])
    return paths


def test_tox_environments_cover_the_suite_and_keep_magnum_apart():
    tox = _tox_ini()
    envs = tox['tox']['envlist'].split(',')
    assert envs == ['py3', 'functional-glance', 'functional-magnum', 'broker', 'pep8',
                    'docs', 'releasenotes', 'genconfig']
    runs = {}                   # env -> the paths of each of its pytest processes
    for env in envs:
        section = 'testenv' if env == 'py3' else 'testenv:' + env
        runs[env] = _pytest_paths(tox[section].get('commands', tox['testenv']['commands']))
    # Glance and Magnum share the one global oslo.config CONF: never one process.
    assert runs['functional-magnum'] == [['tests/magnum']]
    for env, processes in runs.items():
        for paths in processes:
            assert env == 'functional-magnum' or not any(
                p == 'tests/magnum' or p.startswith('tests/magnum/') for p in paths), env
    # Every test module of the README's command runs in some environment.
    tested = {p for processes in runs.values() for paths in processes for p in paths}
    suite = {os.path.relpath(os.path.dirname(path), ROOT) if
             os.path.dirname(path) != os.path.join(ROOT, 'tests')
             else os.path.relpath(path, ROOT)
             for path in _python_files(os.path.join(ROOT, 'tests'))
             if os.path.basename(path).startswith('test_')}
    top_level = {p if p.count('/') <= 1 else '/'.join(p.split('/')[:2]) for p in suite}
    assert top_level <= tested, sorted(top_level - tested)
    assert 'bandit -r audit_notifier' in tox['testenv:pep8']['commands']
    assert 'sphinx-build -W' in tox['testenv:docs']['commands']
    assert ('oslo-config-generator --config-file etc/oslo-config-generator/audit_notifier.conf'
            in tox['testenv:genconfig']['commands'])
