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

"""``audit-notifier demo``: the audit filter on a sample image API, no broker needed.

* :mod:`audit_notifier.demo.sample_app`: an in-memory image API with Glance v2's
  routes and answers, and a stand-in for keystonemiddleware's auth_token (plain
  WSGI, standard library only);
* :mod:`audit_notifier.demo.runner`: wraps the sample API in the filter in code,
  serves it on 127.0.0.1, makes the scripted calls and prints the notifications.

Nothing here is a paste factory or an entry point, and no module of the filter
imports this package: its fake auth, with fixed tokens, cannot end up in a
service's pipeline.
"""
