"""What a month of files would cost on AWS, from measured durations and the deployed
configuration. Pure arithmetic: the report feeds it what the experiments measured.

Prices are public **list prices for us-east-1 as assumed in November 2026**, without free
tiers, savings plans or volume tiers. Verify them on the AWS pricing pages before relying
on the figures; every one is written next to the estimate.

Requests per file (the code paths of ``handlers/``; boto3's ``upload_file`` is single-part
below 8 MiB; reads are single streamed GETs of any size):

- S3 PUT class: the client's upload (1), the processor's Parquet and summary (2). Above
  8 MiB an upload is multipart: create + one part per 8 MiB + complete.
- S3 GET class (GET and HEAD): processor 1 GET (the current object: its version and its
  bytes) + 1 HEAD (the "newer version meanwhile?" check); loader 1 GET for the Parquet and
  1 for the summary.
- SQS: processing queue and load queue each SendMessage 1 (EventBridge target) +
  ReceiveMessage and DeleteMessageBatch once per batch (Lambda's poller).
- EventBridge: the S3 "Object Created" event on the default bus is an AWS service event
  (free); the "File Processed" event on the custom bus is one custom event.
- DynamoDB (on demand; a write costs 1 WRU per started KB of the larger of the item's old
  and new size, an eventually consistent read 0.5 RRU per started 4 KB): metadata item
  received, processing, completed (processor) and loaded (loader) updates; the ``by_day``
  index projects ALL attributes, so each of those writes is written again to the index;
  the completed update also writes the version's keys-only ``by_completion`` entry (1 WRU;
  no other update changes its attributes);
  the idempotency record: put (in progress) + update (completed); reads: the processor's
  query of the key's versions and the loader's ``uploaded_at`` lookup.
- Lambda: one processor and one loader invocation per file unless batches fill (files
  per invocation are parameters); billed duration x configured memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MULTIPART_CHUNK = 8 * 1024 * 1024  # boto3's default multipart threshold and part size
KB = 1024


@dataclass(frozen=True)
class Prices:
    """USD, us-east-1 list prices (assumed November 2026; verify)."""

    as_of: str = "2026-11 (assumed list prices, us-east-1; verify on the AWS pricing pages)"
    lambda_gb_second_x86: float = 0.0000166667
    lambda_gb_second_arm: float = 0.0000133334
    lambda_per_million_requests: float = 0.20
    sqs_per_million_requests: float = 0.40  # standard queue, per 64 KB chunk
    s3_put_per_thousand: float = 0.005  # PUT, COPY, POST, LIST
    s3_get_per_thousand: float = 0.0004  # GET, SELECT, HEAD and all other requests
    s3_gb_month: float = 0.023  # S3 Standard, first 50 TB
    ddb_per_million_wru: float = 0.625  # on-demand write request units
    ddb_per_million_rru: float = 0.125  # on-demand read request units
    eventbridge_per_million_custom: float = 1.00  # custom events; AWS service events are free
    logs_per_gb_ingested: float = 0.50  # CloudWatch Logs
    # fixed monthly costs (not per file), 730 hours a month
    rds_t4g_micro_hour: float = 0.016  # PostgreSQL, single-AZ, on demand
    rds_gp3_gb_month: float = 0.115
    interface_endpoint_hour: float = 0.01  # per endpoint per AZ
    secret_month: float = 0.40

    def gb_second(self, architecture: str) -> float:
        return self.lambda_gb_second_arm if architecture == "arm64" else self.lambda_gb_second_x86


@dataclass(frozen=True)
class Workload:
    """A month of files of one size, with what the experiments measured for that size."""

    monthly_files: int
    file_bytes: float
    processor_ms: float  # billed duration per file
    processor_memory_mb: int
    loader_ms: float
    loader_memory_mb: int
    item_bytes: float  # the completed metadata item
    parquet_bytes: float = 0.0
    processor_files_per_invocation: float = 1.0
    loader_files_per_invocation: float = 1.0
    processor_architecture: str = "arm64"  # arm64 | x86_64: each priced at its own GB-s rate
    loader_architecture: str = "arm64"
    log_bytes_per_file: float = 2048.0  # assumed: a few structured log lines per invocation


@dataclass(frozen=True)
class Requests:
    """Billable requests per file."""

    s3_put: float
    s3_get: float
    sqs: float
    eventbridge_custom: float
    ddb_wru: float
    ddb_rru: float
    lambda_invocations: float


@dataclass(frozen=True)
class CostLine:
    service: str
    item: str
    quantity: float
    unit: str
    unit_price: float
    monthly_usd: float


@dataclass
class Estimate:
    workload: Workload
    requests: Requests
    lines: list[CostLine] = field(default_factory=list)

    @property
    def total(self) -> float:
        return math.fsum(line.monthly_usd for line in self.lines)

    @property
    def per_thousand_files(self) -> float:
        return self.total / self.workload.monthly_files * 1000 if self.workload.monthly_files else 0.0


def parts(size: float) -> int:
    """Requests boto3 makes to move an object of ``size`` bytes (one below 8 MiB)."""
    return max(1, math.ceil(size / MULTIPART_CHUNK))


def requests_per_file(w: Workload) -> Requests:
    upload_parts = parts(w.file_bytes)
    upload = 1 if upload_parts == 1 else upload_parts + 2
    parquet_parts = parts(w.parquet_bytes)
    parquet_put = 1 if parquet_parts == 1 else parquet_parts + 2
    s3_put = upload + parquet_put + 1  # + the summary JSON
    s3_get = 2 + 2  # processor GET + HEAD; loader GET Parquet + GET summary
    sqs_queue = 1 + 2 / w.processor_files_per_invocation  # processing queue
    sqs_load = 1 + 2 / w.loader_files_per_invocation
    item_kb = max(1, math.ceil(w.item_bytes / KB))
    # received (<1 KB), processing (<1 KB), completed and loaded (the whole item) — base table and by_day
    # index; + the completed update's by_completion entry (keys only, <1 KB)
    metadata_wru = (1 + 1 + item_kb + item_kb) * 2 + 1
    idempotency_wru = 2
    reads = 0.5 * math.ceil(w.item_bytes / (4 * KB)) * 2
    return Requests(
        s3_put=s3_put,
        s3_get=s3_get,
        sqs=sqs_queue + sqs_load,
        eventbridge_custom=1,
        ddb_wru=metadata_wru + idempotency_wru,
        ddb_rru=reads,
        lambda_invocations=1 / w.processor_files_per_invocation + 1 / w.loader_files_per_invocation,
    )


def estimate(w: Workload, prices: Prices | None = None) -> Estimate:
    p = prices or Prices()
    r = requests_per_file(w)
    n = w.monthly_files
    processor_gb_second = p.gb_second(w.processor_architecture)
    loader_gb_second = p.gb_second(w.loader_architecture)
    processor_gbs = n * (w.processor_ms / 1000) * (w.processor_memory_mb / 1024)
    loader_gbs = n * (w.loader_ms / 1000) * (w.loader_memory_mb / 1024)
    lines = [
        CostLine(
            "Lambda",
            f"processor compute ({w.processor_memory_mb} MB, {w.processor_ms:.0f} ms/file, {w.processor_architecture})",
            processor_gbs,
            "GB-s",
            processor_gb_second,
            processor_gbs * processor_gb_second,
        ),
        CostLine(
            "Lambda",
            f"loader compute ({w.loader_memory_mb} MB, {w.loader_ms:.0f} ms/file, {w.loader_architecture})",
            loader_gbs,
            "GB-s",
            loader_gb_second,
            loader_gbs * loader_gb_second,
        ),
        CostLine(
            "Lambda",
            "requests (processor + loader invocations)",
            n * r.lambda_invocations,
            "requests",
            p.lambda_per_million_requests / 1e6,
            n * r.lambda_invocations * p.lambda_per_million_requests / 1e6,
        ),
        CostLine(
            "SQS",
            "send, receive, delete (processing + load queues)",
            n * r.sqs,
            "requests",
            p.sqs_per_million_requests / 1e6,
            n * r.sqs * p.sqs_per_million_requests / 1e6,
        ),
        CostLine(
            "S3",
            "PUT class (upload, Parquet, summary)",
            n * r.s3_put,
            "requests",
            p.s3_put_per_thousand / 1000,
            n * r.s3_put * p.s3_put_per_thousand / 1000,
        ),
        CostLine(
            "S3",
            "GET class (HEAD + GET, processor and loader)",
            n * r.s3_get,
            "requests",
            p.s3_get_per_thousand / 1000,
            n * r.s3_get * p.s3_get_per_thousand / 1000,
        ),
        CostLine(
            "S3",
            "storage of one month's raw files + Parquet (first month)",
            n * (w.file_bytes + w.parquet_bytes) / 1e9,
            "GB-month",
            p.s3_gb_month,
            n * (w.file_bytes + w.parquet_bytes) / 1e9 * p.s3_gb_month,
        ),
        CostLine(
            "DynamoDB",
            "on-demand writes (metadata + by_day and by_completion indexes + idempotency)",
            n * r.ddb_wru,
            "WRU",
            p.ddb_per_million_wru / 1e6,
            n * r.ddb_wru * p.ddb_per_million_wru / 1e6,
        ),
        CostLine(
            "DynamoDB",
            "on-demand reads",
            n * r.ddb_rru,
            "RRU",
            p.ddb_per_million_rru / 1e6,
            n * r.ddb_rru * p.ddb_per_million_rru / 1e6,
        ),
        CostLine(
            "EventBridge",
            '"File Processed" custom events (S3 events on the default bus are free)',
            n * r.eventbridge_custom,
            "events",
            p.eventbridge_per_million_custom / 1e6,
            n * r.eventbridge_custom * p.eventbridge_per_million_custom / 1e6,
        ),
        CostLine(
            "CloudWatch Logs",
            f"ingestion (assumed {w.log_bytes_per_file / 1024:.0f} KB of logs per file)",
            n * w.log_bytes_per_file / 1e9,
            "GB",
            p.logs_per_gb_ingested,
            n * w.log_bytes_per_file / 1e9 * p.logs_per_gb_ingested,
        ),
    ]
    return Estimate(workload=w, requests=r, lines=lines)


def fixed_monthly(prices: Prices | None = None, az_count: int = 2, rds_gb: int = 20) -> list[CostLine]:
    """Costs that do not depend on the number of files (the dev stack's defaults)."""
    p = prices or Prices()
    hours = 730
    return [
        CostLine(
            "RDS",
            "db.t4g.micro PostgreSQL, single-AZ",
            hours,
            "hours",
            p.rds_t4g_micro_hour,
            hours * p.rds_t4g_micro_hour,
        ),
        CostLine(
            "RDS",
            f"{rds_gb} GB gp3 storage",
            rds_gb,
            "GB-month",
            p.rds_gp3_gb_month,
            rds_gb * p.rds_gp3_gb_month,
        ),
        CostLine(
            "VPC",
            f"Secrets Manager interface endpoint in {az_count} AZs",
            hours * az_count,
            "endpoint-hours",
            p.interface_endpoint_hour,
            hours * az_count * p.interface_endpoint_hour,
        ),
        CostLine("Secrets Manager", "database secret", 1, "secret-month", p.secret_month, p.secret_month),
    ]
