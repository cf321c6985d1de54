"""psycopg 3 cursors that describe a result's columns once per connection.

Why a layer of our own: psycopg 3 builds cursor.description anew at every
access, a Python Column object per column with its name decoded and its
type looked up (a change proposed upstream to make it cheaper was not
merged). SQLAlchemy reads cursor.description once
per statement, to learn whether rows came back (and, the first time a
compiled statement runs, their names and types, which it then caches),
so the metadata GET's read pays for nine Column objects it never looks
at. Neither SQLAlchemy nor psycopg offers a way around it.

So the cursors of role_stash's own engines on psycopg 3 (never the
caller's) keep the Column list of each result shape they meet on their
connection: the same columns (names, type oids and type modifiers, as
libpq gives them) get the same Column objects, which hold no
reference to a cursor or a result. Anything else psycopg's cursor does,
it still does.
"""

import weakref

import psycopg
from psycopg import pq
import sqlalchemy as sa

# The result shapes a connection keeps at most: role_stash runs a few
# dozen statements; past this, the connection starts afresh.
SHAPES_KEPT = 256

_TUPLES = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE)
# {psycopg connection: {shape: [Column]}}
_COLUMNS_OF = weakref.WeakKeyDictionary()


class DescribedOnceCursor(psycopg.Cursor):
    """psycopg's Cursor, its description built once per result shape and
    connection."""

    @property
    def description(self):
        result = self.pgresult
        if result is None or not result.nfields or (
                result.status not in _TUPLES):
            return super().description
        fields = range(result.nfields)
        # A column's size follows from its type.
        shape = (tuple(map(result.fname, fields)),
                 tuple(map(result.ftype, fields)),
                 tuple(map(result.fmod, fields)))
        known = _COLUMNS_OF.get(self.connection)
        if known is None or len(known) >= SHAPES_KEPT:
            known = _COLUMNS_OF[self.connection] = {}
        columns = known.get(shape)
        if columns is None:
            columns = known[shape] = super().description
        # A list of its own: a caller may change it.
        return list(columns)


def use_on(engine):
    """Give the psycopg 3 connections engine opens DescribedOnceCursor as
    their cursor factory (psycopg's public Connection.cursor_factory),
    unless the caller's connect_args chose another one."""
    @sa.event.listens_for(engine, "connect")
    def describe_once(dbapi_connection, connection_record):
        if dbapi_connection.cursor_factory is psycopg.Cursor:
            dbapi_connection.cursor_factory = DescribedOnceCursor
