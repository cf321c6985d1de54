"""What every dialect family shares: the statements alike on every database,
and Statements, the family's base, whose methods suit a database that reads
a stash as one row per role."""

import typing

import sqlalchemy as sa
from sqlalchemy.sql import visitors

from role_stash.db import models
from role_stash.db.models import REPLIES
from role_stash.db.models import ROLES
from role_stash.db.models import STASHES
from role_stash.db.values import CachedReply
from role_stash.db.values import Stash

STASH_COLUMNS = (
    STASHES.c.id, STASHES.c.instance_uuid, STASHES.c.project_id,
    STASHES.c.user_id, STASHES.c.project_domain_id, STASHES.c.user_domain_id,
    STASHES.c.created_at, STASHES.c.updated_at,
)
# Written into the SQL, not bound: no parameter to pass at each execution,
# and a server's generic plan of a prepared statement knows the value.
LIVE = STASHES.c.deleted == sa.literal_column("0", sa.Integer)
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

STASHES_WITH_REPLIES = STASHES.outerjoin(
    REPLIES, REPLIES.c.instance_uuid == STASHES.c.instance_uuid)


# The reads of a metadata GET, and the statements of a stash write (a
# server create's, a rebuild's), named in the schema of role_stash's
# tables by name_schema(): a Connection's schema_translate_map would
# rewrite their SQL on every execution.
METADATA_READS = ("read_one", "read_many", "read_one_with_replies")
STASH_WRITES = ("new_stash", "new_roles", "lock_one", "update_stash",
                "delete_roles", "delete_replies")


def named_in(statement, schema):
    """Return a copy of statement whose role_stash tables (and their
    columns) are those of models.metadata_in(schema)."""
    copies = models.metadata_in(schema)
    tables = {table: copies.tables[f"{schema}.{table.name}"]
              for table in models.Base.metadata.tables.values()}

    def copy_of(element):
        if isinstance(element, sa.Table):
            return tables.get(element)
        if isinstance(element, sa.Column) and element.table in tables:
            return tables[element.table].c[element.key]
        return None

    return visitors.replacement_traverse(statement, {}, copy_of)


class Statements:
    """The statements of a database that reads a stash as one row per role
    (through an outer join; a stash with no role gives one row whose name
    is NULL) and matches a bulk read with an IN list.

    schema: the schema METADATA_READS and STASH_WRITES name (None: they
    name none, and run where a Connection's schema_translate_map puts
    them)."""

    schema = None
    # The INSERT of a new stash's row (of the row and its roles where
    # insert_new_stash is one statement): the dialect's.
    new_stash = None

    def name_schema(self, schema):
        """Name schema in the METADATA_READS and STASH_WRITES, once, as
        the object is built."""
        self.schema = schema
        for name in METADATA_READS + STASH_WRITES:
            setattr(self, name, named_in(getattr(self, name), schema))

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
        # A stash write's other statements: its roles, and a replace's.
        self.new_roles = sa.insert(ROLES)
        self.update_stash = sa.update(STASHES).where(
            STASHES.c.id == sa.bindparam("stash_id"), LIVE)
        self.delete_roles = sa.delete(ROLES).where(
            ROLES.c.stash_id == sa.bindparam("stash_id"))
        self.delete_replies = DELETE_REPLIES

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

    def fold(self, result):
        """Return {stash id: Stash} of the Result of a with_roles() SELECT,
        in its rows' order. Its rows are fetched at once (Result.all()),
        which costs less than iterating the Result row by row."""
        heads = []
        stash_id = None
        for row in result.all():
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
            self.insert_roles(connection, stash_id, roles)
        return stash_id

    def insert_roles(self, connection, stash_id, roles):
        """INSERT the roles of a stash, in order, in one executemany."""
        connection.execute(self.new_roles, [
            {"stash_id": stash_id, "position": position, "name": name}
            for position, name in enumerate(roles)])

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
            connection.execute(self.new_roles, role_rows)
        return ids


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


