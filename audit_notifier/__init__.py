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
