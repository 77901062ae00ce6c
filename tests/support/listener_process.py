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

"""A real oslo.messaging notification listener in a child process.

Why a child process: its AMQP connections carry ITS pid in their
``connection_name`` (oslo.messaging names them ``<argv0>:<pid>:<uuid>``), so a
test can tell the brokers' view of the code under test (connections named with
the test process's pid) from the listener's, and the listener's work does not
compete for the test process's GIL.

The child (``python -m tests.support.listener_process <config.json>``) runs
``oslo_messaging.get_notification_listener`` (threading executor, ONE worker, so
the endpoint sees messages in delivery order) on a private ``ConfigOpts`` with
oslo.messaging's options, the given ``control_exchange`` and any
``[oslo_messaging_rabbit]`` options (e.g. ``rabbit_quorum_queue``), subscribed to
every priority of the given topics.  It writes one JSON line per notification on
stdout (``message_id``, ``event_type``, ``priority``, ``publisher_id``, CADF
``target_id`` and ``request_id`` of the initiator) and ``{"ready": ...}`` once
the listener runs.  It stops when its stdin closes (the parent ended or called
:meth:`ListenerProcess.stop`) or on SIGTERM.

Usage::

    from tests.support.listener_process import ListenerProcess

    with ListenerProcess(url, exchange='ctl_x', topics=['audit_x'],
                         rabbit={'rabbit_quorum_queue': 'true'},
                         log_path=tmp_path / 'listener.log') as listener:
        ...
        listener.wait_until(lambda items: len(items) >= 10, timeout=60)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRIORITIES = ('audit', 'debug', 'info', 'warn', 'error', 'critical', 'sample')


class ListenerProcess:
    """Parent side: starts the child, collects what it received."""

    def __init__(self, url: str, exchange: str, topics, rabbit: dict | None = None,
                 log_path=None):
        self.url = url
        self.exchange = exchange
        self.topics = list(topics)
        self.rabbit = {k: str(v) for k, v in (rabbit or {}).items()}
        self.log_path = str(log_path) if log_path else None
        self.proc: subprocess.Popen | None = None
        self.pid: int | None = None
        self._cond = threading.Condition()
        self._items: list[dict] = []
        self._ready = False
        self._reader: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> 'ListenerProcess':
        config = json.dumps({'url': self.url, 'exchange': self.exchange,
                             'topics': self.topics, 'rabbit': self.rabbit})
        env = dict(os.environ, PYTHONUNBUFFERED='1',
                   PYTHONPATH=os.pathsep.join(
                       p for p in (_ROOT, os.environ.get('PYTHONPATH')) if p))
        log = open(self.log_path, 'ab') if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                [sys.executable, '-m', 'tests.support.listener_process', config],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=_ROOT,
                env=env)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True,
                                        name='listener-process-reader')
        self._reader.start()
        self._wait(lambda: self._ready, timeout, 'the listener to start')
        return self

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if 'ready' in item:
                    self._ready = True
                else:
                    item['index'] = len(self._items)
                    item['arrived'] = time.monotonic()
                    self._items.append(item)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        try:
            proc.stdin.close()
        except OSError:
            pass
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(10)
        finally:
            if self._reader is not None:
                self._reader.join(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- what arrived ---------------------------------------------------------------------
    @property
    def items(self) -> list[dict]:
        with self._cond:
            return list(self._items)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def queue_names(self) -> list[str]:
        """The queues oslo.messaging declares for these topics (all priorities)."""
        return ['%s.%s' % (t, p) for t in self.topics for p in PRIORITIES]

    def wait_until(self, predicate, timeout: float, what: str = 'condition') -> list[dict]:
        """Wait until ``predicate(items)``; the items then.  AssertionError after
        ``timeout`` s or when the child died."""
        return self._wait(lambda: predicate(self._items), timeout, what)

    def _wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if self.proc is None or self.proc.poll() is not None:
                    raise AssertionError('listener child exited (%s) while waiting for %s; '
                                         'log: %s' % (self.proc and self.proc.returncode,
                                                      what, self.log_tail()))
                if left <= 0:
                    raise AssertionError('listener: waited %.0f s for %s; got %d messages'
                                         % (timeout, what, len(self._items)))
                self._cond.wait(min(left, 0.5))
            return list(self._items)

    def log_tail(self, chars: int = 3000) -> str:
        if not self.log_path:
            return '(no log)'
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()[-chars:]
        except OSError as exc:
            return '(%s)' % exc


# -- the child ----------------------------------------------------------------------------
def _child(config: dict) -> int:
    import logging
    import signal
    import tempfile

    import oslo_messaging
    import oslo_messaging.opts
    from oslo_config import cfg

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='%(asctime)s %(threadName)s %(name)s %(levelname)s '
                               '%(message)s')
    out_lock = threading.Lock()

    def emit(obj):
        line = json.dumps(obj, default=str)
        with out_lock:
            sys.stdout.write(line + '\n')
            sys.stdout.flush()

    lines = ['[DEFAULT]', 'control_exchange = %s' % config['exchange'],
             'executor_thread_pool_size = 1', '[oslo_messaging_rabbit]']
    lines += ['%s = %s' % kv for kv in sorted(config['rabbit'].items())]
    conf = cfg.ConfigOpts()
    for group, opts in oslo_messaging.opts.list_opts():
        conf.register_opts(opts, group=group)
    with tempfile.NamedTemporaryFile('w', suffix='.conf', delete=False) as f:
        f.write('\n'.join(lines) + '\n')
    try:
        conf([], project='audit_notifier_listener_process', default_config_files=[f.name])
    finally:
        os.unlink(f.name)

    class Endpoint:
        pass

    def make(prio):
        def on(ctxt, publisher_id, event_type, payload, metadata):
            body = payload if isinstance(payload, dict) else {}
            emit({'message_id': metadata.get('message_id'), 'event_type': event_type,
                  'priority': prio, 'publisher_id': publisher_id,
                  'timestamp': metadata.get('timestamp'),
                  'target_id': (body.get('target') or {}).get('id'),
                  'request_id': (body.get('initiator') or {}).get('request_id'),
                  'outcome': body.get('outcome'), 'event_id': body.get('id')})
        return on

    endpoint = Endpoint()
    for prio in PRIORITIES:
        setattr(endpoint, prio, make(prio))
    transport = oslo_messaging.get_notification_transport(conf, url=config['url'])
    server = oslo_messaging.get_notification_listener(
        transport, [oslo_messaging.Target(topic=t) for t in config['topics']], [endpoint],
        executor='threading')
    server.start()
    emit({'ready': os.getpid()})

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            done.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    while not done.wait(0.5):
        pass
    server.stop()
    server.wait()
    transport.cleanup()
    return 0


if __name__ == '__main__':
    sys.exit(_child(json.loads(sys.argv[1])))
