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

"""Condition polling for tests: wait for a state instead of sleeping a fixed time.

Usage::

    from tests.support.wait import wait_until
    wait_until(lambda: proxy.active_connections == 0, timeout=30,
               message='proxy still has connections')
"""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.02,
               message: str | None = None):
    """Poll ``predicate()`` until it returns a truthy value; return that value.

    Raises ``TimeoutError`` (with ``message`` and the last exception the
    predicate raised, if any) once ``timeout`` seconds have passed.  The poll
    interval grows from ``interval`` up to 0.5 s, so generous deadlines cost
    nothing when the condition holds early.
    """
    deadline = time.monotonic() + timeout
    delay = interval
    last_exc = None
    while True:
        try:
            value = predicate()
        except Exception as exc:      # a probe that fails counts as "not yet"
            last_exc = exc
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            why = message or 'condition %r not met' % (predicate,)
            if last_exc is not None:
                why += ' (last error: %s: %s)' % (type(last_exc).__name__, last_exc)
            raise TimeoutError('%s after %.1fs' % (why, timeout))
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
