"""Quoting for SQL text built by the core (DuckDB dialect)."""


def literal(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def first_row(con, sql: str) -> tuple | None:
    """The first row of ``sql`` (DuckDB >= 2 wants every result fetched to the end)."""
    rows = con.sql(sql).fetchall()
    return rows[0] if rows else None
