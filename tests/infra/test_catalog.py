"""The query catalog: Glue database, Athena workgroup (encrypted results, scan limit), the
results' lifecycle, the processor's GLUE_DATABASE and the policy for people who query."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .conftest import ROOT, Deployment, deploy
from .mocks import ACCOUNT
from .test_functions import env, functions

MIB = 1024 * 1024
GLUE = f"arn:aws:glue:eu-west-1:{ACCOUNT}"


def _reports_bucket(stack: Deployment) -> str:
    return stack.outputs["reports_bucket"]


def _lifecycle_rules(stack: Deployment, bucket: str) -> dict[str, Any]:
    (lifecycle,) = [
        r
        for r in stack.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        if r.input("bucket") == bucket
    ]
    return {rule["id"]: rule for rule in lifecycle.input("rules")}


def test_dev_has_a_glue_database_named_after_the_stack(dev: Deployment) -> None:
    # Given the dev stack (catalog on by default on AWS)
    (database,) = dev.of_type("aws:glue/catalogDatabase:CatalogDatabase")
    # Then its Glue database is headrace_dev, the output and the processor's GLUE_DATABASE
    assert database.inputs["name"] == "headrace_dev"
    assert dev.outputs["glue_database"] == "headrace_dev"
    assert env(functions(dev)["processor"])["GLUE_DATABASE"] == "headrace_dev"
    # and no crawler or registered partition exists: tables come from the processor
    assert not {t for t in dev.types() if t.startswith("aws:glue/") and "atalogDatabase" not in t}


def test_workgroup_encrypts_results_in_the_reports_bucket_and_caps_each_query(dev: Deployment) -> None:
    # Given the dev stack's Athena workgroup
    (workgroup,) = dev.of_type("aws:athena/workgroup:Workgroup")
    configuration = workgroup.input("configuration")
    results = configuration["resultConfiguration"]
    # Then results go to athena-results/ in the reports bucket, SSE-S3 encrypted, checked
    # against the account as bucket owner
    assert results["outputLocation"] == f"s3://{_reports_bucket(dev)}/athena-results/"
    assert results["encryptionConfiguration"] == {"encryptionOption": "SSE_S3"}
    assert results["expectedBucketOwner"] == ACCOUNT
    # and a query scanning more than 1024 MiB is cancelled; clients cannot override any of it
    assert configuration["bytesScannedCutoffPerQuery"] == 1024 * MIB
    assert configuration["enforceWorkgroupConfiguration"] is True
    assert dev.outputs["athena_workgroup"] == workgroup.inputs["name"] == "headrace-dev"
    # and the reports bucket itself is encrypted by default (SSE-S3)
    encryption = [
        r
        for r in dev.of_type(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
        )
        if r.input("bucket") == _reports_bucket(dev)
    ]
    assert encryption[0].input("rules")[0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"


def test_query_results_expire_while_reports_are_kept(dev: Deployment) -> None:
    # Given the reports bucket's lifecycle rules in dev (reports kept: reports_days null)
    rules = _lifecycle_rules(dev, _reports_bucket(dev))
    # Then objects under athena-results/ expire after the configured 7 days, reports never
    assert rules["expire-athena-results"]["filter"] == {"prefix": "athena-results/"}
    assert rules["expire-athena-results"]["expiration"] == {"days": 7}
    assert "expire-current-objects" not in rules


def test_query_policy_reaches_only_the_workgroup_catalog_data_and_results(dev: Deployment) -> None:
    # Given the managed policy for people who query
    (policy,) = [p for p in dev.of_type("aws:iam/policy:Policy") if p.name.endswith("-catalog-query")]
    statements = {s["Sid"]: s for s in policy.json_input("policy")["Statement"]}
    processed = f"arn:aws:s3:::{dev.outputs['processed_bucket']}"
    reports = f"arn:aws:s3:::{_reports_bucket(dev)}"
    (workgroup,) = dev.of_type("aws:athena/workgroup:Workgroup")
    # Then it runs queries in this workgroup only
    assert statements["RunQueriesInTheWorkgroup"]["Resource"] == [workgroup.outputs["arn"]]
    assert "athena:StartQueryExecution" in statements["RunQueriesInTheWorkgroup"]["Action"]
    # reads this database's tables only, and never changes them
    assert statements["ReadTheCatalog"]["Resource"] == [
        f"{GLUE}:catalog",
        f"{GLUE}:database/headrace_dev",
        f"{GLUE}:table/headrace_dev/*",
    ]
    assert all(a.startswith("glue:Get") for a in statements["ReadTheCatalog"]["Action"])
    # reads processed Parquet and summaries, lists only those prefixes
    assert statements["ReadProcessedData"]["Resource"] == [
        f"{processed}/parquet/*",
        f"{processed}/summaries/*",
    ]
    assert statements["ListProcessedData"]["Condition"] == {
        "StringLike": {"s3:prefix": ["parquet/*", "summaries/*"]}
    }
    # writes and reads results under athena-results/ only
    assert statements["WriteQueryResults"]["Resource"] == [f"{reports}/athena-results/*"]
    # and nothing anywhere is a wildcard action or Resource "*"
    for statement in statements.values():
        assert statement["Effect"] == "Allow" and "*" not in statement["Resource"]
        assert not any("*" in action for action in statement["Action"])
    assert dev.outputs["query_policy_arn"] == policy.outputs["arn"]


def test_local_stack_has_no_catalog(local: Deployment) -> None:
    # Given the LocalStack stack (no Glue or Athena in its free tier)
    # Then no Glue or Athena resource, no GLUE_DATABASE, no result expiry, no catalog outputs
    assert not {t for t in local.types() if t.startswith(("aws:glue/", "aws:athena/"))}
    assert "GLUE_DATABASE" not in env(functions(local)["processor"])
    assert "expire-athena-results" not in _lifecycle_rules(local, local.outputs["reports_bucket"])
    assert not {"glue_database", "athena_workgroup", "query_policy_arn"} & set(local.outputs)
    grants = {
        a for s in local.of_type("aws:iam/rolePolicy:RolePolicy") for a in _actions(s.json_input("policy"))
    }
    assert not {a for a in grants if a.startswith("glue:")}


def _actions(document: dict[str, Any]) -> list[str]:
    return [a for s in document["Statement"] for a in s["Action"]]


def test_catalog_settings_follow_config(tiny_archive: Path) -> None:
    # Given dev with its own database name, a 50 MiB limit and 1-day results
    stack = deploy(
        "dev",
        tiny_archive,
        {
            "headrace:catalog": {
                "database": "analytics_dev",
                "bytes_scanned_limit_mb": 50,
                "results_retention_days": 1,
            }
        },
    )
    (workgroup,) = stack.of_type("aws:athena/workgroup:Workgroup")
    # Then the workgroup, the database, the processor and the results' expiry follow
    assert workgroup.input("configuration")["bytesScannedCutoffPerQuery"] == 50 * MIB
    assert stack.outputs["glue_database"] == "analytics_dev"
    assert env(functions(stack)["processor"])["GLUE_DATABASE"] == "analytics_dev"
    assert _lifecycle_rules(stack, _reports_bucket(stack))["expire-athena-results"]["expiration"] == {
        "days": 1
    }


def test_catalog_can_be_switched_off_on_aws(tiny_archive: Path) -> None:
    # Given dev with the catalog off
    stack = deploy("dev", tiny_archive, {"headrace:catalog": {"enabled": False}})
    # Then nothing of it is created, and the processor has no Glue rights or database
    assert not {t for t in stack.types() if t.startswith(("aws:glue/", "aws:athena/"))}
    assert "GLUE_DATABASE" not in env(functions(stack)["processor"])
    assert "athena_workgroup" not in stack.outputs


def test_the_query_guide_lists_exactly_the_query_policys_actions(dev: Deployment) -> None:
    # Given the actions the query policy grants
    (policy,) = [p for p in dev.of_type("aws:iam/policy:Policy") if p.name.endswith("-catalog-query")]
    granted = {a for s in policy.json_input("policy")["Statement"] for a in s["Action"]}
    # When docs/query.md's table ("It grants exactly:") lists them, a row's later actions
    # written without the service of its first (`athena:StartQueryExecution`, `GetQueryExecution`)
    text = (ROOT / "docs" / "query.md").read_text()
    table = text[text.index("It grants exactly:") :].split("\n\n")[1]
    listed = set()
    for row in table.splitlines()[2:]:
        service = ""
        for prefix, action in re.findall(r"`(?:([a-z0-9]+):)?([A-Z]\w+)`", row.split(" | ")[1]):
            service = prefix or service
            listed.add(f"{service}:{action}")
    # Then the guide's "exactly" holds: those actions and no others
    assert sorted(listed) == sorted(granted)
