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

"""The log lines the operator pages show are the lines the code logs.

doc/source/admin/{bus-down,disk-full,dead-letters,misplaced-filter,
journal-permissions}.rst (and the start-up lines of install/index.rst) paste log
lines from real runs.  Here each scenario runs again the same way
(failure_scenarios.py: a service process with oslo.config, oslo.log, the REAL
keystonemiddleware auth_token, the filter, the REAL RabbitMQ behind a TCP proxy for
an outage) and every audit_notifier line it logs must be on its page, equal but
for times, pids, ids, paths and numbers.  Every audit_notifier line on those pages
must moreover match a message the package can log (for lines from runs that need
a tiny file system or a uWSGI, which are not repeated here).
"""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

from tests.support.rabbit import HOST, PORT

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DOCS = os.path.join(ROOT, 'doc', 'source')
PACKAGE = os.path.join(ROOT, 'audit_notifier')
PAGES = ('admin/bus-down', 'admin/disk-full', 'admin/dead-letters',
         'admin/misplaced-filter', 'admin/journal-permissions')
CLOSED_BUS = 'rabbit://guest:guest@127.0.0.1:1/'

# oslo.log's default format, and the tools' "%(levelname)s %(name)s %(message)s"
_OSLO_LINE = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \d+ '
                        r'(?P<level>[A-Z]+) (?P<name>audit_notifier[\w.]*) \[-\] (?P<msg>.*)$')
_TOOL_LINE = re.compile(r'^(?P<level>INFO|WARNING|ERROR) (?P<name>audit_notifier[\w.]*) '
                        r'(?P<msg>audit_notifier.*)$')


def _parse(line: str):
    for pattern in (_OSLO_LINE, _TOOL_LINE):
        m = pattern.match(line.strip())
        if m:
            return m.group('level'), m.group('name'), m.group('msg')
    return None


def _normal(parsed) -> str:
    """Level, logger and message, without what differs between runs."""
    level, name, msg = parsed
    msg = re.sub(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', 'UUID', msg)
    msg = re.sub(r'\b[\w.-]+-\d+-\d{13,}\b', 'PROCESS', msg)
    msg = re.sub(r"/[^\s;:'()]+", 'PATH', msg)
    msg = re.sub(r'\d+(\.\d+)?', 'N', msg)
    return '%s %s %s' % (level, name, msg)


def _page_lines(page: str) -> list:
    with open(os.path.join(DOCS, page + '.rst'), encoding='utf-8') as f:
        return [p for p in map(_parse, f.read().splitlines()) if p]


def _logged(work: str) -> list:
    with open(os.path.join(work, 'service.log'), errors='replace') as f:
        return [p for p in map(_parse, f.read().splitlines()) if p]


def _run(scenario: str, work: str, spec: dict, timeout: float = 180.0) -> dict:
    os.makedirs(work, exist_ok=True)
    spec_path = os.path.join(work, 'spec-%s.json' % scenario)
    with open(spec_path, 'w') as f:
        json.dump(spec, f)
    os.chmod(spec_path, 0o644)
    done = subprocess.run([sys.executable, os.path.join(HERE, 'failure_scenarios.py'),
                           scenario, work, spec_path], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _assert_on_page(page: str, logged: list, expected: int) -> None:
    """Every audit_notifier line of the run is on the page (normalized)."""
    shown = {_normal(p) for p in _page_lines(page)}
    lines = {_normal(p) for p in logged}
    assert len(lines) == expected, sorted(lines)
    missing = sorted(lines - shown)
    assert not missing, 'logged but not on %s.rst:\n%s' % (page, '\n'.join(missing))


def _conf(journal_dir: str, *lines: str) -> str:
    return '[audit_notifier]\njournal_dir = %s\n%s\n' % (journal_dir, '\n'.join(lines))


@pytest.fixture
def work():
    """A directory other users can read (start-up runs as the service's user)."""
    path = tempfile.mkdtemp(prefix='failure-pages-')
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_misplaced_filter_page(work):
    """Before authtoken: the one warning and the claimed identity; after it: the
    token's user.  Both initiators are the page's JSON blocks."""
    bus = '[oslo_messaging_notifications]\ndriver = test\n'
    forged = {'X-User-Id': 'admin', 'X-Roles': 'admin'}
    before = _run('misplaced', os.path.join(work, 'before'), {
        'conf': _conf(os.path.join(work, 'j1')) + bus, 'pipeline': 'before', 'calls': 1,
        'headers': forged})
    after = _run('misplaced', os.path.join(work, 'after'), {
        'conf': _conf(os.path.join(work, 'j2')) + bus, 'pipeline': 'main', 'calls': 1,
        'headers': forged})
    assert before['status'] == after['status'] == [201, 200]
    _assert_on_page('admin/misplaced-filter', _logged(os.path.join(work, 'before')), 1)
    assert _logged(os.path.join(work, 'after')) == []
    with open(os.path.join(DOCS, 'admin', 'misplaced-filter.rst'), encoding='utf-8') as f:
        blocks = re.findall(r'\.\. code-block:: json\n\n((?:   .*\n|\n)+)', f.read())
    shown = [json.loads(block) for block in blocks]
    [claimed] = before['initiators']
    [confirmed] = after['initiators']
    assert claimed == shown[0]
    # the fixture token's domain names are random strings
    for initiator in (confirmed, shown[1]):
        initiator['domain'] = initiator['project_domain_name'] = 'random'
    assert confirmed == shown[1]


@pytest.mark.broker
def test_bus_down_page(work, broker):
    """An outage and its end (a proxy in front of the real RabbitMQ), a stop while
    the bus is down, and the next process adopting what was left."""
    journal = os.path.join(work, 'journal')
    topic = broker.name('failure_pages_audit')
    path = '' if broker.vhost == '/' else broker.vhost
    outage = _run('outage', os.path.join(work, 'outage'), {
        'conf': _conf(journal, 'cadf_topics = %s' % topic) +
        '[oslo_messaging_notifications]\ndriver = messagingv2\n'
        'transport_url = rabbit://guest:guest@127.0.0.1:{proxy_port}/%s\n' % path,
        'proxy_upstream': [HOST, PORT], 'calls': 2,
        'wait_for': ['the message bus is unreachable', 'the message bus is back after']})
    assert outage['status'] == [201, 200, 201, 200]
    _assert_on_page('admin/bus-down', _logged(os.path.join(work, 'outage')), 2)

    down = _conf(journal) + '[oslo_messaging_notifications]\ndriver = messagingv2\n' \
        'transport_url = %s\n' % CLOSED_BUS
    _run('stop', os.path.join(work, 'stop'), {
        'conf': down, 'calls': 2, 'wait_for': ['the message bus is unreachable']})
    stop_lines = _logged(os.path.join(work, 'stop'))
    _assert_on_page('admin/bus-down', stop_lines, 2)     # unreachable, what stays
    _run('adopt', os.path.join(work, 'adopt'), {
        'conf': down, 'calls': 1, 'wait_for': ['sending what process']})
    adopt = [p for p in _logged(os.path.join(work, 'adopt')) if p[0] == 'INFO']
    _assert_on_page('admin/bus-down', adopt, 1)


def test_dead_letters_page(work):
    """A driver that fails on every notification, and Glance records adopted by a
    process with the Magnum route map."""
    journal = os.path.join(work, 'journal')
    _run('routing', os.path.join(work, 'routing'), {
        'conf': _conf(journal) + '[oslo_messaging_notifications]\ndriver = routing\n'
        'transport_url = %s\n' % CLOSED_BUS,
        'calls': 2, 'wait_for': ['moved to the dead letters']})
    _assert_on_page('admin/dead-letters', _logged(os.path.join(work, 'routing')), 3)
    assert glob.glob(os.path.join(journal, '*.dead.jsonl'))

    glance_journal = os.path.join(work, 'glance-journal')
    down = '[oslo_messaging_notifications]\ndriver = messagingv2\ntransport_url = %s\n' \
        % CLOSED_BUS
    _run('stop', os.path.join(work, 'glance'), {
        'conf': _conf(glance_journal) + down, 'calls': 1,
        'wait_for': ['the message bus is unreachable']})
    _run('magnum', os.path.join(work, 'magnum'), {
        'conf': _conf(glance_journal, 'route_map = magnum') +
        '[oslo_messaging_notifications]\ndriver = noop\n',
        'calls': 1, 'wait_for': ['a journal record moved to the dead letters']})
    _assert_on_page('admin/dead-letters', _logged(os.path.join(work, 'magnum')), 3)


@pytest.mark.parametrize('where, expected', [
    ('journal', 'cannot create PATH (Permission denied)'),
    ('', 'PATH is not a directory this process can write')])
def test_journal_permissions_page(work, where, expected):
    """The service's user cannot write journal_dir: the start-up line of the page."""
    locked = os.path.join(work, 'locked')
    os.mkdir(locked, 0o700)
    spec = {'conf': _conf(os.path.join(locked, where) if where else locked),
            'pipeline': 'main'}
    if os.geteuid() == 0:
        spec['run_as'] = 'nobody'                     # the directory stays root's
    else:
        os.chmod(locked, 0o500)
    result = _run('startup', os.path.join(work, 'startup'), spec)
    assert result['error'].startswith('ConfigError: audit_notifier: option journal_dir: ')
    logged = _logged(os.path.join(work, 'startup'))
    assert [_normal(p) for p in logged] == [
        'ERROR audit_notifier audit_notifier: option journal_dir: %s; set journal_dir to '
        'a directory the service user can write' % expected]
    _assert_on_page('admin/journal-permissions', logged, 1)


# -- every line on the pages is one the package can log ----------------------------------

def _templates() -> list:
    """Regexes of the messages in the package's string constants."""
    found = []
    for path in glob.glob(os.path.join(PACKAGE, '**', '*.py'), recursive=True):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                literal = re.sub(r'%(\([^)]*\))?[-#0 +]*\d*(\.\d+)?[sdfr]', '', text)
                if len(literal.strip()) >= 15:
                    pattern = re.escape(text)
                    pattern = re.sub(r'%(\\\([^)]*\\\))?[-\\#0 +]*\d*(\\\.\d+)?[sdfr]', '.+',
                                     pattern)
                    found.append(re.compile(pattern))
    return found


@pytest.mark.parametrize('page', PAGES + ('install/index',))
def test_every_line_on_the_page_is_one_the_package_logs(page):
    templates = _templates()
    lines = _page_lines(page)
    if page.startswith('admin/'):
        assert lines, '%s.rst shows no log line' % page
    # oslo.log appends the exception being handled to a WARNING or ERROR: ": Class: text"
    unknown = [msg for _, _, msg in lines
               if not any(t.fullmatch(msg) or t.match(msg) and
                          re.fullmatch(r': [\w.]+: .*', msg[t.match(msg).end():])
                          for t in templates)]
    assert not unknown, 'lines on %s.rst that the package never logs:\n%s' % (
        page, '\n'.join(unknown))
