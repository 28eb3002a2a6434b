"""The embedded runtime: emulator + PostgreSQL + the deployed program + the executor.

runtime = LocalRuntime(root)
with runtime:                 # start, deploy, serve
    runtime.outputs           # the stack outputs (also in .headrace/local/outputs.json)
# everything stopped, no process left behind
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from .deploy import deploy, merge_config, stub_archive
from .emulator import DEFAULT_API_PORT, DEFAULT_PORT, REGION, Emulator
from .executor import Executor, discover, sandbox_environment
from .postgres import EmbeddedPostgres

log = logging.getLogger("headrace.local")

ADMIN_USER = "headrace-admin"

# The embedded runtime deploys the `local` stack (Pulumi.local.yaml) with these changes:
# short function timeouts (SQS visibility timeouts derive from them, so retries and redrive
# happen in seconds, not minutes) and no batching window (a file is picked up at once), an
# HTTP API for ingest (moto has API Gateway v2), the query catalog (moto has Glue and Athena:
# the processor keeps its tables there; moto runs no SQL, so `headrace query` uses DuckDB),
# and the embedded PostgreSQL as warehouse.
EMBEDDED_CONFIG: dict[str, Any] = {
    "headrace:functions": {
        "processor": {
            "timeout_seconds": 10,
            "batching_window_seconds": 0,
            "batch_size": 10,
            "max_concurrency": 2,
        },
        "loader": {"timeout_seconds": 30, "batching_window_seconds": 0, "max_concurrency": 2},
        "ingest_worker": {
            "timeout_seconds": 10,
            "batching_window_seconds": 0,
            "batch_size": 10,
            "max_concurrency": 2,
        },
        "report": {"timeout_seconds": 60},
    },
    "headrace:ingest": {"endpoint": "http_api"},
    "headrace:catalog": {"enabled": True},
}


class LocalRuntime:
    def __init__(
        self,
        root: Path,
        state_dir: Path | None = None,
        port: int = DEFAULT_PORT,
        api_port: int = DEFAULT_API_PORT,
        on_invocation: Callable[[str], None] | None = None,
        overrides: dict[str, Any] | None = None,
    ):
        self.root = root.resolve()
        self.state_dir = (state_dir or self.root / ".headrace" / "local").resolve()
        self.emulator = Emulator(port=port, log_path=self.state_dir / "logs" / "emulator.log")
        self.api_port = api_port
        self.on_invocation = on_invocation
        self.overrides = overrides or {}
        self.postgres: EmbeddedPostgres | None = None
        self.executor: Executor | None = None
        self.outputs: dict[str, Any] = {}
        self.relaxed: list[str] = []
        self.credentials = ("test", "test")

    @property
    def outputs_path(self) -> Path:
        return self.state_dir / "outputs.json"

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.emulator.endpoint,
            region_name=REGION,
            aws_access_key_id=self.credentials[0],
            aws_secret_access_key=self.credentials[1],
            config=Config(retries={"mode": "standard"}),
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LocalRuntime:
        # Every run starts empty, like the emulator: no data from an earlier run.
        for stale in ("logs", "scratch"):
            shutil.rmtree(self.state_dir / stale, ignore_errors=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self.emulator.start()
            log.info("AWS emulator on %s", self.emulator.endpoint)
            # its own temporary directory: reachable by the account PostgreSQL runs as
            self.postgres = EmbeddedPostgres()
            self.postgres.start()
            log.info("PostgreSQL on %s:%s", self.postgres.host, self.postgres.port)
            self.credentials = self._admin_credentials()
            self.outputs = self._deploy()
            deployment = discover(self.client)
            self.executor = Executor(
                deployment,
                sandbox_env=lambda spec: sandbox_environment(
                    spec, self.emulator.endpoint, REGION, self.credentials, self.state_dir / "scratch"
                ),
                client=self.client,
                region=REGION,
                root=self.root,
                log_dir=self.state_dir / "logs",
                api_port=self.api_port,
                on_invocation=self.on_invocation,
            )
            if self.executor.api:
                self.outputs["ingest_api_url"] = self.executor.api.url
            self.executor.start()
            self.outputs_path.write_text(json.dumps(self.outputs, indent=2, sort_keys=True) + "\n")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.stop()
            self.executor = None
        if self.postgres is not None:
            self.postgres.cleanup()
            self.postgres = None
        self.emulator.stop()
        self.outputs_path.unlink(missing_ok=True)

    def __enter__(self) -> LocalRuntime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ pieces
    def _admin_credentials(self) -> tuple[str, str]:
        """The administrator identity tools and tests use (README "Embedded runtime")."""
        iam = self.client("iam")
        iam.create_user(UserName=ADMIN_USER)
        iam.put_user_policy(
            UserName=ADMIN_USER,
            PolicyName="administrator",
            PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
            ),
        )
        key = iam.create_access_key(UserName=ADMIN_USER)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def _deploy(self) -> dict[str, Any]:
        assert self.postgres is not None
        overrides = merge_config(
            EMBEDDED_CONFIG,
            {
                "headrace:warehouse": {
                    "mode": "external",
                    "external": {
                        "host": self.postgres.host,
                        "port": self.postgres.port,
                        "dbname": self.postgres.dbname,
                        "username": self.postgres.username,
                    },
                },
                "headrace:db_password": self.postgres.password,
            },
        )
        archive = self.state_dir / "placeholder-package.zip"
        archive.write_bytes(stub_archive())
        outputs = deploy(
            self.root,
            self.client,
            REGION,
            stack="local",
            overrides=merge_config(overrides, self.overrides),
            archive=archive,
            relaxed=self.relaxed,
        )
        (self.state_dir / "relaxed-policies.txt").write_text("".join(f"{line}\n" for line in self.relaxed))
        outputs.update(
            {
                "region": REGION,
                "aws_endpoint_url": self.emulator.endpoint,
                "aws_access_key_id": self.credentials[0],
                "aws_secret_access_key": self.credentials[1],
            }
        )
        return outputs
