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

"""Test-only Magnum cluster driver (copied from shared/peers/fake_magnum_driver and extended).

Magnum 23 ships no in-tree cluster driver, so without this one the API refuses
every cluster template ("ClusterTypeNotSupported").  This driver provides
``(server_type=vm, os=ubuntu, coe=kubernetes)`` and provisions nothing.

It is NOT pip-installed: ``magnum_app.register_fake_driver()`` writes a
``fake_magnum_driver-0.0.1.dist-info`` (entry point ``magnum.drivers:
fake_k8s = fake_magnum_driver:Driver``) into a directory that is appended to
``sys.path``, so both ``importlib.metadata.entry_points()`` (Magnum's
``Driver.load_entry_points``) and stevedore's ``DriverManager`` find it.

Behaviour ("Heat-like", deterministic):

* ``create_cluster`` / ``update_cluster`` / ``resize_cluster`` /
  ``upgrade_cluster`` / ``delete_cluster`` return at once; the conductor then
  leaves the cluster ``*_IN_PROGRESS`` exactly as it does with Heat.
* ``update_cluster_status`` (called by Magnum's periodic
  ``ClusterUpdateJob``; the harness runs it on demand with
  ``MagnumEnv.sync_cluster_status()``) moves ``X_IN_PROGRESS`` to
  ``X_COMPLETE``.  Magnum then emits its own ``outcome: success``
  notification and, for ``DELETE_COMPLETE``, destroys the cluster row.
* Failures on purpose:

  - a cluster whose ``name`` starts with ``fail-`` fails in ``create_cluster``
    (conductor: ``CREATE_FAILED`` + ERROR ``magnum.cluster.create``
    ``outcome: failure``);
  - label ``fake_fail`` (comma list of ``create,update,resize,upgrade,delete``)
    makes those driver operations raise.
"""
from magnum.drivers.common import driver
from magnum.objects import fields

FAIL_NAME_PREFIX = 'fail-'

_COMPLETE = {
    fields.ClusterStatus.CREATE_IN_PROGRESS: fields.ClusterStatus.CREATE_COMPLETE,
    fields.ClusterStatus.UPDATE_IN_PROGRESS: fields.ClusterStatus.UPDATE_COMPLETE,
    fields.ClusterStatus.DELETE_IN_PROGRESS: fields.ClusterStatus.DELETE_COMPLETE,
    fields.ClusterStatus.ROLLBACK_IN_PROGRESS:
        fields.ClusterStatus.ROLLBACK_COMPLETE,
}


class FakeDriverError(Exception):
    pass


def _maybe_fail(op, cluster):
    labels = getattr(cluster, 'labels', None) or {}
    wanted = [s.strip() for s in str(labels.get('fake_fail', '')).split(',')]
    if op in wanted:
        raise FakeDriverError('fake driver: %s failed (label fake_fail)' % op)


class Driver(driver.Driver):
    @property
    def provides(self):
        return [{"server_type": "vm", "os": "ubuntu", "coe": "kubernetes"}]

    def create_cluster(self, context, cluster, cluster_create_timeout):
        if (cluster.name or '').startswith(FAIL_NAME_PREFIX):
            raise FakeDriverError(
                "fake driver: create failed (name starts with %r)"
                % FAIL_NAME_PREFIX)
        _maybe_fail('create', cluster)
        cluster.status_reason = 'fake driver: create started'

    def update_cluster(self, context, cluster, scale_manager=None,
                       rollback=False):
        _maybe_fail('update', cluster)

    def resize_cluster(self, context, cluster, resize_manager, node_count,
                       nodes_to_remove, nodegroup=None):
        _maybe_fail('resize', cluster)

    def upgrade_cluster(self, context, cluster, cluster_template,
                        max_batch_size, nodegroup, scale_manager=None,
                        rollback=False):
        _maybe_fail('upgrade', cluster)

    def delete_cluster(self, context, cluster):
        _maybe_fail('delete', cluster)

    def update_cluster_status(self, context, cluster, use_admin_ctx=False):
        new = _COMPLETE.get(cluster.status)
        if new is None:
            return
        cluster.status = new
        cluster.status_reason = 'fake driver: %s' % new
        for ng in cluster.nodegroups:
            if ng.status in _COMPLETE:
                ng.status = _COMPLETE[ng.status]
                ng.save()
        cluster.save()

    def _noop(self, *a, **kw):
        return None

    create_federation = update_federation = delete_federation = _noop
    create_nodegroup = update_nodegroup = delete_nodegroup = _noop
    rotate_ca_certificate = rotate_credential = _noop

    def get_monitor(self, *a, **kw):
        return None

    def get_scale_manager(self, *a, **kw):
        return None
