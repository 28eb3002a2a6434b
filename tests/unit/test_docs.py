"""The newcomer's documentation matches the files it describes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_of_the_compose_file_is_documented_in_the_localstack_guide():
    # Given the variables docker-compose.yml takes from the environment (${NAME:-default})
    variables = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    assert "HEADRACE_DOCKER_SUBNET" in variables
    # When the LocalStack guide is read
    guide = (ROOT / "docs" / "localstack.md").read_text()
    # Then it names each of them: changing one without another (a subnet without its IP
    # range) gives a network Docker refuses
    assert sorted(v for v in variables if not re.search(rf"\b{v}\b", guide)) == []


def test_the_readme_names_the_levels_log_stats_count_and_a_records_line_limits():
    from handlers.logic.processing import engine, logs

    readme = " ".join((ROOT / "README.md").read_text().split())
    counted = re.search(r"`error_count`: (.*?); `warn_count`: (.*?); `info_count`: (.*?);", readme)
    assert counted is not None
    errors, warns, infos = (set(re.findall(r"`(\w+)`", group)) for group in counted.groups())
    assert (errors, warns, infos) == (set(engine._ERROR_LEVELS), set(engine._WARN_LEVELS), {"INFO"})
    limit = f"at most {logs.MAX_ENTRY_LINES:,} lines and {logs.MAX_ENTRY_CHARS // 1024} KiB"
    assert limit in readme


def _dataset_paragraph(document: str, start: str) -> str:
    """The paragraph (or list item) of ``document`` that starts with ``start``, on one line."""
    text = (ROOT / document).read_text()
    begin = text.index(start)
    end = min(i for i in (text.find("\n\n", begin), text.find("\n- ", begin)) if i != -1)
    return " ".join(text[begin:end].split())


def test_the_dataset_names_the_docs_show_are_the_ones_the_processor_gives():
    from handlers.logic.layout import dataset_for

    # Given the examples of the layout contract: the README's and the query guide's
    examples = {
        "README.md": _dataset_paragraph("README.md", "`dataset` is the first folder"),
        "docs/query.md": _dataset_paragraph("docs/query.md", "- **`<dataset>`**"),
    }
    shown = []
    for document, paragraph in examples.items():
        # `incoming/sales/2025-01.csv` → `sales`, `Über Sales` -> `uber_sales` (a folder)
        pairs = re.findall(r"`([^`]+)` (?:→|->) `([a-z0-9_]+)`", paragraph)
        # a folder with no ASCII form and the hash it gets
        hashed = re.search(r"such as `([^`]+)`, gets a hash: `(d_\w+)`", paragraph) or re.search(
            r"\(`([^`]+)`, [^)]*\).*? instead \(`(d_\w+)`\)", paragraph
        )
        assert len(pairs) >= 2 and hashed is not None, document
        shown += [(document, *pair) for pair in [*pairs, hashed.groups()]]
    # Then each is the dataset the processor names (a bare name is a folder under the prefix)
    wrong = [
        (document, name, said, dataset_for(name if "/" in name else f"incoming/{name}/x.csv", "incoming/"))
        for document, name, said in shown
    ]
    assert [w for w in wrong if w[2] != w[3]] == []


def test_the_readmes_type_inference_table_is_what_inference_does():
    import duckdb

    from handlers.logic.processing.inference import infer_conversions
    from handlers.logic.processing.sqltext import literal

    # Given the table of the README's "Type inference": type, spellings, examples, counter-examples
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Type inference") : text.index("### Summary JSON")]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    assert [row[0].strip("| `") for row in rows] == ["bool", "int", "float", "date", "timestamp", "string"]
    claims = []  # (type, value, whether the value is of that type)
    for kind, _spellings, examples, counter in (row[:4] for row in rows[:-1]):
        kind = kind.strip("| `")
        claims += [(kind, v, True) for v in re.findall(r"`([^`]+)`", examples)]
        claims += [(kind, v, False) for v in re.findall(r"`([^`]+)`", counter)]
    assert len(claims) > 60
    # When each value is a column's only value (one query: a column each)
    sample = "(SELECT " + ", ".join(f"{literal(v)} AS c{i}" for i, (_, v, _) in enumerate(claims)) + ")"
    columns = [f"c{i}" for i in range(len(claims))]
    inferred = infer_conversions(duckdb.connect(), sample, columns, 0.9)
    # Then an example gets its row's type, and no counter-example does
    wrong = [
        (kind, value, conversion.type if conversion else None)
        for (kind, value, is_kind), conversion in zip(claims, inferred, strict=True)
        if (conversion is not None and conversion.type == kind) != is_kind
    ]
    assert wrong == []


def _leaf_commands() -> dict[str, list[tuple[str, ...]]]:
    """'dlq inspect' -> its options, each with its spellings (`-v`, `--verbose`), but --help."""
    import argparse

    from headrace.cli import build_parser

    found: dict[str, list[tuple[str, ...]]] = {}

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[" ".join(path)] = [
                tuple(a.option_strings)
                for a in parser._actions
                if a.option_strings and "--help" not in a.option_strings
            ]
        for action in subs:
            for name, child in action.choices.items():
                walk(child, (*path, name))

    walk(build_parser(), ())
    return found


def _section(document: str, start: str, end: str) -> str:
    text = (ROOT / document).read_text()
    begin = text.index(start)
    return text[begin : text.index(end, begin + len(start))]


def test_the_command_tables_show_every_option_and_only_options_that_exist():
    commands = _leaf_commands()
    # Given the README's tables of commands ("Operations" and "Command line"): a row names
    # `headrace <command words> ... --option ...` (a word may hold a hyphen:
    # `backfill-failures`), alternatives written `inspect\|redrive`,
    # and other commands of its group after it (`headrace tenants add NAME` / `list`)
    readme = _section("README.md", "## Operations", "## Experiments") + _section(
        "README.md", "## Command line", "## Stack outputs"
    )
    rows: list[tuple[set[str], set[str]]] = []  # (the commands a row names, the options it shows)
    for line in readme.splitlines():
        if not line.startswith("| `headrace "):
            continue
        group = line.split()[2].strip("`")
        for span in re.findall(r"`([^`]*)`", line.split(" | ")[0]):
            text = span.removeprefix("headrace ") if span.startswith("headrace ") else f"{group} {span}"
            words = re.match(r"(?:[a-z][a-z-]*(?:\\\|[a-z][a-z-]*)*(?: |$))+", text)
            assert words, span
            path = [word.split("\\|") for word in words[0].split()]
            while path and " ".join(p[0] for p in path) not in commands:
                path.pop()  # the row's last words are arguments (KEY, NAME)
            assert path, span
            named = {" ".join(p[min(i, len(p) - 1)] for p in path) for i in range(max(map(len, path)))}
            rows.append((named, set(re.findall(r"--[a-z][a-z-]*", text))))
    assert len(rows) > 10
    # Then each option a row shows is one its command takes
    takes = {command: {s for option in options for s in option} for command, options in commands.items()}
    assert sorted((c, o) for named, shown in rows for c in named for o in shown - takes[c]) == []
    # and every option of every command is shown: in its rows, or for `experiments` in
    # docs/experiments.md, where the README's row sends readers (`--outputs` is said once,
    # above the table)
    guide = (ROOT / "docs" / "experiments.md").read_text()
    missing = []
    for command, options in commands.items():
        shown = {o for named, found in rows if command in named for o in found}
        for option in options:
            if command.startswith("experiments"):
                seen = any(re.search(rf"`[^`]*(?<![\w-]){s}\b", guide) for s in option)
            else:
                seen = option == ("--outputs",) or bool(shown & set(option))
            if not seen:
                missing.append((command, option[-1]))
    assert sorted(missing) == [], missing
    # and a row that shows some of a command's options shows them all (a newer option left
    # out of one of two rows reads as if that row's command did not take it; `experiments`
    # rows send readers to docs/experiments.md)
    partial = []
    for named, shown in rows:
        for command in named - {c for c in commands if c.startswith("experiments")}:
            unshown = [o[-1] for o in commands[command] if o != ("--outputs",) and not set(o) & shown]
            if shown & takes[command] and unshown:
                partial.append((command, unshown))
    assert partial == [], partial


def test_the_readme_gives_the_embedded_runtimes_own_metadata_ttl():
    import yaml

    from headrace.local.runtime import EMBEDDED_CONFIG

    # Given the metadata TTL the embedded runtime deploys with (the `local` stack file's,
    # unless the runtime sets its own), which also bounds the days `report` accepts there
    stack = yaml.safe_load((ROOT / "Pulumi.local.yaml").read_text())["config"]
    metadata = {**stack["headrace:metadata"], **EMBEDDED_CONFIG.get("headrace:metadata", {})}
    # Then the README's account of what the emulator keeps says that many days, not the
    # 90 of an AWS stack (it said 90)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert (
        f"a metadata item's {metadata['ttl_days']} days, `metadata.ttl_days` of `Pulumi.local.yaml`" in readme
    )


def test_the_readmes_summary_json_is_what_inspect_prints_for_the_sample(capsys):
    import json

    from headrace import cli

    # Given the README's example summary, of samples/sales.csv
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Summary JSON") :]
    shown = json.loads(
        section[section.index("```json\n") + 8 : section.index("\n```", section.index("```json"))]
    )
    # When `headrace inspect` processes that sample
    assert cli.main(["inspect", str(ROOT / "samples" / "sales.csv")]) == 0
    printed = json.loads(capsys.readouterr().out)
    # Then it prints that document, field for field and in that order, but for its own timing
    assert list(printed) == list(shown)
    assert {**printed, "processing_time_ms": None} == {**shown, "processing_time_ms": None}


def _numbers():
    from components.config import Ingest
    from handlers.logic.ingest.auth import HIT_SECONDS, MISS_SECONDS
    from handlers.logic.layout import MAX_DATASET_CHARS
    from handlers.logic.report import build, render
    from handlers.models.ingest import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_TEXT_BYTES
    from headrace import dlq, query

    return [
        ("docs/warehouse-and-reports.md", f"`quality_issues` | top {build.TOP} by rows affected"),
        ("docs/warehouse-and-reports.md", f"`slowest_files` | top {build.TOP} by processing time"),
        (
            "docs/warehouse-and-reports.md",
            f"(cut at {build.MAX_ERROR_CHARS:,} characters, as the processor and loader record them; "
            f"the first {build.MAX_FAILURES:,}: the open ones first, the latest first; "
            f"the page shows the first {render.PAGE_FAILURES})",
        ),
        (
            "docs/warehouse-and-reports.md",
            f"unchanged for over {build.STUCK_AFTER.total_seconds() / 3600:g} hours",
        ),
        ("docs/warehouse-and-reports.md", f"cut at {render.MESSAGE_VALUE_CHARS} characters"),
        ("docs/warehouse-and-reports.md", f"SNS's {render.MAX_SUBJECT_CHARS} characters"),
        ("docs/operations.md", f"the listing shows the first {dlq.LISTING_LIMIT:,} matches"),
        (
            "docs/operations.md",
            f"at most {'an hour' if dlq.MAX_HOLD_SECONDS == 3600 else f'{dlq.MAX_HOLD_SECONDS} s'} at a time",
        ),
        ("docs/query.md", f"at most the first {query.TABLE_ROWS:,} rows by default"),
        # the ingest API's limits, the throttle API Gateway applies before the function included
        (
            "docs/ingest-api.md",
            f"| requests per second, all tenants together (HTTP API) | "
            f"{Ingest().throttle_rate_per_second:g} steady, bursts of {Ingest().throttle_burst} |",
        ),
        ("docs/ingest-api.md", f"| one record's `text` | {MAX_TEXT_BYTES} UTF-8 bytes |"),
        ("docs/ingest-api.md", f"`limit`: 1-{MAX_PAGE_SIZE}, default {DEFAULT_PAGE_SIZE}"),
        ("docs/ingest-api.md", f"remember a verified key for **{HIT_SECONDS:g} seconds**"),
        ("docs/ingest-api.md", f"A failed lookup is remembered for only {MISS_SECONDS:g} seconds"),
        (
            "docs/query.md",
            f"a name over {MAX_DATASET_CHARS} characters is cut to {MAX_DATASET_CHARS - 9} and given the hash",
        ),
    ]


def test_the_limits_the_guides_state_are_the_codes():
    # Given the limits the guides give as numbers, written from the constants the code uses
    # Then each guide says them (collapsed whitespace): a changed constant fails here
    texts = {d: " ".join((ROOT / d).read_text().split()) for d, _ in _numbers()}
    assert [(document, said) for document, said in _numbers() if said not in texts[document]] == []


def test_the_pii_rule_keys_the_docs_give_are_the_rules_fields():
    import typing

    from handlers.logic.processing.pii import PiiRule
    from handlers.logic.processing.summary import ColumnType

    fields = set(PiiRule.model_fields)
    # Given the README's PII_EXTRA_RULES and docs/deploy.md's pii.extra_rules
    readme = " ".join((ROOT / "README.md").read_text().split())
    listed = re.search(r"`PII_EXTRA_RULES` \(JSON list of `\{([^}]*)\}`", readme)
    deploy = re.search(
        r"\| `pii.extra_rules` \| `\[\]` \| Rules added to the built-in ones: `\{([^}]*)\}`",
        (ROOT / "docs" / "deploy.md").read_text(),
    )
    assert listed and deploy
    # Then each names exactly the fields a rule takes (any other key is refused)
    assert set(re.findall(r'"(\w+)"', listed[1])) == fields
    assert {name.rstrip("?") for name in re.split(r",\s*", deploy[1])} == fields
    # and the README's skip_types are the summary's types
    types = re.search(r'`"skip_types"` \(a list of ((?:`\w+`(?:,? (?:or )?)?)+)', readme)
    assert types and set(re.findall(r"`(\w+)`", types[1])) == set(typing.get_args(ColumnType))


def test_the_readme_says_which_readable_files_the_pipeline_ignores_by_default():
    from components.config import StackConfig
    from handlers.logic.layout import has_raw_suffix
    from handlers.logic.processing.formats import _EXTENSIONS, _SNIFFED

    defaults = StackConfig.model_fields["raw_suffixes"].default
    # Given every suffix the processing core reads (by name, or by content), and whether a
    # stack with the default raw_suffixes takes a key ending in it
    taken = {ext for ext in [*_EXTENSIONS, *_SNIFFED] if ext and has_raw_suffix(f"incoming/x{ext}", defaults)}
    ignored = {ext for ext in [*_EXTENSIONS, *_SNIFFED] if ext} - taken
    # When the README says which the pipeline takes and which it ignores
    readme = " ".join((ROOT / "README.md").read_text().split())
    said = re.search(r"`raw_suffixes` \(by default (.*?), each also gzipped\): (.*?) is ignored", readme)
    assert said is not None
    # Then those are the lists (rotated logs and gzip aside), and a key without a suffix is ignored
    assert set(re.findall(r"`(\.\w+)`", said[1])) == taken
    assert set(re.findall(r"`(\.\w+)`", said[2])) == ignored
    assert not has_raw_suffix("incoming/x", defaults) and "or one without a suffix" in said[2]
    assert all(has_raw_suffix(f"incoming/x{ext}.gz", defaults) for ext in taken)
    assert "rotated logs" in said[1] and has_raw_suffix("incoming/app.log.1", defaults)


def test_the_files_table_the_warehouse_guide_describes_is_the_one_the_migrations_make():
    from handlers.dal.warehouse import FILES_TABLE, MIGRATIONS

    # Given the columns the loader's migrations give headrace._files, in order
    columns: list[str] = []
    for _, _, ddl in MIGRATIONS:
        created = re.search(rf"CREATE TABLE {{schema}}\.{FILES_TABLE} \((.*?)\n\s*\);", ddl, re.S)
        if created:
            columns += [line.split()[0] for line in created[1].strip().splitlines()]
        columns += re.findall(rf"ALTER TABLE {{schema}}\.{FILES_TABLE} ADD COLUMN (\w+)", ddl)
    assert "nuls_removed" in columns
    # When docs/warehouse-and-reports.md lists them ("`headrace._files`: `object_key` ...")
    text = " ".join((ROOT / "docs" / "warehouse-and-reports.md").read_text().split())
    listing = text[text.index("`headrace._files`: `object_key`") :].split(". ")[0]
    listed = [name for name in re.findall(r"`(\w+)` ?(?:\(|,|$)", listing.split(":", 1)[1] + ",")]
    # Then it names each column, no more
    assert sorted(listed) == sorted(columns)


def test_the_report_json_table_names_every_field_of_the_report():
    from handlers.models.report import DailyReport, StatusCounts

    # Given the fields table of report.json in docs/warehouse-and-reports.md
    text = (ROOT / "docs" / "warehouse-and-reports.md").read_text()
    table = text[text.index("| field | meaning |") : text.index("The page's verdict")]
    rows = {
        name: meaning
        for names, meaning in re.findall(r"^\s*\| (`.*?`) \| (.*) \|$", table, re.M)
        for name in re.findall(r"`(\w+)`", names)
    }
    # Then its fields are the report's, and the `files` row names every status count
    assert sorted(rows) == sorted(DailyReport.model_fields)
    depth, outside = 0, []  # the row's text outside its parentheses
    for char in rows["files"]:
        depth += {"(": 1, ")": -1}.get(char, 0)
        outside.append(char if depth == 0 and char != ")" else " ")
    assert sorted(re.findall(r"`(\w+)`", "".join(outside))) == sorted(StatusCounts.model_fields)


def test_the_ingest_guide_lists_exactly_what_the_api_access_log_records():
    import json

    from components.ingest import ACCESS_LOG_FORMAT

    # Given the HTTP API's access log format
    variables = set(json.loads(ACCESS_LOG_FORMAT).values())
    # Then it records nothing a client writes, where an API key or log text could be: no
    # path, query string, header ($request.*, userAgent) or body
    assert variables == {
        "$context.requestId",
        "$context.identity.sourceIp",
        "$context.requestTime",
        "$context.routeKey",
        "$context.status",
        "$context.responseLength",
        "$context.integrationErrorMessage",
        "$context.responseLatency",
    }
    # and the ingest guide says what it does record, an IP address (personal data) included
    guide = " ".join((ROOT / "docs" / "ingest-api.md").read_text().split())
    assert (
        "fields: the request id, the client's IP address, the time, the route key, the status, "
        "the response length, the integration error and the latency; never a path, query string, "
        "header or body" in guide
    )


def _logged_messages() -> set[str]:
    """The messages the handlers log: the first argument of every logger call (and of
    ``log(...)``, a logger method chosen by level)."""
    import ast

    messages: set[str] = set()
    for path in (ROOT / "handlers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "logger"
                and func.attr in ("debug", "info", "warning", "error", "exception", "critical")
            ) or (isinstance(func, ast.Name) and func.id == "log"):
                for part in ast.walk(node.args[0]):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        messages.add(part.value)
    return messages


def test_the_log_lines_the_runbooks_search_for_are_ones_the_handlers_write():
    # Given every phrase docs/operations.md tells an operator to search a log group for:
    # a filter pattern ('"..."') or a quoted message (`"..."`), over line breaks
    text = " ".join((ROOT / "docs/operations.md").read_text().split())
    phrases = set(re.findall(r"`\"([^`\"<]+)\"`", text)) | set(re.findall(r"'\"([^'\"<]+)\"'", text))
    # `"load failed"`, split over two lines in the source, and the phrases of each runbook
    assert {"transient failure", "load failed", "malformed ingest message"} <= phrases
    # Then each is (part of) a message a handler logs: a renamed one leaves the search empty
    messages = _logged_messages()
    missing = sorted(p for p in phrases if not any(p in m for m in messages))
    assert missing == []


def test_the_readmes_json_shapes_are_what_the_commands_write():
    from dataclasses import fields

    from headrace.dlq import DeadLetter, RedriveResult
    from headrace.status import QueueDepth

    # Given the README's table of machine-readable output
    text = (ROOT / "README.md").read_text()
    table = text[text.index("| command | shape |") : text.index("Read them by key")]
    shapes = dict(re.findall(r"^\| `([^`]+)` \| (.*) \|$", table, re.M))

    def keys(shape: str) -> list[str]:
        return re.findall(r'"(\w+)"', shape)

    # Then each names the fields the command writes, in the order it writes them
    letter = [f.name for f in fields(DeadLetter) if f.repr]
    assert keys(shapes["dlq inspect --json"]) == letter
    dry_run, executed = shapes["dlq redrive --json"].split("with `--execute`")
    assert keys(dry_run) == ["dry_run", "queue", "would_move", "messages"]
    assert keys(executed) == ["dry_run", *(f.name for f in fields(RedriveResult))]
    assert keys(shapes["status --json"])[1:6] == [f.name for f in fields(QueueDepth)]
