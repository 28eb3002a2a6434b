"""``headrace tenants`` against moto: keys are issued once, stored hashed, accepted by the
ingest API, listed without secrets, and revoked."""

from __future__ import annotations

import json
import re

import boto3
import pytest

from handlers.logic.ingest.keys import hash_api_key
from headrace.cli import main

from .conftest import REGION
from .ingest_support import KEYS_TABLE, IngestStack

OUTPUTS = {
    "raw_bucket": "raw",
    "processed_bucket": "processed",
    "reports_bucket": "reports",
    "processing_queue_url": "https://sqs/processing",
    "processing_dlq_url": "https://sqs/processing-dlq",
    "load_queue_url": "https://sqs/load",
    "load_dlq_url": "https://sqs/load-dlq",
    "metadata_table": "metadata",
    "db_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db",
    "alerts_topic_arn": "arn:aws:sns:us-east-1:123456789012:alerts",
    "ingest_api_url": "https://abc123.execute-api.us-east-1.amazonaws.com",
    "region": REGION,
    "tenant_keys_table": KEYS_TABLE,
}


@pytest.fixture
def stack(aws, monkeypatch) -> IngestStack:
    return IngestStack(monkeypatch)


@pytest.fixture
def outputs(tmp_path, stack):
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(OUTPUTS))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_add_prints_a_key_once_stores_only_its_hash_and_the_api_accepts_it(stack, outputs, capsys):
    # When a key is issued for acme
    code, out, _ = run(capsys, "tenants", "add", "acme", "--outputs", str(outputs))
    # Then the last line is the key alone
    assert code == 0
    key = out.strip().splitlines()[-1]
    assert re.fullmatch(r"hr_[A-Za-z0-9_-]{43}", key)
    assert "acme" in out.splitlines()[0] and "shown only this once" in out
    # and the table holds its hash, never the key
    items = boto3.resource("dynamodb", region_name=REGION).Table(KEYS_TABLE).scan()["Items"]
    [item] = items
    assert item["key_hash"] == hash_api_key(key) and item["tenant_id"] == "acme"
    assert key not in json.dumps(items, default=str)
    assert item["disabled"] is False and item["created_at"].endswith("Z") and item["name"] == "acme"
    # and the ingest API accepts it for acme
    response = stack.post({"tenant_id": "acme", "text": "hello"}, key=key)
    assert response.status == 202 and response.json["tenant_id"] == "acme"


def test_each_add_issues_a_new_key(stack, outputs, capsys):
    first = run(capsys, "tenants", "add", "acme", "--outputs", str(outputs))[1].splitlines()[-1]
    second = run(capsys, "tenants", "add", "acme", "--outputs", str(outputs))[1].splitlines()[-1]
    assert first != second
    assert stack.post({"tenant_id": "acme", "text": "a"}, key=first).status == 202
    assert stack.post({"tenant_id": "acme", "text": "b"}, key=second).status == 202


def test_list_shows_tenants_and_key_ids_but_no_secret(stack, outputs, capsys):
    keys = [
        run(capsys, "tenants", "add", t, "--outputs", str(outputs))[1].splitlines()[-1]
        for t in ("beta", "acme")
    ]
    code, out, _ = run(capsys, "tenants", "list", "--outputs", str(outputs))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["TENANT", "KEY", "ID", "PREFIX", "CREATED", "STATUS"]
    assert [line.split()[0] for line in lines[1:]] == ["acme", "beta"]
    assert all(line.split()[-1] == "active" for line in lines[1:])
    for key in keys:
        assert key not in out and hash_api_key(key) not in out
    code, out, _ = run(capsys, "tenants", "list", "--json", "--outputs", str(outputs))
    rows = json.loads(out)
    assert [r["tenant_id"] for r in rows] == ["acme", "beta"]
    assert set(rows[0]) == {"tenant_id", "key_id", "key_prefix", "created_at", "status"}


def test_revoke_disables_the_key(stack, outputs, capsys):
    # Given an issued key that works
    key = run(capsys, "tenants", "add", "acme", "--outputs", str(outputs))[1].splitlines()[-1]
    key_id = json.loads(run(capsys, "tenants", "list", "--json", "--outputs", str(outputs))[1])[0]["key_id"]
    # When it is revoked
    code, out, _ = run(capsys, "tenants", "revoke", key_id, "--outputs", str(outputs))
    assert code == 0 and key_id in out and "within 60 seconds" in out
    # Then the list shows it disabled, and a fresh API instance refuses it
    assert (
        json.loads(run(capsys, "tenants", "list", "--json", "--outputs", str(outputs))[1])[0]["status"]
        == "disabled"
    )
    stack.configure()
    assert stack.post({"tenant_id": "acme", "text": "x"}, key=key).status == 401
    # and revoking it again says so, and keeps the first revocation's time
    code, out, _ = run(capsys, "tenants", "revoke", key_id, "--outputs", str(outputs))
    assert code == 0 and "was already revoked (at 20" in out
    assert re.search(r"at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\)", out)  # as created_at is written


@pytest.mark.parametrize("name", ["Acme", "acme!", "a b", "x" * 64, ""])
def test_add_refuses_invalid_tenant_names(outputs, capsys, name):
    code, out, err = run(capsys, "tenants", "add", name, "--outputs", str(outputs))
    assert code == 2 and out == "" and "invalid tenant name" in err


def test_errors_are_one_line_with_exit_status_2(stack, tmp_path, capsys):
    # no outputs file
    code, _, err = run(capsys, "tenants", "add", "acme", "--outputs", str(tmp_path / "none.json"))
    assert code == 2 and "no such outputs file" in err
    # an outputs file without the tenant keys table
    path = tmp_path / "old.json"
    path.write_text(json.dumps({k: v for k, v in OUTPUTS.items() if k != "tenant_keys_table"}))
    code, _, err = run(capsys, "tenants", "list", "--outputs", str(path))
    assert code == 2 and "no output 'tenant_keys_table'" in err
    # a stack whose table does not exist
    path.write_text(json.dumps(OUTPUTS | {"tenant_keys_table": "missing"}))
    code, _, err = run(capsys, "tenants", "add", "acme", "--outputs", str(path))
    assert code == 2 and "does not exist" in err
    # an unknown key id
    path.write_text(json.dumps(OUTPUTS))
    code, _, err = run(capsys, "tenants", "revoke", "key_nope", "--outputs", str(path))
    assert code == 2 and "no key 'key_nope'" in err


def test_outputs_defaults_to_the_file_the_local_runtime_writes_from_any_directory(
    stack, tmp_path, monkeypatch, capsys
):
    # (the default was relative to the working directory: run from tests/, nothing found)
    from headrace import outputs
    from headrace.local.cli import ROOT
    from headrace.local.runtime import LocalRuntime

    assert LocalRuntime(ROOT).outputs_path == outputs.DEFAULT_LOCAL_OUTPUTS
    written = tmp_path / "runtime" / "outputs.json"  # standing in for it: not the checkout's own
    written.parent.mkdir()
    written.write_text(json.dumps(OUTPUTS))
    monkeypatch.setattr(outputs, "DEFAULT_LOCAL_OUTPUTS", written)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, _ = run(capsys, "tenants", "add", "acme")
    assert code == 0 and out.splitlines()[-1].startswith("hr_")
