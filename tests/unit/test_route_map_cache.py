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

"""A route map is parsed once per process and shared, immutable, by every filter;
an edited map file is parsed again.  Parses are counted (YAML loads), never timed."""

from __future__ import annotations

import dataclasses
import os

import pytest

from audit_notifier import policy, routes
from audit_notifier._config import ConfigError
from audit_notifier.events import glance as glance_events

OVERRIDE = '''\
routes:
  - {method: GET, path: /v2/info/usage, event: image.usage.%s, action: read,
     target: {type_uri: service/storage/image}}
'''


def app(environ, start_response):
    start_response('204 No Content', [])
    return []


@pytest.fixture
def yaml_loads(monkeypatch):
    """A process that has parsed no map yet; the list of files parsed since."""
    monkeypatch.setattr(routes, '_LOADED', {})
    monkeypatch.setattr(policy, '_PARSED', {})       # the audit policy: parsed once too
    parsed = []
    real_load = routes.yaml.load

    def counting_load(stream, Loader):
        parsed.append(stream.split('\n', 1)[0])
        return real_load(stream, Loader=Loader)
    monkeypatch.setattr(routes.yaml, 'load', counting_load)
    return parsed


def load(name, overrides=()):
    return routes.load(name, overrides, usage_rules=glance_events.RULES)


def test_constructing_twice_parses_once(make_filter, yaml_loads):
    first = make_filter(app, route_map='glance')
    # the map and the shipped audit policy (audit_policy = default)
    assert len(yaml_loads) == 2 and 'audit policy' in yaml_loads[1]
    second = make_filter(app, route_map='glance', audit_reads='false')
    assert len(yaml_loads) == 2
    assert second.route_map is first.route_map
    # the map is shared, what the filters make of it is not
    assert (first.settings.audit_reads, second.settings.audit_reads) == (True, False)
    magnum = make_filter(app, route_map='magnum')
    assert len(yaml_loads) == 3 and magnum.route_map is not first.route_map
    assert make_filter(app, route_map='magnum').route_map is magnum.route_map
    assert len(yaml_loads) == 3


def test_a_shipped_name_and_its_path_share_the_map(monkeypatch, yaml_loads):
    shipped = os.path.join(routes.SHIPPED_DIR, 'glance.yaml')
    by_name = load('glance')
    assert load(shipped) is by_name
    assert by_name.sources == (shipped,)
    assert len(yaml_loads) == 1
    # a relative path is another spelling: the map names its sources as given
    monkeypatch.chdir(routes.SHIPPED_DIR)
    relative = load(os.path.join('.', 'glance.yaml'))
    assert relative.sources == (os.path.join('.', 'glance.yaml'),)
    assert len(yaml_loads) == 2


def test_a_changed_override_file_is_parsed_again(tmp_path, yaml_loads):
    override = tmp_path / 'override.yaml'
    override.write_text(OVERRIDE % 'one')
    first = load('glance', [str(override)])
    assert load('glance', [str(override)]) is first
    assert len(yaml_loads) == 2                          # base and override, once
    stat = os.stat(override)
    override.write_text(OVERRIDE % 'two')                # same size ...
    os.utime(override, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # ... and timestamp
    assert os.stat(override).st_size == stat.st_size
    second = load('glance', [str(override)])
    assert second is not first
    assert len(yaml_loads) == 4
    assert first.match('GET', '/v2/info/usage')[0].event == 'image.usage.one'
    assert second.match('GET', '/v2/info/usage')[0].event == 'image.usage.two'
    # one entry per combination of files: the edit replaced the old one
    assert len(routes._LOADED) == 1
    assert load('glance', [str(override)]) is second


def test_a_map_with_errors_is_never_kept(tmp_path, yaml_loads):
    override = tmp_path / 'override.yaml'
    override.write_text(OVERRIDE.replace('action: read', 'action: nonsense') % 'x')
    for _ in range(2):
        with pytest.raises(ConfigError, match="action 'nonsense' is not in the CADF"):
            load('glance', [str(override)])
    assert len(yaml_loads) == 4 and routes._LOADED == {}
    override.write_text(OVERRIDE % 'fixed')
    assert load('glance', [str(override)]).match('GET', '/v2/info/usage')[0].event == \
        'image.usage.fixed'


def test_usage_rules_are_part_of_the_key(yaml_loads):
    with pytest.raises(ConfigError, match="no usage-format rule named 'image.create'"):
        routes.load('glance', usage_rules={})
    rm = load('glance')
    assert rm.by_key[('POST', '/v2/images')].wants_body is True
    assert len(yaml_loads) == 2


def test_a_shared_map_cannot_be_changed():
    rm = load('glance')
    assert isinstance(rm.routes, tuple) and isinstance(rm.sources, tuple)
    with pytest.raises(TypeError):
        rm.by_key[('GET', '/x')] = rm.routes[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rm.routes[0].event = 'image.other'
    with pytest.raises(dataclasses.FrozenInstanceError):
        rm.service.publisher = 'other'
