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

"""Memory: a 1 GiB download through the filter does not grow peak RSS.

Measured in a fresh interpreter (tests/unit/_memory_probe.py) with
resource.getrusage's ru_maxrss (KiB on Linux) before and after consuming the WSGI
iterable.  A memory assertion, not a timing one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '_memory_probe.py')
GIB = 1024 ** 3
MIB = 1024 ** 2


def probe(mode, total):
    proc = subprocess.run([sys.executable, '-W', 'ignore', PROBE, mode, str(total)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_gib_download_streams_in_constant_memory():
    report = probe('stream', GIB)
    growth_mib = (report['after_kib'] - report['before_kib']) / 1024
    assert report['consumed'] == GIB
    assert report['kept_chunks'] == 0
    assert growth_mib < 16, report
    assert report['event_types'] == ['audit.image.download', 'image.send']
    assert (report['send_bytes'], report['send_priority']) == (GIB, 'INFO')
    assert (report['cadf_bytes'], report['cadf_outcome']) == (GIB, 'success')


def test_probe_detects_buffering():
    """The control: keeping 128 MiB of chunks shows up as >= 64 MiB of peak growth
    (four times the bound above), so the bound can fail."""
    report = probe('keep', 128 * MIB)
    growth_mib = (report['after_kib'] - report['before_kib']) / 1024
    assert report['consumed'] == 128 * MIB
    assert report['kept_chunks'] == 2048
    assert growth_mib >= 64, report
    assert report['send_bytes'] == 128 * MIB
