"""The processor keeps the Glue catalog in step (moto Glue): create on the first file, add
columns on drift, record what Glue refuses, retry what is transient."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from handlers.dal.catalog import GlueCatalog
from handlers.logic.catalog import BEYOND_FLOAT, UNTYPED

from .conftest import REGION, Pipeline

DATABASE = "headrace_test"
JANUARY = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n"
FEBRUARY = (
    "date,product,quantity,price,region\n2025-02-01,Gadget,2,49.99,north\n2025-02-02,Widget,1.5,29.99,south\n"
)


@pytest.fixture
def catalog_pipeline(aws, monkeypatch, tmp_path) -> Pipeline:
    monkeypatch.setenv("GLUE_DATABASE", DATABASE)
    return Pipeline(monkeypatch, tmp_path)


def glue():
    return boto3.client("glue", region_name=REGION)


def processed_keys(pipeline: Pipeline) -> list[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=pipeline.processed)
    return [o["Key"] for o in listing.get("Contents", [])]


def columns(table: dict) -> list[tuple[str, str]]:
    return [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]


def test_first_file_creates_the_table_and_drift_extends_it(catalog_pipeline):
    # Given the stack's Glue database
    glue().create_database(DatabaseInput={"Name": DATABASE})
    # When January's file is processed
    january = catalog_pipeline.upload("incoming/sales/2025-01.csv", JANUARY)
    assert catalog_pipeline.process(january) == {"batchItemFailures": []}
    # Then the sales table exists with the file's columns, typed for Athena, partition-projected
    table = glue().get_table(DatabaseName=DATABASE, Name="sales")["Table"]
    assert columns(table) == [
        ("date", "date"),
        ("product", "string"),
        ("quantity", "bigint"),
        ("price", "double"),
        ("_rescued_data", "string"),
    ]
    item = catalog_pipeline.item(january)
    assert (
        table["StorageDescriptor"]["Location"] == f"s3://{catalog_pipeline.processed}/parquet/dataset=sales/"
    )
    assert table["Parameters"]["projection.ingest_date.range"] == f"{item['ingest_date']},NOW"
    assert item["status"] == "completed" and "catalog_error" not in item
    # When February's file brings a region column and a fractional quantity
    february = catalog_pipeline.upload("incoming/sales/2025-02.csv", FEBRUARY)
    assert catalog_pipeline.process(february) == {"batchItemFailures": []}
    # Then the table gains region and quantity widens to double; nothing else moves
    table = glue().get_table(DatabaseName=DATABASE, Name="sales")["Table"]
    assert columns(table) == [
        ("date", "date"),
        ("product", "string"),
        ("quantity", "double"),
        ("price", "double"),
        ("region", "string"),
        ("_rescued_data", "string"),
    ]
    assert [t["Name"] for t in glue().get_tables(DatabaseName=DATABASE)["TableList"]] == ["sales"]


def test_a_column_without_values_is_there_until_a_file_types_it(catalog_pipeline):
    glue().create_database(DatabaseInput={"Name": DATABASE})
    # Given a first file whose region column is empty in every row
    first = catalog_pipeline.upload("incoming/orders/1.csv", "id,region\n1,\n2,\n")
    assert catalog_pipeline.process(first) == {"batchItemFailures": []}
    table = glue().get_table(DatabaseName=DATABASE, Name="orders")["Table"]
    # Then the column is there to select, a string marked as not typed yet
    assert columns(table) == [("id", "bigint"), ("region", "string"), ("_rescued_data", "string")]
    assert table["StorageDescriptor"]["Columns"][1]["Comment"] == UNTYPED
    # When a later file has integers there, the column becomes bigint (not string, as a
    # widening from string would make it), and another empty file changes nothing
    for n, text in enumerate(["id,region\n3,7\n", "id,region\n4,\n"], start=2):
        later = catalog_pipeline.upload(f"incoming/orders/{n}.csv", text)
        assert catalog_pipeline.process(later) == {"batchItemFailures": []}
    table = glue().get_table(DatabaseName=DATABASE, Name="orders")["Table"]
    assert columns(table) == [("id", "bigint"), ("region", "bigint"), ("_rescued_data", "string")]
    assert "Comment" not in table["StorageDescriptor"]["Columns"][1]


def test_integers_beyond_float_meeting_fractions_make_the_column_string(catalog_pipeline):
    glue().create_database(DatabaseInput={"Name": DATABASE})
    # Given a first file whose id is 2**53 + 1 (INT64 in its Parquet; a double reads ...992)
    first = catalog_pipeline.upload("incoming/ids/1.csv", "id,n\n9007199254740993,1\n")
    assert catalog_pipeline.process(first) == {"batchItemFailures": []}
    table = glue().get_table(DatabaseName=DATABASE, Name="ids")["Table"]
    # Then the column is bigint, marked as holding integers a double would round
    assert columns(table)[0] == ("id", "bigint")
    assert table["StorageDescriptor"]["Columns"][0]["Comment"] == BEYOND_FLOAT
    # When a later file has a fraction there (and n gets one too, with small integers)
    later = catalog_pipeline.upload("incoming/ids/2.csv", "id,n\n1.5,2.5\n")
    assert catalog_pipeline.process(later) == {"batchItemFailures": []}
    # Then id becomes string, as the warehouse's column becomes text, never double
    # (which would read the first file's id rounded); n widens to double as usual
    table = glue().get_table(DatabaseName=DATABASE, Name="ids")["Table"]
    assert columns(table) == [("id", "string"), ("n", "double"), ("_rescued_data", "string")]


def test_a_refusal_is_recorded_and_the_file_still_completes_and_is_announced(catalog_pipeline):
    # Given no Glue database (deleted by hand, or a missing permission: Glue refuses)
    obj = catalog_pipeline.upload("incoming/orders/a.csv", JANUARY)
    # When the file is processed
    response = catalog_pipeline.process(obj)
    # Then the file completes, is announced to the loader, and the refusal is on its item
    assert response == {"batchItemFailures": []}
    item = catalog_pipeline.item(obj)
    assert item["status"] == "completed"
    assert "EntityNotFoundException" in item["catalog_error"]
    assert DATABASE in item["catalog_error"]
    assert [e["object_key"] for e in catalog_pipeline.published()] == [obj["key"]]


def test_a_transient_catalog_error_retries_the_file(catalog_pipeline, monkeypatch):
    # Given Glue throttling the first attempt
    glue().create_database(DatabaseInput={"Name": DATABASE})
    calls = {"n": 0}
    real_get = GlueCatalog.get_table

    def flaky(self, database, name):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetTable")
        return real_get(self, database, name)

    monkeypatch.setattr(GlueCatalog, "get_table", flaky)
    obj = catalog_pipeline.upload("incoming/events/a.csv", JANUARY)
    catalog_pipeline.announce(obj)
    # When the file is processed
    records, response = catalog_pipeline.poll()
    # Then the record fails (the queue retries it) and the file is not completed yet
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    item = catalog_pipeline.item(obj)
    assert item["status"] == "processing" and "ThrottlingException" in item["last_error"]
    assert catalog_pipeline.published() == []
    # and its outputs are withdrawn: a version not completed is not data to query
    assert processed_keys(catalog_pipeline) == []
    # When the message comes back after its visibility timeout
    catalog_pipeline.sqs.change_message_visibility(
        QueueUrl=catalog_pipeline.queue.url, ReceiptHandle=records[0]["receiptHandle"], VisibilityTimeout=0
    )
    _, response = catalog_pipeline.poll()
    # Then it completes, is announced once, and the table exists
    assert response == {"batchItemFailures": []}
    assert catalog_pipeline.item(obj)["status"] == "completed"
    assert len(catalog_pipeline.published()) == 1
    assert len(processed_keys(catalog_pipeline)) == 2  # the Parquet and the summary
    assert glue().get_table(DatabaseName=DATABASE, Name="events")["Table"]["Name"] == "events"


def test_each_ingest_date_is_a_registered_partition_for_engines_that_do_not_project(catalog_pipeline):
    # Given the stack's Glue database
    glue().create_database(DatabaseInput={"Name": DATABASE})
    # When two files of the sales dataset are processed on one day
    refs = [
        catalog_pipeline.upload("incoming/sales/2025-01.csv", JANUARY),
        catalog_pipeline.upload("incoming/sales/2025-02.csv", FEBRUARY),
    ]
    for ref in refs:
        assert catalog_pipeline.process(ref) == {"batchItemFailures": []}
    # Then the day is one partition (the second file's CreatePartition found it there), at
    # the folder holding both files' Parquet, which Spark and Redshift Spectrum read through
    # GetPartitions (Athena projects them), and both files completed without a catalog error
    items = [catalog_pipeline.item(ref) for ref in refs]
    assert [(i["status"], i.get("catalog_error")) for i in items] == [("completed", None)] * 2
    day = items[0]["ingest_date"]
    partitions = glue().get_partitions(DatabaseName=DATABASE, TableName="sales")["Partitions"]
    folder = f"s3://{catalog_pipeline.processed}/parquet/dataset=sales/ingest_date={day}/"
    assert [(p["Values"], p["StorageDescriptor"]["Location"]) for p in partitions] == [([day], folder)]
    assert sorted(
        f"s3://{catalog_pipeline.processed}/{i['parquet_key']}".rsplit("/", 1)[0] + "/" for i in items
    ) == [
        folder,
        folder,
    ]


def test_a_day_s_partition_takes_the_columns_a_later_file_of_the_day_adds(catalog_pipeline):
    # Given the stack's Glue database and January's file, the first of its day
    glue().create_database(DatabaseInput={"Name": DATABASE})
    assert catalog_pipeline.process(catalog_pipeline.upload("incoming/sales/2025-01.csv", JANUARY)) == {
        "batchItemFailures": []
    }
    # When February's file, the same day, brings a column (region) and widens one (quantity)
    february = catalog_pipeline.upload("incoming/sales/2025-02.csv", FEBRUARY)
    assert catalog_pipeline.process(february) == {"batchItemFailures": []}
    # Then the day's partition has the table's columns, as engines that read partitions need
    # to see the new column in that day's files
    day = catalog_pipeline.item(february)["ingest_date"]
    table = glue().get_table(DatabaseName=DATABASE, Name="sales")["Table"]
    partition = glue().get_partition(DatabaseName=DATABASE, TableName="sales", PartitionValues=[day])
    assert columns(partition["Partition"]) == columns(table)
    assert ("region", "string") in columns(table) and ("quantity", "double") in columns(table)
    # and a third file of the day with nothing new leaves it as it is
    again = catalog_pipeline.upload("incoming/sales/2025-01-again.csv", JANUARY)
    assert catalog_pipeline.process(again) == {"batchItemFailures": []}
    partition = glue().get_partition(DatabaseName=DATABASE, TableName="sales", PartitionValues=[day])
    assert columns(partition["Partition"]) == columns(table)
