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

"""Fixtures for functional tests against the REAL Glance API (in-process).

``glance_env`` is SESSION-scoped on purpose: Glance's configuration is the
process-global ``oslo_config.cfg.CONF``, so only one Glance app can be started
per pytest process (see glance_app.py).  Extra pipelines (e.g. other audit
filter settings) come from ``glance_env.load_app(audit_filter={...})``, or,
with the filter found and flushable, from ``audit_pipelines(name, **filter)``
(one :class:`glance_app.AuditPipeline` per publisher_id).  ``audit_lifecycle``
runs the issue-2 acceptance calls (scenario.py) once per session through the
main pipeline (:data:`AUDIT_FULL`) and keeps, per call, our notifications next
to Glance's own, plus every log record at DEBUG.
"""

import logging
import os
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:      # tests.support, audit_notifier from the work tree
    sys.path.insert(0, _ROOT)

try:  # tests/functional as a package
    from . import glance_app
    from . import scenario
except ImportError:  # rootdir/prepend import mode, no __init__.py
    import glance_app
    import scenario

#: the audit filter of the main functional run: both formats, test driver, and
#: a publisher_id of its own (Glance's own notifications are image.localhost)
#: (the log driver too: every notification also becomes a log line, which the
#: secret scan of the captured logs then covers)
AUDIT_FULL = {'formats': 'cadf,glance', 'driver': 'test,log',
              'publisher_id': 'image.audit-test'}


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


@pytest.fixture(scope='session')
def audit_pipelines(glance_env):
    """``make(name, **audit_filter)`` -> :class:`glance_app.AuditPipeline`,
    one per distinct publisher_id, built once per session on the session
    Glance (same config, DB and stores; only the paste pipeline differs)."""
    made = {}

    def make(name, **audit_filter):
        # the journal and stats files stay inside the session's Glance directory
        audit_filter.setdefault('journal_dir', os.path.join(glance_env.base_dir,
                                                            'audit-journal-' + name))
        pid = audit_filter['publisher_id']
        if pid not in made:
            made[pid] = glance_app.AuditPipeline(glance_env, audit_filter, name=name)
        elif made[pid].audit_filter != audit_filter:
            raise ValueError('publisher_id %s already used with %r'
                             % (pid, made[pid].audit_filter))
        return made[pid]
    yield make
    for pipeline in made.values():
        pipeline.mw.delivery.close()


class LogCapture(logging.Handler):
    """Every log record of every logger, formatted with its traceback."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []
        self.setFormatter(logging.Formatter('%(name)s %(levelname)s %(message)s'))

    def emit(self, record):
        self.records.append((record.name, record.levelno, self.format(record)))


@pytest.fixture(scope='session')
def audit_lifecycle(glance_env, audit_pipelines):
    """The whole acceptance life cycle, run ONCE through the main audit
    pipeline (AUDIT_FULL), with every log record captured at DEBUG.

    Returns :class:`scenario.Lifecycle` (``steps`` by name) plus
    ``log_records`` [(logger, level, text)].
    """
    pipeline = audit_pipelines('audit-test', **AUDIT_FULL)
    handler = LogCapture()
    root = logging.getLogger()
    ours = logging.getLogger('audit_notifier')
    saved = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    try:
        lifecycle = scenario.run_lifecycle(pipeline)
        pipeline.flush()
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])
    lifecycle.log_records = handler.records
    return lifecycle
