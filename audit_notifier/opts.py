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

"""All options of audit_notifier, for oslo-config-generator (entry point oslo.config.opts).

Options are declared next to the code that uses them and only collected here.
"""

from __future__ import annotations

import copy
import itertools

from audit_notifier._config import GROUP
from audit_notifier.classify import classify_opts
from audit_notifier.delivery.drivers import bus_opts
from audit_notifier.delivery.follow import follow_opts
from audit_notifier.delivery.handoff import delivery_opts
from audit_notifier.emitter import emitter_opts
from audit_notifier.policy import policy_opts
from audit_notifier.redaction import redaction_opts
from audit_notifier.trail import trail_opts

ALL_OPTS = list(itertools.chain(classify_opts, emitter_opts, redaction_opts, bus_opts,
                                delivery_opts, follow_opts, trail_opts, policy_opts))


def list_opts():
    """[(group, [opts])] as oslo-config-generator expects."""
    return [(GROUP, copy.deepcopy(ALL_OPTS))]
