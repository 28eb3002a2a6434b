"""The embedded PostgreSQL manager (tests, benchmark, and the local runtime's warehouse)."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from headrace.local.postgres import Binaries, EmbeddedPostgres, PostgresError, PostgresNotFound, find_binaries


@pytest.fixture
def reachable_dir() -> Iterator[Path]:
    """A directory the server's account can enter even when the tests run as root
    (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="headrace-pg-test-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_persistent_server_keeps_its_data_credentials_and_port(reachable_dir):
    # Given a server in a directory of our choosing, with a table in it
    base = reachable_dir / "pg"
    first = EmbeddedPostgres(base)
    first.start()
    try:
        with psycopg.connect(first.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        secret = first.secret()
    finally:
        first.stop()
    # When another manager starts it again from the same directory (the next `local up`)
    second = EmbeddedPostgres(base)
    second.start()
    try:
        # Then the data, the credentials and the port are the same: the stored secret works
        assert second.secret() == secret
        with psycopg.connect(second.conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
            # and the application role is not a superuser (like an RDS application role)
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (
                False,
            )
    finally:
        second.cleanup()
    # and cleanup leaves a persistent directory in place
    assert (base / "data" / "PG_VERSION").exists()


def test_the_password_never_reaches_the_server_log(reachable_dir):
    # Given a persistent server whose operator logs every statement (log_statement = 'all',
    # a usual setting while investigating); its log's tail is quoted by this module's errors
    server = EmbeddedPostgres(reachable_dir / "pg")
    server.start()
    try:
        with psycopg.connect(server.conninfo(superuser=True, dbname="postgres"), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        server.stop()
        # When it starts again (the application role's password is set at every start)
        server.start()
        # Then the role still logs in with its password
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (server.username,)
        # and the statements were logged, but no password in them
        log = server.log_file.read_text(errors="replace")
        assert "LOGIN PASSWORD" in log
        assert server.password not in log
    finally:
        server.cleanup()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another account")
def test_as_root_a_directory_the_server_account_cannot_enter_is_a_clear_error(tmp_path):
    # Given a directory inside pytest's root-only tmp_path
    with pytest.raises(PostgresError, match=r"cannot enter .*chmod o\+x"):
        EmbeddedPostgres(tmp_path / "pg").start()


def test_a_wrong_password_is_refused(postgres):
    # Password authentication is on, as on RDS
    bad = dict(postgres.secret(), password="wrong")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host=bad["host"],
            port=bad["port"],
            dbname=bad["dbname"],
            user=bad["username"],
            password=bad["password"],
        )


def _no_system_postgres(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HEADRACE_PG_BINDIR", str(tmp_path))
    monkeypatch.setattr("headrace.local.postgres._COMMON_BINDIRS", ())


def test_without_system_binaries_the_pgserver_package_is_used(monkeypatch, tmp_path):
    _no_system_postgres(monkeypatch, tmp_path)
    assert find_binaries().bindir.parts[-3:] == ("pgserver", "pginstall", "bin")


def test_missing_binaries_are_a_clear_error(monkeypatch, tmp_path):
    _no_system_postgres(monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, "pgserver", None)  # not installed either
    with pytest.raises(PostgresNotFound, match="apt-get install postgresql"):
        find_binaries()


def test_the_pgserver_binaries_run_a_server_when_the_machine_has_none(tmp_path):
    # Given only the binaries the pgserver package ships (the fallback of find_binaries)
    import pgserver

    bindir = Path(pgserver.__file__).parent / "pginstall" / "bin"
    server = EmbeddedPostgres(binaries=Binaries(bindir=bindir, version="pgserver"))
    # When a server is started from them
    server.start()
    try:
        with psycopg.connect(server.conninfo()) as conn:
            version = conn.execute("SHOW server_version").fetchone()
    finally:
        server.cleanup()
    # Then it serves the application role's database
    assert version is not None and version[0]


def test_a_runtime_stops_and_deletes_the_server_a_killed_runtime_left(tmp_path):
    # Given a runtime killed with SIGKILL: its PostgreSQL (a session of its own) still runs,
    # its directory noted in the state directory
    from headrace.local.runtime import LocalRuntime

    left = EmbeddedPostgres().start()
    try:
        assert left.is_running()
        runtime = LocalRuntime(Path(__file__).resolve().parents[2], state_dir=tmp_path)
        runtime._postgres_marker.write_text(str(left.base_dir))
        # When the next runtime on that directory starts (this step of its start)
        runtime._reclaim_postgres()
        # Then the server is stopped and its directory, credentials included, deleted
        assert not left.base_dir.exists()
        assert not runtime._postgres_marker.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(left.conninfo(), connect_timeout=2).close()
    finally:
        left.cleanup()


# A runtime killed with SIGKILL the moment its PostgreSQL is up, before it goes on to deploy
# (the emulator is left out: it dies with the runtime and plays no part here).
KILLED_AFTER_THE_SERVER_STARTS = """
import os
import signal
import sys
from pathlib import Path

from headrace.local import runtime
from headrace.local.postgres import EmbeddedPostgres

runtime.Emulator.start = lambda self, timeout=30.0: None
started = EmbeddedPostgres.start


def start_then_die(self):
    started(self)
    print(self.base_dir, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


EmbeddedPostgres.start = start_then_die
runtime.LocalRuntime(Path(sys.argv[1]), state_dir=Path(sys.argv[2])).start()
"""


def test_a_runtime_killed_while_its_server_starts_leaves_nothing_the_next_one_does_not_stop(tmp_path, caplog):
    # (the directory was noted once the server was up: a runtime killed while initdb or
    # pg_ctl ran left a server, or a directory with its credentials, that no start removed)
    import subprocess

    from headrace.local.runtime import LocalRuntime

    root = Path(__file__).resolve().parents[2]
    state = tmp_path / "state"
    # Given a runtime killed with SIGKILL just as its PostgreSQL started
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_THE_SERVER_STARTS, str(root), str(state)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert killed.returncode == -9, killed.stderr
    left = EmbeddedPostgres(killed.stdout.strip())
    try:
        assert left.is_running()
        # When the next runtime on that state directory starts (this step of its start)
        with caplog.at_level(logging.WARNING, logger="headrace.local"):  # what `local demo` shows
            LocalRuntime(root, state_dir=state)._reclaim_postgres()
        # Then that server is stopped and its directory, credentials included, deleted,
        # and the start says so
        assert f"stopping and deleting the PostgreSQL a killed runtime left running ({left.base_dir})" in (
            caplog.messages
        )
        assert not left.base_dir.exists()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(left.conninfo(), connect_timeout=2).close()
    finally:
        left.cleanup()
        shutil.rmtree(left.base_dir, ignore_errors=True)
