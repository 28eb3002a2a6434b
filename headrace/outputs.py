"""Stack outputs files: the one way every tool finds a stack (README "Stack outputs").

The same file shape comes from ``pulumi stack output --json`` (AWS, LocalStack) and from
the embedded runtime (``.headrace/local/outputs.json``, which adds the endpoint and the
credentials tools should use against it).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ProfileNotFound
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

# where `headrace local up` writes them (under the checkout, wherever the command runs from)
DEFAULT_LOCAL_OUTPUTS = Path(__file__).resolve().parents[1] / ".headrace" / "local" / "outputs.json"

# In an embedded runtime's state directory, beside its outputs.json: held (flock) by the
# runtime serving from it, for as long as it runs.
RUNTIME_LOCK_FILE = "runtime.lock"


def stopped_runtime(path: Path) -> str | None:
    """Why ``path``, the outputs file of an embedded runtime, is stale: the runtime that
    wrote it no longer runs (killed without its cleanup, which removes the file). None for
    a file no runtime wrote (a deployed stack's) and for one of a runtime running now."""
    lock_path = path.resolve().parent / RUNTIME_LOCK_FILE
    if path.name != "outputs.json" or not lock_path.exists():
        return None
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # refused while a runtime holds it
    except BlockingIOError:
        return None
    finally:
        os.close(fd)  # releases the probe's lock at once
    return (
        f"the embedded runtime that wrote {path} is not running (it stopped without "
        "removing the file: killed?); start it with `headrace local up`"
    )


# What `pulumi stack output --json` prints in place of a secret output's value.
SECRET_PLACEHOLDER = "[secret]"

# The client of a synchronous Lambda Invoke: one attempt, read for longer than Lambda's
# longest run (900 s) and the embedded runtime's 60 s margin beyond a function's timeout.
# botocore retries a read timeout or a dropped connection, which would run the function again.
INVOKE_CLIENT: dict[str, Any] = {
    "read_timeout": 1000,
    "retries": {"mode": "standard", "total_max_attempts": 1},
}


class DocstringHelp(argparse.RawDescriptionHelpFormatter):
    """Shows a command's module docstring as its ``--help`` description: as written, line
    breaks kept, without the double backticks that mark code in reStructuredText."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return super()._fill_text(text.replace("``", ""), width, indent)


def add_outputs_option(parser: argparse.ArgumentParser) -> None:
    """``--outputs PATH``, as every command that talks to a stack takes it."""
    parser.add_argument(
        "--outputs",
        type=Path,
        default=DEFAULT_LOCAL_OUTPUTS,
        metavar="PATH",
        help=f"stack outputs file (pulumi stack output --json; default {DEFAULT_LOCAL_OUTPUTS})",
    )


class OutputsError(Exception):
    pass


# The codes by which SQS (its query and JSON protocols) and DynamoDB say that the queue or
# table a request names does not exist.
MISSING_RESOURCE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "ResourceNotFoundException"}
)


@contextmanager
def naming(what: str) -> Iterator[None]:
    """Calls on ``what``, one of the stack's resources ("the load DLQ (load_dlq_url: https://...)"):
    should the service say it does not exist, an :class:`OutputsError` naming it instead (the
    service's own message names neither the queue nor the table)."""
    try:
        yield
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code", "")) not in MISSING_RESOURCE_CODES:
            raise
        raise OutputsError(
            f"{what} does not exist (an outputs file of another stack, or one destroyed since?)"
        ) from exc


class StackOutputs(BaseModel):
    """Documented outputs; anything else the stack exports is kept in ``model_extra``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    raw_bucket: str
    processed_bucket: str
    reports_bucket: str
    processing_queue_url: str
    processing_dlq_url: str
    load_queue_url: str
    load_dlq_url: str
    metadata_table: str
    db_secret_arn: str
    alerts_topic_arn: str
    ingest_api_url: str
    region: str
    raw_prefix: str = "incoming/"
    raw_suffixes: tuple[str, ...] | None = None  # None: a stack from before the output
    # embedded runtime and LocalStack (added to `pulumi stack output --json` by make e2e-local)
    aws_endpoint_url: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    # Where this machine reaches the warehouse, when not at the secret's host and port:
    # on LocalStack the secret names host.docker.internal, for the Lambda containers.
    warehouse_host: str | None = None
    warehouse_port: int | None = None

    @classmethod
    def load(cls, path: Path | str) -> StackOutputs:
        path = Path(path)
        try:
            # bytes: JSON's own encodings, with or without a byte order mark, as Windows
            # writes them (PowerShell 5's `pulumi stack output --json > outputs.json`: UTF-16)
            text = path.read_bytes()
            # a byte order mark alone is empty too (what a Windows shell's redirect writes)
            if not text.decode(json.detect_encoding(text), errors="replace").strip():
                raise OutputsError(
                    f"{path}: empty (did the `pulumi stack output --json > {path}` that wrote it fail?)"
                )
            data = json.loads(text)
        except FileNotFoundError as exc:
            if path.resolve() == DEFAULT_LOCAL_OUTPUTS.resolve():  # the runtime's own, private file
                raise OutputsError(
                    f"the embedded runtime is not running (no {path}): start it with `headrace local up`, "
                    "or pass --outputs PATH for a deployed stack"
                ) from exc
            raise OutputsError(f"{path}: no such outputs file (pulumi stack output --json > {path})") from exc
        except OSError as exc:  # a directory, no permission, an I/O error: a line, not a traceback
            raise OutputsError(f"{path}: cannot read the outputs file: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise OutputsError(f"{path}: not JSON: {exc}") from exc
        if (stale := stopped_runtime(path)) is not None:  # its endpoint is gone: say why
            raise OutputsError(stale)
        if not isinstance(data, dict):  # validation would list no field at all
            raise OutputsError(
                f"{path}: not a headrace stack outputs file (it must hold a JSON object of outputs, "
                "as pulumi stack output --json prints)"
            )
        hidden = sorted(name for name, value in data.items() if value == SECRET_PLACEHOLDER)
        if hidden:  # otherwise "[secret]" would be taken for a bucket name, a queue URL...
            raise OutputsError(
                f"{path}: {', '.join(hidden)} shown as {SECRET_PLACEHOLDER!r}: pulumi stack output --json "
                "hides secret outputs; write the file with pulumi stack output --json --show-secrets"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            missing = [".".join(map(str, e["loc"])) for e in errors if e["type"] == "missing"]
            invalid = [
                f"{'.'.join(map(str, e['loc']))} ({e['msg'].removeprefix('Value error, ')})"
                for e in errors
                if e["type"] != "missing"
            ]
            problems = ([f"missing: {', '.join(missing)}"] if missing else []) + (
                [f"invalid: {'; '.join(invalid)}"] if invalid else []
            )
            raise OutputsError(f"{path}: not a headrace stack outputs file ({'; '.join(problems)})") from exc

    @field_validator("aws_endpoint_url")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        """boto3 takes an endpoint only with its scheme: "localhost:4566" would be a
        ValueError, and a traceback, at each command's first client."""
        if value and not re.fullmatch(r"https?://[^/\s]+(/\S*)?", value):  # "": none
            raise ValueError(f"must be a URL such as http://localhost:4566, not {value!r}")
        return value

    def get(self, name: str) -> Any:
        """An output by name, including outputs beyond the documented ones."""
        value = getattr(self, name, None)
        if value is None and self.model_extra:
            value = self.model_extra.get(name)
        if value is None:
            raise OutputsError(f"the stack has no output {name!r}")
        return value

    def session(self) -> boto3.Session:
        if self.aws_access_key_id:
            return boto3.Session(
                aws_access_key_id=self.aws_access_key_id,
                aws_secret_access_key=self.aws_secret_access_key,
                region_name=self.region,
            )
        try:
            return boto3.Session(region_name=self.region)
        except ProfileNotFound as exc:  # AWS_PROFILE names no profile: before any client
            raise OutputsError(f"no AWS credentials for the stack: {exc}") from exc

    def client(self, service: str, **config: Any) -> Any:
        """A client of the stack's endpoint; ``config``: botocore ``Config`` options over
        the defaults (standard retries)."""
        kwargs: dict[str, Any] = {"config": Config(retries={"mode": "standard"}).merge(Config(**config))}
        if self.aws_endpoint_url:
            kwargs["endpoint_url"] = self.aws_endpoint_url
        return self.session().client(service, **kwargs)  # type: ignore[call-overload]

    def connect_warehouse(self, **options: Any) -> Any:
        """A psycopg connection to the warehouse with the pipeline's own secret (the network
        must reach the database: embedded runtime and LocalStack yes; RDS only from its VPC)."""
        import psycopg

        secret = json.loads(
            self.client("secretsmanager").get_secret_value(SecretId=self.db_secret_arn)["SecretString"]
        )
        return psycopg.connect(
            host=self.warehouse_host or secret["host"],
            port=self.warehouse_port or secret["port"],
            dbname=secret["dbname"],
            user=secret["username"],
            password=secret["password"],
            **options,
        )

    def resource(self, service: str, **config: Any) -> Any:
        """A resource of the stack's endpoint; ``config``: botocore ``Config`` options."""
        kwargs: dict[str, Any] = {"config": Config(**config)} if config else {}
        if self.aws_endpoint_url:
            kwargs["endpoint_url"] = self.aws_endpoint_url
        return self.session().resource(service, **kwargs)  # type: ignore[call-overload]
