"""Alembic environment of role_stash.

The database, first found first used:
  1. a connection handed in config.attributes["connection"] (test tools and
     embedding programs, role-stash-manage among them);
  2. `alembic -x url=...`;
  3. the ROLE_STASH_DATABASE_URL environment variable;
  4. sqlalchemy.url in alembic.ini;
  5. the embedded default, sqlite:///role_stash.sqlite.
"""

import logging.config
import os

from alembic import context

from role_stash import db
from role_stash import migration
from role_stash import models

config = context.config
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name,
                              disable_existing_loggers=False)


def database_url():
    return (context.get_x_argument(as_dictionary=True).get("url")
            or os.environ.get(db.URL_ENVIRONMENT_VARIABLE)
            or config.get_main_option("sqlalchemy.url")
            or db.DEFAULT_URL)


def configure(**kwargs):
    context.configure(
        target_metadata=models.Base.metadata,
        version_table=migration.VERSION_TABLE,
        compare_type=True,
        **kwargs)


def run_migrations_offline():
    configure(url=database_url(), literal_binds=True,
              dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations(connection):
    # SQLite alters a table by copying it: batch mode does that for us.
    configure(connection=connection,
              render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = db.context_manager_from_url(
        database_url(), max_retries=0).writer.get_engine()
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
