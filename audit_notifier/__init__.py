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

"""audit_notifier: CADF and Glance-format notifications for OpenStack API calls.

Public surface:

- :func:`audit_notifier.middleware.filter_factory`: the paste filter.
- :func:`get_notifier` / :class:`AuditNotifier`: notifications that happen outside
  an API call (Glance task executor, Magnum conductor), same configuration and
  delivery as the filter.
"""

from audit_notifier._config import ConfigError

__all__ = ['AuditNotifier', 'ConfigError', 'get_notifier']


def __getattr__(name):
    # Imported on first use: oslo.messaging pulls in eventlet, whose import-time
    # warning the command line silences before it imports anything heavy.
    if name in ('AuditNotifier', 'get_notifier'):
        from audit_notifier import notifier
        return getattr(notifier, name)
    raise AttributeError(name)
