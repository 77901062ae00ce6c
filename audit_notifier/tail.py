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

"""``audit-notifier tail``: the notifications on the bus, live, rendered as the demo
renders them or as JSON, read from a private queue
(:mod:`audit_notifier.delivery.private_queue`) so that nothing is taken from
Ceilometer or any other consumer."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Iterable, TextIO

from audit_notifier.delivery.private_queue import (BusReadError, PrivateQueue,
                                                   source_from_config)
from audit_notifier.render import describe, is_cadf
from audit_notifier.stored import oslo_message


@dataclasses.dataclass
class Selection:
    """Which notifications are shown."""
    fmt: str | None = None
    user: str | None = None
    resource: str | None = None

    def matches(self, envelope: dict) -> bool:
        if self.fmt is not None and (self.fmt == 'cadf') != is_cadf(envelope):
            return False
        payload = envelope.get('payload')
        payload = payload if isinstance(payload, dict) else {}
        if self.user is not None and self.user not in users_of(payload):
            return False
        if self.resource is not None and self.resource not in resources_of(payload):
            return False
        return True


def users_of(payload: dict) -> set:
    """Who acted: the CADF initiator's id and name, a Glance payload's user fields."""
    initiator = payload.get('initiator')
    initiator = initiator if isinstance(initiator, dict) else {}
    return {v for v in (initiator.get('id'), initiator.get('name'), payload.get('user_id'),
                        payload.get('receiver_user_id')) if isinstance(v, str)}


def resources_of(payload: dict) -> set:
    """What was acted on: the CADF target's id, a Glance payload's id or image_id."""
    target = payload.get('target')
    target = target if isinstance(target, dict) else {}
    return {v for v in (target.get('id'), payload.get('id'), payload.get('image_id'))
            if isinstance(v, str)}


# -- one message --------------------------------------------------------------------------

def unwrap(body: bytes | str) -> dict:
    """The notification in an AMQP message body (:func:`.stored.oslo_message`),
    without oslo.messaging's private keys (``_unique_id``, and ``_context_*``, where
    a service's own notifications may carry the caller's token).  ValueError if it
    is none."""
    return {k: v for k, v in oslo_message(body).items() if not k.startswith('_')}


# -- the command --------------------------------------------------------------------------

class Printer:
    """Shows the selected notifications; counts them."""

    def __init__(self, selection: Selection, json_mode: bool, out: TextIO, err: TextIO,
                 count: int | None = None):
        self.selection = selection
        self.json_mode = json_mode
        self.out = out
        self.err = err
        self.count = count
        self.shown = 0
        self.reader_gone = False      # stdout closed (tail | head)

    def __call__(self, body, routing_key: str) -> bool:
        try:
            envelope = unwrap(body)
        except (ValueError, KeyError, UnicodeDecodeError) as exc:
            print('audit-notifier tail: skipped a message with routing key %s that is not '
                  'an oslo.messaging notification (%s)' % (routing_key, exc),
                  file=self.err, flush=True)
            return True
        if not self.selection.matches(envelope):
            return True
        if self.json_mode:
            line = json.dumps(envelope)
        else:
            line = '%s %s' % (envelope.get('timestamp'), describe(envelope))
        try:
            print(line, file=self.out, flush=True)
        except BrokenPipeError:
            self.reader_gone = True
            return False
        self.shown += 1
        return self.count is None or self.shown < self.count


def run(config_files: Iterable[str], selection: Selection, json_mode: bool = False,
        count: int | None = None, timeout: float | None = None, exchange: str | None = None,
        topics: list[str] | None = None) -> int:
    """``audit-notifier tail``: 0 when done (``count`` shown, or the timeout passed
    without a count), 130 on Ctrl-C, 1 after one error line on stderr or when the
    timeout passed before ``count`` notifications were shown."""
    err = sys.stderr
    printer = Printer(selection, json_mode, sys.stdout, err, count)
    listener = None
    try:
        source = source_from_config(list(config_files), selection.fmt, exchange, topics)
        listener = PrivateQueue(source)
        listener.open()
        started = time.monotonic()           # the timeout counts from here
        print('audit-notifier tail: listening on %s, exchange %s, routing keys %s '
              '(private queue %s; Ctrl-C stops)' % (source.shown, source.exchange,
                                                    ', '.join(source.routing_keys),
                                                    listener.queue), file=err, flush=True)
        if not any(d in ('messaging', 'messagingv2', 'routing') for d in source.drivers):
            print('audit-notifier tail: note: the filter\'s driver is %s: it publishes '
                  'nothing to the bus' % ','.join(source.drivers), file=err, flush=True)
        done = listener.consume(printer, started + timeout if timeout else None)
        if printer.reader_gone:
            _stdout_to_devnull()
        elif not done and count is not None:
            print('audit-notifier tail: %d of %d notification(s) within %g s'
                  % (printer.shown, count, timeout), file=err)
            return 1
        return 0
    except BusReadError as exc:
        print('audit-notifier tail: error: %s' % exc, file=err)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if listener is not None:
            listener.close()


def _stdout_to_devnull() -> None:
    # The reader went away (tail | head): stop quietly, as other tools do, without
    # Python's complaint about flushing a closed pipe at exit.
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
