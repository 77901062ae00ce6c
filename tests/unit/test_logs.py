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

"""Per-condition rate limits of log lines that can repeat per API call."""

from __future__ import annotations

import logging

from audit_notifier.logs import LimitedLog

LOGGER = logging.getLogger('audit_notifier.test_logs')


def test_each_condition_is_limited_on_its_own(caplog):
    limited = LimitedLog(LOGGER, interval=3600)
    with caplog.at_level(logging.WARNING, logger='audit_notifier'):
        for n in range(5):
            limited(logging.WARNING, 'a', 'condition a %d', n)
            limited(logging.ERROR, 'b', 'condition b %d', n)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, 'condition a 0'), (logging.ERROR, 'condition b 0')]


def test_the_next_line_counts_what_was_suppressed(caplog):
    limited = LimitedLog(LOGGER, interval=3600)
    with caplog.at_level(logging.WARNING, logger='audit_notifier'):
        for _ in range(4):
            limited(logging.WARNING, 'a', 'line')
        limited(logging.WARNING, 'a', 'line', count=10)
        limited.interval = 0                  # the interval has passed
        limited(logging.WARNING, 'a', 'line')
        limited(logging.WARNING, 'a', 'line')
    assert [r.getMessage() for r in caplog.records] == [
        'line', 'line (and 13 more in the last 0 s)', 'line']


def test_traceback_only_when_asked(caplog):
    limited = LimitedLog(LOGGER, interval=3600)
    with caplog.at_level(logging.WARNING, logger='audit_notifier'):
        try:
            raise KeyError('x')
        except KeyError:
            limited(logging.ERROR, 'with', 'with traceback', exc_info=True)
            limited(logging.ERROR, 'without', 'without traceback')
    assert caplog.records[0].exc_info[0] is KeyError
    assert not caplog.records[1].exc_info
