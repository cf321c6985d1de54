"""MySQL and MariaDB."""


from oslo_db import exception as db_exc
import sqlalchemy as sa

from role_stash.db import models
from role_stash.db.dialects.base import CharacterSets
from role_stash.db.dialects.base import mysql_own_database
from role_stash.db.dialects.base import Statements
from role_stash.db.models import STASHES

_CONNECTION_CHARSETS = ("character_set_client", "character_set_connection",
                        "character_set_results")
_TABLE_COLLATIONS = sa.text(
    "SELECT table_name, table_collation FROM information_schema.tables "
    "WHERE table_schema = COALESCE(:schema, DATABASE()) "
    "AND table_name IN :tables "
    "ORDER BY table_name").bindparams(sa.bindparam("tables", expanding=True))
_COLUMN_CHARSETS = sa.text(
    "SELECT table_name, column_name, character_set_name, collation_name "
    "FROM information_schema.columns "
    "WHERE table_schema = COALESCE(:schema, DATABASE()) "
    "AND table_name IN :tables AND character_set_name IS NOT NULL "
    "ORDER BY table_name, ordinal_position").bindparams(
        sa.bindparam("tables", expanding=True))


class MySQL(Statements):
    """MySQL and MariaDB: no INSERT that skips a duplicate and says so, but
    a failed statement undoes only itself, the transaction goes on."""

    new_stash = sa.insert(STASHES)

    # A lone write on the caller's engine costs two requests more than its
    # statements and COMMIT: the pool's pre-ping, and its ROLLBACK at
    # check-in, which follows the COMMIT (or the rollback of a failed
    # write) that the write's own Connection always ends its transaction
    # with. Without them, as on the engine of lone reads, a connection
    # found dead fails its first statement, before anything is written;
    # it is invalidated, oslo.db raises DBConnectionError and the call is
    # retried.
    write_engine_options = {
        "pool_pre_ping": False,
        "pool_reset_on_return": None,
    }

    def own_schema(self, inspector):
        return mysql_own_database(inspector.default_schema_name)

    moves_tables = True

    def move_table(self, table, from_schema, to_schema):
        return sa.text(f"RENAME TABLE `{from_schema}`.`{table}` "
                       f"TO `{to_schema}`.`{table}`")

    def schema_grants(self, schema, owner, runtime):
        return [f"CREATE DATABASE IF NOT EXISTS `{schema}` "
                "CHARACTER SET utf8mb4",
                f"GRANT ALL PRIVILEGES ON `{schema}`.* TO {owner}",
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{schema}`.* "
                f"TO {runtime}"]

    def character_sets(self, connection, tables, schema=None):
        variables = connection.execute(sa.text("SELECT " + ", ".join(
            f"@@{name}" for name in _CONNECTION_CHARSETS))).one()
        tables = sorted(tables)
        # MySQL lacks MariaDB's utf8mb4_nopad_bin (see revision 0001).
        collation = (models.MYSQL_TABLE_ARGS["mysql_collate"]
                     if getattr(connection.dialect, "is_mariadb", False)
                     else "utf8mb4_0900_bin")
        return CharacterSets(
            connection=dict(zip(_CONNECTION_CHARSETS, variables)),
            tables=[tuple(row) for row in connection.execute(
                _TABLE_COLLATIONS, {"tables": tables, "schema": schema})],
            columns=[tuple(row) for row in connection.execute(
                _COLUMN_CHARSETS, {"tables": tables, "schema": schema})],
            charset=models.MYSQL_TABLE_ARGS["mysql_charset"],
            collation=collation)

    def insert_stash_row(self, connection, row):
        try:
            return connection.execute(
                self.new_stash, row).inserted_primary_key[0]
        except db_exc.DBDuplicateEntry:
            return None


