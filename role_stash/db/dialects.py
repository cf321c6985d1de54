"""Per-dialect statements: the only module that asks which database this is.

One object per dialect family (PostgreSQL, MySQL/MariaDB, SQLite) owns the
SQL that reads one stash, reads many, and writes a new one; the shape of a
bulk read's parameters; the fold of result rows into Stash values; and
what archive and purge (role_stash.db.archive) must do differently: how a
batch locks its rows, and which stash rows may leave role_stashes. The
repository asks it and runs what it gets on a SQLAlchemy Connection, so
every statement passes through SQLAlchemy's events and oslo.db's filters.
"""

import typing

from oslo_db import exception as db_exc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from role_stash import exception
from role_stash.db import models
from role_stash.db.models import REPLIES
from role_stash.db.models import ROLES
from role_stash.db.models import SHADOW_STASHES
from role_stash.db.models import STASHES
from role_stash.db.values import CachedReply
from role_stash.db.values import Stash

STASH_COLUMNS = (
    STASHES.c.id, STASHES.c.instance_uuid, STASHES.c.project_id,
    STASHES.c.user_id, STASHES.c.project_domain_id, STASHES.c.user_domain_id,
    STASHES.c.created_at, STASHES.c.updated_at,
)
LIVE = STASHES.c.deleted == 0
REPLY_COLUMNS = (
    REPLIES.c.target, REPLIES.c.body, REPLIES.c.etag, REPLIES.c.last_modified,
    REPLIES.c.stored_at, REPLIES.c.fresh_until, REPLIES.c.stale_until,
    REPLIES.c.request_digest,
)
# The statements every dialect shares: a stash's soft delete (deleted
# takes the row's id, so the unique (instance_uuid, deleted) pair allows
# one live stash and any number of deleted ones), the forgetting of an
# instance's cached replies, and when a stash was last written.
SOFT_DELETE = sa.update(STASHES).where(
    STASHES.c.instance_uuid == sa.bindparam("uuid"), LIVE).values(
        deleted=STASHES.c.id, deleted_at=sa.bindparam("now"))
DELETE_REPLIES = sa.delete(REPLIES).where(
    REPLIES.c.instance_uuid == sa.bindparam("uuid"))
WRITTEN_AT = sa.func.coalesce(STASHES.c.updated_at, STASHES.c.created_at)

_WITH_REPLIES = STASHES.outerjoin(
    REPLIES, REPLIES.c.instance_uuid == STASHES.c.instance_uuid)


class Statements:
    """The statements of a database that reads a stash as one row per role
    (through an outer join; a stash with no role gives one row whose name
    is NULL) and matches a bulk read with an IN list."""

    def __init__(self):
        self.read_one = self.with_roles(STASHES).where(
            STASHES.c.instance_uuid == sa.bindparam("instance_uuid"), LIVE)
        self.read_many = self.with_roles(STASHES).where(
            self.match_many(), LIVE)
        # The metadata GET with cached vendordata: the stash, its roles
        # and its instance's cached replies, in one statement.
        self.read_one_with_replies = self.with_roles_and_replies(
            STASHES.c.instance_uuid == sa.bindparam("instance_uuid"), LIVE)
        # The re-read of a write that met a live stash: a locking read,
        # so that in a caller's REPEATABLE READ transaction it sees the
        # latest committed stash, not the transaction's older snapshot.
        self.lock_one = self.read_one.with_for_update()

    def with_roles(self, stashes):
        """Return a SELECT of the stash columns of stashes (the table, or a
        page of it) with their role names, ordered by stash id."""
        columns = [stashes.c[column.name] for column in STASH_COLUMNS]
        return (
            sa.select(*columns, ROLES.c.name)
            .select_from(stashes.outerjoin(
                ROLES, ROLES.c.stash_id == stashes.c.id))
            .order_by(stashes.c.id, ROLES.c.position))

    def with_roles_and_replies(self, *where):
        """Return a SELECT of the stash columns of the stashes meeting
        where, with their role names and their instances' cached replies
        (REPLY_COLUMNS, from column 9): a row per role (a stash with no
        role gives one, its name NULL) and a row per reply, its role name
        NULL; never a row per role and reply, which would carry each
        reply's body once per role."""
        no_reply = [sa.type_coerce(sa.null(), column.type).label(column.name)
                    for column in REPLY_COLUMNS]
        roles = (
            sa.select(*STASH_COLUMNS, ROLES.c.name, *no_reply,
                      ROLES.c.position)
            .select_from(STASHES.outerjoin(
                ROLES, ROLES.c.stash_id == STASHES.c.id))
            .where(*where))
        replies = (
            sa.select(*STASH_COLUMNS,
                      sa.type_coerce(sa.null(), ROLES.c.name.type),
                      *REPLY_COLUMNS,
                      sa.type_coerce(sa.null(), ROLES.c.position.type))
            .select_from(STASHES.join(
                REPLIES, REPLIES.c.instance_uuid == STASHES.c.instance_uuid))
            .where(*where))
        both = sa.union_all(roles, replies)
        return both.order_by(both.selected_columns.position,
                             both.selected_columns.target)

    def fold_with_replies(self, rows):
        """Return (Stash or None, {target: CachedReply}) of the rows of
        read_one_with_replies."""
        rows = list(rows)
        if not rows:
            return None, {}
        head = rows[0]
        roles = tuple(dict.fromkeys(
            row[8] for row in rows if row[8] is not None))
        return self._stash_and_replies(head, roles, rows)

    @staticmethod
    def _stash_and_replies(head, roles, rows):
        stash = Stash(head[1], head[2], head[3], roles, head[4], head[5],
                      head[6], head[7])
        return stash, {row[9]: CachedReply._make(row[9:17])
                       for row in rows if row[9] is not None}

    def match_many(self):
        """The WHERE clause of a bulk read, on the parameter :uuids."""
        return STASHES.c.instance_uuid.in_(
            sa.bindparam("uuids", expanding=True))

    def bulk_parameters(self, instance_uuids):
        """Return the parameters of read_many for instance_uuids."""
        return {"uuids": list(instance_uuids)}

    def fold(self, rows):
        """Return {stash id: Stash} of rows of a with_roles() SELECT, in
        the rows' order."""
        heads = []
        stash_id = None
        for row in rows:
            if row[0] != stash_id:
                stash_id = row[0]
                roles = []
                heads.append((row, roles))
            if row[8] is not None:
                roles.append(row[8])
        return {head[0]: Stash(head[1], head[2], head[3], tuple(roles),
                               head[4], head[5], head[6], head[7])
                for head, roles in heads}

    # The engine of lone reads (see engines.LoneEngines): in autocommit,
    # so no BEGIN and no ROLLBACK around a read, and without a pre-ping: a
    # connection found dead is invalidated, oslo.db raises
    # DBConnectionError and the call is retried, which costs a round trip
    # once per lost connection instead of once per call.
    read_engine_options = {
        "pool_pre_ping": False,
        "isolation_level": "AUTOCOMMIT",
        "pool_reset_on_return": None,
        "skip_autocommit_rollback": True,
    }
    # The engine of lone writes, where they gain by one of role_stash's
    # own (see engines.LoneEngines); None: the caller's writer engine.
    write_engine_options = None

    def character_sets(self, connection, tables, schema=None):
        """Return a CharacterSets of the connection and of tables' string
        columns where the database's character set is chosen per table
        and per connection (MySQL, MariaDB); None where every string holds
        any unicode character as it is (PostgreSQL's UTF8 databases,
        SQLite)."""
        return None

    # Writes.
    # Whether insert_new_stash is one statement, and so atomic alone: a
    # call made outside any transaction may then run it in autocommit.
    new_stash_in_one_statement = False

    def insert_new_stash(self, connection, row, roles):
        """INSERT a stash row and its roles; return the new stash's id, or
        None, having written nothing, when the instance has a live stash."""
        stash_id = self.insert_stash_row(connection, row)
        if stash_id is not None and roles:
            insert_roles(connection, stash_id, roles)
        return stash_id

    def insert_stash_row(self, connection, row):
        """INSERT a stash row; return its id, or None if the instance has
        a live stash."""
        raise NotImplementedError

    # Archive and purge (role_stash.db.archive).
    def lock_batch(self, select, table):
        """Return the SELECT of a batch's ids from table, made to lock the
        rows it finds where the database can lock those alone.

        Here it locks nothing. MySQL's locking read, under its default
        REPEATABLE READ, would lock every index record it scans and the
        gaps between them, live stashes' included, and hold up writers for
        the batch; its INSERT ... SELECT that copies the batch locks the
        rows it copies, and the DELETE then removes exactly those.
        SQLite's writer holds the whole database.
        """
        return select

    def removable_stashes(self, archiving):
        """Return the WHERE clauses a stash row must also meet to leave
        role_stashes: for the archive (archiving), or the purge."""
        return ()

    def begin_batch(self, connection):
        """Run what a batch's transaction needs first, before its SELECT."""


    def own_schema(self, inspector):
        """The schema of role_stash's own beside the default one of an
        inspector's connection, where reflecting the default schema, as
        Nova's archive does, never sees role_stash's tables; None where
        there is none."""
        return None

    # Whether move_table(table, from_schema, to_schema) gives the
    # statement that moves a table to another schema by its metadata
    # alone, with its rows, indexes and constraints: SQLite moves no
    # table between databases.
    moves_tables = False

    def schema_grants(self, schema, owner, runtime):
        """The statements an administrator runs to make schema, owned by
        the owner account (which runs `db sync`), and let the runtime
        account read and write its tables."""
        return [f"ATTACH DATABASE '<file>' AS {schema}"]

    def insert_new_stashes(self, connection, rows, roles):
        """INSERT stash rows whose instances had no live stash when just
        read, and the roles of each (roles[i] of rows[i]), in one
        statement for the stashes and one for the roles where the
        database returns the new ids in order (else one INSERT per
        stash); return the ids in order. An instance given a live stash
        since raises oslo.db's DBDuplicateEntry, and on PostgreSQL ends
        the transaction: the caller goes one by one instead."""
        dialect = connection.dialect
        if dialect.insert_executemany_returning_sort_by_parameter_order:
            ids = connection.execute(
                sa.insert(STASHES).returning(
                    STASHES.c.id, sort_by_parameter_order=True),
                list(rows)).scalars().all()
        else:
            ids = [connection.execute(
                       sa.insert(STASHES), row).inserted_primary_key[0]
                   for row in rows]
        role_rows = [{"stash_id": stash_id, "position": position,
                      "name": name}
                     for stash_id, names in zip(ids, roles)
                     for position, name in enumerate(names)]
        if role_rows:
            connection.execute(sa.insert(ROLES), role_rows)
        return ids


def insert_roles(connection, stash_id, roles):
    """INSERT the roles of a stash, in order, in one executemany."""
    connection.execute(sa.insert(ROLES), [
        {"stash_id": stash_id, "position": position, "name": name}
        for position, name in enumerate(roles)])


class CharacterSets(typing.NamedTuple):
    """What the server says of a connection's and some tables' character
    sets: {variable: value} of the connection (character_set_client,
    _connection, _results), [(table, collation)] of the tables' defaults,
    [(table, column, character set, collation)] of their string columns,
    and the character set and collation role_stash's migrations give
    them on this server."""

    connection: dict
    tables: list
    columns: list
    charset: str
    collation: str


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


# The database of role_stash's own beside a MySQL database: its name and
# this suffix.
MYSQL_OWN_DATABASE_SUFFIX = "_role_stash"
# The schema of role_stash's own in a PostgreSQL database, and the name of
# the SQLite database holding its tables where one is attached.
POSTGRESQL_OWN_SCHEMA = SQLITE_OWN_DATABASE = "role_stash"


def mysql_own_database(database):
    """The database of role_stash's own beside a MySQL database: a schema
    is a database there, and one per cell database, named after it."""
    return f"{database}{MYSQL_OWN_DATABASE_SUFFIX}"


class MySQL(Statements):
    """MySQL and MariaDB: no INSERT that skips a duplicate and says so, but
    a failed statement undoes only itself, the transaction goes on."""

    _insert = sa.insert(STASHES)

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
                self._insert, row).inserted_primary_key[0]
        except db_exc.DBDuplicateEntry:
            return None


class SQLite(Statements):
    """SQLite: an INSERT that skips a live stash of the instance; the
    newest stash row never leaves role_stashes."""

    # Not in autocommit: oslo.db emits its own BEGIN on SQLite, which only
    # the ROLLBACK ends, and in-process it costs no round trip. But pooled:
    # oslo.db gives a SQLite file a NullPool, a new connection per read.
    read_engine_options = {
        "pool_pre_ping": False,
        "poolclass": sa.pool.QueuePool,
    }

    _insert = (sqlite.insert(STASHES)
               .on_conflict_do_nothing(
                   index_elements=["instance_uuid", "deleted"])
               .returning(STASHES.c.id))

    def insert_stash_row(self, connection, row):
        return connection.execute(self._insert, row).scalar()

    def own_schema(self, inspector):
        # A database attached to each connection under that name (see
        # schemas.attach_on_connect); none in an in-memory database's one
        # connection, or where none is attached: the main database.
        if SQLITE_OWN_DATABASE in inspector.get_schema_names():
            return SQLITE_OWN_DATABASE
        return None

    def removable_stashes(self, archiving):
        # SQLite gives a new row the largest id in the table plus one (no
        # AUTOINCREMENT): with the newest row gone, the next stash would
        # take an id that an archived stash, and its archived roles, may
        # hold. So the newest row stays, but for a purge while nothing is
        # archived.
        older = STASHES.c.id < sa.select(
            sa.func.max(STASHES.c.id)).scalar_subquery()
        if archiving:
            return (older,)
        nothing_archived = ~sa.select(SHADOW_STASHES.c.id).exists()
        return (sa.or_(older, nothing_archived),)

    _take_write_lock = sa.update(STASHES).where(sa.false()).values(
        deleted=STASHES.c.deleted)

    def begin_batch(self, connection):
        # A write that changes nothing takes the database's write lock, or
        # waits its turn for it. A transaction that read first and writes
        # then is refused at once, without waiting, while another writer
        # commits (SQLite would deadlock otherwise), and a busy writer
        # made every try of a batch fail.
        connection.execute(self._take_write_lock)


class PostgreSQL(Statements):
    """PostgreSQL: a stash's role names come back in an array, one row per
    stash; a bulk read matches one array parameter, one statement for any
    count; a new stash and its roles are written by one statement, which
    skips rather than fails on a live stash (a failed statement would
    abort the whole transaction, a caller's included)."""

    new_stash_in_one_statement = True

    def __init__(self):
        super().__init__()
        # Of with_for_update(), only the stash row: the role names come
        # from a subquery, which FOR UPDATE cannot lock.
        self.lock_one = self.read_one.with_for_update(of=STASHES)
        self._insert_new_stash = self._insert_new_stash_statement()

    def with_roles(self, stashes):
        columns = [stashes.c[column.name] for column in STASH_COLUMNS]
        return sa.select(*columns, self._role_names(stashes)).order_by(
            stashes.c.id)

    @staticmethod
    def _role_names(stashes):
        """A stash's role names, in order, as one array column."""
        names = sa.select(ROLES.c.name).where(
            ROLES.c.stash_id == stashes.c.id).order_by(ROLES.c.position)
        return sa.func.array(names.scalar_subquery()).label("roles")

    def with_roles_and_replies(self, *where):
        # One row per reply (one when none): the role names in an array.
        return sa.select(
            *STASH_COLUMNS, self._role_names(STASHES), *REPLY_COLUMNS,
        ).select_from(_WITH_REPLIES).where(*where).order_by(REPLIES.c.target)

    def fold_with_replies(self, rows):
        rows = list(rows)
        if not rows:
            return None, {}
        return self._stash_and_replies(rows[0], tuple(rows[0][8]), rows)

    def match_many(self):
        return STASHES.c.instance_uuid == sa.any_(sa.bindparam(
            "uuids", type_=postgresql.ARRAY(STASHES.c.instance_uuid.type)))

    def fold(self, rows):
        return {row[0]: Stash(row[1], row[2], row[3], tuple(row[8]),
                              row[4], row[5], row[6], row[7])
                for row in rows}

    @staticmethod
    def _insert_new_stash_statement():
        """The stash row (skipped when the instance has a live stash) and
        its roles, the list :names in order, in one statement that returns
        the new stash's id, or no row."""
        keys = ("instance_uuid", "project_id", "user_id", "project_domain_id",
                "user_domain_id", "created_at", "deleted")
        new_stash = (
            postgresql.insert(STASHES)
            .values({key: sa.bindparam(key, type_=STASHES.c[key].type)
                     for key in keys})
            .on_conflict_do_nothing(
                index_elements=["instance_uuid", "deleted"])
            .returning(STASHES.c.id)
            .cte("new_stash"))
        names = sa.func.unnest(
            # text[], not varchar(255)[]: a cast to varchar(n) would cut a
            # longer name short where the column refuses it.
            sa.cast(sa.bindparam("names"), postgresql.ARRAY(sa.Text))
        ).table_valued("name", with_ordinality="number").render_derived(
            name="names")
        new_roles = sa.insert(ROLES).from_select(
            ["stash_id", "position", "name"],
            sa.select(new_stash.c.id, names.c.number - 1, names.c.name)
            .select_from(new_stash.join(names, sa.true()))).cte("new_roles")
        return sa.select(new_stash.c.id).add_cte(new_roles)

    def insert_new_stash(self, connection, row, roles):
        return connection.execute(
            self._insert_new_stash, {**row, "names": list(roles)}).scalar()

    # A batch reads and writes a few rows by key, and is planned so, on
    # the indexes. For its values: psycopg 3 prepares a statement on the
    # server once it has run it a few times, and PostgreSQL then tries a
    # generic plan, which for the replies of no live stash ("deleted = $1"
    # unknown) scans role_stashes whole for every reply. Without
    # sequential scans: before autovacuum has analyzed the shadow tables
    # (an archive fills them faster than it comes by), the planner takes
    # them for empty and scans a whole table for each batch's roles.
    _plan_on_the_indexes = sa.select(
        sa.func.set_config("plan_cache_mode", "force_custom_plan", True),
        sa.func.set_config("enable_seqscan", "off", True))

    def own_schema(self, inspector):
        return POSTGRESQL_OWN_SCHEMA

    moves_tables = True

    def move_table(self, table, from_schema, to_schema):
        return sa.text(f'ALTER TABLE "{from_schema}"."{table}" '
                       f'SET SCHEMA "{to_schema}"')

    def schema_grants(self, schema, owner, runtime):
        return [f'CREATE SCHEMA IF NOT EXISTS "{schema}" '
                f"AUTHORIZATION {owner}",
                f'GRANT USAGE ON SCHEMA "{schema}" TO {runtime}',
                f'ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA '
                f'"{schema}" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES '
                f"TO {runtime}",
                f'ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA '
                f'"{schema}" GRANT USAGE ON SEQUENCES TO {runtime}']

    def begin_batch(self, connection):
        connection.execute(self._plan_on_the_indexes)

    def lock_batch(self, select, table):
        # Only the rows returned are locked: a rival archive or purge skips
        # them and takes others, instead of copying rows this batch is
        # about to delete (an INSERT ... SELECT reads without locking here).
        return select.with_for_update(of=table, skip_locked=True)


_FAMILIES = {
    "postgresql": PostgreSQL,
    "mysql": MySQL,
    "mariadb": MySQL,
    "sqlite": SQLite,
}
_built = {}


def for_dialect(name):
    """Return the Statements of a SQLAlchemy dialect name, built once."""
    statements = _built.get(name)
    if statements is None:
        try:
            family = _FAMILIES[name]
        except KeyError:
            raise exception.InvalidArgument(
                "database connection", f"role_stash runs on PostgreSQL, "
                f"MySQL/MariaDB and SQLite, not on {name}") from None
        statements = _built[name] = family()
    return statements
