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

"""Record attachments of CADF targets: the resource's record, as the service's own
events attach it.

Magnum (since 9.0.0) attaches the cluster to the target of its ``magnum.cluster.*``
events: ``{typeURI: service/magnum/cluster, name: cluster_data, content: {status,
node_count, ... 'docker_volume_size:' (sic)}}``.  A route map names such a rule with
the target key ``data``; the record comes, first that is the target's whole record:

1. from the response body (an API that answers with the object);
2. from a look-up after the call (``GET /v1/clusters/{id}``, in-process, as the caller,
   in the sender thread: never on the request path; option ``record_lookups``);
3. from the record fetched before the call (route key ``record``: a delete by name).

Magnum's API answers a cluster create (202 ``{"uuid"}``) before its conductor stores
the cluster, and the conductor stores the cluster row before its node groups (whose
sums are ``node_count`` and ``master_count``): after a successful create the look-up
is repeated while it finds nothing or a record the rule does not call settled, a few
times within about 1.5 s (``SETTLE``, in the sender thread); the last record found is
used.  Where no record is there (look-ups off, the conductor slower than that, the
resource already gone, the caller not allowed to see it) the event has no such
attachment.  The
content is the record as the API showed it at that moment, not when the service's
conductor sent its own event.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Callable
from urllib import parse

# Pauses (seconds) before asking again for the record of a resource just created
# whose look-up found nothing: bounded, about 1.5 s in all, in the sender thread.
SETTLE = (0.05, 0.1, 0.2, 0.4, 0.8)


@dataclasses.dataclass(frozen=True)
class RecordAttachment:
    name: str           # the attachment's name
    type_uri: str       # the attachment's typeURI
    lookup: str         # API path of the record; {id} is the target id
    fields: tuple       # ((content key, (record keys, the first present wins)), ...)
    times: frozenset = frozenset()   # content keys holding times (naive UTC, %f)
    whole: str = 'status'            # a key only the whole record has ({"uuid"} lacks it)
    # Whether a record just created is complete (else it is looked up again, in SETTLE).
    settled: Callable[[dict], bool] = lambda record: True


def cluster_settled(record: dict) -> bool:
    """Magnum 23's conductor (cluster_conductor.cluster_create) stores the cluster,
    then its master node group, then its worker node group, and saves the cluster
    again only after the driver began the create.  The API requires master_count >= 1
    and allows node_count 0: a record with a worker is complete; one without is
    complete once the conductor saved the cluster again (updated_at set)."""
    master, workers = record.get('master_count'), record.get('node_count')
    if not isinstance(master, int) or master < 1:
        return False
    return (isinstance(workers, int) and workers >= 1) or record.get('updated_at') is not None


# magnum/conductor/utils.py: _get_event_target (Magnum 9.0.0 to 23), in its order.
# At microversion 1.13+ the API shows the Heat stack id as cluster_id, not stack_id.
CLUSTER_DATA = RecordAttachment(
    'cluster_data', 'service/magnum/cluster', '/v1/clusters/{id}',
    (('status', ('status',)), ('status_reason', ('status_reason',)),
     ('project_id', ('project_id',)), ('created_at', ('created_at',)),
     ('updated_at', ('updated_at',)), ('cluster_template_id', ('cluster_template_id',)),
     ('keypair', ('keypair',)),
     ('docker_volume_size:', ('docker_volume_size',)),        # sic, as Magnum sends it
     ('labels', ('labels',)), ('master_flavor_id', ('master_flavor_id',)),
     ('flavor_id', ('flavor_id',)), ('stack_id', ('stack_id', 'cluster_id')),
     ('health_status', ('health_status',)), ('create_timeout', ('create_timeout',)),
     ('api_address', ('api_address',)), ('discovery_url', ('discovery_url',)),
     ('node_addresses', ('node_addresses',)), ('master_addresses', ('master_addresses',)),
     ('node_count', ('node_count',)), ('master_count', ('master_count',))),
    times=frozenset({'created_at', 'updated_at'}), settled=cluster_settled)

ATTACHMENTS = {rule.name: rule for rule in (CLUSTER_DATA,)}


def decorate(facts, rule: RecordAttachment, resource: dict) -> None:
    """Add the record attachment (and the name, when the target has none) to
    ``resource``, a CADF target whose id the route gave; nothing when no record."""
    record = record_for(facts, rule, resource['id'])
    if record is None:
        return
    if 'name' not in resource and isinstance(record.get('name'), str) and record['name']:
        resource['name'] = record['name']
    resource.setdefault('attachments', []).append(
        {'typeURI': rule.type_uri, 'name': rule.name, 'content': content(rule, record)})


def record_for(facts, rule: RecordAttachment, target_id: str) -> dict | None:
    """The target's whole record: the response, a look-up after the call, or the
    record fetched before it; None if none of them is."""
    body = facts.body_json()
    if _whole(body, rule, target_id):
        return body
    path = rule.lookup.format(id=parse.quote(target_id, safe=''))
    record = facts.lookup(path)
    if not _settled(record, rule, target_id) and _just_created(facts):
        for pause in SETTLE:
            time.sleep(pause)
            found = facts.lookup(path, fresh=True)
            if _whole(found, rule, target_id) or not _whole(record, rule, target_id):
                record = found
            if _settled(record, rule, target_id):
                break
    if _whole(record, rule, target_id):
        return record
    prefetched = facts.exchange.prefetched
    if _whole(prefetched, rule, target_id):
        return prefetched
    return None


def content(rule: RecordAttachment, record: dict) -> dict:
    """The attachment's content: every key of the rule, None where the record has
    none of its keys."""
    out = {}
    for key, names in rule.fields:
        value = next((record[name] for name in names if name in record), None)
        if key in rule.times:
            value = service_time(value)
        out[key] = value
    return out


def content_of_object(rule: RecordAttachment, obj) -> dict:
    """The attachment's content from the service's own object (Magnum's Cluster, as
    a conductor hook passes it to notifier.cluster): its attributes, read as Magnum
    reads them (the first name of each key), times as Magnum's events show them."""
    out = {}
    for key, names in rule.fields:
        value = (obj.get(names[0]) if isinstance(obj, dict)
                 else getattr(obj, names[0], None))
        if key in rule.times:
            value = service_time(value)
        out[key] = value
    return out


def service_time(value):
    """An API time (``2026-11-23T14:31:00.919876+00:00``), or a datetime, as a
    service's own event shows it: naive UTC with microseconds (oslo.serialization's
    to_primitive, ``2026-11-23T14:31:00.919876``).  Anything else is kept as it is."""
    if isinstance(value, datetime.datetime):
        when = value
    elif not isinstance(value, str):
        return value
    else:
        try:
            when = datetime.datetime.fromisoformat(value)
        except ValueError:
            return value
    if when.tzinfo is not None:
        when = when.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return when.strftime('%Y-%m-%dT%H:%M:%S.%f')


def _just_created(facts) -> bool:
    """A create the service accepted, whose record may not be stored yet."""
    exchange = facts.exchange
    code = exchange.status_code
    return (facts.lookups and exchange.route.action.startswith('create') and
            code is not None and 200 <= code < 300)


def _settled(doc, rule: RecordAttachment, target_id: str) -> bool:
    return _whole(doc, rule, target_id) and rule.settled(doc)


def _whole(doc, rule: RecordAttachment, target_id: str) -> bool:
    return isinstance(doc, dict) and doc.get('uuid') == target_id and rule.whole in doc
