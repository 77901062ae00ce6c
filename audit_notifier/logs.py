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

"""Log lines that can repeat per API call, limited per condition.

A condition (a short string: ``classify``, ``lookup``, ``status-line`` ...) is
logged at most once per ``interval`` seconds; the next line of that condition
says how many occurrences it stood for.  Thread-safe, O(1) per call; it is used
on the request path (classification and journaling errors) and in the sender.
"""

from __future__ import annotations

import logging
import threading
import time

LIMIT_SECONDS = 60.0


class LimitedLog:
    """``log(level, condition, msg, *args)``: at most one line per condition and
    ``interval``."""

    def __init__(self, logger: logging.Logger, interval: float = LIMIT_SECONDS):
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._state: dict[str, list] = {}     # condition -> [last logged, suppressed]

    def __call__(self, level: int, condition: str, msg: str, *args, count: int = 1,
                 exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            state = self._state.setdefault(condition, [float('-inf'), 0])
            if now - state[0] < self.interval:
                state[1] += count
                return
            suppressed, state[1] = state[1], 0
            state[0] = now
        if suppressed:
            msg += ' (and %d more in the last %d s)' % (suppressed, self.interval)
        self.logger.log(level, msg, *args, exc_info=exc_info)
