"""On RDS the loader logs in as a role of its own, which the warehouse setup function makes
with the master user's secret (handlers/warehouse_setup.py): against real PostgreSQL
servers, 15 (or the machine's) and 16 (the pgserver package's, RDS's default major), whose
rules on role membership differ. The master user is played as on RDS: a role with
CREATEROLE and CREATEDB that owns the database, not a superuser."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql

from handlers.dal.warehouse_roles import RoleSetupRefused
from headrace.local.postgres import EmbeddedPostgres, pgserver_binaries
from tests.integration.conftest import LambdaContext
from tests.integration.conftest_pg import REGION, Loader, _reset_secret_cache

SALES = "date,product,quantity\n2025-01-01,Widget,10\n2025-01-02,Gadget,5\n"
SALES_WITH_PRICE = "date,product,quantity,price\n2025-01-03,Widget,7,29.99\n"


@pytest.fixture(scope="module")
def postgres_16() -> Iterator[EmbeddedPostgres]:
    binaries = pgserver_binaries()
    assert binaries is not None and " 16." in binaries.version, binaries
    server = EmbeddedPostgres(binaries=binaries)
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(params=["machine", "16"])
def server(request: pytest.FixtureRequest) -> EmbeddedPostgres:
    return request.getfixturevalue("postgres" if request.param == "machine" else "postgres_16")


class Rds:
    """A database owned by a master user as RDS makes it, and the two connection secrets."""

    def __init__(self, server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch):
        self.server, self.monkeypatch = server, monkeypatch
        tag = uuid.uuid4().hex[:8]
        self.dbname, self.master, self.loader_role = f"db_{tag}", f"master_{tag}", f"loader_{tag}"
        self.master_password, self.loader_password = uuid.uuid4().hex, uuid.uuid4().hex
        with psycopg.connect(server.conninfo(superuser=True, dbname="postgres"), autocommit=True) as su:
            su.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB PASSWORD {}").format(
                    sql.Identifier(self.master), sql.Literal(self.master_password)
                )
            )
            su.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.dbname), sql.Identifier(self.master)
                )
            )
        self.secrets = boto3.client("secretsmanager", region_name=REGION)
        self.admin_secret = self.secrets.create_secret(
            Name=f"admin-{tag}", SecretString=json.dumps(self.admin())
        )["ARN"]

    def admin(self) -> dict[str, Any]:
        return {
            **self.server.secret(),
            "dbname": self.dbname,
            "username": self.master,
            "password": self.master_password,
        }

    def loader_fields(self) -> dict[str, Any]:
        return {"dbname": self.dbname, "username": self.loader_role, "password": self.loader_password}

    def setup(self, loader: Loader) -> dict[str, Any]:
        """Run the setup function for ``loader`` (its secret and schema), as the deployment does."""
        self.monkeypatch.setenv("ADMIN_SECRET_ARN", self.admin_secret)
        self.monkeypatch.setenv("DB_SECRET_ARN", loader.env["DB_SECRET_ARN"])
        self.monkeypatch.setenv("WAREHOUSE_SCHEMA", loader.schema)
        _reset_secret_cache()
        handler = importlib.reload(importlib.import_module("handlers.warehouse_setup"))
        return handler.lambda_handler({"purpose": "test"}, LambdaContext())

    def connect(self, user: str, password: str) -> psycopg.Connection[Any]:
        s = self.server
        return psycopg.connect(
            host=s.host, port=s.port, dbname=self.dbname, user=user, password=password, autocommit=True
        )

    def as_loader(self) -> psycopg.Connection[Any]:
        return self.connect(self.loader_role, self.loader_password)

    def owners(self, schema: str) -> dict[str, str]:
        with self.connect(self.master, self.master_password) as conn:
            rows = conn.execute(
                "SELECT nspname, pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s "
                "UNION ALL SELECT relname, pg_get_userbyid(relowner) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = %s AND relkind = 'r'",
                [schema, schema],
            ).fetchall()
        return dict(rows)


@pytest.fixture
def rds(server, pipeline, monkeypatch) -> Rds:  # pipeline: moto, for the secrets
    return Rds(server, monkeypatch)


def _loader(rds: Rds, pipeline, monkeypatch, tmp_path, fields: dict[str, Any]) -> Loader:
    return Loader(pipeline, rds.server, monkeypatch, tmp_path, secret_fields=fields)


def _configured(rds: Rds, pipeline, monkeypatch, tmp_path, fields: dict[str, Any]) -> Loader:
    """A loader's secret and schema only, for the setup to read (its connection closed)."""
    loader = _loader(rds, pipeline, monkeypatch, tmp_path, fields)
    loader.close()
    return loader


def test_the_loader_loads_as_its_own_role_which_can_do_nothing_else(rds, pipeline, monkeypatch, tmp_path):
    # Given a loader whose secret names its own role, which does not exist yet
    loader = _loader(rds, pipeline, monkeypatch, tmp_path, rds.loader_fields())
    try:
        # When the deployment runs the setup function
        answer = rds.setup(loader)
        # Then the role exists and owns the schema
        assert answer["role"] == rds.loader_role and answer["schema"] == loader.schema
        assert answer["changes"] == [
            f"created role {rds.loader_role}",
            f"created schema {loader.schema} owned by {rds.loader_role}",
        ]
        # and the loader loads a file, then another with a new column (the table altered)
        loader.process_and_load("incoming/sales/a.csv", SALES)
        loader.process_and_load("incoming/sales/b.csv", SALES_WITH_PRICE)
        assert set(rds.owners(loader.schema).values()) == {rds.loader_role}
    finally:
        loader.close()
    with rds.as_loader() as conn:
        [(rows, price)] = conn.execute(
            sql.SQL("SELECT count(*), max(price) FROM {}.sales").format(sql.Identifier(loader.schema))
        ).fetchall()
        assert (rows, float(price)) == (3, 29.99)
        # and the role has no administrative attribute, and cannot make roles, schemas or
        # read what the master user keeps elsewhere
        attributes = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls FROM pg_roles "
            "WHERE rolname = current_user"
        ).fetchone()
        assert attributes == (False, False, False, False, False)
        for statement in (
            "CREATE ROLE intruder",
            "CREATE SCHEMA elsewhere",
            "SELECT * FROM private.accounts",
        ):
            if statement.startswith("SELECT"):
                with rds.connect(rds.master, rds.master_password) as admin:
                    admin.execute("CREATE SCHEMA IF NOT EXISTS private")
                    admin.execute("CREATE TABLE IF NOT EXISTS private.accounts (secret text)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_an_upgrade_hands_the_master_users_tables_to_the_loader(rds, pipeline, monkeypatch, tmp_path):
    # Given a warehouse an earlier version loaded as the master user (it owns schema and tables)
    loader = _loader(rds, pipeline, monkeypatch, tmp_path, rds.admin())
    schema = loader.schema
    try:
        loader.process_and_load("incoming/sales/a.csv", SALES)
        assert set(rds.owners(schema).values()) == {rds.master}
        # (and a table of another role there, an analyst's)
        analyst = f"analyst_{rds.dbname}"
        superuser = rds.server.conninfo(superuser=True, dbname=rds.dbname)
        with psycopg.connect(superuser, autocommit=True) as su:
            su.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(analyst)))
            su.execute(
                sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(*map(sql.Identifier, (schema, analyst)))
            )
            su.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(analyst)))
            su.execute(sql.SQL("CREATE TABLE {}.notes (t text)").format(sql.Identifier(schema)))
        # When the upgrade writes the loader's own role into its secret and runs the setup
        rds.secrets.put_secret_value(
            SecretId=loader.env["DB_SECRET_ARN"],
            SecretString=json.dumps({**rds.server.secret(), **rds.loader_fields()}),
        )
        changes = rds.setup(loader)["changes"]
        # Then the schema and every table the master user made are the loader's; the
        # analyst's stays the analyst's
        assert changes[0] == f"created role {rds.loader_role}"
        assert f"schema {schema}: owner {rds.master} -> {rds.loader_role}" in changes
        owners = rds.owners(schema)
        assert owners.pop("notes") == analyst
        assert set(owners.values()) == {rds.loader_role}
        # and the loader, logging in as its role now, alters and fills the tables it did not
        # create, keeping their rows
        loader.close()
        loader.process_and_load("incoming/sales/b.csv", SALES_WITH_PRICE)
    finally:
        loader.close()
    with rds.as_loader() as conn:
        [(rows,)] = conn.execute(
            sql.SQL("SELECT count(*) FROM {}.sales").format(sql.Identifier(schema))
        ).fetchall()
        assert rows == 3
        # and it was granted nothing on the database beyond connecting (CREATE came and went)
        [(create,)] = conn.execute("SELECT has_database_privilege(current_database(), 'CREATE')").fetchall()
        assert create is False


def test_running_it_again_changes_only_the_password(rds, pipeline, monkeypatch, tmp_path):
    # Given a set-up loader role
    loader = _configured(rds, pipeline, monkeypatch, tmp_path, rds.loader_fields())
    rds.setup(loader)
    # When the setup runs again as it is: nothing but the role's password verifier is rewritten
    assert rds.setup(loader)["changes"] == [f"updated role {rds.loader_role}"]
    # When the loader's secret gets a new password and the setup runs (the deployment's trigger)
    old, rds.loader_password = rds.loader_password, uuid.uuid4().hex
    rds.secrets.put_secret_value(
        SecretId=loader.env["DB_SECRET_ARN"],
        SecretString=json.dumps({**rds.server.secret(), **rds.loader_fields()}),
    )
    rds.setup(loader)
    # Then the new password logs in and the old one no longer does
    with rds.as_loader() as conn:
        assert conn.execute("SELECT current_user").fetchone() == (rds.loader_role,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        rds.connect(rds.loader_role, old)


@pytest.mark.parametrize("server", ["machine"], indirect=True)
def test_it_refuses_what_would_give_the_loader_more(rds, pipeline, monkeypatch, tmp_path):
    # Given a loader secret naming the master user itself
    loader = _configured(rds, pipeline, monkeypatch, tmp_path, rds.admin())
    # Then the setup refuses, saying why
    with pytest.raises(RoleSetupRefused, match="is the administrator's"):
        rds.setup(loader)
    # Given a loader role that exists with an administrative attribute
    with rds.connect(rds.master, rds.master_password) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(rds.loader_role)))
    loader = _configured(rds, pipeline, monkeypatch, tmp_path, rds.loader_fields())
    with pytest.raises(RoleSetupRefused, match="administrative attributes"):
        rds.setup(loader)
    # Given a loader role that exists as a member of another role (whose privileges it would use)
    with rds.connect(rds.master, rds.master_password) as admin:
        admin.execute(sql.SQL("ALTER ROLE {} NOCREATEROLE").format(sql.Identifier(rds.loader_role)))
        admin.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(rds.loader_role)))
    with pytest.raises(RoleSetupRefused, match="as a member of pg_read_all_data"):
        rds.setup(loader)
    # Given the public schema, which is every role's
    loader = _configured(rds, pipeline, monkeypatch, tmp_path, {**rds.loader_fields(), "username": "another"})
    loader.schema = "public"
    with pytest.raises(RoleSetupRefused, match="cannot own the public schema"):
        rds.setup(loader)
    # Given a loader secret naming another database than the administrator's
    loader = _configured(rds, pipeline, monkeypatch, tmp_path, {**rds.loader_fields(), "dbname": "other"})
    with pytest.raises(RoleSetupRefused, match="must name the same database"):
        rds.setup(loader)
