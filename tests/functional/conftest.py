"""Fixtures for functional tests against the REAL Glance API (in-process).

``glance_env`` is SESSION-scoped on purpose: Glance's configuration is the
process-global ``oslo_config.cfg.CONF``, so only one Glance app can be started
per pytest process (see glance_app.py).  Extra pipelines (e.g. other audit
filter settings) come from ``glance_env.load_app(audit_filter={...})``.
"""

import pytest

try:  # tests/functional as a package
    from . import glance_app
except ImportError:  # rootdir/prepend import mode, no __init__.py
    import glance_app


@pytest.fixture(scope='session')
def glance_audit_filter():
    """Items of ``[filter:audit]`` for the session Glance app.

    None = no audit filter.  Override this fixture (same name, session scope)
    in a conftest/test module to put audit_notifier in the pipeline.
    """
    return None


@pytest.fixture(scope='session')
def glance_env(tmp_path_factory, glance_audit_filter):
    """The real Glance 33 API app, loaded once per session (~3 s).

    Config, sqlite DB and glance-api.log live in ``glance_env.base_dir``.
    """
    base = tmp_path_factory.mktemp('glance')
    env = glance_app.GlanceEnv().start(base, audit_filter=glance_audit_filter)
    yield env
    env.stop()


@pytest.fixture
def glance_notifications(glance_env):
    """Reset the captured notifications before a test; returns the module
    (``.glance_own_notifications()``, ``.all_notifications()``, ...)."""
    glance_app.reset_notifications()
    yield glance_app
