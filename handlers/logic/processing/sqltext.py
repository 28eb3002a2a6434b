"""Quoting for SQL text built by the core (DuckDB dialect)."""


def literal(value: str) -> str:
    """``value`` as a SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def rows(con, sql: str) -> list[tuple]:
    """All rows of ``sql``. ``execute`` skips the relational API's extra parse and bind
    (about 2x cheaper on small files), and fetching everything completes the statement,
    as DuckDB >= 2 requires before the next one."""
    return con.execute(sql).fetchall()


def first_row(con, sql: str) -> tuple | None:
    """The first row of ``sql``."""
    result = rows(con, sql)
    return result[0] if result else None


def json_pointer(key: str) -> str:
    """The JSON Pointer of an object's member ``key``: DuckDB's ``$."..."`` refuses the empty
    name and reads ``*`` as a wildcard, even quoted; a pointer names any key as it is."""
    return "/" + key.replace("~", "~0").replace("/", "~1")
