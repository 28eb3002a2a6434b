"""The event ``headrace replay`` sends carries the upload time the processor recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel

from handlers.models.events import ObjectRef
from headrace.replay import object_created_event


def test_a_replayed_event_keeps_the_upload_time_to_the_millisecond():
    # Given a version recorded as uploaded at .789 of a second (what the metadata item holds)
    uploaded = datetime(2026, 3, 1, 12, 0, 5, 789000, tzinfo=UTC)
    ref = ObjectRef(
        bucket="raw", key="incoming/a.csv", version_id="v2", etag="e", size=3, uploaded_at=uploaded
    )
    # When replay builds its Object Created event, and the processor parses it
    event = json.loads(object_created_event(ref, "eu-west-1", "123456789012"))
    parsed = ObjectRef.from_event(S3EventNotificationEventBridgeModel.model_validate(event))
    # Then the time is not cut to the second: a version uploaded later in the same second
    # would otherwise count as newer than the replayed one
    assert parsed.uploaded_at == uploaded


def test_a_replayed_event_carries_the_recorded_sequencer_or_none():
    # Given versions with and without the S3 sequencer recorded on their metadata items
    uploaded = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    base = {
        "bucket": "raw",
        "key": "incoming/a.csv",
        "version_id": "v2",
        "etag": "e",
        "uploaded_at": uploaded,
    }
    for recorded in ("0062A1F4B03C5E1B00", None):
        ref = ObjectRef(**base, sequencer=recorded)
        # When replay announces it, and the processor parses the event
        event = json.loads(object_created_event(ref, "eu-west-1", "123456789012"))
        parsed = ObjectRef.from_event(S3EventNotificationEventBridgeModel.model_validate(event))
        # Then it has S3's sequencer of that upload, never a made-up one, which would
        # order the version before every other upload of the key
        assert parsed.sequencer == recorded
