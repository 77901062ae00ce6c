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

"""Start-up checks that fail closed: the one-line error reaches the service's log, and
transport settings that cannot work stop start-up while an unreachable bus does not."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap

import oslo_messaging
import pytest
from oslo_config import cfg

from audit_notifier import _config, notifier
from audit_notifier.delivery.leaves import BusUnavailable
from tests.support.conf import conf_file

SECRET = 'SECRETPW'


def app(environ, start_response):
    start_response('204 No Content', [])
    return []


def error_of(func, *args, **kwargs):
    with pytest.raises(_config.ConfigError) as err:
        func(*args, **kwargs)
    return str(err.value)


def logged_errors(caplog, message):
    """Records carrying ``message``, from any logger, as (logger, level, has traceback)."""
    return [(r.name, r.levelno, r.exc_info is not None or r.exc_text is not None)
            for r in caplog.records if message in r.getMessage()]


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# -- item 4: the error reaches the service's own log ------------------------------------------

def test_paste_error_is_logged_once_at_error(make_filter, caplog):
    caplog.set_level(logging.DEBUG)
    message = error_of(make_filter, app, formats='cadf,xml')
    assert message == ("audit_notifier: option formats: invalid value 'cadf,xml' in the paste "
                       "ini (Valid values are [cadf, glance], but found 'xml'); expected a "
                       "comma-separated list of cadf, glance")
    assert logged_errors(caplog, message) == [('audit_notifier', logging.ERROR, False)]


def test_conf_file_error_is_logged_once_at_error(tmp_path, make_filter, caplog):
    caplog.set_level(logging.DEBUG)
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        formats = cadf,xml
        ''')
    message = error_of(make_filter, app, conf=conf)
    assert message == ("audit_notifier: option formats: invalid value 'cadf,xml' in "
                       "[audit_notifier] of %s (Valid values are [cadf, glance], but found "
                       "'xml'); expected a comma-separated list of cadf, glance"
                       % (tmp_path / 'service.conf'))
    assert logged_errors(caplog, message) == [('audit_notifier', logging.ERROR, False)]


def test_late_start_up_error_is_logged_too(make_filter, caplog, tmp_path):
    """Raised after the options were read (the journal directory check)."""
    caplog.set_level(logging.DEBUG)
    blocker = tmp_path / 'a-file'
    blocker.write_text('')
    message = error_of(make_filter, app, journal_dir=str(blocker / 'journal'))
    assert message.startswith('audit_notifier: option journal_dir: cannot create %s/journal ('
                              % blocker)
    assert logged_errors(caplog, message) == [('audit_notifier', logging.ERROR, False)]


def test_python_api_error_is_logged_once_at_error(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    message = error_of(notifier.AuditNotifier, queue_size='', journal_dir=str(tmp_path),
                       oslo_config_config=cfg.ConfigOpts())
    assert message == ('audit_notifier: option queue_size: empty value in the paste ini; set '
                       'an integer of at least 1, or remove the line to use the default 10000')
    assert logged_errors(caplog, message) == [('audit_notifier', logging.ERROR, False)]


def test_error_lands_in_the_oslo_log_file_of_the_service(tmp_path):
    """As in glance-api: oslo.log set up on the service's CONF, then paste loads the
    pipeline; the line is in the service's log file once, without a traceback."""
    (tmp_path / 'service.conf').write_text(textwrap.dedent('''
        [DEFAULT]
        log_file = %s

        [audit_notifier]
        formats = cadf,xml
        journal_dir = %s
        ''' % (tmp_path / 'service.log', tmp_path / 'journal')))
    (tmp_path / 'api-paste.ini').write_text(textwrap.dedent('''
        [pipeline:main]
        pipeline = audit app

        [filter:audit]
        paste.filter_factory = audit_notifier.middleware:filter_factory

        [app:app]
        paste.app_factory = tests.unit.test_startup_checks:app_factory
        '''))
    script = textwrap.dedent('''
        import sys
        from oslo_config import cfg
        from oslo_log import log
        from paste import deploy
        log.register_options(cfg.CONF)
        cfg.CONF([], project='service', default_config_files=[sys.argv[1]])
        log.setup(cfg.CONF, 'service')
        try:
            deploy.loadapp('config:' + sys.argv[2])
        except Exception as exc:
            print(type(exc).__name__)
        ''')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, '-c', script, str(tmp_path / 'service.conf'),
                           str(tmp_path / 'api-paste.ini')], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == 'ConfigError', done.stderr
    lines = (tmp_path / 'service.log').read_text().splitlines()
    ours = [line for line in lines if 'audit_notifier: option formats' in line]
    assert len(ours) == 1, lines
    # oslo.log's format: time, pid, level, logger, [request ids], message
    assert ours[0].split(' ERROR audit_notifier [-] ', 1)[1] == (
        "audit_notifier: option formats: invalid value 'cadf,xml' in [audit_notifier] of %s "
        "(Valid values are [cadf, glance], but found 'xml'); expected a comma-separated list "
        "of cadf, glance" % (tmp_path / 'service.conf'))
    assert not any('Traceback' in line for line in lines)


def app_factory(global_conf, **local_conf):
    return app


# -- item 6: transport settings that cannot work ----------------------------------------------

def test_port_out_of_range_in_the_filter_option(make_filter, caplog):
    caplog.set_level(logging.DEBUG)
    message = error_of(make_filter, app, driver='messagingv2',
                       transport_url='rabbit://u:%s@rabbit1:99999/' % SECRET)
    assert message == ('audit_notifier: option transport_url: port 99999 of '
                       'rabbit://rabbit1:99999 is out of range; use a port from 1 to 65535')
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_port_out_of_range_in_any_host(make_filter):
    message = error_of(make_filter, app, driver='messaging',
                       transport_url='rabbit://u:%s@h1:5672,u:%s@[::1]:70000/vhost'
                       % (SECRET, SECRET))
    assert message == ('audit_notifier: option transport_url: port 70000 of '
                       'rabbit://[::1]:70000 is out of range; use a port from 1 to 65535')


@pytest.mark.parametrize('section, option', [
    ('oslo_messaging_notifications', '[oslo_messaging_notifications] transport_url'),
    ('DEFAULT', '[DEFAULT] transport_url'),
])
def test_port_out_of_range_from_the_service_conf(tmp_path, make_filter, section, option):
    conf = conf_file(tmp_path, '''
        [%s]
        transport_url = rabbit://glance:%s@broker:99999/
        ''' % (section, SECRET))
    message = error_of(make_filter, app, conf=conf, driver='messagingv2')
    assert message == ('audit_notifier: option %s: port 99999 of rabbit://broker:99999 is out '
                       'of range; use a port from 1 to 65535' % option)


def test_malformed_default_transport_url(tmp_path, make_filter, caplog):
    caplog.set_level(logging.DEBUG)
    conf = conf_file(tmp_path, '''
        [DEFAULT]
        transport_url = rabbit://glance:%s/x@broker:5672/
        ''' % SECRET)
    message = error_of(make_filter, app, conf=conf, driver='messagingv2')
    assert message == ('audit_notifier: option [DEFAULT] transport_url: cannot parse '
                       'rabbit://...; check host and port and percent-encode special '
                       'characters in user and password, e.g. rabbit://user:pass@host:5672/')
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_empty_default_transport_url(tmp_path, make_filter):
    """oslo.messaging reads an empty [DEFAULT] transport_url as a URL without scheme."""
    conf = conf_file(tmp_path, '''
        [DEFAULT]
        transport_url =
        ''')
    assert error_of(make_filter, app, conf=conf, driver='messagingv2') == (
        'audit_notifier: option [DEFAULT] transport_url: empty; set a URL such as '
        'rabbit://user:pass@host:5672/')


def test_default_transport_url_already_registered_by_the_service(tmp_path, make_filter):
    """Glance and Magnum have oslo.messaging's [DEFAULT] options registered already."""
    conf = conf_file(tmp_path, '''
        [DEFAULT]
        transport_url = bogus://glance:%s@broker/
        ''' % SECRET)
    oslo_messaging.TransportURL.parse(conf)         # registers [DEFAULT] transport_url
    message = error_of(make_filter, app, conf=conf, driver='messagingv2')
    assert message.startswith("audit_notifier: option [DEFAULT] transport_url: no "
                              "oslo.messaging transport for 'bogus'; use one of ")


def test_only_the_url_in_effect_is_checked(tmp_path, make_filter):
    """A malformed [DEFAULT] URL does not matter when the filter has its own."""
    conf = conf_file(tmp_path, '''
        [DEFAULT]
        transport_url = rabbit://glance:%s/x@broker:99999/
        ''' % SECRET)
    mw = make_filter(app, conf=conf, driver='messagingv2',
                     transport_url='rabbit://u:p@rabbit1:5672/')
    assert mw.delivery.leaf_factory()['cadf'].transport_url == 'rabbit://u:p@rabbit1:5672/'


def test_default_url_of_oslo_messaging_passes(make_filter):
    """No URL anywhere: oslo.messaging's own default rabbit:// (localhost)."""
    mw = make_filter(app, driver='messagingv2')
    leaf = mw.delivery.leaf_factory()['cadf']
    assert (leaf.drivers, leaf.transport_url) == (['messagingv2'], None)


def test_non_bus_drivers_do_not_check_the_url(tmp_path, make_filter):
    conf = conf_file(tmp_path, '''
        [DEFAULT]
        transport_url = rabbit://glance:x@broker:99999/
        ''')
    mw = make_filter(app, conf=conf, driver='log')
    assert mw.delivery.leaf_factory()['cadf'].drivers == ['log']


@pytest.fixture
def without_confluent_kafka(monkeypatch):
    """As on a host where confluent-kafka (oslo.messaging's kafka driver) is missing."""
    monkeypatch.setitem(sys.modules, 'confluent_kafka', None)
    monkeypatch.delitem(sys.modules, 'oslo_messaging._drivers.impl_kafka', raising=False)


@pytest.mark.parametrize('where', ['filter', 'DEFAULT'])
def test_kafka_without_its_library(tmp_path, make_filter, without_confluent_kafka, where):
    url = 'kafka://u:%s@k1:9092' % SECRET
    if where == 'filter':
        message = error_of(make_filter, app, driver='kafka', transport_url=url)
        option = 'transport_url'
    else:
        conf = conf_file(tmp_path, '''
            [DEFAULT]
            transport_url = %s
            ''' % url)
        message = error_of(make_filter, app, conf=conf, driver='kafka')
        option = '[DEFAULT] transport_url'
    assert message.startswith('audit_notifier: option %s: oslo.messaging cannot load its kafka '
                              'transport (ModuleNotFoundError: ' % option)
    assert 'confluent_kafka' in message
    assert message.endswith("); install what it needs into the service's environment "
                            "(kafka:// needs confluent-kafka) or use another transport")
    assert SECRET not in message


def test_unreachable_bus_is_a_run_time_condition(make_filter):
    """A valid URL to a port nobody listens on: start-up passes, nothing connects; the
    first publish finds the bus down and the sender keeps the notifications."""
    port = free_port()
    mw = make_filter(app, driver='messagingv2',
                     transport_url='rabbit://guest:guest@127.0.0.1:%d/' % port)
    leaf = mw.delivery.leaf_factory()['cadf']
    assert leaf._transport is None
    envelope = {'message_id': 'm-1', 'publisher_id': 'image.test', 'event_type': 'audit.x',
                'priority': 'INFO', 'payload': {}, 'timestamp': '2026-01-01 00:00:00.000000'}
    with pytest.raises(BusUnavailable) as err:
        leaf.publish_many([envelope])
    assert 'Connection refused' in str(err.value)
    leaf.close()
