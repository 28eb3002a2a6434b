"""Where the report goes: the reports bucket, a presigned link, the alerts topic; and the
processing queue's backlog it mentions."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from .aws import client
from .queues import message_counts


def report_keys(day: str) -> tuple[str, str]:
    """``reports/YYYY-MM-DD/report.html`` and ``report.json`` (README, a public contract)."""
    return f"reports/{day}/report.html", f"reports/{day}/report.json"


def put_report(bucket: str, day: str, html: str, document: dict[str, Any]) -> tuple[str, str]:
    """Write (overwrite) both objects of ``day``'s report; return their keys."""
    html_key, json_key = report_keys(day)
    s3 = client("s3")
    s3.put_object(
        Bucket=bucket,
        Key=json_key,
        Body=json.dumps(document, indent=1, ensure_ascii=False).encode(),
        ContentType="application/json",
    )
    s3.put_object(
        Bucket=bucket,
        Key=html_key,
        Body=html.encode(),
        ContentType="text/html; charset=utf-8",
        CacheControl="no-cache",
    )
    return html_key, json_key


@cache
def _signing_client() -> Any:
    # SigV4 explicitly: required for KMS-encrypted objects, and the only version valid 7 days.
    return boto3.client("s3", config=Config(signature_version="s3v4"))


def presigned_link(bucket: str, key: str, ttl_seconds: int) -> str:
    return str(
        _signing_client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
    )


def publish(topic_arn: str, subject: str, message: str) -> str:
    response = client("sns").publish(TopicArn=topic_arn, Subject=subject, Message=message)
    return str(response["MessageId"])


def queue_depth(queue_url: str) -> int:
    """Messages waiting or in flight."""
    return sum(message_counts(queue_url))
