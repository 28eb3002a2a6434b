"""The loader's own database role, set up with the administrator's connection (RDS mode).

RDS creates one master user, which administers the instance (it is a member of
``rds_superuser``). The loader does not log in as that user: it logs in as a role of its
own that can do what loading needs and nothing more. That role

- logs in with the password of the loader's connection secret (sent to the server as a
  SCRAM verifier computed here, so the password itself is never in a statement, which a
  server's statement log could keep);
- owns the warehouse schema (never ``public``), hence creates, alters and fills the tables
  there, and is handed the tables an earlier version created as the master user (those
  of other roles stay theirs);
- has ``CONNECT`` on the database, and no other attribute or membership: it cannot create
  roles or databases, is not a member of ``rds_superuser`` (or any role), and reads nothing
  outside its schema that was not granted to everyone.

Every step checks before it changes, so running it again changes nothing but the
password's verifier (a new salt).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

# Relations the loader must be able to alter: tables (plain and partitioned). Indexes and
# the sequences of identity columns follow their table.
_TABLE_KINDS = ("r", "p")


class RoleSetupRefused(Exception):
    """The connection secrets ask for something this setup must not do."""


def ensure_loader_role(conn: psycopg.Connection[Any], role: str, password: str, schema: str) -> list[str]:
    """Make ``role`` the loader's login role owning ``schema``, in one transaction on the
    administrator's connection ``conn``; returns what was done, in order."""
    done: list[str] = []
    ident, schema_ident = sql.Identifier(role), sql.Identifier(schema)
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT current_user, current_database()")
        admin, database = cur.fetchone()  # type: ignore[misc]
        if schema == "public":
            raise RoleSetupRefused("the loader's role cannot own the public schema, which is every role's")
        if role == admin:
            raise RoleSetupRefused(
                f"the loader's role {role!r} is the administrator's: the loader must log in as a role of its own"
            )
        cur.execute(
            "SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls, "
            "ARRAY(SELECT pg_get_userbyid(roleid) FROM pg_auth_members WHERE member = r.oid ORDER BY 1) "
            "FROM pg_roles r WHERE rolname = %s",
            [role],
        )
        found = cur.fetchone()
        if found is not None and found[0]:
            raise RoleSetupRefused(
                f"the role {role!r} exists with administrative attributes (superuser, createrole, createdb, "
                "replication or bypassrls): the loader's role must not have them; drop or rename that role"
            )
        if found is not None and found[1]:
            raise RoleSetupRefused(
                f"the role {role!r} exists as a member of {', '.join(found[1])}: the loader's role must have "
                "no privileges but its own; revoke those memberships, or drop or rename that role"
            )
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
        verb = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if found else "CREATE ROLE {} LOGIN PASSWORD {}"
        cur.execute(sql.SQL(verb).format(ident, sql.Literal(verifier.decode())))
        done.append(f"{'updated' if found else 'created'} role {role}")
        # Handing the role a schema (or tables) needs the administrator to be able to
        # SET ROLE to it, and reaching its tables afterwards to use its privileges: what
        # membership gives before PostgreSQL 16, which gives a role's creator only the
        # ADMIN option and names both rights on their own.
        if conn.info.server_version >= 160000:
            cur.execute(
                "SELECT pg_has_role(current_user, %s, 'SET') AND pg_has_role(current_user, %s, 'USAGE')",
                [role, role],
            )
            grant = "GRANT {} TO CURRENT_USER WITH INHERIT TRUE, SET TRUE"
        else:
            cur.execute("SELECT pg_has_role(current_user, %s, 'MEMBER')", [role])
            grant = "GRANT {} TO CURRENT_USER"
        if not cur.fetchone()[0]:  # type: ignore[index]
            cur.execute(sql.SQL(grant).format(ident))
        cur.execute("SELECT has_database_privilege(%s, current_database(), 'CONNECT')", [role])
        if not cur.fetchone()[0]:  # type: ignore[index]
            cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident))
            done.append(f"granted CONNECT on database {database}")
        done += _own_schema(cur, role, ident, schema, schema_ident, database)
    return done


def _own_schema(
    cur: psycopg.Cursor[Any],
    role: str,
    ident: sql.Identifier,
    schema: str,
    schema_ident: sql.Identifier,
    database: str,
) -> list[str]:
    done = []
    cur.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", [schema])
    found = cur.fetchone()
    if found is None:
        cur.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema_ident, ident))
        done.append(f"created schema {schema} owned by {role}")
    elif found[0] != role:
        # The new owner of a schema must be allowed to create schemas (PostgreSQL's rule);
        # the role gets that only for this change.
        cur.execute("SELECT has_database_privilege(%s, current_database(), 'CREATE')", [role])
        may_create = cur.fetchone()[0]  # type: ignore[index]
        database_ident = sql.Identifier(database)
        if not may_create:
            cur.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(database_ident, ident))
        cur.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(schema_ident, ident))
        if not may_create:
            cur.execute(sql.SQL("REVOKE CREATE ON DATABASE {} FROM {}").format(database_ident, ident))
        done.append(f"schema {schema}: owner {found[0]} -> {role}")
    # The tables an earlier loader made as the master user; another role's stay its own.
    cur.execute(
        "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = ANY(%s) AND pg_get_userbyid(c.relowner) = current_user "
        "ORDER BY c.relname",
        [schema, list(_TABLE_KINDS)],
    )
    for table, owner in cur.fetchall():
        cur.execute(
            sql.SQL("ALTER TABLE {}.{} OWNER TO {}").format(schema_ident, sql.Identifier(table), ident)
        )
        done.append(f"table {schema}.{table}: owner {owner} -> {role}")
    return done
