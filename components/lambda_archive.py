"""The Lambda deployment package: ``handlers/`` plus its third-party dependencies, built
for the Lambda runtime and architecture, as a deterministic zip.

One archive serves every function (they differ only by handler). It is built when the
Pulumi program runs and cached under ``.headrace/build/``:

- dependencies: ``pip install --target`` of ``handlers/requirements.txt`` (versions pinned
  by ``requirements/constraints.txt``, the set the tests run) with manylinux wheels for the
  runtime's Python and CPU, cached by requirements + constraints + platform;
- the zip: cached by that plus the handler sources (the working copy's files that are code:
  no caches, hidden files, editor leftovers or virtualenvs), so an unchanged repository
  reuses the same bytes and Pulumi sees no diff.

Packages the Lambda Python runtime already provides (boto3 and botocore, with the
dependencies only they need) are left out: they are large and the runtime's own copies
are the ones AWS keeps patched.

``HEADRACE_LAMBDA_ARCHIVE=/path/to/file.zip`` skips the build and uses that file as every
function's code, as is (the embedded runtime and tests, which execute no Lambda code).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ARCHIVE_ENV = "HEADRACE_LAMBDA_ARCHIVE"

# Lambda quotas: a zip uploaded with the request, and the unzipped package (with layers).
DIRECT_UPLOAD_LIMIT = 50 * 1024 * 1024
UNZIPPED_LIMIT = 250 * 1024 * 1024

# Bump when the build changes in a way that must invalidate cached archives.
BUILDER_VERSION = "2"  # 2: only sources from handlers/, always 0644
# Zip timestamps cannot predate 1980; every entry gets this one.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)

# In the python3.12+ runtimes (Amazon Linux 2023, glibc 2.34).
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer"})
# glibc of Amazon Linux 2023: wheels for manylinux 2.17 (2014) up to 2.34 run there.
MANYLINUX_TAGS = ("manylinux2014", "manylinux_2_28", "manylinux_2_34")
MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}

HANDLER_PACKAGE = "handlers"
REQUIREMENTS = Path(HANDLER_PACKAGE) / "requirements.txt"
CONSTRAINTS = Path("requirements") / "constraints.txt"
DEFAULT_CACHE = Path(".headrace") / "build"
# Cached archives and dependency sets kept per architecture (older ones are removed).
CACHE_KEEP = 3


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class LambdaArchive:
    path: Path
    sha256: str
    zipped_bytes: int
    unzipped_bytes: int

    @property
    def source_code_hash(self) -> str:
        """What Lambda reports as ``CodeSha256``: base64 of the zip's SHA-256."""
        return base64.b64encode(bytes.fromhex(self.sha256)).decode()

    @property
    def needs_s3_staging(self) -> bool:
        return self.zipped_bytes > DIRECT_UPLOAD_LIMIT

    @classmethod
    def from_file(cls, path: Path) -> LambdaArchive:
        if not path.is_file():
            raise BuildError(f"{path}: no such file")
        if not zipfile.is_zipfile(path):
            raise BuildError(f"{path}: not a zip file")
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        with zipfile.ZipFile(path) as archive:
            unzipped = sum(info.file_size for info in archive.infolist())
        return cls(path, digest.hexdigest(), path.stat().st_size, unzipped)

    def check_limits(self) -> None:
        if self.unzipped_bytes > UNZIPPED_LIMIT:
            raise BuildError(
                f"{self.path}: {self.unzipped_bytes / 2**20:.0f} MiB unzipped exceeds Lambda's "
                f"{UNZIPPED_LIMIT / 2**20:.0f} MiB limit"
            )

    def missing_modules(self, handlers: Iterable[str]) -> list[str]:
        """Handler strings (``package.module.function``) whose module is not in the zip."""
        with zipfile.ZipFile(self.path) as archive:
            names = set(archive.namelist())
        missing = []
        for handler in handlers:
            module = handler.rsplit(".", 1)[0].replace(".", "/")
            if f"{module}.py" not in names and f"{module}/__init__.py" not in names:
                missing.append(handler)
        return missing


# ---------------------------------------------------------------------- zip writing
def _is_excluded(relative: Path) -> bool:
    return "__pycache__" in relative.parts or relative.suffix in (".pyc", ".pyo")


# What editors, patch tools and the like leave beside the sources of a working copy.
STRAY_SUFFIXES = frozenset({".swp", ".swo", ".swx", ".orig", ".rej", ".bak", ".tmp"})


def _is_stray(name: str) -> bool:
    """A file or directory of a working copy that is not code: hidden ones (``.DS_Store``,
    ``.venv``, ``.mypy_cache``, ``.env``, vim's ``.x.py.swp``), backups (``x.py~``, emacs's
    ``#x.py#``, ``x.py.orig``)."""
    return (
        name.startswith(".")
        or name.endswith("~")
        or (name.startswith("#") and name.endswith("#"))
        or Path(name).suffix in STRAY_SUFFIXES
    )


def _tree(root: Path, prefix: str = "", *, working_copy: bool = False) -> dict[str, Path]:
    """Files under ``root`` by archive name, without bytecode caches. A ``working_copy``
    (the handler sources) also loses what is not code (:func:`_is_stray`) and any virtual
    environment in it (a directory with a ``pyvenv.cfg``): the package, and the code hash
    Pulumi compares, are then those of the sources on every machine and checkout."""
    files = {}
    for directory, subdirectories, names in os.walk(root):
        here = Path(directory)
        if working_copy and (here / "pyvenv.cfg").is_file():
            subdirectories[:] = []
            continue
        if working_copy:
            subdirectories[:] = [d for d in subdirectories if not _is_stray(d)]
        for name in names:
            path = here / name
            relative = path.relative_to(root)
            if _is_excluded(relative) or (working_copy and _is_stray(name)) or not path.is_file():
                continue
            files[prefix + relative.as_posix()] = path
    return files


def write_deterministic_zip(files: Mapping[str, Path], destination: Path, plain: Iterable[str] = ()) -> None:
    """Same files, same bytes: sorted entries, one timestamp, normalised permissions (0755
    for an executable file, else 0644). The ``plain`` names (the handler sources) are 0644
    whatever their mode: a checkout on a file system without Unix permissions (a Windows drive
    under WSL, some mounts) shows every file as executable."""
    plain = frozenset(plain)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(destination, "w") as archive:
        for name in sorted(files):
            source = files[name]
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.create_system = 3  # unix, so external_attr holds the mode bits
            executable = name not in plain and source.stat().st_mode & (
                stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
            )
            mode = 0o755 if executable else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            with source.open("rb") as stream:
                archive.writestr(info, stream.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)


# ---------------------------------------------------------------------- dependencies
def _requirements(path: Path) -> list[Requirement]:
    requirements = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirements.append(Requirement(line))
    return requirements


def _marker_environment(python_version: str, architecture: str) -> dict[str, str]:
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "platform_system": "Linux",
        "sys_platform": "linux",
        "os_name": "posix",
        "platform_machine": MACHINES[architecture],
        "python_version": python_version,
        "python_full_version": f"{python_version}.0",
    }


def _applies(marker: Marker | None, environment: dict[str, str], extras: Iterable[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras))


def prune_runtime_provided(
    target: Path, roots: Iterable[Requirement], python_version: str, architecture: str
) -> list[str]:
    """Remove the distributions the Lambda runtime provides and every distribution only
    they need; fail if something the handlers need was not installed. Returns the names
    of the removed distributions."""
    installed = {
        canonicalize_name(dist.metadata["Name"]): dist
        for dist in importlib.metadata.distributions(path=[str(target)])
    }
    environment = _marker_environment(python_version, architecture)
    keep: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [
        (canonicalize_name(r.name), frozenset(r.extras), "handlers/requirements.txt")
        for r in roots
        if _applies(r.marker, environment, ())
    ]
    while pending:
        name, extras, wanted_by = pending.pop()
        if name in RUNTIME_PROVIDED or (name, extras) in seen:
            continue
        seen.add((name, extras))
        dist = installed.get(name)
        if dist is None:
            raise BuildError(f"{name} (required by {wanted_by}) was not installed")
        keep.add(name)
        for text in dist.requires or ():
            requirement = Requirement(text)
            if _applies(requirement.marker, environment, extras):
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras), name))

    removed: list[str] = []
    for name, dist in sorted(installed.items()):
        if name in keep:
            continue
        removed.append(name)
        for file in dist.files or ():
            path = target / file
            if path.is_file():
                path.unlink()
    for directory in [p for p in target.iterdir() if p.is_dir()]:
        _remove_empty(directory)
    return removed


def _remove_empty(directory: Path) -> None:
    for sub in directory.iterdir():
        if sub.is_dir():
            _remove_empty(sub)
    if not any(directory.iterdir()):
        directory.rmdir()


def install_dependencies(
    requirements: Path,
    constraints: Path | None,
    target: Path,
    python_version: str,
    architecture: str,
) -> None:
    """Install manylinux wheels for the Lambda platform into ``target`` (never source
    builds: what compiles here would be built for this machine, not for Lambda)."""
    machine = MACHINES[architecture]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-input",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        "--upgrade",
        *[arg for tag in MANYLINUX_TAGS for arg in ("--platform", f"{tag}_{machine}")],
        "-r",
        str(requirements),
    ]
    if constraints is not None:
        command += ["-c", str(constraints)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in (result.stderr or result.stdout).splitlines() if "is ignored" not in line]
        raise BuildError(
            f"pip could not install {requirements} for {python_version}/{machine}:\n" + "\n".join(lines[-20:])
        )
    # Console scripts embed this machine's paths and are of no use on Lambda.
    shutil.rmtree(target / "bin", ignore_errors=True)


# ---------------------------------------------------------------------- build
def _digest(*parts: bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()[:24]


def _prune_cache(cache: Path, pattern: str, keep: Path) -> None:
    entries = sorted(cache.glob(pattern), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in [e for e in entries if e != keep][CACHE_KEEP - 1 :]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def build_lambda_archive(
    repo_root: Path,
    *,
    architecture: str = "arm64",
    python_version: str = "3.12",
    cache_dir: Path | None = None,
    use_cache: bool = True,
) -> LambdaArchive:
    """Build (or reuse) the deployment package of ``repo_root``."""
    if architecture not in MACHINES:
        raise BuildError(f"unknown architecture {architecture!r} (arm64 or x86_64)")
    repo_root = repo_root.resolve()
    requirements = repo_root / REQUIREMENTS
    if not requirements.is_file():
        raise BuildError(f"{requirements}: no such file")
    constraints_path = repo_root / CONSTRAINTS
    constraints = constraints_path if constraints_path.is_file() else None
    cache = (cache_dir or repo_root / DEFAULT_CACHE).resolve()
    cache.mkdir(parents=True, exist_ok=True)

    handler_files = {
        name: path
        for name, path in _tree(repo_root / HANDLER_PACKAGE, f"{HANDLER_PACKAGE}/", working_copy=True).items()
        if name != REQUIREMENTS.as_posix()  # a build input, not runtime code
    }
    platform = f"{BUILDER_VERSION}|{architecture}|{python_version}".encode()
    deps_key = _digest(platform, requirements.read_bytes(), constraints.read_bytes() if constraints else b"")
    sources = [
        part for name in sorted(handler_files) for part in (name.encode(), handler_files[name].read_bytes())
    ]
    archive_key = _digest(deps_key.encode(), *sources)

    destination = cache / f"lambda-{architecture}-{archive_key}.zip"
    if use_cache and destination.is_file():
        return _finish(LambdaArchive.from_file(destination))

    deps = cache / f"deps-{architecture}-{deps_key}"
    if not (use_cache and (deps / ".complete").is_file()):
        staging = Path(tempfile.mkdtemp(prefix=f"deps-{architecture}-", dir=cache))
        try:
            install_dependencies(requirements, constraints, staging, python_version, architecture)
            prune_runtime_provided(staging, _requirements(requirements), python_version, architecture)
            (staging / ".complete").write_text("")
            shutil.rmtree(deps, ignore_errors=True)
            try:
                staging.rename(deps)
            except OSError:
                # A concurrent build finished the same set first; theirs is as good.
                if not (deps / ".complete").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    files = {name: path for name, path in _tree(deps).items() if name != ".complete"}
    clashes = sorted(name for name in handler_files if name in files)
    if clashes:
        raise BuildError(f"dependencies overwrite handler files: {', '.join(clashes[:5])}")
    files.update(handler_files)

    handle, temporary = tempfile.mkstemp(suffix=".zip", dir=cache)
    os.close(handle)
    try:
        write_deterministic_zip(files, Path(temporary), plain=handler_files)
        os.replace(temporary, destination)
    finally:
        Path(temporary).unlink(missing_ok=True)
    if use_cache:
        _prune_cache(cache, f"lambda-{architecture}-*.zip", destination)
        _prune_cache(cache, f"deps-{architecture}-*", deps)
    return _finish(LambdaArchive.from_file(destination))


def _finish(archive: LambdaArchive) -> LambdaArchive:
    archive.check_limits()
    return archive


def resolve_archive(
    repo_root: Path,
    *,
    architecture: str,
    python_version: str,
    handlers: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
) -> LambdaArchive:
    """The archive every function deploys: ``$HEADRACE_LAMBDA_ARCHIVE`` if set (used as
    is), else a build of ``repo_root`` for the given runtime and architecture, which must
    contain the module of every handler in ``handlers``."""
    environ = os.environ if environ is None else environ
    given = environ.get(ARCHIVE_ENV)
    if given:
        return _finish(LambdaArchive.from_file(Path(given)))
    archive = build_lambda_archive(repo_root, architecture=architecture, python_version=python_version)
    missing = archive.missing_modules(handlers)
    if missing:
        raise BuildError(f"{archive.path} lacks the modules of these handlers: {', '.join(missing)}")
    return archive
