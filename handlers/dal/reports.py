"""Where the report goes: the reports bucket, a presigned link, the alerts topic; and the
depths of the queues it mentions (the processing queue and the DLQs)."""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from .aws import client
from .queues import message_counts


def report_keys(day: str) -> tuple[str, str]:
    """``reports/YYYY-MM-DD/report.html`` and ``report.json`` (README, a public contract)."""
    return f"reports/{day}/report.html", f"reports/{day}/report.json"


def put_report(bucket: str, day: str, html: str, document: dict[str, Any]) -> None:
    """Write (overwrite) both objects of ``day``'s report (``report_keys``)."""
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


@cache
def _signing_client() -> Any:
    # SigV4 explicitly: required for KMS-encrypted objects, and the only version valid 7 days.
    if os.environ.get("AWS_ENDPOINT_URL"):  # LocalStack, the embedded runtime: as configured
        return boto3.client("s3", config=Config(signature_version="s3v4"))
    # On AWS, the bucket's regional host (https://<bucket>.s3.<region>.amazonaws.com/). boto3
    # signs for the global host by default, which redirects (307) for buckets in opt-in
    # regions and for new buckets, and the signature then no longer matches (boto3 #2989).
    return boto3.client(
        "s3",
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"},
        ),
    )


def presigned_link(bucket: str, key: str, ttl_seconds: int) -> str:
    return str(
        _signing_client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
    )


def publish(topic_arn: str, subject: str, message: str) -> str:
    response = client("sns").publish(TopicArn=topic_arn, Subject=subject, Message=message)
    return str(response["MessageId"])


def queue_depth(queue_url: str, *, in_flight: bool = True) -> int:
    """Messages waiting, and those in flight unless ``in_flight`` is False."""
    waiting, received = message_counts(queue_url)
    return waiting + (received if in_flight else 0)
