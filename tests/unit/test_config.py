"""Settings: paste strings parsed per type, conf fallbacks, drivers, one-line errors."""

from __future__ import annotations

import logging
import textwrap

import pytest
from oslo_config import cfg

from audit_notifier import _config
from audit_notifier.delivery import drivers
from audit_notifier.opts import ALL_OPTS, list_opts

SECRET = 'SECRETPW'


def settings(paste=None, conf=None):
    return _config.Settings(conf if conf is not None else cfg.ConfigOpts(), ALL_OPTS,
                            paste=paste)


def conf_file(tmp_path, text):
    path = tmp_path / 'service.conf'
    path.write_text(textwrap.dedent(text))
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[str(path)])
    return conf


def one_line_error(func, *args, **kwargs):
    with pytest.raises(_config.ConfigError) as err:
        func(*args, **kwargs)
    message = str(err.value)
    assert '\n' not in message
    assert message.startswith('audit_notifier: ')
    return message


def app(environ, start_response):
    start_response('204 No Content', [])
    return []


# -- defaults and parsing -------------------------------------------------------------------

def test_defaults():
    values = dict(settings().items())
    assert set(values) == {opt.dest for opt in ALL_OPTS}
    expected = {
        'route_map': 'glance', 'route_map_overrides': [], 'unmatched_requests': 'ignore',
        'audit_reads': True, 'audit_lists': True, 'formats': ['cadf'], 'publisher_id': None,
        'cadf_event_type': None, 'disabled_events': [], 'record_lookups': True,
        'usage_failures': True, 'driver': None, 'transport_url': None, 'topics': None,
        'cadf_topics': None, 'glance_topics': None, 'retry': 0, 'queue_size': 10000}
    assert {k: values[k] for k in expected} == expected


def test_list_opts_for_the_generator():
    [(group, opts)] = list_opts()
    assert group == 'audit_notifier'
    assert [o.dest for o in opts] == [o.dest for o in ALL_OPTS]
    assert all(o is not p for o, p in zip(opts, ALL_OPTS))


@pytest.mark.parametrize('raw', ['False', 'false', '0', 'no', 'off', ' False '])
def test_paste_false_strings_are_false(raw):
    s = settings({'audit_reads': raw, 'audit_lists': raw, 'record_lookups': raw,
                  'usage_failures': raw})
    assert (s.audit_reads, s.audit_lists, s.record_lookups, s.usage_failures) == \
        (False, False, False, False)


@pytest.mark.parametrize('raw', ['True', 'true', '1', 'yes', 'on'])
def test_paste_true_strings_are_true(raw):
    s = settings({'audit_reads': raw})
    assert s.audit_reads is True


def test_paste_ints_and_lists():
    s = settings({'queue_size': '42', 'retry': ' 3 ', 'formats': 'cadf, glance',
                  'disabled_events': 'image.send, audit.image.read*,image.member',
                  'topics': 'notifications,audit', 'route_map_overrides': '',
                  'driver': 'log, test', 'unmatched_requests': 'audit'})
    assert s.queue_size == 42
    assert s.retry == 3
    assert s.formats == ['cadf', 'glance']
    assert s.disabled_events == ['image.send', 'audit.image.read*', 'image.member']
    assert s.topics == ['notifications', 'audit']
    assert s.route_map_overrides == []
    assert s.driver == ['log', 'test']
    assert s.unmatched_requests == 'audit'


def test_paste_overrides_conf_file(tmp_path):
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        audit_reads = false
        audit_lists = false
        queue_size = 7
        formats = glance
        ''')
    s = settings({'audit_reads': 'true'}, conf)
    assert (s.audit_reads, s.audit_lists, s.queue_size, s.formats) == (True, False, 7, ['glance'])


def test_unknown_paste_key_is_named():
    message = one_line_error(settings, {'audit_read': 'false'})
    assert 'option audit_read: not a known key in the [filter:...] section' in message
    assert 'audit_reads' in message          # the list of known keys helps spot the typo


def test_paste_control_keys_are_accepted():
    s = settings({'oslo_config_project': '', 'oslo_config_program': 'glance-api'})
    assert s.route_map == 'glance'


@pytest.mark.parametrize('key, raw, expected', [
    ('audit_reads', 'maybe', 'expected a boolean (true or false)'),
    ('record_lookups', 'ja', 'expected a boolean (true or false)'),
    ('queue_size', 'ten', 'expected an integer of at least 1'),
    ('queue_size', '0', 'expected an integer of at least 1'),
    ('retry', '11', 'expected an integer from 0 to 3'),
    ('retry', '-1', 'expected an integer from 0 to 3'),
    ('formats', 'cadf,xml', 'expected a comma-separated list of cadf, glance'),
    ('unmatched_requests', 'sometimes', 'expected one of ignore, audit'),
])
def test_invalid_paste_values(key, raw, expected):
    message = one_line_error(settings, {key: raw})
    assert 'option %s: invalid value %r in the paste ini' % (key, raw) in message
    assert message.endswith(expected)


@pytest.mark.parametrize('key, raw, expected', [
    ('audit_reads', 'maybe', 'expected a boolean (true or false)'),
    ('queue_size', 'ten', 'expected an integer of at least 1'),
    ('retry', '99', 'expected an integer from 0 to 3'),
    ('formats', 'xml', 'expected a comma-separated list of cadf, glance'),
    ('unmatched_requests', 'sometimes', 'expected one of ignore, audit'),
])
def test_invalid_conf_file_values(tmp_path, key, raw, expected):
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        %s = %s
        ''' % (key, raw))
    message = one_line_error(settings, None, conf)
    assert 'option %s: invalid value in [audit_notifier]' % key in message
    assert message.endswith(expected)


def test_errors_through_the_filter_factory(make_filter):
    message = one_line_error(make_filter, app, audit_reads='maybe')
    assert 'option audit_reads' in message
    message = one_line_error(make_filter, app, formats='')
    assert message == 'audit_notifier: option formats: empty; set cadf, glance or cadf,glance'
    message = one_line_error(make_filter, app, cadf_event_type='audit.cadf')
    assert "option cadf_event_type: 'audit.cadf' does not contain {event}" in message
    message = one_line_error(make_filter, app, cadf_event_type='{service}.{event}')
    assert 'placeholder other than {event}' in message
    message = one_line_error(make_filter, app, route_map='nova')
    assert "option route_map: no shipped map named 'nova'" in message


def test_filter_never_touches_the_global_conf(make_filter):
    groups = set(cfg.CONF._groups)
    opts = set(cfg.CONF._opts)
    conf = cfg.ConfigOpts()
    mw = make_filter(app, conf=conf, audit_reads='false')
    assert mw.settings.conf is conf
    assert 'audit_notifier' in conf._groups and 'oslo_messaging_notifications' in conf._groups
    assert set(cfg.CONF._groups) == groups
    assert set(cfg.CONF._opts) == opts


# -- [oslo_messaging_notifications] fallbacks ----------------------------------------------------

def publisher(mw, fmt='cadf'):
    return mw.delivery.leaf_factory()[fmt]


def test_conf_fallback_for_driver_topics_transport_url(tmp_path, make_filter):
    conf = conf_file(tmp_path, '''
        [oslo_messaging_notifications]
        driver = messagingv2
        topics = notifications,audit_feed
        transport_url = rabbit://glance:%s@broker.example.org:5672/
        ''' % SECRET)
    mw = make_filter(app, conf=conf, driver=None, formats='cadf,glance')
    for fmt in ('cadf', 'glance'):
        pub = publisher(mw, fmt)
        assert pub.drivers == ['messagingv2']
        assert pub.topics == ['notifications', 'audit_feed']
        assert pub.transport_url == 'rabbit://glance:%s@broker.example.org:5672/' % SECRET
        assert pub._transport is None            # nothing connects before the first event


def test_paste_beats_conf_fallback(tmp_path, make_filter):
    conf = conf_file(tmp_path, '''
        [oslo_messaging_notifications]
        driver = messagingv2
        topics = notifications
        transport_url = rabbit://u:p@conf-host:5672/
        ''')
    mw = make_filter(app, conf=conf, driver='log', topics='mine', cadf_topics='audit',
                     formats='cadf,glance', transport_url='fake://')
    assert (publisher(mw).drivers, publisher(mw).topics, publisher(mw).transport_url) == \
        (['log'], ['audit'], 'fake://')
    assert (publisher(mw, 'glance').drivers, publisher(mw, 'glance').topics) == \
        (['log'], ['mine'])


def test_no_driver_anywhere_is_noop(make_filter):
    mw = make_filter(app, driver=None)
    assert publisher(mw).drivers == ['noop']
    assert publisher(mw).topics == ['notifications']


# -- drivers ----------------------------------------------------------------------------

@pytest.mark.parametrize('given, resolved', [
    (['logging'], ['log']),
    (['rabbit'], ['messaging']),
    (['default'], ['noop']),
    (['messagingv2', 'log', 'messagingv2'], ['messagingv2', 'log']),
    ([' test ', ''], ['test']),
    ([], ['noop']),
])
def test_driver_aliases(given, resolved):
    assert drivers.resolve_drivers(given, None) == resolved


def test_kafka_means_messagingv2_over_kafka():
    assert drivers.resolve_drivers(['kafka'], 'kafka://k1:9092') == ['messagingv2']
    message = one_line_error(drivers.resolve_drivers, ['kafka'],
                             'rabbit://user:%s@host:5672/' % SECRET)
    assert "option driver: 'kafka'" in message
    assert 'rabbit://...' in message
    assert SECRET not in message


def test_qpid_is_a_clear_error(make_filter):
    message = one_line_error(make_filter, app, driver='qpid')
    assert "option driver: 'qpid' is no longer available" in message
    assert 'set driver = messagingv2' in message


def test_unknown_driver_lists_the_drivers(make_filter):
    message = one_line_error(make_filter, app, driver='carrierpigeon')
    assert "option driver: unknown notification driver 'carrierpigeon'" in message
    assert message.endswith('use one of %s' % ', '.join(drivers.available_drivers()))
    for name in ('log', 'messaging', 'messagingv2', 'noop', 'routing', 'test'):
        assert name in drivers.available_drivers()


@pytest.mark.parametrize('driver, resolved', [('rabbit', ['messaging']),
                                              ('logging', ['log']),
                                              ('default', ['noop'])])
def test_aliases_through_the_filter(make_filter, driver, resolved):
    mw = make_filter(app, driver=driver, transport_url='rabbit://u:%s@h:5672/' % SECRET)
    assert publisher(mw).drivers == resolved


@pytest.mark.parametrize('url', [
    'rabbit://user:%s@host:notaport/' % SECRET,
    'rabbit://user:%s/x@host:5672/' % SECRET,       # an unescaped / in the password
    'rabbit://user:%s#x@host:5672/' % SECRET,       # an unescaped # in the password
    'rabbit://user:%s@[::1/' % SECRET,
    'bogus://user:%s@host/' % SECRET,
    'user:%s@host' % SECRET,
])
def test_bad_transport_url_never_echoes_credentials(make_filter, caplog, url):
    caplog.set_level(logging.DEBUG)
    message = one_line_error(make_filter, app, driver='messagingv2', transport_url=url)
    assert 'option transport_url' in message
    assert SECRET not in message
    assert all(SECRET not in r.getMessage() for r in caplog.records)


def test_bad_transport_url_from_conf_fallback(tmp_path, make_filter):
    conf = conf_file(tmp_path, '''
        [oslo_messaging_notifications]
        driver = messaging
        transport_url = bogus://glance:%s@broker/
        ''' % SECRET)
    message = one_line_error(make_filter, app, conf=conf, driver=None)
    assert "option transport_url: no oslo.messaging transport for 'bogus'" in message
    assert SECRET not in message
