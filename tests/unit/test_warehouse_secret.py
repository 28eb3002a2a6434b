"""The warehouse secret's TLS fields, as the loader reads them."""

from __future__ import annotations

from pathlib import Path

import pytest

from handlers.dal.secrets import Credentials
from handlers.dal.warehouse import _root_certificate_file

SECRET = {"host": "db", "port": 5432, "dbname": "headrace", "username": "headrace", "password": "pw"}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_tls_fields_are_optional_and_default_to_libpqs_prefer() -> None:
    credentials = Credentials.from_secret(SECRET)
    assert (credentials.sslmode, credentials.sslrootcert) == ("prefer", None)


def test_the_authorities_come_from_the_secret() -> None:
    credentials = Credentials.from_secret({**SECRET, "sslmode": "verify-full", "sslrootcert": PEM})
    assert (credentials.sslmode, credentials.sslrootcert) == ("verify-full", PEM)


def test_the_authorities_file_is_named_by_its_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the temporary directory of an execution environment
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    # When the same bundle is asked for twice, and a rotated one
    first, again = _root_certificate_file(PEM), _root_certificate_file(PEM)
    rotated = _root_certificate_file(PEM.replace("MIIB", "MIIC"))
    # Then the bundle is written once, as given, and the rotated one beside it
    assert first == again and Path(first).read_text() == PEM
    assert rotated != first and Path(rotated).read_text() == PEM.replace("MIIB", "MIIC")
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".pem", ".pem"]
