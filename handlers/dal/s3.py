"""Raw objects in, processed objects out."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

from botocore.exceptions import ClientError

from handlers.models.events import ObjectRef

from .aws import client, download_client

_GONE = {"NoSuchKey", "NoSuchVersion", "404", "NotFound"}
CHUNK_BYTES = 1024 * 1024


class ObjectGone(Exception):
    """The object (version) no longer exists: deleted before it could be processed."""


def _spellings(key: str) -> list[str]:
    """The key as the event spells it, then decoded: some event producers URL-encode keys,
    with a space as %20 or, as S3's own notifications do, as '+' (``my+file.csv`` for
    ``my file.csv``, ``c%2B%2B.csv`` for ``c++.csv``)."""
    spellings = [key]
    for decoded in (unquote(key), unquote_plus(key)):
        if decoded not in spellings:
            spellings.append(decoded)
    return spellings


def _current(version: str | None) -> str | None:
    return None if version in (None, "null") else version


def _first_spelling(ref: ObjectRef, request: Callable[[str], Any]) -> tuple[str, dict[str, Any]]:
    """``request(key)`` (a HEAD or GET answer) for the spelling of ``ref``'s key whose
    current object is the event's (its version or ETag), else for the key as spelled, if it
    exists (a newer version of it: the event is stale). A decoded spelling counts only when
    it is the event's object: a key that really contains "%20" or "+" may have been deleted,
    or overwritten, while the key it decodes to exists. Raises ObjectGone when no spelling
    exists (no object, or a delete marker on top)."""
    as_spelled: tuple[str, dict[str, Any]] | None = None
    try:
        for key in _spellings(ref.key):
            try:
                response = request(key)
            except ClientError as exc:
                if error_code(exc) not in _GONE:
                    raise
                continue
            if _is_event_object(ref, response):
                if as_spelled is not None:
                    _close(as_spelled[1])
                return key, response
            if key == ref.key:
                as_spelled = (key, response)
            else:
                _close(response)
    except BaseException:
        if as_spelled is not None:
            _close(as_spelled[1])
        raise
    if as_spelled is not None:
        return as_spelled
    raise ObjectGone(f"s3://{ref.bucket}/{ref.key} was deleted")


def _close(response: dict[str, Any]) -> None:
    body = response.get("Body")
    if body is not None and hasattr(body, "close"):
        body.close()


def _etag(response: dict[str, Any]) -> str:
    return str(response.get("ETag", "")).strip('"')


def _is_event_object(ref: ObjectRef, response: dict[str, Any]) -> bool:
    if ref.version_id:
        return _current(response.get("VersionId")) == ref.version_id
    if ref.etag:
        return _etag(response) == ref.etag
    return True


def locate(ref: ObjectRef) -> tuple[str, str | None, str]:
    """(the key the object really has, its current version id — None when unversioned —,
    its ETag). Raises ObjectGone when the key was deleted."""
    try:
        key, head = _first_spelling(ref, lambda key: client("s3").head_object(Bucket=ref.bucket, Key=key))
    except ClientError as exc:
        if error_code(exc) == "403":  # a HEAD answer has no body, so S3 cannot say why
            raise ClientError(
                {
                    "Error": {
                        "Code": "AccessDenied",
                        "Message": f"HeadObject on arn:aws:s3:::{ref.bucket}/{ref.key} answered 403: the role "
                        "lacks s3:GetObject on it, or s3:ListBucket on the bucket (S3 gives no reason for a HEAD)",
                    }
                },
                "HeadObject",
            ) from exc
        raise
    return key, _current(head.get("VersionId")), _etag(head)


@dataclass(frozen=True)
class CurrentObject:
    """The key's current object, as one GET answered it (the body not read yet)."""

    key: str  # the key the object really has
    version: str | None  # its version id, None when unversioned
    body: Any  # botocore's StreamingBody
    size: int | None = None  # bytes, as the GET answered (ContentLength)
    etag: str = ""  # without its quotes


@contextmanager
def open_current(ref: ObjectRef) -> Iterator[CurrentObject]:
    """What :func:`locate` tells, and the object's body, from one GET.
    Raises ObjectGone when the key was deleted."""
    key, response = _first_spelling(ref, lambda key: download_client().get_object(Bucket=ref.bucket, Key=key))
    body = response["Body"]
    try:
        yield CurrentObject(
            key, _current(response.get("VersionId")), body, response.get("ContentLength"), _etag(response)
        )
    finally:
        body.close()


def save_body(body: Any, target: Path, between_chunks: Callable[[], None] = lambda: None) -> None:
    """Stream a GET's body to ``target`` (constant memory), calling ``between_chunks``
    after each chunk (a deadline check may raise there to stop the download)."""
    with target.open("wb") as out:
        for chunk in body.iter_chunks(CHUNK_BYTES):
            out.write(chunk)
            between_chunks()


def upload(path: Path, bucket: str, key: str, content_type: str) -> None:
    client("s3").upload_file(str(path), bucket, key, ExtraArgs={"ContentType": content_type})


def put_json(bucket: str, key: str, document: Any) -> None:
    body = json.dumps(document, ensure_ascii=False, indent=1).encode()
    client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")


def get_json(bucket: str, key: str) -> Any:
    return json.loads(client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def error_code(exc: ClientError) -> str:
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
