"""Per-dialect statements: the only package that asks which database this is.

One object per dialect family (PostgreSQL, MySQL/MariaDB, SQLite) owns the
SQL that reads one stash, reads many, and writes a new one; the shape of a
bulk read's parameters; the fold of result rows into Stash values; and
what archive and purge (role_stash.db.archive) must do differently: how a
batch locks its rows, and which stash rows may leave role_stashes. The
repository asks it and runs what it gets on a SQLAlchemy Connection, so
every statement passes through SQLAlchemy's events and oslo.db's filters.
"""

from role_stash import exception
from role_stash.db.dialects.base import CharacterSets  # noqa: F401
from role_stash.db.dialects.base import DELETE_REPLIES  # noqa: F401
from role_stash.db.dialects.base import LIVE  # noqa: F401
from role_stash.db.dialects.base import METADATA_READS  # noqa: F401
from role_stash.db.dialects.base import mysql_own_database  # noqa: F401
from role_stash.db.dialects.base import MYSQL_OWN_DATABASE_SUFFIX  # noqa: F401
from role_stash.db.dialects.base import POSTGRESQL_OWN_SCHEMA  # noqa: F401
from role_stash.db.dialects.base import REPLY_COLUMNS  # noqa: F401
from role_stash.db.dialects.base import SOFT_DELETE  # noqa: F401
from role_stash.db.dialects.base import SQLITE_OWN_DATABASE  # noqa: F401
from role_stash.db.dialects.base import STASH_COLUMNS  # noqa: F401
from role_stash.db.dialects.base import Statements  # noqa: F401
from role_stash.db.dialects.base import WRITTEN_AT  # noqa: F401
from role_stash.db.dialects.mysql import MySQL
from role_stash.db.dialects.postgresql import PostgreSQL
from role_stash.db.dialects.sqlite import SQLite

_FAMILIES = {
    "postgresql": PostgreSQL,
    "mysql": MySQL,
    "mariadb": MySQL,
    "sqlite": SQLite,
}
_built = {}


def for_dialect(name, schema=None):
    """Return the Statements of a SQLAlchemy dialect name, their metadata
    reads named in schema (None: in none), built once."""
    statements = _built.get((name, schema))
    if statements is None:
        try:
            family = _FAMILIES[name]
        except KeyError:
            raise exception.InvalidArgument(
                "database connection", f"role_stash runs on PostgreSQL, "
                f"MySQL/MariaDB and SQLite, not on {name}") from None
        statements = family()
        if schema is not None:
            statements.name_schema(schema)
        statements = _built.setdefault((name, schema), statements)
    return statements
