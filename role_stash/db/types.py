"""Column types and table options, frozen: what the revisions in
alembic/versions/ import, as Nova's migrations import nova.db.types.

A revision is history, so what it imports must never change meaning: a
type here is never edited once a revision uses it; a new kind of column
gets a new name, and models.py uses the names of the schema's present.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

# 64-bit ids: every create attempt takes one, an exact repeat's included,
# and widening a populated table later means rewriting it under a lock.
# SQLite makes a rowid alias only of INTEGER PRIMARY KEY. PostgreSQL gets
# BIGSERIAL rather than an identity column: the same 64-bit sequence, and
# Alembic would compare an Identity as a server default on the backends
# that have none.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# MySQL's DATETIME drops microseconds unless asked to keep them.
Timestamp = sa.DateTime().with_variant(
    mysql.DATETIME(fsp=6), "mysql", "mariadb")

# A reply's JSON as received: MySQL's TEXT holds only 64 KiB of bytes.
ReplyBody = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def mysql_table_args(mariadb=True):
    """The MySQL/MariaDB options of every table: utf8mb4 keeps every
    unicode character, and a binary NO PAD collation compares exactly, as
    PostgreSQL and SQLite do: 'Admin' != 'admin', and 'member ' !=
    'member' (utf8mb4_bin would ignore trailing spaces). MySQL lacks
    utf8mb4_nopad_bin and takes utf8mb4_0900_bin."""
    return {
        "mysql_engine": "InnoDB",
        "mysql_charset": "utf8mb4",
        "mysql_collate": "utf8mb4_nopad_bin" if mariadb
                         else "utf8mb4_0900_bin",
    }


def migration_mysql_table_args(migration_context):
    """mysql_table_args for a revision run by an Alembic MigrationContext
    (op.get_context()): MariaDB's collation but on a server known to be
    MySQL (offline SQL cannot tell, and takes MariaDB's)."""
    return mysql_table_args(
        migration_context.as_sql
        or getattr(migration_context.dialect, "is_mariadb", True))
