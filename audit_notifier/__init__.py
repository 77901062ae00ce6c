"""audit_notifier: CADF and Glance-format notifications for OpenStack API calls.

Public surface:

- :func:`audit_notifier.middleware.filter_factory`: the paste filter.
- :func:`get_notifier` / :class:`AuditNotifier`: notifications that happen outside
  an API call (Glance task executor, Magnum conductor), same configuration and
  delivery as the filter.
"""

from audit_notifier._config import ConfigError
from audit_notifier.notifier import AuditNotifier, get_notifier

__all__ = ['AuditNotifier', 'ConfigError', 'get_notifier']
