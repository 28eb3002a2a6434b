"""What a running ``headrace local up`` serves, watched for edits (``CodeWatch``).

The handlers' code is imported by the function sandboxes: an edit applies from the next
invocation, as after `aws lambda update-function-code` (the executor retires the warm
sandboxes). The program's code is deployed once, at start: an edit needs a new deploy,
which a running runtime does not do; it says so, and says when the program's files hold
what was deployed again (an edit undone).
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

# What a function's sandboxes import: a change applies from the next invocation, as after
# `aws lambda update-function-code` (``local up`` only; see CodeWatch). Each entry: a
# directory under the root, the file names (fnmatch), and whether its subdirectories count.
HANDLER_CODE = (("handlers", "*.py", True),)
# What the program deploys from, with the `local` stack's configuration (not another
# stack's): a change needs a new deploy, which the runtime does not do while it runs.
PROGRAM_CODE = (
    ("", "__main__.py", False),
    ("", "Pulumi.yaml", False),
    ("", "Pulumi.local.yaml", False),
    ("components", "*.py", True),
)

Fingerprint = dict[str, tuple[int, int]]


def fingerprint(root: Path, sources: Iterable[tuple[str, str, bool]]) -> Fingerprint:
    """``(mtime_ns, size)`` of every file of ``sources`` (see HANDLER_CODE) under ``root``,
    by its path relative to ``root``: a save, an editor's atomic replace, a checkout, a new
    or deleted file each change it. A file or directory gone between the listing and its
    ``stat`` is left out (its deletion is the change); symbolic links to directories are
    not followed, ``__pycache__`` is skipped."""
    found: Fingerprint = {}
    base = len(os.path.join(root, ""))  # what an entry's path starts with: cut off
    for top, pattern, recursive in sources:
        pending = [os.path.join(root, top)]
        while pending:
            try:
                entries = os.scandir(pending.pop())
            except OSError:
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if recursive and entry.name != "__pycache__":
                            pending.append(entry.path)
                    elif fnmatch.fnmatchcase(entry.name, pattern):
                        try:
                            status = entry.stat()
                        except OSError:
                            continue
                        if stat.S_ISREG(status.st_mode):
                            relative = entry.path[base:].replace(os.sep, "/")
                            found[relative] = (status.st_mtime_ns, status.st_size)
    return found


def _module_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements a module runs when it is imported: at its top level, in its
    ``if``/``try`` blocks and class bodies; not those inside functions, run when called."""
    pending: list[ast.AST] = [tree]
    while pending:
        for node in ast.iter_child_nodes(pending.pop()):
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node
            elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.expr):
                pending.append(node)


def program_handler_files(root: Path, program: Iterable[str]) -> set[str]:
    """The files under ``handlers/`` whose modules the ``program`` files (paths relative to
    ``root``) import, directly or through each other, read from the import statements run
    at import time: what the program deploys can depend on them (a table's keys, in
    ``handlers/models/tables.py``). The packages on the way are left out (importing
    ``handlers.models.tables`` runs ``handlers/models/__init__.py``, which may import
    anything without the program depending on it); so are imports inside functions. A
    file that cannot be read or parsed adds nothing."""

    def module_file(name: str) -> str | None:
        path = name.replace(".", "/")
        for candidate in (f"{path}.py", f"{path}/__init__.py"):
            if (root / candidate).is_file():
                return candidate
        return None

    found: set[str] = set()
    pending = [path for path in program if path.endswith(".py")]
    while pending:
        path = pending.pop()
        try:
            tree = ast.parse((root / path).read_text(encoding="utf-8"), path)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue
        package = path.removesuffix(".py").split("/")[:-1]  # a relative import's base
        for node in _module_imports(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif node.level and package[:1] != ["handlers"]:
                continue  # a relative import of the program's own: watched already
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join([*package[: len(package) - node.level + 1], *base.split(".")]).strip(".")
                # `from handlers.models import tables` imports the module handlers.models.tables;
                # `from handlers.models.tables import METADATA`, the module handlers.models.tables
                submodules = [
                    f"{base}.{alias.name}" for alias in node.names if module_file(f"{base}.{alias.name}")
                ]
                names = submodules if len(submodules) == len(node.names) else [base, *submodules]
            for name in names:
                file = module_file(name) if name.split(".")[0] == "handlers" else None
                if file is not None and file not in found:
                    found.add(file)
                    pending.append(file)
    return found


def changed_paths(before: Fingerprint, after: Fingerprint) -> list[str]:
    """The paths added, deleted or modified from ``before`` to ``after``, sorted."""
    return sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))


def some(paths: list[str], shown: int = 3) -> str:
    """``a.py, b.py, c.py and 4 more``."""
    more = f" and {len(paths) - shown} more" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


class CodeWatch:
    """The code a running ``local up`` serves, checked for changes: the handlers' (the
    sandboxes import them) and the program's (deployed once, at start), which includes the
    handler files it imports (``program_handler_files``). ``check`` costs a directory
    listing per directory and a ``stat`` per file: about 1.5 ms for this repository's 90
    files on a busy 2-core machine, every WATCH_SECONDS; the program's imports are read
    again (some 70 ms) only after a change."""

    def __init__(self, root: Path):
        self.root = root
        self._handlers = fingerprint(root, HANDLER_CODE)
        self._program = fingerprint(root, PROGRAM_CODE)
        self._imported = program_handler_files(root, self._program)
        # what the deploy reads, by content: an edit undone (a revert, `git stash` and
        # `pop`, a save without a change) brings the program back to it
        self._deployed = self._program_contents()

    def _program_contents(self) -> dict[str, str]:
        """The SHA-256 of each file of the program as it is now ("": unreadable)."""
        contents: dict[str, str] = {}
        for path in sorted(self._program.keys() | self._imported):
            try:
                contents[path] = hashlib.sha256((self.root / path).read_bytes()).hexdigest()
            except OSError:
                contents[path] = ""
        return contents

    def program_as_deployed(self) -> bool:
        """Whether the program's files hold what they held when the runtime deployed them
        (a change reported by ``check`` undone since): no restart needed."""
        return self._program_contents() == self._deployed

    def check(self) -> tuple[list[str], list[str]]:
        """The handler files and the program files changed since the last check; a handler
        file the program imported, or imports now, is in both."""
        handlers, program = fingerprint(self.root, HANDLER_CODE), fingerprint(self.root, PROGRAM_CODE)
        changed_handlers = changed_paths(self._handlers, handlers)
        changed_program = changed_paths(self._program, program)
        self._handlers, self._program = handlers, program
        if changed_handlers or changed_program:  # an import may have come or gone
            before, self._imported = self._imported, program_handler_files(self.root, program)
            changed_program += [path for path in changed_handlers if path in before | self._imported]
        return changed_handlers, changed_program
