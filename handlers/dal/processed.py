"""Reading the processor's outputs (Parquet and summary JSON) from the processed bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .aws import client
from .s3 import get_json, save_body


class OutputMissing(Exception):
    """The Parquet or summary the event points to is not in the processed bucket."""


def download(bucket: str, key: str, target: Path) -> None:
    """Stream the object to ``target`` with one GET, in constant memory (a transfer-manager
    download starts with a HEAD, and a denied HEAD cannot say what was denied)."""
    try:
        save_body(client("s3").get_object(Bucket=bucket, Key=key)["Body"], target)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            raise OutputMissing(f"s3://{bucket}/{key} does not exist") from exc
        raise


def read_json(bucket: str, key: str) -> Any:
    try:
        return get_json(bucket, key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            raise OutputMissing(f"s3://{bucket}/{key} does not exist") from exc
        raise
