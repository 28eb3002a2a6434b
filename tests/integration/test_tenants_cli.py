"""``headrace tenants`` against moto: keys are issued once, stored hashed, accepted by the
ingest API, listed without secrets, and revoked; a tenant is offboarded (all its keys
revoked, its stored records purged)."""

from __future__ import annotations

import io
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from handlers.logic.ingest.keys import hash_api_key
from headrace.cli import main

from .conftest import REGION
from .ingest_support import KEYS_TABLE, LOGS_TABLE, IngestStack

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
    "tenant_logs_table": LOGS_TABLE,
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


def test_revoke_takes_a_leaked_key_itself_and_never_prints_it(stack, outputs, capsys):
    # Given two keys of acme, one of them leaked (its holder has the key, not its key id)
    leaked, kept = stack.issue_key("acme"), stack.issue_key("acme")
    leaked_id = next(
        i["key_id"] for i in stack.keys_table.scan()["Items"] if i["key_hash"] == hash_api_key(leaked)
    )
    # When the key itself is given to revoke
    code, out, err = run(capsys, "tenants", "revoke", leaked, "--outputs", str(outputs))
    # Then that key is revoked (and only that one), named by its key id
    assert code == 0 and f"Revoked {leaked_id} of tenant 'acme'" in out, err
    disabled = {i["key_hash"]: i["disabled"] for i in stack.keys_table.scan()["Items"]}
    assert disabled == {hash_api_key(leaked): True, hash_api_key(kept): False}
    code, out, err = run(capsys, "tenants", "revoke", leaked, "--outputs", str(outputs))
    assert code == 0 and f"{leaked_id} of tenant 'acme' was already revoked" in out
    # and neither that nor an error about a key never issued on this stack prints the key
    unknown = "hr_" + "Z" * 43
    code, out, err = run(capsys, "tenants", "revoke", unknown, "--outputs", str(outputs))
    assert code == 2 and "no key in tenant-keys has the API key given" in err
    assert leaked not in out + err and unknown not in out + err and "hr_ZZZZ" not in err
    code, out, err = run(capsys, "tenants", "revoke", kept, "--tenant", "acme", "--outputs", str(outputs))
    assert code == 2 and "got an API key and --tenant" in err and kept not in err
    # nor a damaged copy of a key (cut short by a character, or pasted with a line end)
    code, out, err = run(capsys, "tenants", "revoke", kept[:-1], "--outputs", str(outputs))
    assert code == 2 and "no key (a damaged API key, not repeated) in tenant-keys" in err
    assert kept[3:20] not in out + err
    code, out, err = run(
        capsys, "tenants", "revoke", kept[:-1], "--tenant", "acme", "--outputs", str(outputs)
    )
    assert code == 2 and kept[3:20] not in out + err
    code, out, err = run(capsys, "tenants", "revoke", f" {kept}\n", "--outputs", str(outputs))
    assert code == 0 and "Revoked key_" in out and kept[3:20] not in out + err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_revoke_dash_reads_the_key_from_stdin_so_it_is_not_in_argv(stack, outputs, capsys, monkeypatch):
    # (the key in the arguments is in `ps` and the shell's history for anyone to read)
    first, second, third = stack.issue_key("acme"), stack.issue_key("acme"), stack.issue_key("acme")
    # When the key comes through a pipe, with its line end
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{first}\n"))
    code, out, err = run(capsys, "tenants", "revoke", "-", "--outputs", str(outputs))
    assert code == 0 and "Revoked key_" in out and first[3:20] not in out + err, err
    # or is typed at a terminal, at a prompt that does not echo it
    prompts: list[str] = []
    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or second)
    code, out, err = run(capsys, "tenants", "revoke", "-", "--outputs", str(outputs))
    assert code == 0 and "Revoked key_" in out and prompts == ["API key or key id to revoke (not echoed): "]
    # Then those two keys are revoked, and only them
    disabled = {i["key_hash"]: i["disabled"] for i in stack.keys_table.scan()["Items"]}
    assert disabled == {hash_api_key(first): True, hash_api_key(second): True, hash_api_key(third): False}
    # and input that is not one key is refused without repeating it
    for given, said in (("", "holds nothing"), (f"{third}\n{third}\n", "holds 2 lines")):
        monkeypatch.setattr(sys, "stdin", io.StringIO(given))
        code, out, err = run(capsys, "tenants", "revoke", "-", "--outputs", str(outputs))
        assert code == 2 and said in err and third[3:20] not in out + err


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


# ------------------------------------------------------------------------------ offboarding
def add_key(capsys, outputs, tenant: str) -> str:
    return run(capsys, "tenants", "add", tenant, "--outputs", str(outputs))[1].splitlines()[-1]


def key_rows(capsys, outputs) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = json.loads(
        run(capsys, "tenants", "list", "--json", "--outputs", str(outputs))[1]
    )
    return rows


def store_records(stack: IngestStack, tenant: str, count: int) -> None:
    """``count`` records of ``tenant`` as the worker stores them (one already expired: still
    held until DynamoDB deletes it, so a purge deletes it too)."""
    with stack.logs_table.batch_writer() as batch:
        for i in range(count):
            batch.put_item(
                Item={
                    "tenant_id": tenant,
                    "log_id": f"log-{i:04d}",
                    "source": "json",
                    "text": f"record {i} of {tenant}",
                    "ttl": int(time.time()) + (-60 if i == 0 else 86400),
                }
            )


def stored_log_ids(stack: IngestStack, tenant: str) -> list[str]:
    return sorted(i["log_id"] for i in stack.all_stored() if i["tenant_id"] == tenant)


@pytest.fixture
def calls(monkeypatch) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every AWS call made meanwhile: (operation, parameters)."""
    made: list[tuple[str, dict[str, Any]]] = []
    real = BaseClient._make_api_call

    def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
        made.append((operation, params))
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    yield made


def test_revoke_tenant_disables_every_active_key_and_the_api_refuses_them(stack, outputs, capsys):
    # Given acme with two keys, one revoked already, and beta with one
    first, second = add_key(capsys, outputs, "acme"), add_key(capsys, outputs, "acme")
    beta = add_key(capsys, outputs, "beta")
    rows = key_rows(capsys, outputs)
    first_id = next(r["key_id"] for r in rows if r["tenant_id"] == "acme")
    assert run(capsys, "tenants", "revoke", first_id, "--outputs", str(outputs))[0] == 0
    revoked_at = {i["key_id"]: i.get("disabled_at") for i in stack.keys_table.scan()["Items"]}
    # When every key of acme is revoked
    code, out, _ = run(capsys, "tenants", "revoke", "--tenant", "acme", "--outputs", str(outputs))
    # Then the one active key is, and the output says how many
    assert code == 0, out
    assert (
        "Revoked 1 key of tenant 'acme'" in out and "1 already revoked" in out and "within 60 seconds" in out
    )
    assert {r["tenant_id"]: r["status"] for r in key_rows(capsys, outputs) if r["status"] == "active"} == {
        "beta": "active"
    }
    # and a fresh API instance refuses both of acme's keys, not beta's
    stack.configure()
    assert stack.post({"tenant_id": "acme", "text": "x"}, key=first).status == 401
    assert stack.post({"tenant_id": "acme", "text": "x"}, key=second).status == 401
    assert stack.post({"tenant_id": "beta", "text": "x"}, key=beta).status == 202
    # and doing it again changes nothing (the first revocation's time is kept)
    code, out, _ = run(capsys, "tenants", "revoke", "--tenant", "acme", "--outputs", str(outputs))
    assert code == 0 and "has no active key: all 2 keys were already revoked" in out
    again = {i["key_id"]: i.get("disabled_at") for i in stack.keys_table.scan()["Items"]}
    assert again[first_id] == revoked_at[first_id]


def test_add_refuses_an_offboarded_tenants_name_unless_reactivated(stack, outputs, capsys):
    # Given acme offboarded: its keys revoked, one of its records still stored (it was
    # queued during the purge), and beta with a revoked key and an active one
    add_key(capsys, outputs, "acme")
    store_records(stack, "acme", 2)  # log-0000 expired, log-0001 live
    assert run(capsys, "tenants", "revoke", "--tenant", "acme", "--outputs", str(outputs))[0] == 0
    old_beta = add_key(capsys, outputs, "beta")
    add_key(capsys, outputs, "beta")
    assert run(capsys, "tenants", "revoke", old_beta, "--outputs", str(outputs))[0] == 0
    # When a key is asked for under acme's name (a new customer also called acme?)
    code, out, err = run(capsys, "tenants", "add", "acme", "--outputs", str(outputs))
    # Then none is issued: one line says why and what to do
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "tenant 'acme' is offboarded: its key was revoked" in err and "--reactivate" in err
    assert [r["status"] for r in key_rows(capsys, outputs) if r["tenant_id"] == "acme"] == ["disabled"]
    # and beta, which still has an active key, rotates as before
    assert add_key(capsys, outputs, "beta").startswith("hr_")
    # When the same customer is given a key again, on purpose
    code, out, _ = run(capsys, "tenants", "add", "acme", "--reactivate", "--outputs", str(outputs))
    # Then it is issued, and it reads what is stored under the name
    assert code == 0
    listed = stack.logs(out.splitlines()[-1])
    assert listed.status == 200 and [i["log_id"] for i in listed.json["items"]] == ["log-0001"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["revoke", "--tenant", "nobody"], "no tenant 'nobody' in tenant-keys: it has no API keys"),
        (["revoke", "--tenant", "Acme"], "invalid tenant name 'Acme'"),
        (["revoke", "key_x", "--tenant", "acme"], "give a KEY_ID or --tenant NAME, not both"),
        (["revoke"], "give the KEY_ID to revoke"),
        (["purge", "nobody"], "no tenant 'nobody': no API keys in tenant-keys and no records in tenant-logs"),
        (["purge", "nobody", "--execute"], "no tenant 'nobody'"),
        (["purge", "a b"], "invalid tenant name 'a b'"),
    ],
)
def test_offboarding_errors_are_one_line_with_exit_status_2(stack, outputs, capsys, argv, error):
    add_key(capsys, outputs, "acme")
    code, out, err = run(capsys, "tenants", *argv, "--outputs", str(outputs))
    assert code == 2 and out == ""
    assert err.startswith("headrace: error: ") and error in err and err.count("\n") == 1


def test_purge_refuses_a_tenant_with_an_active_key_and_counts_in_a_dry_run(stack, outputs, capsys):
    key = add_key(capsys, outputs, "acme")
    store_records(stack, "acme", 30)
    key_id = key_rows(capsys, outputs)[0]["key_id"]
    # With an active key, neither a dry run nor --execute goes ahead
    for extra in ([], ["--execute"]):
        code, out, err = run(capsys, "tenants", "purge", "acme", *extra, "--outputs", str(outputs))
        assert code == 2 and out == ""
        assert f"tenant 'acme' still has 1 active key ({key_id})" in err and "--revoke-keys" in err
    # A dry run with --revoke-keys counts (the expired item too) and changes nothing
    code, out, _ = run(capsys, "tenants", "purge", "acme", "--revoke-keys", "--outputs", str(outputs))
    assert code == 0
    assert (
        "Dry run: would delete 30 records of tenant 'acme' from tenant-logs, after revoking 1 active key"
        in out
    )
    assert len(stored_log_ids(stack, "acme")) == 30
    assert key_rows(capsys, outputs)[0]["status"] == "active"
    assert stack.post({"tenant_id": "acme", "text": "still works"}, key=key).status == 202


def test_purge_deletes_every_record_of_the_tenant_across_pages_and_batches_and_nothing_else(
    stack, outputs, capsys, monkeypatch, calls
):
    from headrace import tenants

    monkeypatch.setattr(tenants, "PURGE_PAGE", 40)  # 61 records: two Query pages
    # Given acme with 61 stored records and a key, and beta with records and a key of its own
    acme_key, beta_key = add_key(capsys, outputs, "acme"), add_key(capsys, outputs, "beta")
    store_records(stack, "acme", 61)
    store_records(stack, "beta", 5)
    calls.clear()
    # When acme is purged, revoking its keys first
    code, out, _ = run(
        capsys, "tenants", "purge", "acme", "--execute", "--revoke-keys", "--outputs", str(outputs)
    )
    made = list(calls)
    # Then every record of acme is gone, and it says how many
    assert code == 0, out
    assert "Revoked 1 key of tenant 'acme'" in out
    assert "Deleted 61 records of tenant 'acme' from tenant-logs." in out
    assert "ingest queue" in out and "run it again" in out
    assert stored_log_ids(stack, "acme") == []
    # and beta's records and key are untouched
    assert len(stored_log_ids(stack, "beta")) == 5
    stack.configure()
    assert stack.post({"tenant_id": "acme", "text": "x"}, key=acme_key).status == 401
    assert stack.post({"tenant_id": "beta", "text": "x"}, key=beta_key).status == 202
    # and the logs table was only ever read through acme's partition, in pages, and
    # written in batches of at most 25 deletes
    on_logs = [
        (op, p)
        for op, p in made
        if p.get("TableName") == LOGS_TABLE or LOGS_TABLE in p.get("RequestItems", {})
    ]
    assert {op for op, _ in on_logs} == {"Query", "BatchWriteItem"}
    queries = [p for op, p in on_logs if op == "Query"]
    assert all(p["ExpressionAttributeValues"] == {":t": "acme"} for p in queries)
    assert sum("ExclusiveStartKey" in p for p in queries) >= 1
    batches = [len(p["RequestItems"][LOGS_TABLE]) for op, p in on_logs if op == "BatchWriteItem"]
    assert batches == [25, 15, 21]  # the first page's 40, then the second's 21
    assert all(
        "DeleteRequest" in r
        for _, p in on_logs
        if _ == "BatchWriteItem"
        for r in p["RequestItems"][LOGS_TABLE]
    )
    # When it is run again: nothing left, nothing to revoke, still success
    code, out, _ = run(capsys, "tenants", "purge", "acme", "--execute", "--outputs", str(outputs))
    assert code == 0 and "Deleted 0 records of tenant 'acme'" in out and "Revoked" not in out
    assert len(stored_log_ids(stack, "beta")) == 5


def test_a_second_purge_deletes_records_that_were_still_queued(stack, outputs, capsys):
    # Given a record acme sent that is still on the ingest queue
    key = add_key(capsys, outputs, "acme")
    store_records(stack, "acme", 3)
    assert stack.post({"tenant_id": "acme", "text": "late", "log_id": "late-1"}, key=key).status == 202
    # When acme is purged, and the worker then stores the queued record
    code, out, _ = run(
        capsys, "tenants", "purge", "acme", "--execute", "--revoke-keys", "--outputs", str(outputs)
    )
    assert code == 0 and "Deleted 3 records" in out
    # and the output says what else may bring acme's records back: its dead letters
    assert "a redrive of that DLQ stores them" in out
    assert "'headrace dlq inspect --queue ingest --prefix acme/'" in out
    stack.drain()
    assert stored_log_ids(stack, "acme") == ["late-1"]
    # Then a second purge deletes it (acme's keys are revoked: no --revoke-keys needed)
    code, out, _ = run(capsys, "tenants", "purge", "acme", "--outputs", str(outputs))
    assert code == 0 and "would delete 1 record of tenant 'acme'" in out
    code, out, _ = run(capsys, "tenants", "purge", "acme", "--execute", "--outputs", str(outputs))
    assert code == 0 and "Deleted 1 record of tenant 'acme'" in out
    assert stored_log_ids(stack, "acme") == []


def throttle(monkeypatch, processed: int | None) -> list[int]:
    """BatchWriteItem processes only the first ``processed`` deletes of its first call (every
    call when None processes none) and returns the rest as UnprocessedItems, as DynamoDB
    does when throttled. Returns the sizes of the calls; empty it to stop throttling."""
    real = BaseClient._make_api_call
    sizes: list[int] = []

    def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation != "BatchWriteItem" or sizes == [-1]:
            return real(client, operation, params)
        requests = params["RequestItems"][LOGS_TABLE]
        sizes.append(len(requests))
        keep = 0 if processed is None else (processed if len(sizes) == 1 else len(requests))
        if keep:
            real(client, operation, {"RequestItems": {LOGS_TABLE: requests[:keep]}})
        rest = requests[keep:]
        return {"UnprocessedItems": {LOGS_TABLE: rest} if rest else {}}

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    return sizes


def test_purge_retries_unprocessed_deletes(stack, outputs, capsys, monkeypatch):
    store_records(stack, "acme", 20)  # records without keys (lost or deleted): still purgeable
    sizes = throttle(monkeypatch, processed=8)
    code, out, err = run(capsys, "tenants", "purge", "acme", "--execute", "--outputs", str(outputs))
    assert code == 0, err
    assert sizes == [20, 12] and "Deleted 20 records" in out
    assert stored_log_ids(stack, "acme") == []


def test_purge_gives_up_on_a_table_that_keeps_throttling_and_a_rerun_finishes(
    stack, outputs, capsys, monkeypatch
):
    store_records(stack, "acme", 30)
    stop = throttle(monkeypatch, processed=None)
    code, out, err = run(capsys, "tenants", "purge", "acme", "--execute", "--outputs", str(outputs))
    assert code == 2
    assert "tenant-logs kept refusing 25 deletes" in err and "run the purge again" in err
    stop[:] = [-1]
    code, out, err = run(capsys, "tenants", "purge", "acme", "--execute", "--outputs", str(outputs))
    assert code == 0 and "Deleted 30 records" in out
    assert stored_log_ids(stack, "acme") == []


@pytest.mark.parametrize(
    ("stop", "status"),
    [
        (ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "BatchWriteItem"), 2),
        (KeyboardInterrupt(), 130),
    ],
)
def test_a_purge_stopped_partway_says_how_far_it_got(stack, outputs, capsys, monkeypatch, stop, status):
    # Given 30 records, and a purge whose second batch of deletes is refused or interrupted
    store_records(stack, "acme", 30)
    real = BaseClient._make_api_call
    batches: list[int] = []

    def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "BatchWriteItem":
            batches.append(1)
            if len(batches) == 2:
                raise stop
        return real(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    code, _, err = run(capsys, "tenants", "purge", "acme", "--execute", "--outputs", str(outputs))
    # Then it says how many records it deleted, that the rest remain, and how to finish
    assert code == status and err.startswith("headrace: ")
    assert "25 records of it were deleted from tenant-logs so far: run the purge again" in err
    assert len(stored_log_ids(stack, "acme")) == 5


def test_purge_names_a_missing_logs_output_or_table(stack, tmp_path, capsys):
    store_records(stack, "acme", 1)
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({k: v for k, v in OUTPUTS.items() if k != "tenant_logs_table"}))
    code, _, err = run(capsys, "tenants", "purge", "acme", "--outputs", str(path))
    assert code == 2 and "no output 'tenant_logs_table'" in err
    path.write_text(json.dumps(OUTPUTS | {"tenant_logs_table": "missing"}))
    code, _, err = run(capsys, "tenants", "purge", "acme", "--outputs", str(path))
    assert code == 2 and "the tenant logs table does not exist" in err


def test_the_documented_permissions_cover_every_call_of_the_tenants_commands(stack, outputs, capsys, calls):
    # Given the least-privilege list for `headrace tenants` in docs/ingest-api.md
    doc = (Path(__file__).resolve().parents[2] / "docs" / "ingest-api.md").read_text()
    [bullet] = re.findall(r"^- `headrace tenants`:(.*?)(?=^- |^$)", doc, re.M | re.S)
    parts = re.split(r"on the tenant (\w+) table", " ".join(bullet.split()))
    documented = {
        where: set(re.findall(r"`dynamodb:(\w+)`", actions))
        for actions, where in zip(parts[::2], parts[1::2], strict=False)
    }
    # When every tenants command runs
    add_key(capsys, outputs, "acme")
    store_records(stack, "acme", 3)
    key_id = key_rows(capsys, outputs)[0]["key_id"]
    add_key(capsys, outputs, "acme")
    for argv in (
        ["revoke", key_id],
        ["revoke", "--tenant", "acme"],
        ["purge", "acme"],
        ["purge", "acme", "--execute"],
    ):
        assert run(capsys, "tenants", *argv, "--outputs", str(outputs))[0] == 0
    # Then each call it made is documented for the table it made it on
    tables = {KEYS_TABLE: "keys", LOGS_TABLE: "logs"}
    used: dict[str, set[str]] = {}
    for operation, params in calls:
        for table in [params.get("TableName"), *params.get("RequestItems", {})]:
            if table in tables:
                used.setdefault(tables[table], set()).add(operation)
    assert used == {"keys": {"PutItem", "Scan", "UpdateItem"}, "logs": {"Query", "BatchWriteItem"}}
    assert documented == used


def test_add_whose_first_answer_was_lost_still_prints_the_key_it_stored(stack, outputs, capsys, monkeypatch):
    # Given a put whose answer is lost after DynamoDB stored the item, so the SDK's retry
    # meets its own first write and fails the condition
    original = BaseClient._make_api_call

    def put_twice(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "PutItem" and params.get("TableName") == KEYS_TABLE:
            original(self, operation, params)  # stored; its answer never reaches the caller
        return original(self, operation, params)

    def denied(self: Any, operation: str, params: dict[str, Any]) -> Any:
        # the operator's least-privilege policy (docs/operations.md) grants no GetItem on it
        if operation == "GetItem" and params.get("TableName") == KEYS_TABLE:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, operation)
        return put_twice(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", denied)
    # When a key is issued
    code, out, _ = run(capsys, "tenants", "add", "acme", "--outputs", str(outputs))
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    # Then the command succeeds and prints the key that is stored
    assert code == 0
    key = out.splitlines()[-1]
    assert stack.keys_table.get_item(Key={"key_hash": hash_api_key(key)})["Item"]["tenant_id"] == "acme"
