"""The stack configuration: one validated model of the ``headrace:`` config namespace.

``__main__.py`` reads it once (:func:`load_config`) and passes the model down; components
never read configuration themselves. Every key is documented in ``docs/deploy.md``, and so
are the few keys of the ``aws:`` namespace the program honours (:func:`load_aws_settings`).

Validation errors name the offending key the way ``pulumi config set`` spells it, e.g.
``headrace:functions.processor.timeout_seconds: must be ≤ 900``.
"""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from types import UnionType
from typing import Annotated, Any, Literal, Protocol, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .queues import DLQ_RETENTION_SECONDS, visibility_timeout

NAMESPACE = "headrace"

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# raw_suffixes share the processor's 4 KB of environment with the rest (RAW_SUFFIXES).
MAX_RAW_SUFFIXES_CHARS = 1024
MAX_RAW_PREFIX_BYTES = 256

# API Gateway HTTP APIs end an integration after 30 seconds.
HTTP_API_TIMEOUT_SECONDS = 30
# The ingest API makes an AWS call only with 3.5 s left (a stalled attempt takes up to 3 s,
# and 0.5 s is kept to answer: handlers.dal.aws.Deadline); with less it could call nothing.
INGEST_MIN_TIMEOUT_SECONDS = 4
# The loader keeps back a fifth of its invocation (handlers.logic.time_budget) and must fit
# the database's connect timeout (5 s: handlers.dal.warehouse) in the rest: below 7 s a
# connect that waits out its timeout leaves no time for the load, whatever the file.
LOADER_MIN_TIMEOUT_SECONDS = 7

LOCALSTACK_DEFAULT_ENDPOINT = "http://localhost:4566"


class ConfigError(ValueError):
    """The stack configuration is invalid; ``str()`` lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n  " + "\n  ".join(problems))


# Secrets Manager holds 65,536 bytes; the rest of the connection secret needs far less than this
MAX_SSLROOTCERT_BYTES = 60_000


class FieldProblem(ValueError):
    """Raised by a check that spans fields of one section, naming the field to change."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _numeric(annotation: Any) -> tuple[bool, bool]:
    """Whether a field of this annotation takes a number and no boolean, and whether it takes null."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    numeric = any(o in (int, float) for o in options) and bool not in options
    return numeric, type(None) in options


class _Model(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, data: Any) -> Any:
        """Refuse true/false for a number: pydantic would read them as 1 and 0, so
        ``reserved_concurrency: false`` (meant as "none") would throttle every call. The
        numbers the engine sends (JSON numbers, numeric strings of ``--path`` sets and
        top-level keys) are still coerced as before."""
        if not isinstance(data, Mapping):
            return data
        for name, field in cls.model_fields.items():
            key = field.alias or name
            value = data.get(key, data.get(name))
            numeric, nullable = _numeric(field.annotation)
            if isinstance(value, bool) and numeric:
                raise FieldProblem(
                    key, f"must be a number{' (or null)' if nullable else ''}, not {str(value).lower()}"
                )
        return data


def _log_retention(days: int) -> int:
    if days not in LOG_RETENTION_DAYS:
        raise ValueError(f"must be one of {', '.join(map(str, LOG_RETENTION_DAYS))} (CloudWatch Logs)")
    return days


LogRetentionDays = Annotated[int, AfterValidator(_log_retention)]


class Retention(_Model):
    """How long data is kept. ``None`` (``null``) keeps current objects forever."""

    raw_days: int | None = Field(90, ge=1)
    processed_days: int | None = Field(None, ge=1)
    reports_days: int | None = Field(None, ge=1)
    noncurrent_days: int = Field(30, ge=1)
    log_days: LogRetentionDays = 30


class Queues(_Model):
    max_receive_count: int = Field(5, ge=1, le=1000)
    message_retention_seconds: int = Field(4 * 86_400, ge=60, le=14 * 86_400)

    @property
    def dead_letter_seconds(self) -> int:
        """The least time a dead letter has in its DLQ: a standard queue's message keeps
        its first send time there, so one that reaches it at the age of the work queue's
        retention has only what the DLQ's 14 days leave."""
        return DLQ_RETENTION_SECONDS - self.message_retention_seconds


class Routing(_Model):
    """Retry policy of every EventBridge -> SQS target (failures then go to the target DLQ)."""

    max_event_age_seconds: int = Field(86_400, ge=60, le=86_400)
    max_retry_attempts: int = Field(185, ge=0, le=185)


class FunctionSettings(_Model):
    memory_mb: int = Field(ge=128, le=10_240)
    timeout_seconds: int = Field(ge=1, le=900)
    ephemeral_storage_mb: int = Field(512, ge=512, le=10_240)
    reserved_concurrency: int | None = Field(None, ge=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class ConsumerSettings(FunctionSettings):
    """A function fed by an SQS queue (event source mapping)."""

    batch_size: int = Field(10, ge=1, le=10_000)
    batching_window_seconds: int = Field(0, ge=0, le=300)
    max_concurrency: int | None = Field(None, ge=2, le=1000)

    @model_validator(mode="after")
    def _consistent(self) -> ConsumerSettings:
        if self.batch_size > 10 and self.batching_window_seconds < 1:
            raise FieldProblem("batching_window_seconds", "must be ≥ 1 when batch_size is above 10 (SQS)")
        # The event source mapping does not see the function's reserved concurrency: it polls
        # up to max_concurrency batches (no limit: 5 at once, scaling up to 1,000), and every
        # batch the function has no room for is throttled back to the queue with a receive
        # counted, so a backlog alone sends good messages to the DLQ.
        reserved = self.reserved_concurrency
        if reserved is not None and reserved < 2:
            raise FieldProblem(
                "reserved_concurrency",
                f"must be null or at least 2 on a queue consumer: with {reserved}, the event source "
                "(which polls at least 2 batches at once) is throttled, and the throttled messages "
                "count receives until they reach the DLQ unprocessed",
            )
        if reserved is not None and (self.max_concurrency is None or self.max_concurrency > reserved):
            raise FieldProblem(
                "max_concurrency",
                f"must be set and ≤ reserved_concurrency ({reserved}): the event source ignores the "
                "reserved concurrency, polls more batches than the function may run, and the "
                "throttled messages count receives until they reach the DLQ unprocessed",
            )
        return self


# Defaults per function; a stack overrides only the keys it sets (deep merge).
FUNCTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "processor": {
        "memory_mb": 1769,  # one full vCPU
        "timeout_seconds": 300,
        "ephemeral_storage_mb": 2048,  # DuckDB spills to /tmp
        "batch_size": 5,
        "batching_window_seconds": 5,
        "max_concurrency": 10,
    },
    "loader": {
        "memory_mb": 512,
        "timeout_seconds": 120,
        "batch_size": 5,
        "batching_window_seconds": 10,
        "max_concurrency": 2,  # protects the database's connection budget
    },
    "report": {"memory_mb": 1024, "timeout_seconds": 300},
    "ingest": {"memory_mb": 256, "timeout_seconds": 10},
    "ingest_worker": {
        "memory_mb": 512,
        "timeout_seconds": 60,
        "batch_size": 25,
        "batching_window_seconds": 2,
        "max_concurrency": 5,
    },
}


# The processor's libraries (DuckDB, boto3, Powertools) take over 100 MB before DuckDB's
# share (60 % of the memory): below this, a large file gets the function killed, with no
# reason recorded, instead of an OutOfMemory error that says what to raise.
PROCESSOR_MIN_MEMORY_MB = 512


class Functions(_Model):
    # Amazon Linux 2023 runtimes: the package's manylinux wheels need its glibc 2.34.
    runtime: Literal["python3.12", "python3.13"] = "python3.12"
    architecture: Literal["arm64", "x86_64"] = "arm64"
    tracing: bool = True  # X-Ray active tracing
    processor: ConsumerSettings
    loader: ConsumerSettings
    report: FunctionSettings
    ingest: FunctionSettings
    ingest_worker: ConsumerSettings

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        merged = dict(data)
        for name, defaults in FUNCTION_DEFAULTS.items():
            given = data.get(name)
            merged[name] = {**defaults, **given} if isinstance(given, Mapping) else given or dict(defaults)
        return merged

    @model_validator(mode="after")
    def _limits(self) -> Functions:
        if self.ingest.timeout_seconds > HTTP_API_TIMEOUT_SECONDS:
            raise FieldProblem(
                "ingest.timeout_seconds", f"must be ≤ {HTTP_API_TIMEOUT_SECONDS} (HTTP API integration limit)"
            )
        if self.ingest.timeout_seconds < INGEST_MIN_TIMEOUT_SECONDS:
            raise FieldProblem(
                "ingest.timeout_seconds",
                f"must be ≥ {INGEST_MIN_TIMEOUT_SECONDS} (the time the API keeps for one AWS call and its answer)",
            )
        if self.loader.timeout_seconds < LOADER_MIN_TIMEOUT_SECONDS:
            raise FieldProblem(
                "loader.timeout_seconds",
                f"must be ≥ {LOADER_MIN_TIMEOUT_SECONDS}: the loader keeps back a fifth of its time, and the "
                "rest must cover the database's 5 s connect timeout",
            )
        if self.processor.memory_mb < PROCESSOR_MIN_MEMORY_MB:
            raise FieldProblem(
                "processor.memory_mb",
                f"must be ≥ {PROCESSOR_MIN_MEMORY_MB}: the processing core's libraries take over 100 MB "
                "before DuckDB's 60 %",
            )
        return self

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")


class RdsSettings(_Model):
    instance_class: str = Field("db.t4g.micro", pattern=r"^db\.[a-z0-9]+\.[a-z0-9]+$")
    allocated_gb: int = Field(20, ge=20, le=65_536)
    max_allocated_gb: int | None = Field(100, ge=20, le=65_536)  # storage autoscaling ceiling
    # The major version only: the instance takes minor upgrades automatically (see _major)
    engine_version: str = "16"
    backup_retention_days: int = Field(7, ge=1, le=35)
    # ``None``: on in prod, off elsewhere (so dev stacks can be destroyed).
    deletion_protection: bool | None = None
    multi_az: bool = False

    @field_validator("engine_version", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        # a number from YAML or from pulumi config set --path
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value

    @field_validator("engine_version")
    @classmethod
    def _major(cls, value: str) -> str:
        if re.fullmatch(r"\d+\.\d+", value):
            raise ValueError(
                f"must be a major version only ({value.split('.')[0]}): the instance takes minor upgrades "
                "automatically (auto_minor_version_upgrade), so once RDS has moved it past "
                f"{value}, a pinned minor would plan a downgrade that RDS refuses"
            )
        if not re.fullmatch(r"\d+", value):
            raise ValueError("must be a PostgreSQL major version, e.g. 16")
        if int(value) < 15:
            raise ValueError("PostgreSQL 15 or newer is required (TLS enforced by default)")
        return value

    @model_validator(mode="after")
    def _storage(self) -> RdsSettings:
        # RDS storage autoscaling needs a ceiling at least 10 % above the allocated storage
        least = -(-self.allocated_gb * 11 // 10)
        if self.max_allocated_gb is not None and self.max_allocated_gb < least:
            raise FieldProblem(
                "max_allocated_gb",
                f"must be ≥ {least}, 10 % above allocated_gb (RDS), or null: no storage autoscaling",
            )
        return self


class ExternalDatabase(_Model):
    """A PostgreSQL the user runs; its password is the secret ``headrace:db_password``."""

    host: str = Field(min_length=1)
    port: int = Field(5432, ge=1, le=65_535)
    dbname: str = Field("headrace", min_length=1)
    username: str = Field("headrace", min_length=1)
    # libpq's sslmode for the loader's connection; null: verify-full with warehouse.sslrootcert,
    # else require on AWS, prefer elsewhere
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None


class Network(_Model):
    cidr: str = "10.42.0.0/16"
    az_count: int = Field(2, ge=2, le=3)  # RDS needs subnets in two zones
    nat_gateway: bool = False  # the loader needs none: it reaches AWS through VPC endpoints

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 CIDR block: {exc}") from None
        if not 16 <= network.prefixlen <= 22:
            raise ValueError("prefix length must be between /16 and /22")
        if not any(network.subnet_of(block) for block in _PRIVATE_BLOCKS):
            raise ValueError(
                "must be a private block (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or "
                "100.64.0.0/10): a public one hides those addresses from the VPC, and AWS refuses "
                "or cannot route the reserved ones"
            )
        return value


# RFC 1918, and the shared address space (RFC 6598) AWS also allows for a VPC
_PRIVATE_BLOCKS = tuple(
    ipaddress.IPv4Network(b) for b in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
)


class Warehouse(_Model):
    mode: Literal["rds", "external"] = "rds"
    db_schema: str = Field("headrace", alias="schema", pattern=r"^[a-z_][a-z0-9_]{0,62}$")  # the loader's
    rds: RdsSettings = RdsSettings()
    external: ExternalDatabase | None = None
    network: Network = Network()
    # PEM text of the certificate authorities that sign the database's certificate (the RDS
    # region bundle, your own CA): written into the secret so that the loader verifies it
    sslrootcert: str | None = None

    @field_validator("db_schema")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value.startswith("pg_"):
            raise ValueError("names starting with pg_ are PostgreSQL's own")
        return value

    @field_validator("sslrootcert")
    @classmethod
    def _certificates(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError(
                "must be the PEM text of one or more certificates (-----BEGIN CERTIFICATE----- ...), "
                'not a path: pulumi config set --path warehouse.sslrootcert -- "$(cat bundle.pem)"'
            )
        try:
            ssl.create_default_context(cadata=value)
        except ssl.SSLError as exc:
            raise ValueError(f"a certificate in it cannot be read: {exc.reason or exc}") from None
        if len(value.encode()) > MAX_SSLROOTCERT_BYTES:
            raise ValueError(
                f"is {len(value.encode()):,} bytes; the connection secret holds at most 64 KiB, so at most "
                f"{MAX_SSLROOTCERT_BYTES:,} here: use your region's bundle, not the global one"
            )
        return value


def _schedule(expression: str) -> str:
    """An EventBridge schedule expression, checked as EventBridge checks it at deploy time:
    ``rate(1 day)`` / ``rate(N units)``, or ``cron(...)`` with six fields and ``?`` in
    exactly one of day-of-month and day-of-week."""
    rate = re.fullmatch(r"rate\((\d+) (minute|hour|day)(s?)\)", expression)
    if rate:
        value, unit, plural = int(rate[1]), rate[2], rate[3]
        if value < 1 or (value == 1) == bool(plural):
            raise ValueError(f"write rate(1 {unit}) or rate(N {unit}s) with N above 1")
        return expression
    if expression.startswith("rate("):
        raise ValueError("rate takes a whole number and minute(s), hour(s) or day(s): rate(15 minutes)")
    cron = re.fullmatch(r"cron\((.+)\)", expression)
    if not cron:
        raise ValueError("must be rate(...) or cron(...) (EventBridge schedule expressions)")
    fields = cron[1].split()
    if len(fields) != 6:
        raise ValueError(
            f"cron needs six fields (minutes hours day-of-month month day-of-week year), got {len(fields)}"
        )
    if (fields[2] == "?") == (fields[4] == "?"):
        raise ValueError("cron needs '?' in exactly one of day-of-month and day-of-week (EventBridge)")
    for text, field in zip(fields, _CRON_FIELDS, strict=True):
        _cron_field(text, *field)
    return expression


_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# (name, lowest, highest, names of 1.., the forms EventBridge allows beside values, ranges
# and steps: the last day (L), the weekday nearest a day (15W), the nth weekday (2#1))
_CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...], tuple[str, ...]], ...] = (
    ("minutes", 0, 59, (), ()),
    ("hours", 0, 23, (), ()),
    ("day-of-month", 1, 31, (), (r"L", r"LW", r"(?P<n>\d+)W")),
    ("month", 1, 12, _MONTH_NAMES, ()),
    ("day-of-week", 1, 7, _DAY_NAMES, (r"L", r"(?P<n>\w+)L", r"(?P<n>\w+)#[1-5]")),
    ("year", 1970, 2199, (), ()),
)
_CRON_PART = re.compile(r"(?P<start>\*|\?|\w+)(?:-(?P<end>\w+))?(?:/(?P<step>\d+))?")


def _cron_field(
    text: str, name: str, low: int, high: int, names: tuple[str, ...], special: tuple[str, ...]
) -> None:
    """Raise ValueError unless every value of one cron field is in its range: EventBridge
    refuses the rule at deploy time with only "Parameter ScheduleExpression is not valid"."""

    def check(token: str) -> None:
        if token.upper() in names or (token.isdigit() and low <= int(token) <= high):
            return
        allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
        raise ValueError(f"cron {name} field {text!r}: {token!r} is not {allowed}")

    for part in text.split(","):
        special_form = next((m for form in special if (m := re.fullmatch(form, part.upper()))), None)
        if special_form:
            if special_form.groupdict().get("n"):
                check(special_form["n"])
            continue
        match = _CRON_PART.fullmatch(part)
        if not match:
            raise ValueError(f"cron {name} field {text!r}: {part!r} is not a value, a range or a step")
        for token in (match["start"], match["end"]):
            if token and token not in ("*", "?"):
                check(token)
        if match["step"] is not None and int(match["step"]) < 1:
            raise ValueError(f"cron {name} field {text!r}: a step must be at least 1")


class Reporting(_Model):
    schedule: Annotated[str, AfterValidator(_schedule)] = "cron(0 6 * * ? *)"
    alert_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    link_ttl_seconds: int = Field(604_800, ge=60, le=604_800)  # SigV4 presigned URLs: 7 days max


class Alarms(_Model):
    staleness_minutes: int = Field(1440, ge=10)
    # The oldest-message alarms of the processing, load and ingest queues. None: the queue's
    # visibility timeout plus 15 minutes (see StackConfig.oldest_message_alarm_thresholds).
    oldest_message_seconds: int | None = Field(None, ge=60)
    load_oldest_message_seconds: int | None = Field(None, ge=60)
    ingest_oldest_message_seconds: int | None = Field(None, ge=60)
    error_rate_percent: float = Field(1.0, gt=0, lt=100)
    duration_p99_ratio: float = Field(0.8, gt=0, lt=1)  # p99 never exceeds the timeout itself
    rds_cpu_percent: float = Field(80, gt=0, lt=100)


class Ingest(_Model):
    endpoint: Literal["http_api", "function_url"] = "http_api"
    # Lambda's request payload is at most 6 MiB, event included, and the event's JSON can
    # take six bytes for each byte of the body (a control character is escaped as \u001b):
    # the ingest function's MAX_BODY_BYTES_CEILING (handlers.models.ingest)
    max_body_bytes: int = Field(1_000_000, ge=1024, le=1_000_000)
    max_batch_records: int = Field(100, ge=1, le=1000)
    keep_original: bool = False
    # IAM roles or users that may decrypt kept originals; no one else can, whatever their
    # IAM policies say (the key policy does not delegate kms:Decrypt to IAM).
    original_readers: tuple[
        Annotated[str, Field(pattern=r"^arn:aws[a-z-]*:iam::\d{12}:(role|user)/[^\s*?]+$")], ...
    ] = ()
    log_ttl_days: int = Field(90, ge=1, le=36_500)  # a later expiry date overflows
    throttle_rate_per_second: float = Field(50, gt=0)
    throttle_burst: int = Field(100, ge=1)


class Faults(_Model):
    crash_rate: float = Field(0.0, ge=0.0, le=1.0)


# PII_EXTRA_RULES shares the processor's and the worker's 4 KB of environment with the rest.
MAX_EXTRA_RULES_CHARS = 2048


class Pii(_Model):
    extra_rules: tuple[dict[str, Any], ...] = ()
    disabled_rules: tuple[str, ...] = ()

    @field_validator("extra_rules")
    @classmethod
    def _rules(cls, rules: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
        # The processor and the ingest worker parse the same model at cold start; checking
        # here turns a bad pattern into a deployment error instead of a crashing function.
        from handlers.logic.processing.pii import PiiRule

        for index, rule in enumerate(rules):
            try:
                PiiRule.model_validate(rule)
            except ValidationError as exc:
                errors = exc.errors()
                for error in errors:  # a misspelt key, named like any other unknown key
                    if error["type"] == "extra_forbidden":
                        raise FieldProblem(f"{index}.{error['loc'][0]}", "unknown key") from None
                message = str(errors[0]["msg"]).removeprefix("Value error, ")
                raise ValueError(f"rule {index}: {message}") from None
        return rules

    @model_validator(mode="after")
    def _known(self) -> Pii:
        from handlers.logic.processing.pii import DEFAULT_RULES

        known = {r.name for r in DEFAULT_RULES} | {r["name"] for r in self.extra_rules}
        unknown = sorted(set(self.disabled_rules) - known)
        if unknown:
            raise FieldProblem("disabled_rules", f"unknown rules: {', '.join(unknown)}")
        active = [r.name for r in DEFAULT_RULES if r.name not in self.disabled_rules]
        for rule in self.extra_rules:
            if rule["name"] in active:  # the handlers refuse two rules of one name at start
                raise FieldProblem(
                    "extra_rules",
                    f"rule {rule['name']!r} is defined twice (disable the built-in one to replace it)",
                )
            active.append(rule["name"])
        if len(json.dumps(self.extra_rules, separators=(",", ":"))) > MAX_EXTRA_RULES_CHARS:
            raise FieldProblem(
                "extra_rules",
                f"the rules take more than {MAX_EXTRA_RULES_CHARS} characters of JSON; they travel in the "
                "functions' environment, which Lambda limits to 4 KB in all",
            )
        return self


# Athena refuses a per-query bytes-scanned cutoff below 10 MiB.
MIN_BYTES_SCANNED_LIMIT_MB = 10


class Catalog(_Model):
    """The query catalog (docs/query.md): a Glue database whose tables the processor keeps
    in step with the data, and an Athena workgroup with encrypted, expiring results."""

    # ``None``: on for target aws, off on LocalStack (its free tier has no Glue or Athena).
    enabled: bool | None = None
    # Glue database; ``None``: ``<project>_<stack>`` (lower case, ``_`` for other characters).
    database: str | None = Field(None, pattern=r"^[a-z0-9_]{1,255}$")
    # Athena cancels a query of this workgroup that would scan more (MiB).
    bytes_scanned_limit_mb: int = Field(1024, ge=MIN_BYTES_SCANNED_LIMIT_MB)
    # Query results (reports bucket, athena-results/) expire after this many days.
    results_retention_days: int = Field(7, ge=1)


class Metadata(_Model):
    ttl_days: int = Field(90, ge=1, le=36_500)  # a later expiry date overflows
    idempotency_ttl_seconds: int = Field(86_400, ge=60)


class StackConfig(_Model):
    """Everything under ``headrace:`` in ``Pulumi.<stack>.yaml`` (except the secret
    ``headrace:db_password``, which is read separately and never enters this model)."""

    environment: Literal["dev", "prod", "local"]
    target: Literal["aws", "localstack"] = "aws"
    region: str | None = Field(None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    localstack_endpoint: str = Field(LOCALSTACK_DEFAULT_ENDPOINT, pattern=r"^https?://[^\s/]+(:\d+)?/?$")
    raw_prefix: str = "incoming/"
    raw_suffixes: tuple[str, ...] = (
        ".csv",
        ".csv.gz",
        ".tsv",
        ".tsv.gz",
        ".json",
        ".json.gz",
        ".ndjson",
        ".ndjson.gz",
        ".jsonl",
        ".jsonl.gz",
        ".log",
        ".log.gz",
        # rotated logs: app.log.1, app.log.2.gz, app.log.2026-12-06, app.log-20261206(.gz)
        ".log.*",
        ".log-*",
        ".txt",
        ".txt.gz",
    )
    retention: Retention = Retention()
    queues: Queues = Queues()
    routing: Routing = Routing()
    functions: Functions = Field(default_factory=lambda: Functions.model_validate({}))
    warehouse: Warehouse = Warehouse()
    reporting: Reporting = Reporting()
    alarms: Alarms = Alarms()
    ingest: Ingest = Ingest()
    faults: Faults = Faults()
    pii: Pii = Pii()
    metadata: Metadata = Metadata()
    catalog: Catalog = Catalog()

    @field_validator("raw_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value.startswith("/") or (value and not value.endswith("/")):
            raise ValueError("must be empty or a key prefix ending in '/' and not starting with '/'")
        if set(value) & set("*?${}"):
            raise ValueError(
                "must not contain '*', '?', '$', '{' or '}' (IAM reads them as wildcards and variables)"
            )
        if len(value.encode()) > MAX_RAW_PREFIX_BYTES:
            raise ValueError(
                f"is {len(value.encode())} bytes; at most {MAX_RAW_PREFIX_BYTES} (it travels in the processor's "
                "4 KB environment and in the EventBridge pattern, and an S3 key is at most 1,024 bytes)"
            )
        return value

    @field_validator("raw_suffixes")
    @classmethod
    def _suffixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for suffix in value:
            if not re.fullmatch(r"\.[A-Za-z0-9._*-]+", suffix):
                raise ValueError(
                    f"{suffix!r}: a suffix is a dot and letters, digits, '.', '_', '-' or '*' (any characters)"
                )
        if len(set(value)) != len(value):
            raise ValueError("lists a suffix twice")
        return value

    # ------------------------------------------------------------------ derived settings
    @property
    def is_prod(self) -> bool:
        return self.environment == "prod"

    @property
    def is_localstack(self) -> bool:
        return self.target == "localstack"

    @property
    def aws_region(self) -> str:
        return self.region or "us-east-1"

    @property
    def rds_deletion_protection(self) -> bool:
        flag = self.warehouse.rds.deletion_protection
        return self.is_prod if flag is None else flag

    @property
    def catalog_enabled(self) -> bool:
        flag = self.catalog.enabled
        return not self.is_localstack if flag is None else flag

    @property
    def oldest_message_alarm_thresholds(self) -> dict[str, int]:
        """The oldest-message alarm's threshold per work queue (``processing``, ``load``,
        ``ingest``). A message whose handling failed transiently is retried after its queue's
        visibility timeout, so it is at least that old: by default each alarm fires only 15
        minutes past one retry's wait, not on every retried message."""
        alarms, fn = self.alarms, self.functions
        thresholds = {}
        for queue, configured, consumer in (
            ("processing", alarms.oldest_message_seconds, fn.processor),
            ("load", alarms.load_oldest_message_seconds, fn.loader),
            ("ingest", alarms.ingest_oldest_message_seconds, fn.ingest_worker),
        ):
            thresholds[queue] = (
                configured
                if configured is not None
                else visibility_timeout(consumer.timeout_seconds, consumer.batching_window_seconds) + 900
            )
        return thresholds

    @property
    def warehouse_sslmode(self) -> str:
        external = self.warehouse.external
        if external is not None and external.sslmode is not None:
            return external.sslmode
        if self.warehouse.sslrootcert is not None:
            return "verify-full"
        return "require" if self.target == "aws" else "prefer"

    @property
    def tracing(self) -> bool:
        # X-Ray is not part of LocalStack's free tier.
        return self.functions.tracing and not self.is_localstack


# ---------------------------------------------------------------------- loading
_MESSAGES = {
    "less_than_equal": "must be ≤ {le}",
    "less_than": "must be < {lt}",
    "greater_than_equal": "must be ≥ {ge}",
    "greater_than": "must be > {gt}",
    "extra_forbidden": "unknown key",
    "missing": "is required",
    "literal_error": "must be one of {expected}",
    "string_pattern_mismatch": "does not match {pattern}",
}


def _describe(error: Mapping[str, Any]) -> str:
    template = _MESSAGES.get(error["type"])
    if template is not None:
        try:
            return template.format(**error.get("ctx", {}))
        except KeyError:
            pass
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _key(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    return f"{NAMESPACE}:{'.'.join(parts)}" if parts else NAMESPACE


def _cross_checks(config: StackConfig) -> list[tuple[str, str]]:
    """Rules that span sections, each reported against the key to change."""
    problems = []
    if config.target == "aws" and config.region is None:
        problems.append(("region", "is required when target is aws"))
    if config.warehouse.mode == "external" and config.warehouse.external is None:
        problems.append(
            (
                "warehouse.external",
                "is required when warehouse.mode is external (host, port, dbname, username)",
            )
        )
    if config.target == "localstack" and config.warehouse.mode != "external":
        problems.append(
            (
                "warehouse.mode",
                "must be external on LocalStack (its free tier has no RDS); point warehouse.external "
                "at a PostgreSQL you run",
            )
        )
    if config.warehouse.mode == "rds" and config.warehouse.db_schema == "public":
        problems.append(
            (
                "warehouse.schema",
                "must not be public with warehouse.mode rds: the loader's own role owns its schema "
                "(docs/warehouse-and-reports.md), and public is every role's",
            )
        )
    if (
        config.is_prod
        and config.warehouse.mode == "rds"
        and config.warehouse.rds.deletion_protection is False
    ):
        problems.append(("warehouse.rds.deletion_protection", "must be true when environment is prod"))
    external = config.warehouse.external
    if (
        config.target == "aws"
        and config.warehouse.mode == "external"
        and external is not None
        and external.sslmode in ("disable", "allow", "prefer")
    ):
        problems.append(
            (
                "warehouse.external.sslmode",
                "must be require, verify-ca or verify-full on AWS: the loader's connection, password "
                "included, would otherwise fall back to plain text",
            )
        )
    if (
        config.warehouse.mode == "external"
        and external is not None
        and external.sslmode in ("verify-ca", "verify-full")
        and config.warehouse.sslrootcert is None
    ):
        problems.append(
            (
                "warehouse.external.sslmode",
                f"{external.sslmode} needs warehouse.sslrootcert, the certificate authorities to verify "
                "the server with: the functions have none, so every load would fail",
            )
        )
    if config.is_prod and config.faults.crash_rate > 0:
        problems.append(("faults.crash_rate", "must be 0 when environment is prod (fault injection)"))
    if config.environment == "local" and config.target == "aws":
        problems.append(
            (
                "environment",
                "local is for LocalStack (secrets deleted at once on destroy); use dev or prod on AWS",
            )
        )
    queue, threshold = max(config.oldest_message_alarm_thresholds.items(), key=lambda t: t[1])
    if config.queues.message_retention_seconds <= threshold + 300:
        problems.append(
            (
                "queues.message_retention_seconds",
                f"must exceed the oldest-message alarm's threshold ({threshold} s, the {queue} queue's) "
                "by at least one 5-minute period, or messages expire before the alarm can fire",
            )
        )
    if config.queues.dead_letter_seconds <= 300:
        problems.append(
            (
                "queues.message_retention_seconds",
                f"must be at most {DLQ_RETENTION_SECONDS - 301} s: SQS counts a dead letter's age from "
                "its first send, so a message that reaches its DLQ (14 days) this old would expire there "
                "within one 5-minute period, before the DLQ alarm can fire",
            )
        )
    if (
        config.target == "aws"
        and config.ingest.endpoint == "function_url"
        and not config.functions.ingest.reserved_concurrency
    ):
        problems.append(
            (
                "functions.ingest.reserved_concurrency",
                "is required (at least 1) when ingest.endpoint is function_url on AWS: a function URL "
                "is public and has no throttle of its own (the HTTP API has), so this caps its load "
                "and cost (0 would refuse every request)",
            )
        )
    # Every attempt of a failing message waits out its queue's visibility timeout; if the
    # queue's retention is shorter than all of them, the message expires before its DLQ.
    longest = max(
        visibility_timeout(f.timeout_seconds, f.batching_window_seconds)
        for f in (config.functions.processor, config.functions.loader, config.functions.ingest_worker)
    )
    attempts = config.queues.max_receive_count * longest
    if config.queues.message_retention_seconds <= attempts:
        problems.append(
            (
                "queues.message_retention_seconds",
                f"must exceed max_receive_count times the longest visibility timeout "
                f"({config.queues.max_receive_count} x {longest} s = {attempts} s), or a failing message "
                "expires before it reaches its DLQ",
            )
        )
    suffixes = ",".join(config.raw_suffixes)
    if len(suffixes) > MAX_RAW_SUFFIXES_CHARS:
        problems.append(
            (
                "raw_suffixes",
                f"the suffixes take {len(suffixes)} characters; they travel in the processor's environment "
                f"(RAW_SUFFIXES), which Lambda limits to 4 KB in all: at most {MAX_RAW_SUFFIXES_CHARS}",
            )
        )
    problems += _environment_problems(config)
    return problems


# Lambda limits a function's environment variables to 4 KB in all: keys, values and their
# encoding. Counted here as their JSON ({"KEY":"value",...}, quotes and escapes included).
LAMBDA_ENVIRONMENT_BYTES = 4096
# What the processor's environment holds besides the configured values counted below: the
# names of the bucket, tables and bus the program creates ("<project>-<stack>-...", a prefix
# of at most MAX_NAME_PREFIX_CHARS, plus Pulumi's suffix), the default Glue database name
# the Powertools variables and HEADRACE_STACK. At the longest stack name they take 487 bytes as JSON
# (tests/infra/test_functions.py checks this budget against the deployed environment).
PROCESSOR_GENERATED_ENVIRONMENT_BYTES = 512


def pii_environment(pii: Pii) -> dict[str, str]:
    """The PII settings of the functions that redact (processor, ingest worker)."""
    environment = {}
    if pii.extra_rules:
        environment["PII_EXTRA_RULES"] = json.dumps(list(pii.extra_rules), separators=(",", ":"))
    if pii.disabled_rules:
        environment["PII_DISABLED_RULES"] = ",".join(pii.disabled_rules)
    return environment


def processor_configured_environment(config: StackConfig) -> dict[str, dict[str, str]]:
    """The processor's environment variables whose values come from the stack config, by
    the key that sets them (as components/pipeline.py and components/functions.py write them)."""
    pii, fn = config.pii, config.functions.processor
    parts: dict[str, dict[str, str]] = {
        "raw_prefix": {"RAW_PREFIX": config.raw_prefix},
        "raw_suffixes": {"RAW_SUFFIXES": ",".join(config.raw_suffixes)},
        "queues.max_receive_count": {"MAX_RECEIVE_COUNT": str(config.queues.max_receive_count)},
        "metadata.ttl_days": {"METADATA_TTL_DAYS": str(config.metadata.ttl_days)},
        "metadata.idempotency_ttl_seconds": {
            "IDEMPOTENCY_TTL_SECONDS": str(config.metadata.idempotency_ttl_seconds)
        },
        "functions.processor.log_level": {"POWERTOOLS_LOG_LEVEL": fn.log_level},
    }
    for variable, value in pii_environment(pii).items():
        key = "pii.extra_rules" if variable == "PII_EXTRA_RULES" else "pii.disabled_rules"
        parts[key] = {variable: value}
    if config.faults.crash_rate:
        parts["faults.crash_rate"] = {"HEADRACE_CRASH_RATE": str(config.faults.crash_rate)}
    if config.catalog_enabled and config.catalog.database is not None:
        parts["catalog.database"] = {"GLUE_DATABASE": config.catalog.database}
    return parts


def environment_bytes(variables: Mapping[str, str]) -> int:
    """What ``variables`` count toward Lambda's 4 KB: their share of the environment's JSON,
    a separating comma each included (the enclosing braces are in the generated budget)."""
    return sum(len(json.dumps({k: v}, ensure_ascii=False).encode()) - 2 + 1 for k, v in variables.items())


def _environment_problems(config: StackConfig) -> list[tuple[str, str]]:
    """The processor's environment, the largest of the functions that carry configured text
    (the ingest worker's PII rules come with less of everything else), within 4 KB."""
    sizes = {key: environment_bytes(part) for key, part in processor_configured_environment(config).items()}
    total = sum(sizes.values()) + PROCESSOR_GENERATED_ENVIRONMENT_BYTES
    if total <= LAMBDA_ENVIRONMENT_BYTES:
        return []
    ranked = sorted(sizes.items(), key=lambda item: -item[1])
    listed = ", ".join(f"{key} {size:,}" for key, size in ranked[:5])
    return [
        (
            ranked[0][0],
            f"the processor's environment would take {total:,} bytes, over Lambda's 4 KB "
            f"({LAMBDA_ENVIRONMENT_BYTES:,} bytes of JSON, every variable together): {listed}, and "
            f"{PROCESSOR_GENERATED_ENVIRONMENT_BYTES} for the names the program generates; shorten "
            f"these by {total - LAMBDA_ENVIRONMENT_BYTES:,} bytes",
        )
    ]


# Every resource is named "<project>-<stack>-<component>..." plus Pulumi's 8-character
# suffix: past this length IAM role and EventBridge rule names pass AWS's 64 characters.
MAX_NAME_PREFIX_CHARS = 34


def check_stack_name(project: str, stack: str) -> None:
    """Raise ConfigError unless ``<project>-<stack>`` can prefix every resource name (S3
    buckets and RDS identifiers take lower-case letters, digits and hyphens only, and an
    RDS identifier no hyphen at its end or two in a row)."""
    prefix = f"{project}-{stack}"
    if not re.fullmatch(r"[a-z](?:-?[a-z0-9])*", prefix) or len(prefix) > MAX_NAME_PREFIX_CHARS:
        raise ConfigError(
            [
                f"stack name {stack!r}: use lower-case letters, digits and single '-' between them, and at most "
                f"{MAX_NAME_PREFIX_CHARS - len(project) - 1} characters (resource names are "
                f"'{project}-<stack>-...', within AWS's name limits)"
            ]
        )


# The least time a dead letter should have in its DLQ for an operator to act on it (a weekend).
MIN_DEAD_LETTER_DAYS = 3


def config_warnings(config: StackConfig) -> list[str]:
    """Valid settings that are probably a mistake (shown by preview and up, not refused)."""
    warnings = []
    if config.is_prod and config.reporting.alert_email is None:
        warnings.append(
            f"{NAMESPACE}:reporting.alert_email is not set: this prod stack's alarms publish to a "
            "topic no one is subscribed to (set it, or subscribe your own endpoint to the "
            "alerts_topic_arn output)"
        )
    dead_letter_days = config.queues.dead_letter_seconds / 86_400
    if 300 / 86_400 < dead_letter_days < MIN_DEAD_LETTER_DAYS:
        warnings.append(
            f"{NAMESPACE}:queues.message_retention_seconds is {config.queues.message_retention_seconds} s: a "
            f"message that reaches its DLQ that old has {dead_letter_days * 24:.1f} hours left there (SQS "
            "counts a dead letter's age from its first send, and DLQs keep 14 days), perhaps not a "
            f"weekend; {DLQ_RETENTION_SECONDS - MIN_DEAD_LETTER_DAYS * 86_400} s or less leaves at least "
            f"{MIN_DEAD_LETTER_DAYS} days"
        )
    if config.ingest.original_readers and not config.ingest.keep_original:
        warnings.append(
            f"{NAMESPACE}:ingest.original_readers is set but ingest.keep_original is false: no originals "
            "are kept, so the readers are ignored (set ingest.keep_original to true to keep them)"
        )
    return warnings


def licensed_localstack_warnings(config: StackConfig) -> list[str]:
    """Settings that need LocalStack's licensed image, on target localstack: each with
    what the free image lacks and the LOCALSTACK_EXTRA_SERVICES docker-compose.yml needs.
    Shown by previews only (``__main__.py``): the embedded runtime deploys the `local`
    stack with both on its emulator, which has them."""
    if not config.is_localstack:
        return []
    licensed = []
    if config.ingest.endpoint == "http_api":
        licensed.append(("ingest.endpoint", "http_api", "API Gateway v2", "apigatewayv2"))
    if config.catalog_enabled:
        licensed.append(("catalog.enabled", "true", "Glue and Athena", "glue,athena"))
    return [
        f"{NAMESPACE}:{key} is {value} on target localstack: {lacking} are only in LocalStack's "
        f"licensed image, so the free one docker-compose.yml pins fails this deployment midway; "
        f"start a licensed image with LOCALSTACK_AUTH_TOKEN, LOCALSTACK_IMAGE and "
        f"LOCALSTACK_EXTRA_SERVICES={services} (docs/localstack.md)"
        for key, value, lacking, services in licensed
    ]


def _problems(exc: ValidationError, key: Callable[[tuple[Any, ...]], str]) -> list[str]:
    """One line per error, each naming its key as ``key`` spells a location."""
    problems = []
    for error in exc.errors():
        loc, cause = tuple(error["loc"]), error.get("ctx", {}).get("error")
        if isinstance(cause, FieldProblem):
            problems.append(f"{key((*loc, cause.field))}: {cause.message}")
        else:
            problems.append(f"{key(loc)}: {_describe(error)}")
    return problems


def parse_config(values: Mapping[str, Any]) -> StackConfig:
    """Validate decoded config values (top-level key -> value); raise ConfigError."""
    try:
        config = StackConfig.model_validate(dict(values))
    except ValidationError as exc:
        raise ConfigError(_problems(exc, _key)) from None
    cross = _cross_checks(config)
    if cross:
        raise ConfigError([f"{NAMESPACE}:{key}: {message}" for key, message in cross])
    return config


class ConfigReader(Protocol):
    """What :func:`load_config` needs of ``pulumi.Config`` (also easy to fake in tests)."""

    def get(self, key: str) -> str | None: ...


def _decode(raw: str) -> Any:
    # Pulumi hands structured values (objects, lists) to the program as JSON text and
    # scalars as plain strings; pydantic coerces "5" or "true" where a number or bool is due.
    stripped = raw.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            return raw
    return raw


def config_keys() -> list[str]:
    """The top-level keys of the namespace, as written in Pulumi.<stack>.yaml."""
    return [field.alias or name for name, field in StackConfig.model_fields.items()]


# Keys of the namespace that are not part of the model.
SECRET_KEYS = ("db_password",)


def load_config(config: ConfigReader, present_keys: Iterable[str] = ()) -> StackConfig:
    """Read every ``headrace:`` key once and validate them together.

    ``present_keys`` are the fully qualified keys the stack sets (the engine passes them to
    the program in ``PULUMI_CONFIG``); a top-level key of this namespace that the model does
    not know is a typo and an error, like an unknown nested key.
    """
    values: dict[str, Any] = {}
    for key in config_keys():
        raw = config.get(key)
        if raw is not None:
            values[key] = _decode(raw)
    known = set(config_keys()) | set(SECRET_KEYS)
    for full_key in present_keys:
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE and key not in known:
            values[key] = None  # reported as "unknown key" by the model
    return parse_config(values)


# ---------------------------------------------------------------------- the aws: namespace
AWS_NAMESPACE = "aws"


def _account_id(value: Any) -> Any:
    # pulumi config set --path stores digits as a number: 12 of them are still an account id
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not re.fullmatch(r"\d{12}", value):
        raise ValueError(
            "an AWS account id is 12 digits; one with a leading zero must be written as a string "
            "(quoted in YAML, or pulumi config set --type string): as a number it loses the zero"
        )
    return value


AccountId = Annotated[str, BeforeValidator(_account_id)]


class AwsSettings(_Model):
    """The keys of Pulumi's ``aws:`` namespace this program honours.

    Pulumi reads that namespace only for its default AWS provider, which this program never
    uses: every resource goes through one explicit provider (components/provider.py), which
    gets these (on ``target: aws``). ``region`` is not passed: ``headrace:region`` is the
    region, and an ``aws:region`` that differs is an error."""

    region: str | None = None
    profile: str | None = Field(None, min_length=1)
    allowed_account_ids: tuple[AccountId, ...] = Field((), alias="allowedAccountIds")
    forbidden_account_ids: tuple[AccountId, ...] = Field((), alias="forbiddenAccountIds")

    @model_validator(mode="after")
    def _one_list(self) -> AwsSettings:
        if self.allowed_account_ids and self.forbidden_account_ids:
            raise FieldProblem(
                "forbiddenAccountIds", "set allowedAccountIds or forbiddenAccountIds, not both"
            )
        return self

    @property
    def guards_the_account(self) -> bool:
        return bool(self.profile or self.allowed_account_ids or self.forbidden_account_ids)


def aws_keys() -> list[str]:
    """The keys of the ``aws:`` namespace the program reads, as written in Pulumi.<stack>.yaml."""
    return [field.alias or name for name, field in AwsSettings.model_fields.items()]


def load_aws_settings(reader: ConfigReader, config: StackConfig) -> AwsSettings:
    """Read the ``aws:`` keys the program honours (``reader``: ``pulumi.Config("aws")``) and
    check them against the validated ``config``; raise ConfigError naming the key."""
    values: dict[str, Any] = {}
    for key in aws_keys():
        raw = reader.get(key)
        if raw is not None:
            values[key] = _decode(raw)
    try:
        settings = AwsSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, lambda loc: f"{AWS_NAMESPACE}:{'.'.join(map(str, loc))}")) from None
    if settings.region is not None and settings.region != config.aws_region:
        where = (
            f"{NAMESPACE}:region ({config.region})"
            if config.region is not None
            else f"{config.aws_region} ({NAMESPACE}:region is not set)"
        )
        raise ConfigError(
            [
                f"{AWS_NAMESPACE}:region: is {settings.region}, but this stack deploys to {where}: the "
                f"program's provider takes its region from {NAMESPACE}:region only; remove {AWS_NAMESPACE}:region "
                "or make the two equal"
            ]
        )
    return settings


def aws_warnings(config: StackConfig, settings: AwsSettings, present_keys: Iterable[str] = ()) -> list[str]:
    """``aws:`` keys the stack sets that the program does not use (shown, not refused)."""
    warnings = []
    if config.is_localstack and settings.guards_the_account:
        used = [
            f"{AWS_NAMESPACE}:{key}"
            for key, value in (
                ("profile", settings.profile),
                ("allowedAccountIds", settings.allowed_account_ids),
                ("forbiddenAccountIds", settings.forbidden_account_ids),
            )
            if value
        ]
        warnings.append(
            f"{', '.join(used)}: ignored on target localstack (the provider uses LocalStack's test "
            "credentials and does not look up the account)"
        )
    known = set(aws_keys())
    for full_key in sorted(set(present_keys)):
        namespace, _, key = full_key.partition(":")
        if namespace == AWS_NAMESPACE and key not in known:
            warnings.append(
                f"{full_key}: ignored: the program's explicit provider takes only "
                f"{', '.join(f'{AWS_NAMESPACE}:{k}' for k in sorted(known))} from the {AWS_NAMESPACE}: "
                "namespace (docs/deploy.md)"
            )
    return warnings
