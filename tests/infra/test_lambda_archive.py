"""The Lambda package: deterministic zips, runtime-provided packages left out, limits,
and (slow) the real linux/arm64 build."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from components import lambda_archive
from components.lambda_archive import (
    ARCHIVE_ENV,
    BuildError,
    LambdaArchive,
    build_lambda_archive,
    prune_runtime_provided,
    resolve_archive,
    write_deterministic_zip,
)
from components.pipeline import HANDLERS

from .conftest import ROOT

ELF_MACHINE = {"arm64": 0xB7, "x86_64": 0x3E}


def _files(root: Path, contents: dict[str, str], mode: int = 0o644) -> dict[str, Path]:
    files = {}
    for name, text in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        files[name] = path
    return files


# ------------------------------------------------------------------------ deterministic zips
def test_same_files_give_the_same_bytes_whatever_their_mtime_and_mode(tmp_path: Path) -> None:
    # Given the same files written twice, at different times and with different modes
    contents = {"handlers/b.py": "b = 1\n", "handlers/a.py": "a = 1\n", "dep/lib.so": "\x7fELF"}
    first = _files(tmp_path / "one", contents, mode=0o600)
    second = _files(tmp_path / "two", contents, mode=0o664)
    os.utime(second["handlers/a.py"], (1_000_000_000, 1_000_000_000))
    # When each set is zipped
    write_deterministic_zip(first, tmp_path / "one.zip")
    write_deterministic_zip(dict(reversed(list(second.items()))), tmp_path / "two.zip")
    # Then the archives are byte-identical, sorted, with one timestamp and normalised modes
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(contents)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {(i.external_attr >> 16) & 0o777 for i in infos} == {0o644}


def test_executable_bit_survives(tmp_path: Path) -> None:
    files = _files(tmp_path, {"tool": "#!/bin/sh\n"}, mode=0o700)
    write_deterministic_zip(files, tmp_path / "x.zip")
    with zipfile.ZipFile(tmp_path / "x.zip") as archive:
        assert (archive.getinfo("tool").external_attr >> 16) & 0o777 == 0o755


def _fake_dependencies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Builds without pip: one installed module stands for the dependencies."""

    def install(requirements: Path, constraints: Path | None, target: Path, *args: object) -> None:
        (target / "dep").mkdir(parents=True)
        (target / "dep" / "__init__.py").write_text("x = 1\n")

    monkeypatch.setattr(lambda_archive, "install_dependencies", install)
    monkeypatch.setattr(lambda_archive, "prune_runtime_provided", lambda *args: [])


SOURCES = {
    "handlers/requirements.txt": "dep\n",
    "handlers/__init__.py": "",
    "handlers/processor.py": "def lambda_handler(event, context):\n    return 1\n",
    "handlers/logic/__init__.py": "",
    "handlers/logic/layout.py": "PREFIX = 'parquet/'\n",
}
# What editors, tools and a virtualenv leave in a working copy, none of it checked in.
WORKING_COPY_LEFTOVERS = {
    "handlers/.processor.py.swp": "vim swap",
    "handlers/processor.py~": "backup",
    "handlers/#processor.py#": "emacs autosave",
    "handlers/logic/layout.py.orig": "patch leftover",
    "handlers/.DS_Store": "finder",
    "handlers/.env": "SECRET=1",
    "handlers/.mypy_cache/3.12/processor.data.json": "{}",
    "handlers/.pytest_cache/README.md": "",
    "handlers/.venv/pyvenv.cfg": "home = /usr/bin",
    "handlers/.venv/lib/site.py": "",
    "handlers/venv/pyvenv.cfg": "home = /usr/bin",
    "handlers/venv/lib/python3.12/site-packages/six.py": "",
    "handlers/__pycache__/processor.cpython-312.pyc": "bytecode",
    "handlers/logic/__pycache__/layout.cpython-312.pyc": "bytecode",
}


def test_a_working_copy_packages_as_its_sources_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a clean checkout, and another of the same sources with editor, tool and
    # virtualenv leftovers, other modes and other modification times
    _fake_dependencies(monkeypatch)
    clean, used = tmp_path / "clean", tmp_path / "used"
    _files(clean, SOURCES, mode=0o644)
    # (0777: as a file system without Unix permissions shows every file)
    written = _files(used, {**WORKING_COPY_LEFTOVERS, **SOURCES}, mode=0o777)
    for path in written.values():
        os.utime(path, (1_700_000_000, 1_700_000_000))
    # When each is packaged
    first = build_lambda_archive(clean, cache_dir=tmp_path / "cache-clean")
    second = build_lambda_archive(used, cache_dir=tmp_path / "cache-used")
    # Then both packages hold the sources and the dependencies only, byte for byte the same:
    # Pulumi sees the same code hash on every machine
    with zipfile.ZipFile(second.path) as archive:
        names = archive.namelist()
    assert names == sorted(["dep/__init__.py", *(n for n in SOURCES if not n.endswith(".txt"))])
    assert second.sha256 == first.sha256
    assert second.source_code_hash == first.source_code_hash
    # and a leftover appearing later changes nothing either (same cached package)
    (used / "handlers" / "processor.py.bak").write_text("old")
    assert build_lambda_archive(used, cache_dir=tmp_path / "cache-used").path == second.path


def test_a_source_change_changes_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a packaged working copy
    _fake_dependencies(monkeypatch)
    _files(tmp_path / "repo", SOURCES)
    before = build_lambda_archive(tmp_path / "repo", cache_dir=tmp_path / "cache")
    # When a handler module changes, or one is added
    (tmp_path / "repo/handlers/logic/layout.py").write_text("PREFIX = 'data/'\n")
    changed = build_lambda_archive(tmp_path / "repo", cache_dir=tmp_path / "cache")
    (tmp_path / "repo/handlers/logic/new.py").write_text("")
    added = build_lambda_archive(tmp_path / "repo", cache_dir=tmp_path / "cache")
    # Then each gives a package of its own
    assert len({before.sha256, changed.sha256, added.sha256}) == 3


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_handler_sources_check_out_with_lf_line_ends_everywhere() -> None:
    # Given Git's attributes for the handler sources (Git for Windows turns LF into CRLF on
    # checkout by default, core.autocrlf, unless an attribute says otherwise)
    sources = sorted(
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "handlers").rglob("*.py")
        if "__pycache__" not in p.parts
    )
    result = subprocess.run(
        ["git", "check-attr", "eol", "--", *sources], cwd=ROOT, capture_output=True, text=True, check=True
    )
    # Then every one is checked out with LF, so every checkout packages the same bytes
    eol = dict(line.rsplit(": eol: ", 1) for line in result.stdout.splitlines())
    assert eol == dict.fromkeys(sources, "lf")


# ------------------------------------------------------------------------ runtime-provided packages
def _dist(target: Path, name: str, requires: list[str], files: list[str]) -> None:
    info = target / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    metadata = ["Metadata-Version: 2.1", f"Name: {name}", "Version: 1.0"] + [
        f"Requires-Dist: {r}" for r in requires
    ]
    (info / "METADATA").write_text("\n".join(metadata) + "\n")
    for file in files:
        (target / file).parent.mkdir(parents=True, exist_ok=True)
        (target / file).write_text("")
    record = [*files, f"{name}-1.0.dist-info/METADATA", f"{name}-1.0.dist-info/RECORD"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in record))


def test_runtime_provided_packages_and_their_own_deps_are_removed(tmp_path: Path) -> None:
    # Given an install where the tracer pulls botocore (provided by Lambda) and its urllib3
    target = tmp_path / "site"
    _dist(
        target,
        "powertools",
        ["jmespath", 'tracer ; extra == "tracer"', 'winonly ; sys_platform == "win32"'],
        ["powertools/__init__.py"],
    )
    _dist(target, "tracer", ["botocore", "wrapt"], ["tracer/__init__.py"])
    _dist(target, "botocore", ["urllib3", "jmespath"], ["botocore/__init__.py", "botocore/data/x.json"])
    _dist(target, "urllib3", [], ["urllib3/__init__.py"])
    _dist(target, "jmespath", [], ["jmespath/__init__.py"])
    _dist(target, "wrapt", [], ["wrapt/__init__.py"])
    from packaging.requirements import Requirement

    # When the install is pruned for powertools[tracer]
    removed = prune_runtime_provided(target, [Requirement("powertools[tracer]")], "3.12", "arm64")
    # Then botocore and urllib3 (needed by nothing else) are gone, jmespath (shared) stays
    assert removed == ["botocore", "urllib3"]
    assert not (target / "botocore").exists() and not (target / "urllib3").exists()
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == [
        "jmespath",
        "powertools",
        "tracer",
        "wrapt",
    ]


def test_a_dependency_that_was_not_installed_fails_the_build(tmp_path: Path) -> None:
    target = tmp_path / "site"
    _dist(target, "app", ["missing-lib>=1"], ["app/__init__.py"])
    from packaging.requirements import Requirement

    with pytest.raises(BuildError, match="missing-lib \\(required by app\\) was not installed"):
        prune_runtime_provided(target, [Requirement("app")], "3.12", "arm64")


# ------------------------------------------------------------------------ archive facts
def test_archive_facts_and_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "code.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("handlers/processor.py", "x" * 1000)
    facts = LambdaArchive.from_file(path)
    digest = hashlib.sha256(path.read_bytes()).digest()
    # Lambda's CodeSha256 is the base64 SHA-256 of the zip
    assert facts.source_code_hash == base64.b64encode(digest).decode()
    assert facts.unzipped_bytes == 1000 and facts.zipped_bytes == path.stat().st_size
    assert facts.needs_s3_staging is False
    assert facts.missing_modules(["handlers.processor.lambda_handler", "handlers.loader.lambda_handler"]) == [
        "handlers.loader.lambda_handler"
    ]
    monkeypatch.setattr(lambda_archive, "DIRECT_UPLOAD_LIMIT", facts.zipped_bytes - 1)
    assert facts.needs_s3_staging is True
    monkeypatch.setattr(lambda_archive, "UNZIPPED_LIMIT", 999)
    with pytest.raises(BuildError, match="exceeds Lambda's"):
        facts.check_limits()


def test_given_archive_must_be_a_zip(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BuildError, match="not a zip"):
        LambdaArchive.from_file(tmp_path / "notes.txt")
    with pytest.raises(BuildError, match="no such file"):
        resolve_archive(
            ROOT, architecture="arm64", python_version="3.12", environ={ARCHIVE_ENV: str(tmp_path / "x.zip")}
        )


def test_env_archive_replaces_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given HEADRACE_LAMBDA_ARCHIVE, and a build that must not run
    path = tmp_path / "given.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("anything.txt", "")

    def no_build(*args: object, **kwargs: object) -> LambdaArchive:
        raise AssertionError("built although an archive was given")

    monkeypatch.setattr(lambda_archive, "build_lambda_archive", no_build)
    # Then the file is used as is, even without handler modules
    archive = resolve_archive(
        ROOT,
        architecture="arm64",
        python_version="3.12",
        handlers=HANDLERS.values(),
        environ={ARCHIVE_ENV: str(path)},
    )
    assert archive.path == path


def test_a_build_without_a_handler_module_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a build that lacks the loader's module
    path = tmp_path / "built.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("handlers/processor.py", "")
    monkeypatch.setattr(lambda_archive, "build_lambda_archive", lambda *a, **k: LambdaArchive.from_file(path))
    # Then deploying it is refused, naming the handler
    with pytest.raises(BuildError, match=r"handlers\.loader\.lambda_handler"):
        resolve_archive(
            ROOT, architecture="arm64", python_version="3.12", handlers=HANDLERS.values(), environ={}
        )


# ------------------------------------------------------------------------ the real build
@pytest.fixture(scope="module")
def arm64_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[LambdaArchive, LambdaArchive]:
    """Two independent builds (no cache shared) of this repository for linux/arm64."""
    builds = []
    for index in range(2):
        cache = tmp_path_factory.mktemp(f"build{index}")
        builds.append(
            build_lambda_archive(
                ROOT, architecture="arm64", python_version="3.12", cache_dir=cache, use_cache=False
            )
        )
    return builds[0], builds[1]


@pytest.mark.slow
def test_real_arm64_build_is_reproducible(arm64_builds: tuple[LambdaArchive, LambdaArchive]) -> None:
    # Given two builds from scratch
    first, second = arm64_builds
    # Then they are byte-identical
    assert first.sha256 == second.sha256
    assert first.path.read_bytes() == second.path.read_bytes()


@pytest.mark.slow
def test_real_arm64_build_contents_and_size(arm64_builds: tuple[LambdaArchive, LambdaArchive]) -> None:
    archive, _ = arm64_builds
    with zipfile.ZipFile(archive.path) as zipped:
        names = set(zipped.namelist())
        shared_objects = {n: zipped.read(n)[:20] for n in names if n.endswith(".so")}
    # Then it holds every handler module of this repository...
    sources = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "handlers").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert "handlers/processor.py" in sources and sources <= names
    assert archive.missing_modules(["handlers.processor.lambda_handler"]) == []
    # ...and its dependencies, compiled for linux/arm64
    for module in (
        "duckdb/__init__.py",
        "pydantic/__init__.py",
        "aws_lambda_powertools/__init__.py",
        "psycopg/__init__.py",
        "aws_xray_sdk/__init__.py",
        "jmespath/__init__.py",
    ):
        assert module in names, module
    assert any(n.startswith("psycopg_binary/") for n in names)
    native = [n for n in shared_objects if n.startswith(("_duckdb", "pydantic_core/", "psycopg_binary/"))]
    assert len(native) >= 3
    for name in native:
        header = shared_objects[name]
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == ELF_MACHINE["arm64"], (
            name
        )
    # but not what the runtime provides, nor caches or build leftovers
    tops = {n.split("/", 1)[0] for n in names}
    assert not {"boto3", "botocore", "s3transfer", "urllib3", "dateutil", "bin"} & tops
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert "handlers/requirements.txt" not in names
    # and it fits Lambda: 250 MB unzipped, 50 MB for a direct upload
    assert archive.unzipped_bytes < lambda_archive.UNZIPPED_LIMIT
    assert archive.zipped_bytes < lambda_archive.DIRECT_UPLOAD_LIMIT
    print(
        f"\nLambda package: {archive.zipped_bytes / 2**20:.1f} MiB zipped, {archive.unzipped_bytes / 2**20:.1f} MiB unzipped"
    )


@pytest.mark.slow
def test_unchanged_sources_reuse_the_cached_archive(
    arm64_builds: tuple[LambdaArchive, LambdaArchive],
) -> None:
    # Given a build in its cache directory
    first, _ = arm64_builds
    cache = first.path.parent
    modified = first.path.stat().st_mtime_ns
    # When the build runs again on the same sources
    second = build_lambda_archive(ROOT, architecture="arm64", python_version="3.12", cache_dir=cache)
    # Then it returns the same file, untouched
    assert second.path == first.path and second.sha256 == first.sha256
    assert first.path.stat().st_mtime_ns == modified
    assert len(list(cache.glob("lambda-arm64-*.zip"))) == 1
