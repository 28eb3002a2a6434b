"""The embedded runtime's deploy handlers for the query catalog, against moto: the Glue
database and the Athena workgroup are created as the program declares them."""

from __future__ import annotations

import boto3
from pulumi.runtime import MockResourceArgs

from headrace.local.deploy import HANDLERS, EmulatorMocks

from .conftest import REGION


def _mocks() -> EmulatorMocks:
    return EmulatorMocks(lambda service: boto3.client(service, region_name=REGION), REGION)


def test_glue_database_is_created_with_its_name(aws):
    # Given the program's CatalogDatabase inputs
    inputs = {"name": "headrace_local", "description": "tables"}
    # When the handler creates it
    resource_id, state = HANDLERS["aws:glue/catalogDatabase:CatalogDatabase"](
        _mocks(), MockResourceArgs("aws:glue/catalogDatabase:CatalogDatabase", "db", inputs), inputs
    )
    # Then the emulator has the database, and the state names it with its ARN
    assert boto3.client("glue", region_name=REGION).get_database(Name="headrace_local")["Database"][
        "Name"
    ] == ("headrace_local")
    assert resource_id == state["name"] == "headrace_local"
    assert state["arn"].endswith(":database/headrace_local")


def test_workgroup_keeps_results_location_encryption_and_scan_limit(aws):
    # Given the program's Workgroup inputs (as the engine passes them: camelCase)
    inputs = {
        "name": "headrace-local",
        "description": "queries",
        "configuration": {
            "enforceWorkgroupConfiguration": True,
            "bytesScannedCutoffPerQuery": 1024 * 1024 * 1024,
            "publishCloudwatchMetricsEnabled": True,
            "resultConfiguration": {
                "outputLocation": "s3://reports/athena-results/",
                "expectedBucketOwner": "123456789012",
                "encryptionConfiguration": {"encryptionOption": "SSE_S3"},
            },
        },
    }
    # When the handler creates it
    resource_id, state = HANDLERS["aws:athena/workgroup:Workgroup"](
        _mocks(), MockResourceArgs("aws:athena/workgroup:Workgroup", "wg", inputs), inputs
    )
    # Then the emulator's workgroup has the same configuration
    configuration = boto3.client("athena", region_name=REGION).get_work_group(WorkGroup="headrace-local")[
        "WorkGroup"
    ]["Configuration"]
    assert configuration["BytesScannedCutoffPerQuery"] == 1024 * 1024 * 1024
    assert configuration["EnforceWorkGroupConfiguration"] is True
    assert configuration["ResultConfiguration"]["OutputLocation"] == "s3://reports/athena-results/"
    assert configuration["ResultConfiguration"]["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    assert resource_id == "headrace-local" and state["arn"].endswith(":workgroup/headrace-local")
