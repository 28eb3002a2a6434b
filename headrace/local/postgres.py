"""A throwaway (or persistent) PostgreSQL server on 127.0.0.1, for tests, benchmarks and
the embedded runtime: the warehouse the loader writes to when there is no RDS.

It runs the machine's own PostgreSQL binaries (``initdb``, ``pg_ctl``, ``postgres``), found
through ``HEADRACE_PG_BINDIR``, ``pg_ctl`` on ``PATH``, ``pg_config --bindir`` or the usual
install locations. It does what RDS does for the pipeline:

- a superuser (``postgres``) and an application role that owns the application database,
  both with random passwords; host connections need a password (``scram-sha-256``);
- ``secret()`` gives the application role's credentials in the shape of the pipeline's
  database secret (``{"host", "port", "dbname", "username", "password"}``);
- ``stop()`` / ``start()`` take the server down and bring it back on the same port (the
  "database unavailable" tests), ``cleanup()`` stops it and deletes a temporary directory.

PostgreSQL refuses to run as root; when this process is root, the server runs as an
unprivileged account (``HEADRACE_PG_OS_USER``, else ``postgres``, else ``nobody``).

    with EmbeddedPostgres() as pg:          # temporary: deleted on exit
        psycopg.connect(pg.conninfo())

    pg = EmbeddedPostgres(Path(".headrace/local/postgres"))   # persistent: data kept
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
_TOOLS = ("initdb", "pg_ctl", "postgres")
_COMMON_BINDIRS = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
    "/opt/homebrew/bin",
    "/usr/local/bin",
)


class PostgresError(Exception):
    """The server could not be created, started or stopped (the message says why)."""


class PostgresNotFound(PostgresError):
    pass


@dataclass(frozen=True)
class Binaries:
    bindir: Path
    version: str

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def _binaries_in(bindir: Path) -> Binaries | None:
    if not all(os.access(bindir / tool, os.X_OK) for tool in _TOOLS):
        return None
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10)
    return Binaries(bindir=bindir, version=out.stdout.strip())


def find_binaries() -> Binaries:
    """The first directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    candidates: list[Path] = []
    if env := os.environ.get("HEADRACE_PG_BINDIR"):
        candidates.append(Path(env))
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(os.path.realpath(on_path)).parent)
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
    for pattern in _COMMON_BINDIRS:
        # highest version first (postgresql/16 before postgresql/15)
        candidates.extend(Path(p) for p in sorted(glob.glob(pattern), key=_version_key, reverse=True))
    for bindir in candidates:
        if found := _binaries_in(bindir):
            return found
    # Last resort, so a machine with nothing but Python works.
    if found := pgserver_binaries():
        return found
    raise PostgresNotFound(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found on PATH, via pg_config or in "
        f"{', '.join(_COMMON_BINDIRS)} or in the pgserver package; install them (Debian/Ubuntu: "
        "apt-get install postgresql; macOS: brew install postgresql@16), pip install pgserver, "
        "or set HEADRACE_PG_BINDIR"
    )


def pgserver_binaries() -> Binaries | None:
    """The binaries the pgserver package ships (a dev dependency; PostgreSQL 16), used as
    plain executables. Imported only when asked for: on import it looks up a runtime
    directory this module never uses, and warns on machines without XDG_RUNTIME_DIR."""
    with contextlib.suppress(ImportError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # type: ignore[import-untyped]

        return _binaries_in(Path(pgserver.__file__).parent / "pginstall" / "bin")
    return None


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int

    def check_reachable(self, directory: Path) -> None:
        """The server account must be able to enter every directory above its own."""
        for folder in [directory.resolve(), *directory.resolve().parents]:
            if not folder.exists():
                continue
            info = folder.stat()
            if info.st_uid == self.uid:
                allowed = info.st_mode & stat.S_IXUSR
            elif info.st_gid == self.gid:
                allowed = info.st_mode & stat.S_IXGRP
            else:
                allowed = info.st_mode & stat.S_IXOTH
            if not allowed:
                raise PostgresError(
                    f"PostgreSQL refuses to run as root, so it runs as {self.name!r}, which cannot enter "
                    f"{folder}; choose a directory it can reach (e.g. under /tmp) or allow it "
                    f"(chmod o+x {folder})"
                )

    @classmethod
    def for_server(cls) -> _OsUser | None:
        """None: run as ourselves. As root: an unprivileged account."""
        if os.geteuid() != 0:
            return None
        names = [os.environ.get("HEADRACE_PG_OS_USER"), "postgres", "nobody"]
        for name in filter(None, names):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return cls(name, entry.pw_uid, entry.pw_gid)
        raise PostgresError(
            "running as root and no unprivileged account (postgres, nobody) to run the server"
        )


class EmbeddedPostgres:
    """One PostgreSQL server in ``base_dir`` (a new temporary directory when None)."""

    def __init__(
        self,
        base_dir: Path | str | None = None,
        *,
        dbname: str = "headrace",
        username: str = "headrace",
        port: int | None = None,
        durable: bool = False,
        binaries: Binaries | None = None,
    ):
        self.binaries = binaries or find_binaries()
        self._temporary = base_dir is None
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="headrace-pg-"))
        self.data_dir = self.base_dir / "data"
        self.log_file = self.base_dir / "server.log"
        self.dbname = dbname
        self.username = username
        self.durable = durable
        self._os_user = _OsUser.for_server()
        self._credentials = self._load_or_create_credentials(port)
        self._running = False
        atexit.register(self._at_exit)

    # ------------------------------------------------------------------ public
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._credentials["port"])

    @property
    def password(self) -> str:
        return str(self._credentials["password"])

    def secret(self) -> dict[str, Any]:
        """The application role's credentials, shaped like the pipeline's DB secret."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.dbname,
            "username": self.username,
            "password": self.password,
        }

    def conninfo(self, *, superuser: bool = False, dbname: str | None = None) -> str:
        user, password = (
            (SUPERUSER, self._credentials["superuser_password"])
            if superuser
            else (self.username, self.password)
        )
        return psycopg.conninfo.make_conninfo(
            host=self.host,
            port=self.port,
            dbname=dbname or self.dbname,
            user=user,
            password=password,
            connect_timeout=5,
        )

    def start(self) -> EmbeddedPostgres:
        """Create the cluster on first use, start the server, create role and database.
        Idempotent: starting a running server does nothing."""
        if self.is_running():
            self._running = True
            return self
        self._prepare_base_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        for attempt in range(3):
            if attempt or not _port_is_free(self.port):
                self._credentials["port"] = free_port()
                self._save_credentials()
            try:
                self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.log_file), "-o", f"-p {self.port}")
                break
            except PostgresError:
                if attempt == 2 or _port_is_free(self.port):
                    raise
        self._running = True
        self._create_role_and_database()
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are closed). Idempotent."""
        if self.data_dir.exists() and self.is_running():
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")
        self._running = False

    def is_running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").exists():
            return False
        return self._run([self.binaries.tool("pg_ctl"), "-D", str(self.data_dir), "status"]).returncode == 0

    def cleanup(self) -> None:
        """Stop the server; delete the directory when it is a temporary one."""
        try:
            self.stop()
        finally:
            if self._temporary:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ------------------------------------------------------------------ mechanics
    def _load_or_create_credentials(self, port: int | None) -> dict[str, Any]:
        path = self.base_dir / "credentials.json"
        if path.exists():
            stored: dict[str, Any] = json.loads(path.read_text())
            if port:
                stored["port"] = port
            return stored
        return {
            "port": port or free_port(),
            "password": secrets.token_urlsafe(24),
            "superuser_password": secrets.token_urlsafe(24),
        }

    def _save_credentials(self) -> None:
        path = self.base_dir / "credentials.json"
        path.write_text(json.dumps(self._credentials))
        path.chmod(0o600)

    def _prepare_base_dir(self) -> None:
        if self._os_user:
            self._os_user.check_reachable(self.base_dir.parent)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir.chmod(0o700)
        self._save_credentials()
        if self._os_user:
            os.chown(self.base_dir, self._os_user.uid, self._os_user.gid)

    def _initdb(self) -> None:
        pwfile = self.base_dir / "superuser.pw"
        pwfile.write_text(self._credentials["superuser_password"] + "\n")
        pwfile.chmod(0o600)
        if self._os_user:
            os.chown(pwfile, self._os_user.uid, self._os_user.gid)
        try:
            args = [
                self.binaries.tool("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            ]
            if not self.durable:
                args.append("--no-sync")
            out = self._run(args, timeout=180)
            if out.returncode != 0:
                raise PostgresError(
                    f"initdb failed in {self.data_dir}: {out.stderr.strip() or out.stdout.strip()}"
                )
        finally:
            pwfile.unlink(missing_ok=True)
        settings = [
            "listen_addresses = '127.0.0.1'",
            "unix_socket_directories = ''",
            "max_connections = 50",
            "log_min_messages = warning",
        ]
        if not self.durable:  # tests and benchmarks: crash safety is not needed
            settings += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# headrace embedded server\n" + "\n".join(settings) + "\n")

    def _create_role_and_database(self) -> None:
        with psycopg.connect(self.conninfo(superuser=True, dbname="postgres"), autocommit=True) as conn:
            role = sql.Identifier(self.username)
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [self.username]).fetchone()
            verb = sql.SQL("ALTER") if exists else sql.SQL("CREATE")
            # the SCRAM verifier, not the password: a statement can end up in the server log
            # (log_statement, or any failing statement), whose tail errors here quote
            verifier = conn.pgconn.encrypt_password(
                self.password.encode(), self.username.encode(), b"scram-sha-256"
            ).decode()
            conn.execute(sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(verb, role, sql.Literal(verifier)))
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.dbname]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(self.dbname), role))

    def _pg_ctl(self, *args: str) -> None:
        out = self._run([self.binaries.tool("pg_ctl"), "-D", str(self.data_dir), *args], timeout=120)
        if out.returncode != 0:
            raise PostgresError(
                f"pg_ctl {args[0]} failed: {(out.stderr or out.stdout).strip()}\n{self._log_tail()}"
            )

    def _run(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        if self._os_user:
            kwargs = {"user": self._os_user.uid, "group": self._os_user.gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        # pg_ctl's children inherit its stdout: keep it off our pipes, or run() waits for
        # the server to exit. The server log goes to server.log instead.
        return subprocess.run(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if args[0].endswith("initdb") or "status" in args else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            env=env,
            cwd=self.base_dir if self.base_dir.exists() else None,
            **kwargs,
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "server log:\n" + "\n".join(
                self.log_file.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return "(no server log)"

    def _at_exit(self) -> None:
        """Never leave a server behind when the process exits without cleaning up."""
        with contextlib.suppress(Exception):
            if self._temporary:
                self.cleanup()
            elif self._running:
                self.stop()


def _port_is_free(port: int) -> bool:
    """Whether the server could listen on ``port`` (it uses SO_REUSEADDR too, so closed
    connections lingering in TIME_WAIT after a stop do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
