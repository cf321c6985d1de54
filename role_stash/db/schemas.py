"""Where role_stash's tables live: found, created, and moved beside Nova's.

Nova's `nova-manage db archive_deleted_rows` reflects every table of its
database's default schema and looks each up in Nova's models: any other
table there stops it with a KeyError, after it has archived some tables
and before it removes the archived instances' rows in the API database.
So beside Nova, role_stash's tables (their Alembic version table and
shadow tables too) live in a schema of their own in the same database on
PostgreSQL (`role_stash`), a database of their own on the same server on
MySQL and MariaDB (Nova's database's name and `_role_stash`), reached by
qualified names on the same connection: a stash still joins Nova's
transaction. role_stash's statements name no schema; while they run, the
connection maps that to the schema found here (SQLAlchemy's
schema_translate_map), and a statement that also reads Nova's tables names
their schema.

A schema left unset (AUTOMATIC) is found: the schema of role_stash's own
when its version table is there, else the default schema. `db sync` on a
database with neither creates the tables in the schema of role_stash's own
when Nova's tables are there, else in the default schema (a database of
role_stash's alone, and SQLite, as before).
"""

import re

from oslo_db import exception as db_exc
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import dialects
from role_stash.db import models
from role_stash.db import nova_tables


class _Automatic:
    """The schema left unset: found (see locate)."""

    def __repr__(self):
        return "AUTOMATIC"


AUTOMATIC = _Automatic()

# A name every backend takes unquoted: PostgreSQL's identifiers are at
# most 63 bytes, MySQL's database names 64 characters.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# role_stash's tables, its version table among them, in creation order.
TABLE_NAMES = (models.VERSION_TABLE,
               *(table.name for table in models.Base.metadata.sorted_tables))


def validated(schema):
    """Return schema (AUTOMATIC, None for the connection's default
    schema, or a plain name) checked before any SQL."""
    if schema is AUTOMATIC or schema is None:
        return schema
    if not isinstance(schema, str) or not _NAME.fullmatch(schema):
        raise exception.InvalidArgument(
            "schema", f"{str(schema)[:40]!r} is not a schema name: letters, "
                      "digits and underscores, at most 63, not starting with "
                      "a digit")
    return schema


def translate_map(schema):
    """The schema_translate_map that puts role_stash's statements, whose
    tables name no schema, in schema."""
    return {None: schema}


def default_schema(connection):
    """The connection's default schema (MySQL: its database)."""
    return sa.inspect(connection).default_schema_name


def own_schema(connection):
    """The schema of role_stash's own on the connection's database, None
    where it has none (see dialects.Statements.own_schema)."""
    return dialects.for_dialect(connection.dialect.name).own_schema(
        sa.inspect(connection))


def attach_sqlite_database(context_manager, path,
                           name=dialects.SQLITE_OWN_DATABASE):
    """Attach the SQLite database file at path under name to each
    connection of each engine an enginefacade context manager creates
    from now on (role_stash's own engines on it too): SQLite's schema of
    role_stash's own, which Nova's archive, reflecting the main database,
    never sees. Call it before the context manager's first use."""
    name = validated(name)

    def attach(dbapi_connection, connection_record):
        dbapi_connection.execute(f"ATTACH DATABASE ? AS {name}", (path,))

    context_manager.append_on_engine_create(
        lambda engine: sa.event.listen(engine, "connect", attach))


def exists(connection, schema):
    """Whether schema (None: the default one) exists in the account's
    sight."""
    return schema is None or sa.inspect(connection).has_schema(schema)


def _has_table(connection, name, schema):
    # By the names the account may see: MySQL's look at a table of a
    # schema not created, or out of the account's sight, fails rather than
    # answer no (and a runtime account may be granted only some tables).
    return exists(connection, schema) and name in sa.inspect(
        connection).get_table_names(schema)


def holds_nova(connection, schema=None):
    """Whether Nova's instances table is in schema (None: the default)."""
    return _has_table(connection, nova_tables.INSTANCES.name, schema)


def locate(connection, schema=AUTOMATIC, *, for_sync=False):
    """Return the schema of role_stash's tables on connection, None for
    the default schema: schema itself when given, else found (see the
    module's docstring); for_sync also places a schema not created yet."""
    schema = validated(schema)
    if schema is not AUTOMATIC:
        return schema
    own = own_schema(connection)
    if own is None:
        return None
    if _has_table(connection, models.VERSION_TABLE, own):
        return own
    if _has_table(connection, models.VERSION_TABLE, None):
        return None
    if for_sync and holds_nova(connection):
        return own
    return None


def create(connection, schema):
    """Create schema unless it exists; where the account may not, raise a
    DatabaseError naming the statements an administrator runs."""
    if exists(connection, schema):
        return False
    statement = sa.schema.CreateSchema(schema, if_not_exists=True)
    try:
        connection.execute(statement)
    except (sa.exc.DBAPIError, db_exc.DBError) as error:
        grants = dialects.for_dialect(connection.dialect.name).schema_grants(
            schema, "<owner account>", "<runtime account>")
        raise exception.DatabaseError(
            f"cannot create the schema {schema!r} of role_stash's tables "
            f"({str(error).splitlines()[0]}): as an administrator, run "
            + "; ".join(grants) + "; then run `db sync` again as the owner "
            "account") from error
    return True


def tables_in(connection, schema):
    """Return the names of role_stash's tables in schema (None: the
    default schema)."""
    names = set(sa.inspect(connection).get_table_names(schema=schema))
    return [name for name in TABLE_NAMES if name in names]


def move(connection, to_schema=AUTOMATIC):
    """Move role_stash's tables from the default schema to to_schema
    (AUTOMATIC: the schema of role_stash's own), creating it, by their
    metadata alone; return the names of the tables moved. Nova's tables
    are not touched, so Nova may run meanwhile; a table already moved is
    skipped, so a run stopped half way is run again."""
    to_schema = validated(to_schema)
    statements = dialects.for_dialect(connection.dialect.name)
    if not statements.moves_tables:
        raise exception.InvalidArgument(
            "schema", f"{connection.dialect.name} moves no table between "
                      "schemas (SQLite: between databases); attach a "
                      "database as role_stash and run `db sync` on it")
    if to_schema is AUTOMATIC:
        to_schema = own_schema(connection)
    from_schema = default_schema(connection)
    if to_schema is None or to_schema == from_schema:
        raise exception.InvalidArgument(
            "schema", f"role_stash's tables are to leave the default schema "
                      f"{from_schema!r}: name another one")
    create(connection, to_schema)
    there = set(tables_in(connection, to_schema))
    moving = [name for name in tables_in(connection, None)
              if name not in there]
    for name in moving:
        connection.execute(statements.move_table(name, from_schema,
                                                 to_schema))
    return moving
