"""`amlwh publish` against the local hub with the real SDK on both ends."""

from __future__ import annotations

import asyncio
import collections

import orjson
import pytest

from devstack.sdk_helpers import receive_events
from devstack.synth import generate
from tests.support.cli import amlwh

pytestmark = pytest.mark.integration


def test_publish_keyed_by_subject_keeps_each_run_on_one_partition(tmp_path, local_hub, make_hub):
    hub = make_hub(4)
    bodies = generate(40, seed=4).bodies
    path = tmp_path / "stream.ndjson"
    path.write_bytes(b"\n".join(bodies) + b"\n\n")  # a trailing blank line is not an event
    env = {"AMLWH_EVENTHUB__CONNECTION_STRING": local_hub.connection_string(hub)}
    out = amlwh("publish", str(path), "--partition-key", "subject", env=env).stdout
    assert f"published {len(bodies):,} event(s) to {hub}" in out

    received = asyncio.run(receive_events(local_hub.connection_string(hub), partition_id=None,
                                          expected=len(bodies), timeout=30))
    assert sorted(e.body_as_str() for e in received.events) == sorted(b.decode() for b in bodies)
    partitions_by_subject = collections.defaultdict(set)
    for context, event in zip(received.partition_contexts, received.events):
        doc = orjson.loads(event.body_as_str())
        subject = (doc[0] if isinstance(doc, list) else doc)["subject"]
        partitions_by_subject[subject].add(context.partition_id)
    assert all(len(p) == 1 for p in partitions_by_subject.values())
    assert len(set().union(*partitions_by_subject.values())) > 1  # spread over partitions


def test_publish_without_credentials_says_what_to_set(tmp_path):
    path = tmp_path / "one.ndjson"
    path.write_text("{}\n")
    proc = amlwh("publish", str(path), check=False)
    assert proc.returncode == 2 and "AMLWH_EVENTHUB__CONNECTION_STRING" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_publish_to_a_wrong_key_fails_with_a_message_and_no_secret(tmp_path, local_hub, make_hub):
    hub = make_hub(2)
    bad = local_hub.connection_string(hub).replace("SAS_KEY_VALUE", "WRONG_KEY_123")
    path = tmp_path / "one.ndjson"
    path.write_text('{"id": "1"}\n')
    proc = amlwh("publish", str(path), env={"AMLWH_EVENTHUB__CONNECTION_STRING": bad}, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "WRONG_KEY_123" not in proc.stderr + proc.stdout
