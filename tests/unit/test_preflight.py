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

"""The parts of ``audit-notifier check``: paste pipelines and the filter's place in
them, the service user's access to a directory, bus names without credentials, the
paste file a service loads.  The whole command, run as an operator runs it against
the real RabbitMQ, is tested in tests/broker/test_check_cli.py.
"""

from __future__ import annotations

import io
import os
import pwd
import shutil
import ssl
import tempfile

import pytest
from oslo_config import cfg

from audit_notifier import bus_probe, paste_pipelines, preflight, routes, service_user
from audit_notifier.events import glance as glance_events
from audit_notifier.paste_pipelines import AUDIT, AUTH_TOKEN, OTHER, Chain, placement

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLANCE_PASTE = os.path.join(ROOT, 'etc', 'audit_notifier', 'glance-api-paste.ini')


# -- where the filter stands -------------------------------------------------------------

def _chain(*filters):
    return Chain('[pipeline:main]', tuple(filters))


def test_right_after_authtoken_is_ok():
    found = placement(_chain(('cors', OTHER), ('authtoken', AUTH_TOKEN), ('audit', AUDIT),
                             ('context', OTHER)))
    assert (found.level, found.text) == ('OK', '[pipeline:main]: audit right after authtoken')


def test_before_authtoken_is_an_error():
    found = placement(_chain(('audit', AUDIT), ('authtoken', AUTH_TOKEN)))
    assert found.level == 'ERROR'
    assert found.text == ('[pipeline:main]: audit before authtoken: every identity it '
                          'records is an unconfirmed claim; move it right after authtoken')


def test_without_authtoken_is_an_error():
    found = placement(_chain(('cors', OTHER), ('audit', AUDIT)))
    assert found.level == 'ERROR'
    assert found.text.startswith('[pipeline:main]: audit without authtoken in front of it')


def test_a_filter_between_authtoken_and_audit_is_a_warning():
    found = placement(_chain(('authtoken', AUTH_TOKEN), ('cache', OTHER), ('gzip', OTHER),
                             ('audit', AUDIT)))
    assert found.level == 'WARN'
    assert found.text == ('[pipeline:main]: cache gzip between authtoken and audit: a filter '
                          'there can change the identity headers authtoken set, or answer '
                          'calls audit never sees; put audit right after authtoken')


def test_authtoken_without_audit_warns_and_no_auth_pipelines_are_left_alone():
    found = placement(_chain(('authtoken', AUTH_TOKEN), ('context', OTHER)))
    assert (found.level, found.text) == (
        'WARN', '[pipeline:main]: authtoken but no audit filter: calls through this pipeline '
                'are not audited')
    assert placement(_chain(('unauthenticated-context', OTHER))) is None


# -- reading paste files -------------------------------------------------------------------

def test_glance_paste_chains_are_the_composite_flavors():
    paste = paste_pipelines.PasteFile(GLANCE_PASTE)
    chains = {chain.label: chain.filters for chain in paste.chains()}
    assert sorted(chains) == ['[composite:api] %s' % flavor for flavor in (
        'cachemanagement', 'caching', 'default', 'keystone', 'keystone+cachemanagement',
        'keystone+caching')]
    assert chains['[composite:api] keystone'] == (
        ('cors', OTHER), ('http_proxy_to_wsgi', OTHER), ('versionnegotiation', OTHER),
        ('osprofiler', OTHER), ('authtoken', AUTH_TOKEN), ('audit', AUDIT),
        ('context', OTHER))
    assert paste.audit_sections == {'audit': {}}
    assert paste.load_errors == {}


def _write(tmp_path, text, name='api-paste.ini'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


MAGNUM_LIKE = """
[composite:main]
paste.composite_factory = magnum.api:root_app_factory
/: api
/healthcheck: healthcheck

[pipeline:api]
pipeline = cors request_id authtoken audit api_v1

[app:api_v1]
paste.app_factory = magnum.api.app:app_factory

[app:healthcheck]
paste.app_factory = oslo_middleware:Healthcheck.app_factory

[filter:authtoken]
acl_public_routes = /, /v1
paste.filter_factory = magnum.api.middleware.auth_token:AuthTokenMiddleware.factory

[filter:audit]
use = egg:audit-notifier#audit_notifier
route_map = magnum

[filter:request_id]
paste.filter_factory = oslo_middleware:RequestId.factory

[filter:cors]
paste.filter_factory = oslo_middleware.cors:filter_factory
"""


def test_magnum_authtoken_subclass_and_the_egg_entry_point_are_recognised(tmp_path):
    paste = paste_pipelines.PasteFile(_write(tmp_path, MAGNUM_LIKE))
    [chain] = paste.chains()
    assert chain.label == '[pipeline:api]'
    assert chain.filters == (('cors', OTHER), ('request_id', OTHER),
                             ('authtoken', AUTH_TOKEN), ('audit', AUDIT))
    assert paste.audit_sections == {'audit': {'route_map': 'magnum'}}
    assert paste.chains('main') == [chain]


NESTED = """
[pipeline:main]
pipeline = authtoken inner

[composite:inner]
use = egg:Paste#urlmap
/v1: api

[pipeline:api]
pipeline = audit missing app

[app:app]
paste.app_factory = audit_notifier.demo.sample_app:app_factory

[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory

[filter:missing]
paste.filter_factory = no_such_module_here:factory

[filter:audit]
paste.filter_factory = audit_notifier.middleware:filter_factory
"""


def test_a_chain_behind_another_keeps_the_filters_in_front_and_load_errors_are_kept(
        tmp_path):
    paste = paste_pipelines.PasteFile(_write(tmp_path, NESTED))
    chains = paste.chains()
    assert [(c.label, c.filters) for c in chains] == [
        ('[pipeline:main]', (('authtoken', AUTH_TOKEN),)),
        ('[pipeline:api]', (('authtoken', AUTH_TOKEN), ('audit', AUDIT),
                            ('missing', paste_pipelines.UNLOADABLE)))]
    assert placement(chains[1]).level == 'OK'
    assert list(paste.load_errors) == ['missing']
    assert paste.load_errors['missing'].startswith('ModuleNotFoundError: ')
    assert paste.find('nope') is None


# -- the paste file a service loads ----------------------------------------------------------

def test_find_paste_follows_glance_and_magnum_conventions(tmp_path):
    (tmp_path / 'glance-api-paste.ini').write_text('')
    (tmp_path / 'other.ini').write_text('')
    glance_conf = _write(tmp_path, '[DEFAULT]\n', 'glance-api.conf')
    assert preflight.find_paste(preflight.load_conf([glance_conf]), [glance_conf]) == \
        str(tmp_path / 'glance-api-paste.ini')
    named = _write(tmp_path, '[paste_deploy]\nconfig_file = %s\n' % (tmp_path / 'other.ini'),
                   'named.conf')
    assert preflight.find_paste(preflight.load_conf([named]), [named]) == \
        str(tmp_path / 'other.ini')
    magnum = _write(tmp_path, '[api]\napi_paste_config = other.ini\n', 'magnum.conf')
    assert preflight.find_paste(preflight.load_conf([magnum]), [magnum]) == \
        str(tmp_path / 'other.ini')
    lonely = tmp_path / 'lonely'
    lonely.mkdir()
    nothing = _write(lonely, '[DEFAULT]\n', 'svc.conf')
    assert preflight.find_paste(preflight.load_conf([nothing]), [nothing]) is None


# -- the service user ----------------------------------------------------------------------

@pytest.fixture
def other_user():
    """A user other than the one running the tests, and a base directory it can
    reach (pytest's tmp_path is under a 0700 directory)."""
    if os.geteuid() != 0:
        pytest.fail('these tests take another user\'s identity: run them as root')
    base = tempfile.mkdtemp(prefix='audit-preflight-')
    os.chmod(base, 0o755)
    yield pwd.getpwnam('nobody'), base
    shutil.rmtree(base)


def test_probe_as_another_user_sees_what_that_user_may_do(other_user):
    user, base = other_user
    own = os.path.join(base, 'own')
    os.mkdir(own, 0o700)
    os.chown(own, user.pw_uid, user.pw_gid)
    roots = os.path.join(base, 'roots')
    os.mkdir(roots, 0o755)
    a_file = os.path.join(base, 'file')
    open(a_file, 'w').close()
    closed = os.path.join(base, 'closed')
    os.mkdir(closed, 0o700)
    os.mkdir(os.path.join(closed, 'inside'))

    def ask(path):
        verdict = service_user.probe_as(user, path)
        return verdict.answer, verdict.where

    assert ask(own) == (service_user.WRITABLE, own)
    assert ask(os.path.join(own, 'a', 'b')) == (service_user.CREATABLE, own)
    assert ask(roots) == (service_user.DENIED, roots)
    assert ask(os.path.join(roots, 'new')) == (service_user.DENIED, roots)
    assert ask(a_file) == (service_user.NOT_A_DIRECTORY, a_file)
    assert ask(os.path.join(a_file, 'sub')) == (service_user.NOT_A_DIRECTORY, a_file)
    # a parent the user cannot search: the directory cannot be reached at all
    assert ask(os.path.join(closed, 'inside')) == (service_user.DENIED,
                                                   os.path.join(closed, 'inside'))
    # root itself may write everywhere: the same questions asked as root differ
    assert service_user.probe(roots).answer == service_user.WRITABLE


def test_lookup_and_describe(other_user):
    user, base = other_user
    assert service_user.lookup('nobody').pw_uid == user.pw_uid
    assert service_user.lookup(str(user.pw_uid)).pw_name == 'nobody'
    assert service_user.lookup(None).pw_uid == os.geteuid()
    with pytest.raises(KeyError):
        service_user.lookup('no-such-user-here')
    os.chmod(base, 0o751)
    assert service_user.describe(base) == 'owner root, group root, mode 0751'
    assert service_user.can_ask_as(user)


def _journal_report(journal_dir, user):
    out = io.StringIO()
    conf = cfg.ConfigOpts()
    conf([])
    settings = preflight._config.Settings(conf, preflight.ALL_OPTS,
                                          paste={'journal_dir': journal_dir})
    preflight.check_journal(preflight.Report(out), settings, user)
    return out.getvalue().splitlines()


def test_journal_lines_name_the_user_the_modes_and_the_fix(other_user):
    user, base = other_user
    group = service_user.group_name(user)
    writable = os.path.join(base, 'journal')
    os.mkdir(writable, 0o777)
    os.chmod(writable, 0o777)
    os.chown(writable, user.pw_uid, user.pw_gid)
    assert _journal_report(writable, 'nobody') == [
        'OK journal_dir %s: writable by nobody' % writable,
        'WARN journal_dir %s: mode 0777: any user can add or remove journals (forged or lost '
        'audit records); chmod 0700 %s' % (writable, writable)]
    os.chmod(writable, 0o755)
    assert _journal_report(writable, 'nobody') == [
        'OK journal_dir %s: writable by nobody' % writable]
    assert _journal_report(os.path.join(writable, 'new'), 'nobody') == [
        'OK journal_dir %s/new: does not exist yet; nobody can create it (the filter does at '
        'start-up)' % writable]
    assert _journal_report(base, 'nobody') == [
        'ERROR journal_dir %s: nobody cannot write it (owner root, group root, mode 0755); '
        'run: install -d -o nobody -g %s -m 0700 %s' % (base, group, base)]
    assert _journal_report(base + '/a/b', 'nobody') == [
        'ERROR journal_dir %s/a/b: does not exist and nobody cannot create it in %s (owner '
        'root, group root, mode 0755); run: install -d -o nobody -g %s -m 0700 %s/a/b'
        % (base, base, group, base)]
    assert _journal_report(base, 'no-such-user-here') == [
        'ERROR --user no-such-user-here: no such user']
    assert _journal_report(base, None) == [
        'OK journal_dir %s: writable by root' % base,
        'WARN journal_dir %s: checked as root, who may write anywhere; give --user with the '
        'service user (glance, magnum ...)' % base]


# -- the bus, without credentials ------------------------------------------------------------

@pytest.mark.parametrize('url, shown', [
    ('rabbit://user:p4ss-w0rd@10.0.0.5:5671/vhost', 'rabbit://10.0.0.5:5671'),
    ('rabbit://u:p4ss-w0rd@a:5672,u:p4ss-w0rd@[fd00::1]/', 'rabbit://a:5672,[fd00::1]:5672'),
    ('rabbit://', 'rabbit://localhost:5672'),
    ('kafka://u:p4ss-w0rd@k1:9092', 'kafka://k1:9092'),
    ('rabbit://u:p4ss-w0rd@h:notaport/', 'rabbit://...'),
])
def test_bus_names_never_show_credentials(url, shown):
    assert bus_probe.safe_name(url) == shown


def test_rabbit_tls_and_login_method_follow_oslo_messaging_rabbit(tmp_path):
    conf_file = _write(tmp_path, '[oslo_messaging_rabbit]\nssl = true\nssl_ca_file = /ca.pem\n'
                                 'ssl_cert_file = /c.pem\nssl_key_file = /k.pem\n'
                                 'rabbit_login_method = PLAIN\n', 'svc.conf')
    options = bus_probe._rabbit_options(preflight.load_conf([conf_file]))
    assert options == {'login_method': 'PLAIN',
                       'ssl': {'ca_certs': '/ca.pem', 'certfile': '/c.pem',
                               'keyfile': '/k.pem', 'cert_reqs': ssl.CERT_REQUIRED}}
    assert bus_probe._rabbit_options(preflight.load_conf([])) == {'login_method': 'AMQPLAIN'}


def test_only_rabbit_urls_are_probed():
    assert bus_probe.checkable('rabbit://h:5672/')
    assert not bus_probe.checkable('kombu+memory:///')
    assert not bus_probe.checkable('kafka://h:9092')
    assert not bus_probe.checkable('fake:/')


# -- the whole check, in-process, where no bus is involved -------------------------------------

def test_invalid_options_and_a_missing_paste_file_are_one_error_line_each(tmp_path):
    conf = _write(tmp_path, '[audit_notifier]\nformats = cadf,xml\n', 'svc.conf')
    out = io.StringIO()
    assert preflight.run([conf], out=out) == 1
    assert out.getvalue().splitlines() == [
        'ERROR no paste file found next to the conf files or named in them; give --paste '
        '(e.g. /etc/glance/glance-api-paste.ini)',
        "ERROR audit_notifier: option formats: invalid value 'cadf,xml' in [audit_notifier] "
        "of %s (Valid values are [cadf, glance], but found 'xml'); expected a "
        "comma-separated list of cadf, glance" % conf]


def test_memory_delivery_and_the_log_driver_need_no_journal_and_no_bus(tmp_path):
    conf = _write(tmp_path, '[audit_notifier]\ndelivery_mode = memory\ndriver = log\n'
                            'route_map = magnum\n', 'magnum.conf')
    paste = _write(tmp_path, MAGNUM_LIKE.replace('route_map = magnum\n', ''))
    out = io.StringIO()
    assert preflight.run([conf], out=out) == 0
    assert out.getvalue().splitlines() == [
        'OK paste file %s' % paste,
        'OK [pipeline:api]: audit right after authtoken',
        'OK options of [filter:audit] and [audit_notifier] are valid',
        'OK route map: %d routes from %s' % (
            len(routes.load('magnum', usage_rules=glance_events.RULES).routes),
            os.path.join(routes.SHIPPED_DIR, 'magnum.yaml')),
        'WARN delivery_mode = memory: no journal; what is not sent when a process ends is '
        'lost',
        'OK cadf notifications: driver log, topics notifications']


def test_external_sender_lines_say_whether_a_send_process_serves_the_journals(tmp_path):
    from audit_notifier.delivery import external as external_mod
    from audit_notifier.delivery import journal as journal_mod
    journal_dir = tmp_path / 'journal'
    journal_dir.mkdir(mode=0o700)
    conf = _write(tmp_path, '[audit_notifier]\ndriver = log\nroute_map = magnum\n'
                            'record_lookups = false\nsender = external\njournal_dir = %s\n'
                  % journal_dir, 'magnum.conf')
    _write(tmp_path, MAGNUM_LIKE.replace('route_map = magnum\n', ''))

    def sender_lines():
        out = io.StringIO()
        preflight.run([conf], out=out, user='root')
        return [line for line in out.getvalue().splitlines()
                if line.split(' ', 1)[1].startswith('sender')]

    assert sender_lines() == [
        'WARN sender = external: no audit-notifier send process serves %s; start it '
        '(etc/audit_notifier/audit-notifier-send.service): until then notifications wait '
        'in the journals' % journal_dir]
    fd = journal_mod.try_lock(str(journal_dir / external_mod.SEND_LOCK))
    try:
        assert sender_lines() == ['OK sender = external: audit-notifier send serves %s'
                                  % journal_dir]
    finally:
        os.close(fd)


def test_external_sender_with_look_ups_is_an_error_line(tmp_path):
    conf = _write(tmp_path, '[audit_notifier]\ndriver = log\nformats = cadf,glance\n'
                            'sender = external\n', 'glance-api.conf')
    _write(tmp_path, MAGNUM_LIKE)
    out = io.StringIO()
    assert preflight.run([conf], out=out) == 1
    errors = [line for line in out.getvalue().splitlines() if line.startswith('ERROR')]
    assert len(errors) == 1 and errors[0].startswith(
        'ERROR audit_notifier: option sender: external, but the events of ')
    assert errors[0].endswith('set record_lookups = false, or sender = thread')
