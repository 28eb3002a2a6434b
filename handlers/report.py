"""Report Lambda: the daily report, and the pipeline's signals.

- ``{"task": "signals"}`` (every 5 minutes): emits ``SecondsSinceLastCompletedFile``.
- ``{"date": "YYYY-MM-DD"}`` (or ``"today"``/``"yesterday"``): that day's report, on demand.
- anything else (the daily schedule's event): the report for the day before the event's
  time, UTC: the last complete day.

A report is ``reports/YYYY-MM-DD/report.html`` and ``report.json`` in the reports bucket
(overwritten when run again) and an SNS message with a presigned link to the page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from handlers.dal.aws import table
from handlers.logic.report.run import daily_report, seconds_since_last_completed
from handlers.models.report import ReportSettings, Request

settings = ReportSettings.from_env()
logger = Logger(service="report")
tracer = Tracer(service="report")
metrics = Metrics(namespace="headrace", service="report")
metrics.set_default_dimensions(stack=settings.stack)  # this stack's alarms select by it


def utcnow() -> datetime:
    return datetime.now(UTC)


# capture_response=False: the response holds the report's presigned link, a key to the page
# for days; X-Ray would keep it in the trace for whoever may read traces (the log never has it)
@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    now = utcnow()
    request = Request.from_event(event, now, settings.metadata_ttl_days)
    if request.task == "signals":
        staleness = seconds_since_last_completed(
            table(settings.metadata_table), now, settings.staleness_minutes
        )
        metrics.add_metric(
            name="SecondsSinceLastCompletedFile", unit=MetricUnit.Seconds, value=round(staleness.seconds, 1)
        )
        last = staleness.last or {}
        logger.info(
            "signals",
            extra={
                "seconds_since_last_completed_file": staleness.seconds,
                "exact": staleness.exact,
                "last_completed": last.get("object_key"),
            },
        )
        return {
            "task": "signals",
            "seconds_since_last_completed_file": round(staleness.seconds, 1),
            "exact": staleness.exact,
            "last_completed": last.get("object_key"),
        }
    assert request.day is not None
    day = request.day.isoformat()
    published = daily_report(day, settings, now)
    f = published.report.files
    logger.info(
        "report published",
        extra={"date": day, "received": f.received, "completed": f.completed, "failed": f.failed},
    )
    return {
        "task": "report",
        "date": day,
        "report_html": f"s3://{settings.reports_bucket}/{published.html_key}",
        "report_json": f"s3://{settings.reports_bucket}/{published.json_key}",
        "link": published.link,
        "files": f.model_dump(),
        "rows": published.report.rows,
    }
