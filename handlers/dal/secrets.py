"""Database credentials from Secrets Manager, through Powertools' parameters utility.

The secret (``DB_SECRET_ARN``) is JSON: ``{"host", "port", "dbname", "username",
"password"}`` (docs/contracts.md), optionally ``sslmode`` and ``sslrootcert`` (the PEM text
of the certificate authorities that verify the server). It is cached for an hour in the
execution environment; a failed connection or a secret of the wrong shape forces a fresh
read (a rotated password, a new host, a corrected value), and a second attempt when the
secret changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities import parameters

SECRET_MAX_AGE_SECONDS = 3600
_REQUIRED = ("host", "port", "dbname", "username", "password")


class InvalidSecret(Exception):
    """The secret is not the documented JSON shape (the message never shows its values)."""


@dataclass(frozen=True)
class Credentials:
    host: str
    port: int
    dbname: str
    username: str
    password: str
    sslmode: str = "prefer"
    sslrootcert: str | None = None  # PEM text, not a path: the secret carries it

    def __repr__(self) -> str:  # never log the password
        return f"Credentials(host={self.host!r}, port={self.port}, dbname={self.dbname!r}, username={self.username!r})"

    @classmethod
    def from_secret(cls, value: Any) -> Credentials:
        if not isinstance(value, dict):
            raise InvalidSecret("the database secret is not a JSON object")
        missing = [k for k in _REQUIRED if value.get(k) in (None, "")]
        if missing:
            raise InvalidSecret(f"the database secret lacks {', '.join(missing)}")
        try:
            port = int(value["port"])
        except (TypeError, ValueError):
            raise InvalidSecret("the database secret's port is not a number") from None
        return cls(
            host=str(value["host"]),
            port=port,
            dbname=str(value["dbname"]),
            username=str(value["username"]),
            password=str(value["password"]),
            sslmode=str(value.get("sslmode") or "prefer"),
            sslrootcert=str(value["sslrootcert"]) if value.get("sslrootcert") else None,
        )


def db_credentials(secret_arn: str, *, refresh: bool = False) -> Credentials:
    value = parameters.get_secret(
        secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh
    )
    return Credentials.from_secret(value)
