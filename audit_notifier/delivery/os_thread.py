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

"""The name the operating system shows for the filter's thread.

Python 3.11 names threads for Python only: ``top -H``, ``ps -L``, ``pidstat -t``
and ``/proc/<pid>/task/<tid>/comm`` show every thread of an API worker under the
process's name.  The thread the filter starts in each API process names itself
(Linux ``prctl(PR_SET_NAME)``, at most 15 bytes: ``audit-sender``, or
``audit-journal`` with ``sender = external``), so that an operator, and the HTTP
benchmark, can tell its CPU from the request threads'.  Called once, by that
thread, when it starts (one ``prctl`` call).  Nothing is changed elsewhere than
on Linux, nor when the caller is the process's main thread (under eventlet the
"thread" is a green thread of it: renaming it would rename the API process).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading

LOG = logging.getLogger(__name__)

# The names (what top -H and ps -L show): the sender thread of an API process, and
# with sender = external its thread that only writes the journal's stats file.
SENDER = 'audit-sender'
JOURNAL_WRITER = 'audit-journal'

PR_SET_NAME = 15            # linux/prctl.h
MAX_NAME = 15               # bytes; the kernel keeps 16 with the terminating NUL


def name_this_thread(name: str) -> bool:
    """Give the calling OS thread ``name`` (ASCII, at most ``MAX_NAME`` bytes: a
    longer one is a bug, ValueError); True when it was named.  The name is cosmetic:
    a failure of the call itself is logged at debug level, never raised, so that the
    thread's work goes on."""
    raw = name.encode('ascii')
    if len(raw) > MAX_NAME:
        raise ValueError('an OS thread name has at most %d bytes: %r' % (MAX_NAME, name))
    if not sys.platform.startswith('linux') or threading.get_native_id() == os.getpid():
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0) == 0
    except Exception:
        LOG.debug('audit_notifier: could not name this thread %s for the OS', name,
                  exc_info=True)
        return False
