"""`headrace local up` runs the handlers' code as edited, like a code update on AWS: real
sandbox processes (no emulator), a function's pool and the executor's code check."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from headrace.local.codewatch import CodeWatch
from headrace.local.executor import Executor, FunctionPool
from headrace.local.sandbox import FunctionSpec

ROOT = Path(__file__).resolve().parents[2]


def test_an_edited_handler_runs_from_the_next_invocation_and_a_syntax_error_fails_its_init(tmp_path):
    handler = tmp_path / "handlers" / "fn.py"
    handler.parent.mkdir()
    (handler.parent / "__init__.py").write_text("")
    handler.write_text("def handler(event, context):\n    return 'first'\n")
    spec = FunctionSpec(
        name="fn", arn="arn:aws:lambda:us-east-1:123456789012:function:fn", handler="handlers.fn.handler"
    )
    pool = FunctionPool(spec, {"PYTHONPATH": str(ROOT)}, tmp_path, tmp_path, concurrency=1)
    lines: list[str] = []
    executor = SimpleNamespace(
        pools={"fn": pool}, _on_invocation=lines.append, _code_watch=CodeWatch(tmp_path)
    )
    try:
        assert pool.invoke({}).response == "first"
        # Each edit changes the file's size: the sandbox's bytecode cache (keyed on the
        # source's mtime in whole seconds, and its size) must not hide it either.
        handler.write_text("def handler(event, context):\n    return 'second, edited'\n")
        Executor.check_code(executor)  # type: ignore[arg-type]  # the watch loop's step
        assert lines == ["handlers changed (handlers/fn.py): new sandboxes from the next invocation"]
        second = pool.invoke({})
        assert (second.response, second.cold) == ("second, edited", True)

        handler.write_text("def handler(event, context):\n    return ('unclosed'\n")
        Executor.check_code(executor)  # type: ignore[arg-type]
        broken = pool.invoke({})
        assert (broken.ok, broken.error_type) == (False, "Runtime.UserCodeSyntaxError")
        assert broken.error and broken.error.startswith(
            "Syntax error in module 'handlers.fn': '(' was never closed (fn.py, line 2)"
        )
        assert f'File "{handler}", line 2' in (tmp_path / "fn.log").read_text()  # the function's log

        # fixed: picked up by the next invocation, the failed sandbox was not kept
        handler.write_text("def handler(event, context):\n    return 'fixed'\n")
        assert pool.invoke({}).response == "fixed"
    finally:
        pool.close()
