"""Events the pipeline publishes on its EventBridge bus."""

from __future__ import annotations

from handlers.models.events import FILE_PROCESSED_DETAIL_TYPE, FILE_PROCESSED_SOURCE, FileProcessed

from .aws import client


class PublishFailed(Exception):
    pass


def publish_file_processed(bus: str, event: FileProcessed) -> None:
    response = client("events").put_events(
        Entries=[
            {
                "Source": FILE_PROCESSED_SOURCE,
                "DetailType": FILE_PROCESSED_DETAIL_TYPE,
                "Detail": event.model_dump_json(),
                "EventBusName": bus,
                "Resources": [f"arn:aws:s3:::{event.bucket}/{event.object_key}"],
            }
        ]
    )
    if response.get("FailedEntryCount"):
        entry = response["Entries"][0]
        raise PublishFailed(
            f"EventBridge rejected the event: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
        )
