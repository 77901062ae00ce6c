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

"""``audit-notifier tail`` without a broker: where its private queue listens (from
real conf files), how it unwraps, selects and prints notifications, and what it
never shows.

The command against a real RabbitMQ is tested in tests/broker/test_tail_cli.py.
"""

from __future__ import annotations

import io
import json
import ssl

import pytest

from audit_notifier import tail
from audit_notifier.delivery import private_queue
from audit_notifier.render import describe

CADF = 'http://schemas.dmtf.org/cloud/audit/1.0/event'
IMAGE = '3f1b4a52-9c57-4d0e-8a3e-0d1c2b3a4f50'


def _source(tmp_path, text: str, **kwargs) -> private_queue.Source:
    path = tmp_path / 'service.conf'
    path.write_text(text)
    return private_queue.source_from_config([str(path)], **kwargs)


BUS = ('[audit_notifier]\ndriver = messagingv2\n'
       'transport_url = rabbit://audit:p%40ss@rabbit1:5671,audit:p%40ss@[fd00::2]/cloud\n')


# -- where it listens ----------------------------------------------------------------------

def test_exchange_topics_and_urls_from_the_conf_file(tmp_path):
    source = _source(tmp_path, BUS + 'formats = cadf,glance\ncadf_topics = audit\n'
                     'glance_topics = notifications\n')
    assert (source.exchange, source.topics, source.routing_keys) == (
        'glance', ['audit', 'notifications'], ['audit.*', 'notifications.*'])
    assert source.urls == ['amqp://audit:p%40ss@rabbit1:5671/cloud',
                           'amqp://audit:p%40ss@[fd00::2]:5672/cloud']
    assert source.shown == 'rabbit://rabbit1:5671,[fd00::2]:5672/cloud'
    assert source.secrets == ['p@ss', 'p@ss']
    assert (source.durable, source.auto_delete, source.ssl, source.login_method,
            source.drivers) == (False, False, False, 'AMQPLAIN', ['messagingv2'])


def test_format_picks_its_topics(tmp_path):
    text = BUS + 'cadf_topics = audit\nglance_topics = notifications\n'
    assert _source(tmp_path, text, fmt='cadf').topics == ['audit']
    assert _source(tmp_path, text, fmt='glance').topics == ['notifications']
    assert _source(tmp_path, text, topics=['other']).topics == ['other']


def test_topics_fall_back_as_the_filter_falls_back(tmp_path):
    # the filter sends only CADF: its topics are [oslo_messaging_notifications]'s
    text = BUS + 'formats = cadf\n[oslo_messaging_notifications]\ntopics = a,b\n'
    assert _source(tmp_path, text).topics == ['a', 'b']
    assert _source(tmp_path, BUS).topics == ['notifications']


@pytest.mark.parametrize('extra, kwargs, exchange', [
    ('', {}, 'glance'),                                   # Glance's own default
    ('route_map = magnum\n', {}, 'magnum'),
    ('[DEFAULT]\ncontrol_exchange = openstack\n', {}, 'openstack'),    # set: honoured
    ('[DEFAULT]\ncontrol_exchange = images\n', {'exchange': 'mine'}, 'mine'),
])
def test_exchange(tmp_path, extra, kwargs, exchange):
    assert _source(tmp_path, BUS + extra, **kwargs).exchange == exchange


def test_a_default_changed_in_this_process_is_not_the_conf_files(tmp_path):
    # what Glance does at start-up (oslo_messaging.set_transport_defaults('glance')),
    # e.g. when tail's code runs in a process that loaded Glance
    import oslo_messaging
    oslo_messaging.set_transport_defaults('glance')
    try:
        assert _source(tmp_path, BUS + 'route_map = magnum\n').exchange == 'magnum'
    finally:
        oslo_messaging.set_transport_defaults('openstack')


def test_exchange_arguments_and_tls_as_oslo_messaging_reads_them(tmp_path):
    text = (BUS + '[oslo_messaging_rabbit]\namqp_durable_queues = true\nssl = true\n'
            'ssl_ca_file = /etc/ssl/ca.pem\nrabbit_login_method = PLAIN\n')
    source = _source(tmp_path, text)
    assert (source.durable, source.auto_delete, source.login_method) == (True, False, 'PLAIN')
    assert source.ssl == {'ca_certs': '/etc/ssl/ca.pem', 'cert_reqs': ssl.CERT_REQUIRED}
    # the URL's query overrides the section, as in oslo.messaging
    query = _source(tmp_path, BUS.replace('/cloud', '/cloud?ssl=1&amqp_auto_delete=true'))
    assert (query.ssl, query.auto_delete) == (True, True)
    quorum = _source(tmp_path, BUS + '[oslo_messaging_rabbit]\nrabbit_quorum_queue = true\n')
    assert quorum.durable is True


def test_no_transport_url_means_oslo_messagings_default(tmp_path):
    source = _source(tmp_path, '[audit_notifier]\ndriver = messagingv2\n')
    assert (source.urls, source.shown) == (['amqp://guest:guest@localhost:5672/'],
                                           'rabbit://localhost:5672/')


def test_configuration_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(private_queue.BusReadError) as err:
        _source(tmp_path, '[audit_notifier]\ndriver = qpid\n')
    assert str(err.value).startswith("audit_notifier: option driver: 'qpid' is no longer")
    assert capsys.readouterr().err == ''          # said once, by the command
    with pytest.raises(private_queue.BusReadError, match='Failed to find some config files'):
        private_queue.source_from_config([str(tmp_path / 'missing.conf')])


def test_an_unreachable_bus_is_one_line_without_the_password(tmp_path, capsys):
    path = tmp_path / 'service.conf'
    path.write_text('[audit_notifier]\ndriver = log\n'
                    'transport_url = rabbit://audit:S3cret-pw@127.0.0.1:1/\n')
    assert tail.run([str(path)], tail.Selection()) == 1
    out, err = capsys.readouterr()
    assert out == ''
    assert err.startswith('audit-notifier tail: error: cannot connect to '
                          'rabbit://127.0.0.1:1/: ')
    assert err.count('\n') == 1 and 'S3cret-pw' not in err


def test_errors_never_show_the_password():
    source = private_queue.Source(
        urls=[], shown='rabbit://h:5672/', exchange='x', durable=False, auto_delete=False,
        topics=['t'], ssl=False, login_method='AMQPLAIN', secrets=['p@ss/word'],
        drivers=['messagingv2'])
    queue = private_queue.PrivateQueue(source)
    assert queue._clean(OSError('login p@ss/word or p%40ss%2Fword refused')) == \
        'login *** or *** refused'


# -- what it prints ------------------------------------------------------------------------

ENVELOPE = {'message_id': 'm-1', 'publisher_id': 'image.h', 'event_type': 'audit.image.read',
            'priority': 'INFO', 'timestamp': '2025-01-02 03:04:05.000006',
            'payload': {'typeURI': CADF, 'action': 'read', 'outcome': 'success',
                        'reason': {'reasonCode': '200'}, 'target': {'id': IMAGE},
                        'initiator': {'id': 'u-1', 'name': 'alice'}}}


def test_unwrap_messagingv2_and_v1_without_oslo_private_keys():
    wire = dict(ENVELOPE, _unique_id='u', _context_auth_token='gAAAA-token',
                _context_user_id='u-1')
    v2 = json.dumps({'oslo.version': '2.0', 'oslo.message': json.dumps(wire)})
    assert tail.unwrap(v2.encode()) == ENVELOPE
    assert tail.unwrap(json.dumps(wire)) == ENVELOPE
    for body in ('[1]', '{"oslo.message": "{}"}', '{"oslo.message": 1}', 'not json',
                 '{"a": 1}'):
        with pytest.raises(ValueError):
            tail.unwrap(body)


GLANCE_SEND = {'event_type': 'image.send', 'priority': 'INFO',
               'payload': {'image_id': IMAGE, 'receiver_user_id': 'u-2', 'bytes_sent': 5}}
GLANCE_FAILURE = {'event_type': 'image.update', 'priority': 'WARN',
                  'payload': 'Image %s: 403 Forbidden' % IMAGE}


@pytest.mark.parametrize('selection, shown', [
    (tail.Selection(), [True, True, True]),
    (tail.Selection(fmt='cadf'), [True, False, False]),
    (tail.Selection(fmt='glance'), [False, True, True]),
    (tail.Selection(user='u-1'), [True, False, False]),
    (tail.Selection(user='alice'), [True, False, False]),
    (tail.Selection(user='u-2'), [False, True, False]),
    (tail.Selection(resource=IMAGE), [True, True, False]),    # a text payload names none
    (tail.Selection(resource=IMAGE, fmt='glance'), [False, True, False]),
    (tail.Selection(resource='other'), [False, False, False]),
])
def test_selection(selection, shown):
    assert [selection.matches(e) for e in (ENVELOPE, GLANCE_SEND, GLANCE_FAILURE)] == shown


def _wire(envelope):
    return json.dumps({'oslo.version': '2.0', 'oslo.message': json.dumps(envelope)})


def test_printer_text_json_count_and_skips():
    out, err = io.StringIO(), io.StringIO()
    printer = tail.Printer(tail.Selection(fmt='cadf'), False, out, err, count=2)
    assert printer(_wire(GLANCE_SEND), 'notifications.info') is True      # not selected
    assert printer(b'\xff', 'audit.info') is True                         # skipped
    assert printer(_wire(ENVELOPE), 'audit.info') is True
    assert printer(_wire(ENVELOPE), 'audit.info') is False                # count reached
    line = '2025-01-02 03:04:05.000006 ' + describe(ENVELOPE)
    assert out.getvalue() == line + '\n' + line + '\n'
    assert line == ('2025-01-02 03:04:05.000006 INFO  audit.image.read     action=read '
                    'outcome=success/200 target=%s by=alice' % IMAGE)
    assert err.getvalue().startswith('audit-notifier tail: skipped a message with routing '
                                     'key audit.info that is not an oslo.messaging '
                                     'notification (')
    as_json = io.StringIO()
    tail.Printer(tail.Selection(), True, as_json, err)(_wire(ENVELOPE), 'audit.info')
    assert json.loads(as_json.getvalue()) == ENVELOPE


def test_printer_stops_when_the_reader_is_gone():
    class Gone(io.StringIO):
        def write(self, text):
            raise BrokenPipeError()
    printer = tail.Printer(tail.Selection(), True, Gone(), io.StringIO())
    assert printer(_wire(ENVELOPE), 'audit.info') is False
    assert (printer.reader_gone, printer.shown) == (True, 0)
