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

"""Real examples of our notifications for the docs: data/audit_notifier_examples.json.

A helper module, not a test file.  The examples are taken from one run of the
acceptance life cycle against the REAL Glance 33 (scenario.py) and normalised so
the file is the same on every run: every UUID gets a placeholder in the order it
first appears, request ids follow, every time becomes one fixed instant, and the
random domain names of keystonemiddleware's AuthTokenFixture become "Default".
Values derived from the data (checksum, sizes), stable ids (the observer id, the
metric ids) and the fixture's user/project ids are kept.

Regenerate after a deliberate payload change with::

    AUDIT_NOTIFIER_WRITE_EXAMPLES=1 python -m pytest -q \
        tests/functional/test_glance_real.py -k examples
"""

from __future__ import annotations

import json
import os
import re

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
EXAMPLES_FILE = os.path.join(DATA, 'audit_notifier_examples.json')
WRITE_ENV = 'AUDIT_NOTIFIER_WRITE_EXAMPLES'

_UUID = re.compile(r'[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')
_ISO_Z = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$')
_CADF_TIME = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+0000$')
_ENVELOPE_TIME = re.compile(r'^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?$')
_RANDOM_NAMES = ('domain', 'project_domain_name')

#: (name, step, which of our notifications, what it shows)
CHOSEN = (
    ('cadf-upload', 'upload_20MiB', 'audit.image.upload',
     'CADF audit event of PUT /v2/images/{id}/file (20 MiB): target is the image, '
     'initiator from the token, bytes received as a measurement'),
    ('image.upload', 'upload_20MiB', 'image.upload',
     'Glance-format image.upload of the same call (Glance\'s own payload shape)'),
    ('image.send', 'download_full', 'image.send',
     'Glance-format image.send of GET /v2/images/{id}/file (full download)'),
    ('image.send-interrupted', 'download_interrupted', 'image.send',
     'ERROR image.send when the client went away after two chunks '
     '(Glance sends nothing)'),
    ('image.member.create', 'member_add', 'image.member.create',
     'Glance-format image.member.create of POST /v2/images/{id}/members'),
    ('image.create-refused', 'forbidden_create_reader', 'image.create',
     'WARN text notification for a refused call (usage_failures = true; Glance '
     'sends nothing)'),
)


class Normaliser:
    def __init__(self, keep=()):
        self.keep = set(keep)
        self.ids = {}

    def _uuid(self, match):
        value = match.group(0)
        if value in self.keep:
            return value
        if value not in self.ids:
            self.ids[value] = '00000000-0000-4000-8000-%012d' % (len(self.ids) + 1)
        return self.ids[value]

    def __call__(self, value, key=None):
        if isinstance(value, dict):
            return {k: self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, key) for v in value]
        if not isinstance(value, str):
            return value
        if key in _RANDOM_NAMES:
            return 'Default'
        if _ISO_Z.match(value):
            return '2026-01-01T12:00:00Z'
        if _CADF_TIME.match(value):
            return '2026-01-01T12:00:00.000000+0000'
        if key == 'timestamp' and _ENVELOPE_TIME.match(value):
            return '2026-01-01 12:00:00.000000'
        return _UUID.sub(self._uuid, value)


def build(lifecycle, observer_id, metric_ids):
    normalise = Normaliser(keep={observer_id, *metric_ids})
    examples = []
    for name, step_name, event_type, about in CHOSEN:
        step = lifecycle.steps[step_name]
        (envelope,) = [m for m in step.ours if m['event_type'] == event_type]
        examples.append({'name': name, 'about': about,
                         'call': '%s %s' % (step.method, step.path),
                         'caller': step.user,
                         'http_status': step.status,
                         'envelope': envelope})
    return {
        'description': 'Real notifications of audit_notifier (formats = cadf,glance, '
                       'publisher_id = image.audit-test) in front of Glance 33.0.0, from '
                       'tests/functional (scenario.py); UUIDs, request ids and times are '
                       'replaced by placeholders, see tests/functional/examples.py.',
        'examples': normalise(examples),
    }


def dumps(doc):
    return json.dumps(doc, indent=1, sort_keys=True) + '\n'
