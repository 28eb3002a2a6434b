"""The ``headrace`` command line.

Data goes to stdout, diagnostics to stderr. Exit status: 0 done; 1 the command ran and its
answer needs an operator (status: a DLQ holds messages; query: the query failed; ...);
2 it could not do its work (bad input, outputs file, credentials, endpoint); 130
interrupted (Ctrl-C); 141 the reader of its output went away. README "Command line" has
each command's, and the shape of every --json output.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

# The commands' modules (boto3, DuckDB, pyarrow: half a second and more) are imported by
# main(), where a Ctrl-C that comes meanwhile is one line, not a traceback of the import.
if TYPE_CHECKING:
    from handlers.logic.processing.pii import PiiRule


def _inspect(args: argparse.Namespace) -> int:
    import duckdb

    from handlers.logic.processing import (
        OutOfMemory,
        OutOfScratchSpace,
        ProcessingOptions,
        UnprocessableFile,
        process_file,
    )
    from handlers.logic.processing.pii import PiiOptions

    path: Path = args.file
    pii = PiiOptions()
    if args.pii_rules:
        try:
            pii = PiiOptions(extra_rules=_pii_rules(args.pii_rules))
            pii.rules  # noqa: B018 -- a name defined twice is found when the set is built
        except OSError as exc:
            return _fail(f"{args.pii_rules}: cannot read the PII rules file: {exc.strerror or exc}")
        except ValueError as exc:
            return _fail(f"{args.pii_rules}: invalid PII rules file: {exc}")
    if not path.is_file():
        return _fail(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    out: Path | None = args.parquet
    if out is not None:
        if out.is_dir():
            return _fail(f"--parquet {out}: a directory; name the file to write")
        if not out.parent.is_dir():
            return _fail(f"--parquet {out}: no such directory {out.parent}")
        if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
            return _fail(f"--parquet {out}: not writable")
    try:
        summary = process_file(path, options=ProcessingOptions(pii=pii), parquet_path=out)
    except (UnprocessableFile, OutOfMemory, OutOfScratchSpace) as exc:
        return _fail(f"{path}: {exc}")
    except PermissionError as exc:
        return _fail(f"{path}: cannot read the file: {exc.strerror}")
    except duckdb.IOException as exc:  # a path the checks above let through (/proc/x)
        where = f"--parquet {out}: cannot write it" if out and str(out) in str(exc) else str(path)
        return _fail(f"{where}: {str(exc).splitlines()[0]}")
    json.dump(summary.to_json_dict(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _pii_rules(path: Path) -> tuple[PiiRule, ...]:
    """The rules of a ``--pii-rules`` file; ValueError says what is wrong, and where."""
    from pydantic import ValidationError

    from handlers.logic.processing.pii import PiiRule

    rules = json.loads(path.read_text())
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise ValueError(
            'expected a JSON list of objects {"name", "pattern", "column_hint", "checksum", '
            '"skip_qualified", "skip_types"}'
        )
    parsed = []
    for i, rule in enumerate(rules):
        try:
            parsed.append(PiiRule(**rule))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'rule'}: "
                + (
                    "unknown key"
                    if e["type"] == "extra_forbidden"
                    else e["msg"].removeprefix("Value error, ")
                )
                for e in exc.errors(include_url=False)
            )
            raise ValueError(f"rule {i + 1} ({rule.get('name', 'unnamed')}): {problems}") from None
    return tuple(parsed)


def _fail(message: str) -> int:
    print(f"headrace: error: {message}", file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    from headrace import backfill, dlq, query, replay, status, tenants
    from headrace.experiments import cli as experiments_cli
    from headrace.local import cli as local_cli
    from headrace.outputs import DocstringHelp

    parser = argparse.ArgumentParser(prog="headrace", description=__doc__, formatter_class=DocstringHelp)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "inspect", help="process a local file exactly as the Lambda does; print its summary JSON"
    )
    p.add_argument("file", type=Path, help="CSV, TSV, JSON, NDJSON or log file (optionally .gz)")
    p.add_argument("--parquet", type=Path, metavar="OUT", help="also write the Parquet output here")
    p.add_argument(
        "--pii-rules",
        type=Path,
        metavar="FILE",
        help='extra PII rules: JSON list of {"name", "pattern", "column_hint", "checksum", '
        '"skip_qualified", "skip_types"}',
    )
    p.set_defaults(func=_inspect)
    tenants.register(sub)
    status.register(sub)
    backfill.register(sub)
    query.register(sub)
    dlq.register(sub)
    replay.register(sub)
    local_cli.register(sub)
    experiments_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = int(args.func(args))
        sys.stdout.flush()
    except KeyboardInterrupt:
        # Ctrl-C (or SIGINT from a script): one line and the shell's status for it, not a
        # traceback (a DLQ scan has made what it held visible again on the way out).
        print("headrace: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`headrace query ... | head`): stop quietly, as other
        # command-line tools do. Python's documented recipe: point stdout at devnull so the
        # flush at exit does not raise again. The status is the shell's for a command that
        # SIGPIPE ended (`set -o pipefail`), not 1: that says a DLQ holds messages (status),
        # the query failed, the function failed (local invoke).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE
    except UnicodeEncodeError as exc:
        # stdout in an encoding that lacks a character of the data (PYTHONIOENCODING=ascii;
        # a redirect on Windows writes cp1252): say so, rather than a traceback or data
        # silently rewritten
        if codecs.lookup(exc.encoding).name != codecs.lookup(sys.stdout.encoding or "utf-8").name:
            raise
        print(
            f"headrace: error: the output holds {exc.object[exc.start : exc.end]!a}, which stdout's "
            f"encoding ({sys.stdout.encoding}) cannot write: set PYTHONIOENCODING=utf-8",
            file=sys.stderr,
        )
        return 2
    return status


# Exit status when the reader of the output went away: 128 + SIGPIPE, as a shell reports it.
BROKEN_PIPE = 128 + signal.SIGPIPE
