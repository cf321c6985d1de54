"""Alembic environment of role_stash.

The database, first found first used:
  1. a connection handed in config.attributes["connection"] (test tools and
     embedding programs, role-stash-manage among them);
  2. `alembic -x url=...`;
  3. the ROLE_STASH_DATABASE_URL environment variable;
  4. sqlalchemy.url in alembic.ini;
  5. the embedded default, sqlite:///role_stash.sqlite.

The schema of role_stash's tables (and of its version table), first found
first used: the one handed in config.attributes["schema"] with the
connection; `alembic -x schema=NAME`; else where role_stash.db.schemas
places them (offline: the default schema). Every statement, the offline
SQL's included, names it.

On PostgreSQL each migration runs under a lock_timeout (see lock_timeout()).
"""

import logging.config
import os
import re

from alembic import context
import sqlalchemy as sa

from role_stash.db import engines
from role_stash.db import migration
from role_stash.db import models
from role_stash.db import schemas
from role_stash.db import urls

LOCK_TIMEOUT_VARIABLE = "ROLE_STASH_MIGRATION_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = "5s"

config = context.config
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name,
                              disable_existing_loggers=False)


def database_url():
    return (context.get_x_argument(as_dictionary=True).get("url")
            or os.environ.get(urls.URL_ENVIRONMENT_VARIABLE)
            or config.get_main_option("sqlalchemy.url")
            or urls.DEFAULT_URL)


def schema_argument():
    """`alembic -x schema=NAME`, else schemas.AUTOMATIC."""
    return schemas.validated(context.get_x_argument(
        as_dictionary=True).get("schema", schemas.AUTOMATIC))


def include_name(schema):
    """Consider role_stash's own schema and tables only: the database may
    hold another schema (Nova's), which autogenerate must never propose to
    drop. Alembic names the default schema None."""
    def include(name, type_, parent_names):
        if type_ == "schema":
            return name == schema
        if type_ == "table":
            return name in models.Base.metadata.tables
        return True
    return include


def configure(schema, **kwargs):
    context.configure(
        target_metadata=models.metadata_in(schema),
        version_table=migration.VERSION_TABLE,
        version_table_schema=schema,
        include_schemas=schema is not None,
        compare_type=True,
        include_name=include_name(schema),
        **kwargs)


def lock_timeout():
    """PostgreSQL's lock_timeout for the migration's transaction: an ALTER
    waiting for a lock fails after it, instead of queueing every metadata
    read behind it. `alembic -x lock_timeout=10s`, else
    $ROLE_STASH_MIGRATION_LOCK_TIMEOUT, else DEFAULT_LOCK_TIMEOUT; 0 waits
    for ever."""
    value = (context.get_x_argument(as_dictionary=True).get("lock_timeout")
             or os.environ.get(LOCK_TIMEOUT_VARIABLE) or DEFAULT_LOCK_TIMEOUT)
    if not re.fullmatch(r"\d+(ms|s|min)?", value):
        raise ValueError(f"lock_timeout {value!r}: expected a number with "
                         "ms, s or min (PostgreSQL's units), such as 5s")
    return value


def run_in_transaction():
    with context.begin_transaction():
        if context.get_context().dialect.name == "postgresql":
            # SET LOCAL: it ends with the transaction, also on a connection
            # handed in by the caller.
            context.execute(f"SET LOCAL lock_timeout = '{lock_timeout()}'")
        context.run_migrations()


def run_migrations_offline():
    schema = schema_argument()
    schema = None if schema is schemas.AUTOMATIC else schema
    configure(schema, url=database_url(), literal_binds=True,
              dialect_opts={"paramstyle": "named"})
    # SQLite's schema is a database the operator attaches.
    if schema is not None and context.get_context().dialect.name != "sqlite":
        with context.begin_transaction():
            context.execute(sa.schema.CreateSchema(schema,
                                                   if_not_exists=True))
    run_in_transaction()


def run_migrations(connection, schema):
    # SQLite alters a table by copying it: batch mode does that for us.
    configure(schema, connection=connection,
              render_as_batch=connection.dialect.name == "sqlite")
    run_in_transaction()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection, config.attributes.get("schema"))
        return
    engine = engines.context_manager_from_url(
        database_url(), max_retries=0).writer.get_engine()
    try:
        with engine.connect() as connection:
            schema = schemas.locate(connection, schema_argument(),
                                    for_sync=True)
            schemas.create(connection, schema)
            connection.commit()
            run_migrations(connection, schema)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
