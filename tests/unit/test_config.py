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

"""Settings: paste strings parsed per type, conf fallbacks, drivers, one-line errors."""

from __future__ import annotations

import logging
import os
import textwrap
from importlib.metadata import entry_points

import pytest
from oslo_config import cfg

from audit_notifier import _config, middleware
from audit_notifier.delivery import drivers
from audit_notifier.opts import ALL_OPTS, list_opts
from tests.support.conf import conf_file

SECRET = 'SECRETPW'


def settings(paste=None, conf=None):
    return _config.Settings(conf if conf is not None else cfg.ConfigOpts(), ALL_OPTS,
                            paste=paste)


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


@pytest.mark.parametrize('key, raw, reason, expected', [
    ('audit_reads', 'maybe', "Unexpected boolean value 'maybe'",
     'a boolean (true or false)'),
    ('queue_size', 'ten', "invalid literal for int() with base 10: 'ten'",
     'an integer of at least 1'),
    ('retry', '99', 'Should be less than or equal to 3', 'an integer from 0 to 3'),
    ('formats', 'cadf, xml', "Valid values are [cadf, glance], but found 'xml'",
     'a comma-separated list of cadf, glance'),
    ('unmatched_requests', 'sometimes', "Valid values are [ignore, audit], but found "
     "'sometimes'", 'one of ignore, audit'),
    ('journal_block_seconds', '31', 'Should be less than or equal to 30',
     'a number from 0.0 to 30.0'),
])
def test_invalid_values_give_the_same_line_from_conf_and_paste(tmp_path, key, raw, reason,
                                                               expected):
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        %s = %s
        ''' % (key, raw))
    from_conf = one_line_error(settings, None, conf)
    assert from_conf == ('audit_notifier: option %s: invalid value %r in [audit_notifier] of '
                         '%s (%s); expected %s' % (key, raw, tmp_path / 'service.conf',
                                                   reason, expected))
    assert 'LocationInfo' not in from_conf
    from_paste = one_line_error(settings, {key: raw})
    assert from_paste == from_conf.replace(
        'in [audit_notifier] of %s' % (tmp_path / 'service.conf'), 'in the paste ini')


def test_invalid_conf_value_under_a_deprecated_name(tmp_path):
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        spool_overflow = sometimes
        ''')
    assert one_line_error(settings, None, conf) == (
        "audit_notifier: option journal_overflow: invalid value 'sometimes' in "
        "[audit_notifier] of %s (Valid values are [drop_oldest, drop_newest, block], but "
        "found 'sometimes'); expected one of drop_oldest, drop_newest, block"
        % (tmp_path / 'service.conf'))


# -- empty and non-finite values ------------------------------------------------------------

def _needs_a_value(opt):
    """A number, boolean or single string with a default: empty has no meaning."""
    return (isinstance(opt, (cfg.IntOpt, cfg.FloatOpt, cfg.BoolOpt, cfg.StrOpt))
            and not opt.multi and opt.default is not None)


def _default_text(opt):
    return str(opt.default).lower() if isinstance(opt.default, bool) else str(opt.default)


NEED_A_VALUE = [o.dest for o in ALL_OPTS if _needs_a_value(o)]
NUMBERS = [o.dest for o in ALL_OPTS if isinstance(o, (cfg.IntOpt, cfg.FloatOpt))]
FLOATS = [o.dest for o in ALL_OPTS if isinstance(o, cfg.FloatOpt)]
OPTS = {o.dest: o for o in ALL_OPTS}


def test_the_sweeps_cover_the_options_of_the_issue():
    assert {'queue_size', 'stats_interval', 'journal_max_bytes', 'journal_block_seconds',
            'dead_letter_after', 'retry'} <= set(NUMBERS)
    assert set(NUMBERS) <= set(NEED_A_VALUE)
    assert 'journal_block_seconds' in FLOATS


@pytest.mark.parametrize('name', NEED_A_VALUE)
@pytest.mark.parametrize('raw', ['', '   '])
def test_empty_paste_value_is_rejected(name, raw):
    message = one_line_error(settings, {name: raw})
    assert message.startswith('audit_notifier: option %s: empty value in the paste ini; set '
                              % name)
    assert message.endswith(', or remove the line to use the default %s'
                            % _default_text(OPTS[name]))


@pytest.mark.parametrize('name', NEED_A_VALUE)
def test_empty_conf_value_is_rejected(tmp_path, name):
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        %s =
        ''' % name)
    message = one_line_error(settings, None, conf)
    assert message.startswith('audit_notifier: option %s: empty value in [audit_notifier] of '
                              '%s; set ' % (name, tmp_path / 'service.conf'))
    assert message.endswith(', or remove the line to use the default %s'
                            % _default_text(OPTS[name]))


@pytest.mark.parametrize('name', sorted(set(OPTS) - set(NEED_A_VALUE)))
def test_empty_value_of_other_options_means_unset(tmp_path, name):
    """Lists and options without a default: empty is "not set", from paste and conf."""
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        %s =
        ''' % name)
    from_conf = settings(None, conf).get(name)
    from_paste = settings({name: ''}).get(name)
    assert from_conf in (None, '', [])
    assert from_paste in (None, '', [])
    assert not from_conf and not from_paste


@pytest.mark.parametrize('name, where, expected', [
    ('queue_size', 'paste', 'audit_notifier: option queue_size: empty value in the paste ini; '
     'set an integer of at least 1, or remove the line to use the default 10000'),
    ('stats_interval', 'conf', 'audit_notifier: option stats_interval: empty value in '
     '[audit_notifier] of {file}; set an integer of at least 0, or remove the line to use '
     'the default 60'),
    ('journal_block_seconds', 'conf', 'audit_notifier: option journal_block_seconds: empty '
     'value in [audit_notifier] of {file}; set a number from 0.0 to 30.0, or remove the line '
     'to use the default 1.0'),
    ('spool_max_bytes', 'conf', 'audit_notifier: option journal_max_bytes: empty value in '
     '[audit_notifier] of {file}; set an integer of at least 65536, or remove the line to '
     'use the default 1073741824'),
    ('spool_max_bytes', 'paste', 'audit_notifier: option journal_max_bytes: empty value in '
     'the paste ini; set an integer of at least 65536, or remove the line to use the '
     'default 1073741824'),
    ('audit_reads', 'conf', 'audit_notifier: option audit_reads: empty value in '
     '[audit_notifier] of {file}; set a boolean (true or false), or remove the line to use '
     'the default true'),
    ('delivery_mode', 'paste', 'audit_notifier: option delivery_mode: empty value in the '
     'paste ini; set one of journal, memory, or remove the line to use the default journal'),
])
def test_empty_value_messages(tmp_path, make_filter, name, where, expected):
    """Through the filter factory, as a service loads it."""
    if where == 'paste':
        message = one_line_error(make_filter, app, **{name: ''})
    else:
        conf = conf_file(tmp_path, '''
            [audit_notifier]
            %s =
            ''' % name)
        # not make_filter: its paste defaults (stats_interval ...) would win over the conf
        factory = middleware.filter_factory({}, oslo_config_config=conf,
                                            journal_dir=str(tmp_path / 'journal'))
        message = one_line_error(factory, app)
    assert message == expected.format(file=tmp_path / 'service.conf')


def test_python_api_none_is_an_empty_value():
    assert one_line_error(settings, {'queue_size': None}) == (
        'audit_notifier: option queue_size: empty value in the paste ini; set an integer of '
        'at least 1, or remove the line to use the default 10000')


@pytest.mark.parametrize('name', FLOATS)
@pytest.mark.parametrize('raw', ['nan', 'NaN', 'inf', '-inf', '+Infinity'])
def test_non_finite_floats_are_rejected(tmp_path, name, raw):
    from_paste = one_line_error(settings, {name: raw})
    assert from_paste.startswith('audit_notifier: option %s: invalid value %r in the paste '
                                 'ini (' % (name, raw))
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        %s = %s
        ''' % (name, raw))
    from_conf = one_line_error(settings, None, conf)
    assert from_conf.startswith('audit_notifier: option %s: invalid value ' % name)
    assert 'in [audit_notifier] of %s (' % (tmp_path / 'service.conf') in from_conf


def test_nan_message(tmp_path):
    assert one_line_error(settings, {'journal_block_seconds': 'nan'}) == (
        "audit_notifier: option journal_block_seconds: invalid value 'nan' in the paste ini "
        "(not a finite number); expected a number from 0.0 to 30.0")
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        journal_block_seconds = nan
        ''')
    assert one_line_error(settings, None, conf) == (
        "audit_notifier: option journal_block_seconds: invalid value 'nan' in [audit_notifier] "
        "of %s (not a finite number); expected a number from 0.0 to 30.0"
        % (tmp_path / 'service.conf'))


@pytest.mark.parametrize('name', NUMBERS)
def test_python_api_numbers_are_checked_too(name):
    opt = OPTS[name]
    below = (opt.type.min if opt.type.min is not None else 0) - 1
    message = one_line_error(settings, {name: below})
    assert message.startswith('audit_notifier: option %s: invalid value %r in the paste ini ('
                              % (name, below))


def test_empty_driver_in_conf_falls_back_like_paste(tmp_path, make_filter):
    conf = conf_file(tmp_path, '''
        [audit_notifier]
        driver =

        [oslo_messaging_notifications]
        driver = log
        ''')
    mw = make_filter(app, conf=conf, driver=None)
    assert mw.delivery.leaf_factory()['cadf'].drivers == ['log']
    mw = make_filter(app, conf=conf, driver='')
    assert mw.delivery.leaf_factory()['cadf'].drivers == ['log']


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
    transports = sorted(ep.name for ep in entry_points(group='oslo.messaging.drivers'))
    assert message == ("audit_notifier: option [oslo_messaging_notifications] transport_url: "
                       "no oslo.messaging transport for 'bogus'; use one of %s"
                       % ', '.join(transports))


# -- oslo_config_project / _program / _file, as oslo.middleware reads them ----------------

PROJECT, PROGRAM = 'anproject', 'anproject-api'


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home directory of its own: oslo.config looks in ~/.<project>/ and ~/ first."""
    monkeypatch.setenv('HOME', str(tmp_path))
    assert not any(os.path.exists(os.path.join('/etc', d)) for d in (PROJECT, PROGRAM))
    return tmp_path


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def test_project_and_program_conf_files_are_found(home):
    _write(home / ('.' + PROJECT) / (PROJECT + '.conf'), '''
        [audit_notifier]
        formats = cadf
        queue_size = 11
        ''')
    # the program's file is read after the project's: its values win
    _write(home / ('.' + PROJECT) / (PROGRAM + '.conf'), '''
        [audit_notifier]
        formats = glance
        ''')
    conf = _config.conf_from_paste({'oslo_config_project': PROJECT,
                                    'oslo_config_program': PROGRAM})
    assert conf is not cfg.CONF
    assert conf.config_file == [str(home / ('.' + PROJECT) / (PROJECT + '.conf')),
                                str(home / ('.' + PROJECT) / (PROGRAM + '.conf'))]
    s = settings(conf=conf)
    assert (s.formats, s.queue_size) == (['glance'], 11)


def test_program_conf_d_directory_is_read(home):
    _write(home / ('.' + PROJECT) / (PROGRAM + '.conf.d') / '50-audit.conf', '''
        [audit_notifier]
        audit_reads = false
        ''')
    conf = _config.conf_from_paste({'oslo_config_project': PROJECT,
                                    'oslo_config_program': PROGRAM})
    assert conf.config_dir == [str(home / ('.' + PROJECT) / (PROGRAM + '.conf.d'))]
    assert settings(conf=conf).audit_reads is False


def test_invalid_value_in_a_conf_d_file_is_one_line(home):
    """oslo.config gives config_dir as a list: the error still names the file."""
    conf_d = home / ('.' + PROJECT) / (PROGRAM + '.conf.d')
    _write(conf_d / '50-audit.conf', '''
        [audit_notifier]
        queue_size = ten
        ''')
    conf = _config.conf_from_paste({'oslo_config_project': PROJECT,
                                    'oslo_config_program': PROGRAM})
    assert one_line_error(settings, conf=conf) == (
        "audit_notifier: option queue_size: invalid value 'ten' in [audit_notifier] of "
        "%s (invalid literal for int() with base 10: 'ten'); expected an integer of at "
        "least 1" % (conf_d / '50-audit.conf'))


def test_explicit_conf_file_replaces_the_found_ones(home):
    _write(home / ('.' + PROJECT) / (PROJECT + '.conf'), '''
        [audit_notifier]
        formats = glance
        queue_size = 11
        ''')
    explicit = home / 'elsewhere' / 'audit.conf'
    _write(explicit, '''
        [audit_notifier]
        formats = cadf,glance
        ''')
    conf = _config.conf_from_paste({'oslo_config_project': PROJECT,
                                    'oslo_config_file': str(explicit)})
    assert conf.config_file == [str(explicit)]
    s = settings(conf=conf)
    assert (s.formats, s.queue_size) == (['cadf', 'glance'], 10000)


def test_the_filter_reads_the_program_conf_from_paste_keys(home, tmp_path):
    _write(home / ('.' + PROJECT) / (PROGRAM + '.conf'), '''
        [audit_notifier]
        publisher_id = image.from-program-conf
        audit_lists = false
        ''')
    mw = middleware.filter_factory(
        {}, oslo_config_project=PROJECT, oslo_config_program=PROGRAM, driver='test',
        journal_dir=str(tmp_path / 'journal'), stats_interval='0')(app)
    try:
        assert mw.emitter.publisher_id == 'image.from-program-conf'
        assert mw.settings.audit_lists is False
        assert mw.settings.conf is not cfg.CONF
    finally:
        mw.delivery.close()


@pytest.mark.parametrize('key', ['oslo_config_program', 'oslo_config_file'])
def test_program_or_file_without_a_project_is_an_error(key):
    message = one_line_error(_config.conf_from_paste, {key: 'glance-api'})
    assert message == (
        'audit_notifier: option %s: set without oslo_config_project, so it would be '
        'ignored; add oslo_config_project = <project> (e.g. glance) next to it, or '
        'remove it' % key)


def test_missing_or_broken_conf_file_is_one_line(home):
    missing = str(home / 'nope.conf')
    assert one_line_error(_config.conf_from_paste, {
        'oslo_config_project': PROJECT, 'oslo_config_file': missing}) == (
        'audit_notifier: option oslo_config_file: no such conf file: %s; fix the path, '
        'or remove oslo_config_file to use the files found for oslo_config_project'
        % missing)
    broken = home / 'broken.conf'
    broken.write_text('[oslo_messaging_notifications]\ntransport_url = rabbit://g:%s@h/\n'
                      '[audit_notifier\n' % SECRET)
    assert one_line_error(_config.conf_from_paste, {
        'oslo_config_project': PROJECT, 'oslo_config_file': str(broken)}) == (
        'audit_notifier: option oslo_config_file: cannot parse %s (line 3); fix its syntax'
        % broken)
