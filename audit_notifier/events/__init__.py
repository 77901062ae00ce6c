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

"""Event builders: from the facts of an exchange to notification payloads.

``cadf`` builds CADF event dicts directly, with pycadf's vocabulary but not its
objects (they cost ~200 us per event: doc/source/reference/events.rst);
``glance`` builds Glance's own usage notifications.  Both run in the sender thread,
never on the request path.
"""

from __future__ import annotations

import datetime
import fnmatch
import re
from typing import Any, NamedTuple

from pycadf import cadftaxonomy

INFO = 'INFO'
WARN = 'WARN'
ERROR = 'ERROR'
INVALID_STATUS = 'invalid status line'   # reasonCode when the app's status has no code
# CADF outcomes: pycadf's vocabulary (cadftaxonomy.OUTCOME_TAXONOMY)
SUCCESS = cadftaxonomy.OUTCOME_SUCCESS
FAILURE = cadftaxonomy.OUTCOME_FAILURE
PENDING = cadftaxonomy.OUTCOME_PENDING
UNKNOWN = cadftaxonomy.UNKNOWN
# reasonType of a CADF reason (free text in CADF; keystonemiddleware.audit uses HTTP)
REASON_HTTP = 'HTTP'
REASON_EXCEPTION = 'exception'      # reasonCode: the exception's class name


class Notification(NamedTuple):
    """One notification to deliver, before the oslo.messaging envelope is added."""
    fmt: str            # 'cadf' or 'glance': selects the topics it goes to
    event_type: str
    priority: str       # INFO, WARN or ERROR
    payload: Any
    shard: str          # resource id: notifications of one resource keep their order
    timestamp: float    # when it happened (epoch seconds); becomes the envelope timestamp


class Outcome(NamedTuple):
    outcome: str        # CADF outcome: SUCCESS, FAILURE, PENDING or UNKNOWN
    priority: str
    reason_type: str    # REASON_HTTP or REASON_EXCEPTION
    reason_code: str


def outcome_of(exchange) -> Outcome:
    """CADF outcome and notification priority of a finished exchange.

    2xx/3xx success (202 Accepted, or a route marked async: pending, the work goes on),
    4xx failure at WARN, 5xx failure at ERROR; a download whose body did not reach
    the server whole is a failure at ERROR; an exception from the app, too.  A status
    line without a code (the app's bug) is outcome unknown at ERROR.
    """
    if exchange.raised is not None:
        return Outcome(FAILURE, ERROR, REASON_EXCEPTION, exchange.raised)
    code = exchange.status_code
    if code is None:
        if exchange.status_invalid:     # the app's bug: what the client got is unknown
            return Outcome(UNKNOWN, ERROR, REASON_HTTP, INVALID_STATUS)
        return Outcome(FAILURE, ERROR, REASON_HTTP, 'none')
    if code >= 500:
        return Outcome(FAILURE, ERROR, REASON_HTTP, str(code))
    if code >= 400:
        return Outcome(FAILURE, WARN, REASON_HTTP, str(code))
    if exchange.route.observe == 'download' and not transfer_complete(exchange):
        return Outcome(FAILURE, ERROR, REASON_HTTP, str(code))
    if code == 202 or exchange.route.asynchronous:
        return Outcome(PENDING, INFO, REASON_HTTP, str(code))
    return Outcome(SUCCESS, INFO, REASON_HTTP, str(code))


def pending_by_body(outcome: Outcome, facts) -> Outcome:
    """A success whose route says the work goes on by what the answer shows (route
    key ``pending_if``: Magnum 3.0.0's bay create at microversion 1.1 answers 201 with
    the bay in CREATE_IN_PROGRESS) is outcome pending."""
    rule = facts.exchange.route.pending_if
    if outcome.outcome != SUCCESS or rule is None:
        return outcome
    sources, pattern = rule
    value = facts.source(sources)
    if value is not None and fnmatch.fnmatchcase(value, pattern):
        return outcome._replace(outcome=PENDING)
    return outcome


def expected_bytes(exchange, fallback_size: int | None = None) -> int | None:
    """Bytes the response promised: its Content-Length, else the range, else a size."""
    length = exchange.header('Content-Length')
    if length is not None:
        try:
            return int(length)
        except ValueError:
            pass
    content_range = exchange.header('Content-Range')
    if content_range:
        m = re.match(r'bytes (\d+)-(\d+)/', content_range)
        if m:
            return int(m.group(2)) - int(m.group(1)) + 1
    return fallback_size


def transfer_complete(exchange, fallback_size: int | None = None) -> bool:
    if not exchange.completed:
        return False
    expected = expected_bytes(exchange, fallback_size)
    return expected is None or expected == exchange.bytes_sent


def cadf_time(epoch: float) -> str:
    """pycadf's eventTime format: 2026-11-23T12:33:20.291085+0000."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%S.%f+0000')


def iso_time(epoch: float) -> str:
    """Glance's payload time format (glance.common.timeutils.isotime)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%SZ')


def envelope_time(epoch: float) -> str:
    """oslo.messaging's envelope timestamp (str(utcnow()), no zone), always with the
    microseconds (str() drops them when they are zero)."""
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        '%Y-%m-%d %H:%M:%S.%f')
