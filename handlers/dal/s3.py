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


def locate(ref: ObjectRef) -> tuple[str, str | None]:
    """(the key the object really has, its current version id — None when unversioned).

    Some event producers URL-encode keys (spaces as %20): a key that is missing but decodes
    to another is tried decoded. Raises ObjectGone when the key was deleted (no object, or
    a delete marker on top)."""
    candidates = [ref.key] + ([unquote(ref.key)] if unquote(ref.key) != ref.key else [])
    for key in candidates:
        try:
            head = client("s3").head_object(Bucket=ref.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _GONE:
                continue
            if _code(exc) == "403":  # a HEAD answer has no body, so S3 cannot say why
                raise ClientError(
                    {
                        "Error": {
                            "Code": "AccessDenied",
                            "Message": f"HeadObject on arn:aws:s3:::{ref.bucket}/{key} answered 403: the role "
                            "lacks s3:GetObject on it, or s3:ListBucket on the bucket (S3 gives no reason for a HEAD)",
                        }
                    },
                    "HeadObject",
                ) from exc
            raise
        version = head.get("VersionId")
        return key, None if version in (None, "null") else version
    raise ObjectGone(f"s3://{ref.bucket}/{ref.key} was deleted")


def download(ref: ObjectRef, target: Path) -> None:
    """Stream the object version to ``target`` (constant memory)."""
    extra = {"VersionId": ref.version_id} if ref.version_id else {}
    try:
        client("s3").download_file(ref.bucket, ref.key, str(target), ExtraArgs=extra)
    except ClientError as exc:
        if _code(exc) in _GONE:
            raise ObjectGone(f"s3://{ref.bucket}/{ref.key} (version {ref.version}) no longer exists") from exc
        raise


def upload(path: Path, bucket: str, key: str, content_type: str) -> None:
    client("s3").upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})


def put_json(bucket: str, key: str, document: Any) -> None:
    body = json.dumps(document, ensure_ascii=False, indent=1).encode()
    client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_json(bucket: str, key: str) -> Any:
    return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def delete(bucket: str, keys: list[str]) -> None:
    """Delete ``keys``; S3 reports a key it could not delete (a denied one, say) in an
    otherwise successful answer, which is raised here."""
    if not keys:
        return
    response = client("s3").delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
    )
    for error in response.get("Errors", []):
        raise ClientError(
            {
                "Error": {
                    "Code": error["Code"],
                    "Message": f"{error['Message']} (s3://{bucket}/{error['Key']})",
                }
            },
            "DeleteObjects",
        )
