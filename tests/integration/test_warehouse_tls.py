"""The loader verifies the database's certificate against the authorities in its secret
(``sslmode`` verify-full with ``sslrootcert``): a PostgreSQL server with TLS on, whose
certificate a test authority signed."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from handlers.dal.secrets import Credentials
from handlers.dal.warehouse import Connections, DatabaseUnavailable
from headrace.local.postgres import EmbeddedPostgres
from tests.integration.conftest_pg import Loader
from tests.tls import Authority, authority

SALES = "date,product,quantity,price\n2025-01-01,Widget,10,29.99\n2025-01-02,Gadget,5,49.99\n"


@pytest.fixture(scope="module")
def signer() -> Authority:
    return authority("headrace test database CA")


@pytest.fixture(scope="module")
def tls_postgres(signer: Authority) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres()
    try:
        server.start()  # creates the cluster; TLS needs the certificate in its data directory
        server.stop()
        certificate, key = signer.issue(server.host)
        owner = server.data_dir.stat()  # the server's account (not root's) must own its key
        for name, text in (("server.crt", certificate), ("server.key", key)):
            path = server.data_dir / name
            path.write_text(text)
            path.chmod(0o600)
            os.chown(path, owner.st_uid, owner.st_gid)
        with (server.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("ssl = on\n")
        server.start()
        yield server
    finally:
        server.cleanup()


def _credentials(server: EmbeddedPostgres, **tls: str) -> Credentials:
    return Credentials.from_secret({**server.secret(), **tls})


def test_the_loader_verifies_the_server_against_the_secrets_authorities(
    pipeline, tls_postgres, signer, monkeypatch, tmp_path
):
    # Given a loader whose secret asks for verify-full with the authority that signed the server
    loader = Loader(
        pipeline,
        tls_postgres,
        monkeypatch,
        tmp_path,
        secret_fields={"sslmode": "verify-full", "sslrootcert": signer.pem},
    )
    try:
        # When a file is processed and loaded
        loader.process_and_load("sales/jan.csv", SALES)
        # Then its rows are in the warehouse
        assert loader.values("sales", "product") == ["Widget", "Gadget"]
        # over a TLS connection (the loader keeps it open between invocations)
        assert loader.query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
            "WHERE a.application_name = 'headrace-loader'"
        ) == [(True,)]
    finally:
        loader.close()


def test_a_server_another_authority_signed_is_refused(tls_postgres):
    # Given credentials that trust another authority than the server's
    stranger = authority("someone else's CA")
    connections = Connections(
        lambda refresh: _credentials(tls_postgres, sslmode="verify-full", sslrootcert=stranger.pem)
    )
    # When the loader connects
    # Then it refuses, saying why
    with pytest.raises(DatabaseUnavailable, match="certificate verify failed"):
        connections.get()


def test_without_authorities_verify_full_says_what_is_missing(tls_postgres):
    # Given verify-full and no sslrootcert (what the stack configuration refuses)
    connections = Connections(lambda refresh: _credentials(tls_postgres, sslmode="verify-full"))
    # Then the connection fails, and libpq's message names the missing root certificate
    with pytest.raises(DatabaseUnavailable, match="root certificate file"):
        connections.get()
