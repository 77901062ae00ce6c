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

"""Fixtures for functional tests against the REAL Magnum 23 API (in-process).

``magnum_env`` is SESSION-scoped on purpose: Magnum's configuration is the
process-global ``oslo_config.cfg.CONF`` (and its DB facade, RPC transport and
notifier are module globals), so only one Magnum app can be started per
pytest process (see magnum_app.py).  Extra pipelines (e.g. other audit filter
settings) come from ``magnum_env.load_app(audit_filter={...})``.

Magnum and the real Glance harness (tests/functional) cannot share one
process: run ``pytest tests/magnum`` separately.
"""

import os

import pytest

try:  # tests/magnum as a package
    from . import magnum_app
except ImportError:  # rootdir/prepend import mode, no __init__.py
    import magnum_app

HERE = os.path.dirname(os.path.abspath(__file__))


def pytest_configure(config):
    # Magnum's JSONEncodedDict triggers this on every query (SQLAlchemy 2.x)
    config.addinivalue_line(
        'filterwarnings',
        'ignore:TypeDecorator JSONEncodedDict:sqlalchemy.exc.SAWarning')
    # openstacksdk (used by Magnum for image validation) deprecation chatter
    config.addinivalue_line('filterwarnings', r'ignore::Warning:openstack\..*')
    # emitted when Magnum's periodic module imports oslo_service's eventlet
    # backend; its message starts with a newline
    config.addinivalue_line('filterwarnings',
                            r'ignore:\s*Eventlet is deprecated')


@pytest.hookimpl(trylast=True)  # after -k/-m deselection
def pytest_collection_modifyitems(config, items):
    uses_glance = any('glance_env' in getattr(i, 'fixturenames', ())
                      for i in items)
    skip = pytest.mark.skip(
        reason='the real Glance (glance_env) is loaded in this pytest '
               'process too; Glance and Magnum both own the global '
               'oslo.config CONF and cannot share a process: run '
               '"pytest tests/magnum" on its own')
    magnum_items = [i for i in items if 'magnum_env' in getattr(i, 'fixturenames', ())]
    if uses_glance and magnum_items and os.environ.get('CI', '').lower() == 'true':
        # CI must never pass by skipping real-service tests: a wrong invocation is an error.
        raise pytest.UsageError(skip.kwargs['reason'])
    for item in magnum_items:
        item.add_marker(pytest.mark.magnum)
        if uses_glance:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def magnum_audit_filter():
    """Items of ``[filter:audit]`` for the session Magnum app.

    None = no audit filter.  Override this fixture (same name, session scope)
    in a conftest/test module to put audit_notifier in the pipeline, e.g.
    ``{'route_map': 'magnum'}``.
    """
    return None


@pytest.fixture(scope='session')
def magnum_env(tmp_path_factory, magnum_audit_filter):
    """The real Magnum 23 API app + in-process conductor, once per session
    (~2-3 s).  Config, sqlite DB and magnum-api.log live in
    ``magnum_env.base_dir``."""
    base = tmp_path_factory.mktemp('magnum')
    env = magnum_app.MagnumEnv().start(base, audit_filter=magnum_audit_filter)
    yield env
    env.stop()


@pytest.fixture
def magnum_notifications(magnum_env):
    """Drain the conductor and reset the captured notifications before a
    test; returns the module (``.magnum_own_notifications()``,
    ``.all_notifications()``, ``.reset_notifications()``, ...)."""
    magnum_env.wait_idle()
    magnum_app.reset_notifications()
    yield magnum_app


@pytest.fixture(scope='session')
def magnum_template(magnum_env):
    """A cluster template (admin-token, project p-demo) shared by the
    session; returns its JSON.  Do not delete it in tests."""
    r = magnum_env.create_cluster_template(name='session-ct')
    assert r.status == 201, r.text
    return r.json
