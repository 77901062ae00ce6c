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

"""``audit-notifier check`` as an operator runs it (a subprocess) on a Glance
service's real files: the shipped glance-api-paste.ini (Glance 33's own with the
filter added), a glance-api.conf pointing at the REAL RabbitMQ, and a journal
directory owned by the service user (``nobody``, the tests run as root).  Then the
mistakes an operator makes, one at a time: no filter, the filter before authtoken,
a journal directory the service user cannot write, a bus that is not there, a
wrong password.  No password is ever printed.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from audit_notifier import routes
from audit_notifier.events import glance as glance_events
from tests.support.rabbit import HOST, PORT

pytestmark = pytest.mark.broker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLANCE_PASTE = os.path.join(ROOT, 'etc', 'audit_notifier', 'glance-api-paste.ini')
SECRET = 'Zq8-n0t-th3-gu3st-pa55'
KEYSTONE_FLAVORS = ('keystone', 'keystone+caching', 'keystone+cachemanagement')


class Service:
    """A Glance API host's files in a fresh directory every user can traverse."""

    def __init__(self, base: str, transport_url: str):
        self.base = base
        self.user = pwd.getpwnam('nobody')
        self.group = grp.getgrgid(self.user.pw_gid).gr_name
        self.journal = os.path.join(base, 'audit-journal')
        os.mkdir(self.journal, 0o700)
        os.chown(self.journal, self.user.pw_uid, self.user.pw_gid)
        self.conf = os.path.join(base, 'glance-api.conf')
        self.paste = os.path.join(base, 'glance-api-paste.ini')
        with open(GLANCE_PASTE) as f:
            self.write_paste(f.read())
        self.write_conf(transport_url)

    def write_conf(self, transport_url: str, journal: str | None = None) -> None:
        with open(self.conf, 'w') as f:
            f.write('[DEFAULT]\ntransport_url = %s\n\n'
                    '[oslo_messaging_notifications]\ndriver = messagingv2\n\n'
                    '[audit_notifier]\njournal_dir = %s\n'
                    % (transport_url, journal or self.journal))

    def write_paste(self, text: str) -> None:
        with open(self.paste, 'w') as f:
            f.write(text)

    def check(self, *extra):
        """``audit-notifier check --config-file glance-api.conf --user nobody``: the
        paste file is found next to the conf file, as Glance finds it."""
        proc = subprocess.run([sys.executable, '-m', 'audit_notifier.cli', 'check',
                               '--config-file', self.conf, '--user', 'nobody', *extra],
                              capture_output=True, text=True, timeout=120, cwd=self.base)
        assert proc.stderr == ''
        assert SECRET not in proc.stdout and 'guest' not in proc.stdout
        return proc.returncode, proc.stdout.splitlines()

    # the lines of a healthy check, in order
    def paste_ok(self):
        return ['OK paste file %s' % self.paste] + [
            'OK [composite:api] %s: audit right after authtoken' % flavor
            for flavor in KEYSTONE_FLAVORS]

    def filter_ok(self):
        glance_map = os.path.join(routes.SHIPPED_DIR, 'glance.yaml')
        count = len(routes.load('glance', usage_rules=glance_events.RULES).routes)
        return ['OK options of [filter:audit] and [audit_notifier] are valid',
                'OK route map: %d routes from %s' % (count, glance_map)]

    def journal_ok(self):
        return ['OK journal_dir %s: writable by nobody' % self.journal]

    def bus_ok(self, source='[DEFAULT] transport_url'):
        return ['OK cadf notifications: driver messagingv2, topics notifications',
                'OK bus rabbit://%s:%d: connected and logged in (%s)' % (HOST, PORT, source)]


@pytest.fixture
def service(broker):
    if os.geteuid() != 0:
        pytest.fail('check --user nobody takes that user\'s identity: run the tests as root')
    base = tempfile.mkdtemp(prefix='audit-check-')
    os.chmod(base, 0o755)
    yield Service(base, broker.transport_url)
    shutil.rmtree(base)


def test_a_healthy_glance_host(service):
    assert service.check() == (0, service.paste_ok() + service.filter_ok() +
                               service.journal_ok() + service.bus_ok())


def test_paste_keys_both_formats_and_the_filters_own_bus(service, broker):
    with open(GLANCE_PASTE) as f:
        paste = f.read()
    service.write_paste(paste + '\nformats = cadf,glance\ncadf_topics = audit\n'
                                'transport_url = %s\n' % broker.transport_url)
    service.write_conf('rabbit://nobody:%s@%s:1/' % (SECRET, HOST))  # not used: the filter's is
    assert service.check('--paste', service.paste, '--timeout', '30') == (
        0, service.paste_ok() + service.filter_ok() + service.journal_ok() + [
            'OK cadf notifications: driver messagingv2, topics audit',
            'OK glance notifications: driver messagingv2, topics notifications',
            'OK bus rabbit://%s:%d: connected and logged in (the filter\'s transport_url)'
            % (HOST, PORT)])


def test_a_paste_file_without_the_filter(service):
    with open(GLANCE_PASTE) as f:
        service.write_paste(f.read().replace(' authtoken audit context', ' authtoken context'))
    assert service.check() == (1, [
        'OK paste file %s' % service.paste,
        'ERROR %s: no pipeline has the audit filter; add a [filter:audit] section '
        '(paste.filter_factory = audit_notifier.middleware:filter_factory) and put audit '
        'right after authtoken' % service.paste,
        'OK options of [audit_notifier] are valid',
        service.filter_ok()[1]] + service.journal_ok() + service.bus_ok())


def test_the_filter_before_authtoken(service):
    with open(GLANCE_PASTE) as f:
        paste = f.read()
    service.write_paste(paste.replace('keystone = cors http_proxy_to_wsgi versionnegotiation '
                                      'osprofiler authtoken audit context rootapp',
                                      'keystone = cors http_proxy_to_wsgi versionnegotiation '
                                      'osprofiler audit authtoken context rootapp'))
    assert service.check() == (1, [
        'OK paste file %s' % service.paste,
        'ERROR [composite:api] keystone: audit before authtoken: every identity it records '
        'is an unconfirmed claim; move it right after authtoken',
        'OK [composite:api] keystone+caching: audit right after authtoken',
        'OK [composite:api] keystone+cachemanagement: audit right after authtoken',
    ] + service.filter_ok() + service.journal_ok() + service.bus_ok())


def test_a_journal_dir_the_service_user_cannot_write(service, broker):
    root_owned = os.path.join(service.base, 'root-owned')
    os.mkdir(root_owned, 0o755)
    service.write_conf(broker.transport_url, journal=root_owned)
    assert service.check() == (1, service.paste_ok() + service.filter_ok() + [
        'ERROR journal_dir %s: nobody cannot write it (owner root, group root, mode 0755); '
        'run: install -d -o nobody -g %s -m 0700 %s' % (root_owned, service.group, root_owned),
    ] + service.bus_ok())
    missing = os.path.join(root_owned, 'journal')
    service.write_conf(broker.transport_url, journal=missing)
    assert service.check()[1][6] == (
        'ERROR journal_dir %s: does not exist and nobody cannot create it in %s (owner root, '
        'group root, mode 0755); run: install -d -o nobody -g %s -m 0700 %s'
        % (missing, root_owned, service.group, missing))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def test_an_unreachable_bus(service):
    port = _free_port()
    service.write_conf('rabbit://glance:%s@%s:%d/' % (SECRET, HOST, port))
    assert service.check() == (1, service.paste_ok() + service.filter_ok() +
                               service.journal_ok() + [
        'OK cadf notifications: driver messagingv2, topics notifications',
        'ERROR bus rabbit://%s:%d: unreachable (Connection refused) ([DEFAULT] transport_url)'
        % (HOST, port)])


def test_a_wrong_password_and_a_cluster_with_one_broker_down(service, broker):
    vhost = broker.transport_url.rsplit('/', 1)[1]
    service.write_conf('rabbit://guest:%s@%s:%d/%s' % (SECRET, HOST, PORT, vhost))
    healthy_host = service.paste_ok() + service.filter_ok() + service.journal_ok()
    assert service.check() == (1, healthy_host + [
        'OK cadf notifications: driver messagingv2, topics notifications',
        'ERROR bus rabbit://%s:%d: login refused (check the user name and password in the '
        'URL) ([DEFAULT] transport_url)' % (HOST, PORT)])
    port = _free_port()
    service.write_conf('rabbit://guest:guest@%s:%d,guest:guest@%s:%d/%s'
                       % (HOST, port, HOST, PORT, vhost))
    assert service.check() == (0, healthy_host + [
        'OK cadf notifications: driver messagingv2, topics notifications',
        'WARN bus rabbit://%s:%d: unreachable (Connection refused) ([DEFAULT] transport_url)'
        % (HOST, port),
        'OK bus rabbit://%s:%d: connected and logged in ([DEFAULT] transport_url)'
        % (HOST, PORT)])
