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

"""``audit-notifier send``: the sender process of ``sender = external``.

One process per host and journal directory, run as a service beside the API
(systemd: ``etc/audit_notifier/audit-notifier-send.service``).  Its sender thread is the
main thread; it is an ordinary :class:`~.sender.Sender` with an empty journal of
its own (for its lock, stats file and dead letters) that also reads the journals
the API processes write now (:mod:`.live`), and, as every sender, adopts those of
processes that are gone.  It builds with the conf file's options and has no app:
no record look-ups after the call (the filter refuses ``sender = external`` where
its events would need them).
"""

from __future__ import annotations

import glob
import logging
import os
import signal

from audit_notifier import trail as trail_mod
from audit_notifier.delivery import journal as journal_mod
from audit_notifier.delivery import live as live_mod
from audit_notifier.delivery import process_hooks
from audit_notifier.delivery import stats as stats_mod
from audit_notifier.delivery.builder import Builder
from audit_notifier.delivery.deadletter import DeadLetters
from audit_notifier.delivery.external import SEND_LOCK
from audit_notifier.delivery.sender import Sender

LOG = logging.getLogger(__name__)


def serve(pipeline) -> int:
    """Send until SIGTERM or SIGINT (then what was read, for up to
    process_hooks.SHUTDOWN_SECONDS); 1 if another one serves the directory."""
    delivery = pipeline.delivery
    settings = delivery.settings
    directory = delivery.directory
    lock_fd = journal_mod.try_lock(os.path.join(directory, SEND_LOCK))
    if lock_fd is None:
        LOG.error('audit_notifier: another audit-notifier send serves %s; one per journal '
                  'directory', directory)
        return 1
    try:
        sender = _sender(pipeline, settings, directory)
        _succeed(directory, lock_fd, sender.journal.owner)

        def stop(signum, frame):
            LOG.info('audit_notifier: signal %d: sending what was read, then stopping',
                     signum)
            sender.stop(process_hooks.SHUTDOWN_SECONDS)

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        LOG.info('audit_notifier: audit-notifier send serves the journals in %s', directory)
        if settings.sender != 'external':
            LOG.warning('audit_notifier: the conf file says sender = %s: the API processes '
                        'send what they journal; this process only sends the journals of '
                        'processes that are gone', settings.sender)
        try:
            sender.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        os.close(lock_fd)
    return 0


def _succeed(directory: str, lock_fd: int, owner: str) -> None:
    """Name this process in the send lock, and remove the (empty) journal files of
    the send process named there before, gone (it held the lock): one killed by
    SIGKILL leaves its lock and checkpoint, which no orphan adoption removes (an
    orphan is found by its segments, and a send process never appends)."""
    previous = os.pread(lock_fd, 256, 0).decode('ascii', 'replace').strip()
    os.ftruncate(lock_fd, 0)
    os.pwrite(lock_fd, owner.encode('ascii') + b'\n', 0)
    if not previous or previous == owner or os.sep in previous or \
            glob.glob(os.path.join(glob.escape(directory), glob.escape(previous) + '.*.journal')):
        return
    for suffix in ('lock', 'ckpt', 'ckpt.tmp'):
        journal_mod.remove(os.path.join(directory, '%s.%s' % (previous, suffix)))


def _sender(pipeline, settings, directory: str) -> Sender:
    emitter, route_for = pipeline.emitter, pipeline.classifier.route_for
    stats = stats_mod.Stats()
    own = journal_mod.Journal(directory, max_bytes=settings.journal_max_bytes,
                              max_records=settings.queue_size,
                              overflow=settings.journal_overflow,
                              block_seconds=settings.journal_block_seconds,
                              fsync=settings.journal_fsync, stats=stats)
    trail_config = trail_mod.TrailConfig.from_settings(settings)
    return Sender(own, emitter, route_for, pipeline.leaves(),
                  DeadLetters(directory, own.owner, stats), stats,
                  dead_letter_after=settings.dead_letter_after,
                  stats_interval=settings.stats_interval,
                  trail=trail_mod.Chain(trail_config, own.owner, directory,
                                        emitter.publisher_id)
                  if trail_config.enabled else None,
                  max_rate=settings.background_max_rate,
                  gather_seconds=settings.gather_seconds,
                  live=live_mod.LiveJournals(
                      directory, stats, lambda owner: Builder(emitter, route_for, owner)))
