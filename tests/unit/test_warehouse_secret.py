"""The warehouse secret's TLS fields, as the loader reads them."""

from __future__ import annotations

import hashlib
import os
import stat
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
    assert Path(first).parent == Path(rotated).parent
    assert sorted(p.suffix for p in Path(first).parent.iterdir()) == [".pem", ".pem"]


def test_the_authorities_file_cannot_be_planted_by_another_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a shared temporary directory where someone else already wrote, at the name the
    # bundle's file used to get, authorities of their own (which would let their server
    # pass verify-full and receive the password), and a symbolic link at the name of the
    # partial file (which would have turned the write onto a file of theirs)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    digest = hashlib.sha256(PEM.encode()).hexdigest()[:16]
    planted = tmp_path / f"headrace-sslrootcert-{digest}.pem"
    planted.write_text("-----BEGIN CERTIFICATE-----\nATTACKER\n-----END CERTIFICATE-----\n")
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    (tmp_path / f"headrace-sslrootcert-{digest}.{os.getpid()}.tmp").symlink_to(victim)
    # When the loader writes the secret's bundle
    path = Path(_root_certificate_file(PEM))
    # Then libpq reads the secret's authorities, from a directory only this process can
    # write to, and nothing else was written
    assert path.read_text() == PEM
    assert path.parent != tmp_path and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.parent.stat().st_uid == os.getuid()
    assert victim.read_text() == "untouched"
