"""SQLite."""


import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from role_stash.db.dialects.base import SQLITE_OWN_DATABASE
from role_stash.db.dialects.base import Statements
from role_stash.db.models import SHADOW_STASHES
from role_stash.db.models import STASHES


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

    new_stash = (sqlite.insert(STASHES)
               .on_conflict_do_nothing(
                   index_elements=["instance_uuid", "deleted"])
               .returning(STASHES.c.id))

    def insert_stash_row(self, connection, row):
        return connection.execute(self.new_stash, row).scalar()

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


