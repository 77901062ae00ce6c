"""``audit-notifier demo``: the audit filter on a sample image API, no broker needed.

* :mod:`audit_notifier.demo.sample_app`: an in-memory image API with Glance v2's
  routes and answers, and a stand-in for keystonemiddleware's auth_token;
* :mod:`audit_notifier.demo.runner`: serves ``demo-paste.ini`` on 127.0.0.1, makes
  the scripted calls and prints the notifications of each.
"""
