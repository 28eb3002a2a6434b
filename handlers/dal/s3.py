"""Raw objects in, processed objects out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from botocore.exceptions import ClientError

from handlers.models.events import ObjectRef

from .aws import client

_GONE = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}


class ObjectGone(Exception):
    """The object (version) no longer exists: deleted before it could be processed."""


def download(ref: ObjectRef, target: Path) -> str:
    """Stream the object version to ``target`` (constant memory); return the key it was
    found under. Some event producers URL-encode keys (spaces as %20), so a missing key
    that decodes to another is tried decoded."""
    candidates = [ref.key]
    if unquote(ref.key) != ref.key:
        candidates.append(unquote(ref.key))
    extra = {"VersionId": ref.version_id} if ref.version_id else {}
    for key in candidates:
        try:
            client("s3").download_file(ref.bucket, key, str(target), ExtraArgs=extra)
            return key
        except ClientError as exc:
            if _code(exc) not in _GONE:
                raise
    raise ObjectGone(f"s3://{ref.bucket}/{ref.key} (version {ref.version}) no longer exists")


def upload(path: Path, bucket: str, key: str, content_type: str) -> None:
    client("s3").upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})


def put_json(bucket: str, key: str, document: Any) -> None:
    body = json.dumps(document, ensure_ascii=False, indent=1).encode()
    client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_json(bucket: str, key: str) -> Any:
    return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
