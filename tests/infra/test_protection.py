"""What a `pulumi up` may not delete or replace: on prod, every store of data is protected
(a plan that would delete or replace one fails at preview), and the key the kept ingest
originals are encrypted with outlives its resource. Dev and local stay disposable."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import Deployment, deploy

# Where the pipeline keeps data: a replacement would move it onto an empty store, with the
# old one left behind (deletion protection, a non-empty bucket) or deleted with what it held.
STORES = {
    "aws:s3/bucket:Bucket": 3,  # raw, processed, reports
    "aws:dynamodb/table:Table": 4,  # metadata, idempotency, tenant keys, tenant logs
    "aws:rds/instance:Instance": 1,
    "aws:sqs/queue:Queue": 6,  # processing, load, ingest and their DLQs
    # the query catalog: deleting it deletes every dataset's table, which the processor
    # recreates only from the dataset's next file, with that file's columns and days alone
    "aws:glue/catalogDatabase:CatalogDatabase": 1,
}
ORIGINALS_KEY = {"headrace:ingest": {"keep_original": True}}


@pytest.fixture(scope="module")
def prod(tiny_archive: Path) -> Deployment:
    return deploy("prod", tiny_archive, ORIGINALS_KEY)


@pytest.fixture(scope="module")
def dev_keeping_originals(tiny_archive: Path) -> Deployment:
    return deploy("dev", tiny_archive, ORIGINALS_KEY)


def test_prod_protects_every_store_of_data_and_nothing_else(prod: Deployment) -> None:
    # Given the prod stack (Pulumi.prod.yaml)
    protected = [r for r in prod.resources if r.protect]
    # Then exactly its buckets, tables, databases (warehouse, catalog) and queues are protected: no delete or
    # replacement of them gets past a preview
    assert {kind: sum(r.type == kind for r in protected) for kind in STORES} == STORES
    assert {r.type for r in protected} == set(STORES)
    assert all(r.protect for kind in STORES for r in prod.of_type(kind))


def test_prod_keeps_the_originals_key_when_its_resource_goes(prod: Deployment) -> None:
    # Given prod keeping the ingest originals
    (key,) = [r for r in prod.of_type("aws:kms/key:Key") if r.name.endswith("-originals-key")]
    # Then turning keep_original off (or a destroy) leaves the key in the account, so the
    # originals already kept stay readable; it is the only resource retained
    assert key.retain_on_delete
    assert [r.name for r in prod.resources if r.retain_on_delete] == [key.name]


@pytest.mark.parametrize("stack", ["dev", "local"])
def test_other_stacks_can_be_torn_down(
    stack: str, request: pytest.FixtureRequest, tiny_archive: Path
) -> None:
    # Given a dev or local stack keeping originals too
    if stack == "dev":
        deployment = request.getfixturevalue("dev_keeping_originals")
    else:
        deployment = deploy(stack, tiny_archive, ORIGINALS_KEY)
    # Then nothing is protected or retained: `pulumi destroy` removes it all
    assert deployment.of_type("aws:kms/key:Key")
    assert [r.name for r in deployment.resources if r.protect or r.retain_on_delete] == []


# The URNs, as in a stack's state, of what holds data, keys or credentials, below the
# pipeline component (dev, keeping the ingest originals). A URN is the resource's identity
# in every deployed stack: a new name, or a new name or type of a component above it, makes
# `pulumi up` delete the resource and create an empty one. Renaming one? Give the resource
# `aliases=[pulumi.Alias(...)]` naming the old URN, then add the new one here.
KEPT_URNS = [
    "aws:kms/key:Key::headrace-dev-originals-key",
    "headrace:catalog:QueryCatalog$aws:glue/catalogDatabase:CatalogDatabase::headrace-dev-catalog-database",
    "headrace:functions:PipelineFunction$aws:cloudwatch/logGroup:LogGroup::headrace-dev-ingest-logs",
    "headrace:functions:PipelineFunction$aws:cloudwatch/logGroup:LogGroup::headrace-dev-ingest-worker-logs",
    "headrace:functions:PipelineFunction$aws:cloudwatch/logGroup:LogGroup::headrace-dev-loader-logs",
    "headrace:functions:PipelineFunction$aws:cloudwatch/logGroup:LogGroup::headrace-dev-processor-logs",
    "headrace:functions:PipelineFunction$aws:cloudwatch/logGroup:LogGroup::headrace-dev-warehouse-setup-logs",
    "headrace:ingest:IngestApi$aws:cloudwatch/logGroup:LogGroup::headrace-dev-ingest-api-access-logs",
    "headrace:metadata:Tables$headrace:metadata:Table$aws:dynamodb/table:Table::headrace-dev-tables-idempotency",
    "headrace:metadata:Tables$headrace:metadata:Table$aws:dynamodb/table:Table::headrace-dev-tables-metadata",
    "headrace:metadata:Tables$headrace:metadata:Table$aws:dynamodb/table:Table::headrace-dev-tables-tenant-keys",
    "headrace:metadata:Tables$headrace:metadata:Table$aws:dynamodb/table:Table::headrace-dev-tables-tenant-logs",
    "headrace:queues:QueueWithDlq$aws:sqs/queue:Queue::headrace-dev-ingest",
    "headrace:queues:QueueWithDlq$aws:sqs/queue:Queue::headrace-dev-ingest-dlq",
    "headrace:queues:QueueWithDlq$aws:sqs/queue:Queue::headrace-dev-load",
    "headrace:queues:QueueWithDlq$aws:sqs/queue:Queue::headrace-dev-load-dlq",
    "headrace:queues:QueueWithDlq$aws:sqs/queue:Queue::headrace-dev-processing",
    "headrace:queues:QueueWithDlq$aws:sqs/queue:Queue::headrace-dev-processing-dlq",
    "headrace:reporting:Reporting$headrace:functions:PipelineFunction$aws:cloudwatch/logGroup:LogGroup::headrace-dev-reporting-report-logs",
    "headrace:reporting:Reporting$headrace:reporting:AlertsTopic$aws:kms/key:Key::headrace-dev-reporting-alerts-key",
    "headrace:storage:DataBuckets$headrace:storage:SecureBucket$aws:s3/bucket:Bucket::headrace-dev-data-processed",
    "headrace:storage:DataBuckets$headrace:storage:SecureBucket$aws:s3/bucket:Bucket::headrace-dev-data-raw",
    "headrace:storage:DataBuckets$headrace:storage:SecureBucket$aws:s3/bucket:Bucket::headrace-dev-data-reports",
    "headrace:warehouse:Warehouse$aws:rds/instance:Instance::headrace-dev-warehouse-db",
    "headrace:warehouse:Warehouse$aws:secretsmanager/secret:Secret::headrace-dev-warehouse-db-admin-secret",
    "headrace:warehouse:Warehouse$aws:secretsmanager/secret:Secret::headrace-dev-warehouse-db-secret",
    "headrace:warehouse:Warehouse$random:index/randomPassword:RandomPassword::headrace-dev-warehouse-db-loader-password",
    "headrace:warehouse:Warehouse$random:index/randomPassword:RandomPassword::headrace-dev-warehouse-db-password",
]
KEPT_TYPES = {
    "aws:s3/bucket:Bucket",
    "aws:dynamodb/table:Table",
    "aws:rds/instance:Instance",
    "aws:sqs/queue:Queue",
    "aws:kms/key:Key",
    "aws:secretsmanager/secret:Secret",
    "aws:glue/catalogDatabase:CatalogDatabase",
    "aws:cloudwatch/logGroup:LogGroup",
    "random:index/randomPassword:RandomPassword",  # the database passwords
}


def test_what_holds_data_keeps_its_urn(dev_keeping_originals: Deployment) -> None:
    # Given dev keeping the ingest originals
    deployment = dev_keeping_originals
    # Then every store, key, secret, log group and password has the URN deployed stacks
    # know it by: an upgrade updates them in place instead of replacing them
    prefix = "urn:pulumi:dev::headrace::headrace:pipeline:Pipeline$"
    urns = sorted(r.urn.removeprefix(prefix) for r in deployment.resources if r.type in KEPT_TYPES)
    assert urns == sorted(KEPT_URNS)
