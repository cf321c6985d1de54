"""The repository: the one door through which stashes are written and read.

Every method validates its arguments before any SQL runs, returns frozen
value objects, and raises only role_stash.exception errors.

A method called with the caller's enginefacade context while that context
has a transaction open (from the same transaction context manager) joins
it, so the stash commits or rolls back with the caller's work; it is then
not retried, since the caller owns the transaction. Otherwise the method
runs alone: a write in a transaction of its own, a read in autocommit, both
retried on deadlock and lost connection.
"""

import datetime
import functools
import logging
import threading
import typing

from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

from role_stash import db
from role_stash import exception
from role_stash import models
from role_stash import validation

LOG = logging.getLogger(__name__)

STASHES = models.Stash.__table__
ROLES = models.StashRole.__table__

PURGE_BATCH_SIZE = 1000


class Stash(typing.NamedTuple):
    """What an instance's creator was, as stashed at create time: an
    immutable value. A named tuple: a bulk read builds a hundred at once,
    at 0.4 µs each against a frozen dataclass's 1.7 µs."""

    instance_uuid: str
    project_id: str
    user_id: str
    roles: tuple[str, ...]
    project_domain_id: str | None = None
    user_domain_id: str | None = None
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None

    def vendordata(self):
        """Return the fields Nova's dynamic vendordata sends for this stash.

        'boot-roles' keeps Nova's legacy form, the role names joined by
        commas. A role name that itself holds a comma cannot be told apart
        from two roles in that form, and a consumer splitting on commas
        would grant roles nobody holds, so such a name is left out of
        'boot-roles'; the roles attribute always has every name, exactly.
        """
        return {
            "project-id": self.project_id,
            "instance-id": self.instance_uuid,
            "boot-roles": ",".join(
                name for name in self.roles if "," not in name),
        }

    def _payload(self):
        return (self.project_id, self.user_id, self.roles,
                self.project_domain_id, self.user_domain_id)


def _open_transaction(context):
    """Return the enginefacade transaction context has open, or None."""
    if context is None:
        return None
    try:
        return context.transaction_ctx
    except (AttributeError, db_exc.NoEngineContextEstablished):
        return None


_STASH_COLUMNS = (
    STASHES.c.id, STASHES.c.instance_uuid, STASHES.c.project_id,
    STASHES.c.user_id, STASHES.c.project_domain_id, STASHES.c.user_domain_id,
    STASHES.c.created_at, STASHES.c.updated_at,
)
_LIVE = STASHES.c.deleted == 0


def _with_roles(stashes, dialect_name):
    """Return a SELECT of the stash columns of stashes with their role
    names, ordered by stash id, in the form the dialect reads fastest (see
    _stashes_from_rows): on PostgreSQL one row per stash, its names in an
    array (raw psycopg2 reads one stash of 100k in 337 µs so, 440 through
    the join); elsewhere one row per role (a stash with no role gives one
    row with name NULL)."""
    columns = [stashes.c[column.name] for column in _STASH_COLUMNS]
    if dialect_name == "postgresql":
        names = sa.select(ROLES.c.name).where(
            ROLES.c.stash_id == stashes.c.id).order_by(ROLES.c.position)
        return sa.select(
            *columns, sa.func.array(names.scalar_subquery()).label("roles"),
        ).order_by(stashes.c.id)
    return (
        sa.select(*columns, ROLES.c.name)
        .select_from(stashes.outerjoin(
            ROLES, ROLES.c.stash_id == stashes.c.id))
        .order_by(stashes.c.id, ROLES.c.position))


def _stashes_from_rows(rows, dialect_name):
    """Fold rows of a _with_roles() SELECT (tuples or Rows) into Stash
    objects."""
    if dialect_name == "postgresql":
        return [Stash._make((row[1], row[2], row[3], tuple(row[8]),
                             row[4], row[5], row[6], row[7]))
                for row in rows]
    # A plain loop and Stash._make: a bulk read's 300 rows fold in 61 µs,
    # against 172 through itertools.groupby and Stash().
    folded = []
    stash_id = None
    for row in rows:
        if row[0] != stash_id:
            stash_id = row[0]
            roles = []
            folded.append((row, roles))
        if row[8] is not None:
            roles.append(row[8])
    return [Stash._make((head[1], head[2], head[3], tuple(roles),
                         head[4], head[5], head[6], head[7]))
            for head, roles in folded]


@functools.cache
def _get_stash_statement(dialect_name):
    """The SELECT of the live stash of instance :instance_uuid."""
    return _with_roles(STASHES, dialect_name).where(
        STASHES.c.instance_uuid == sa.bindparam("instance_uuid"), _LIVE)


def _bulk_size(count):
    """Round a bulk read's count up to a power of two: the statements
    compiled for bulk reads stay few (11 for up to 1024 UUIDs)."""
    return 1 << (count - 1).bit_length()


@functools.cache
def _get_stashes_statement(dialect_name, size):
    """The SELECT of the live stashes among size UUIDs, :uuid0 and on;
    on PostgreSQL, among the array :uuids, whatever their count: one
    statement, and psycopg2 adapts a list of 100 in 40 % of the time it
    takes to interpolate 100 parameters."""
    if dialect_name == "postgresql":
        match = STASHES.c.instance_uuid == sa.any_(sa.bindparam(
            "uuids", type_=postgresql.ARRAY(STASHES.c.instance_uuid.type)))
    else:
        match = STASHES.c.instance_uuid.in_(
            [sa.bindparam(f"uuid{index}") for index in range(size)])
    return _with_roles(STASHES, dialect_name).where(match, _LIVE)


def _get_stashes_query(dialect_name, instance_uuids):
    """Return the SELECT of the live stashes among instance_uuids, for a
    dialect, and its parameters."""
    if dialect_name == "postgresql":
        return (_get_stashes_statement(dialect_name, None),
                {"uuids": list(instance_uuids)})
    size = _bulk_size(len(instance_uuids))
    # Padding repeats the first UUID: IN ignores the repeats.
    padded = instance_uuids + instance_uuids[:1] * (
        size - len(instance_uuids))
    return _get_stashes_statement(dialect_name, size), {
        f"uuid{index}": value for index, value in enumerate(padded)}


_INSERT_STASH = sa.insert(STASHES)
# An INSERT that skips, rather than fails on, a live stash of the same
# instance, where the dialect has one: on PostgreSQL a failed statement
# would abort the whole transaction, the caller's included.
_INSERT_STASH_IF_ABSENT = {
    name: dialect.insert(STASHES)
    .on_conflict_do_nothing(index_elements=["instance_uuid", "deleted"])
    .returning(STASHES.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}
_INSERT_ROLES = sa.insert(ROLES)
_STASH_KEYS = ("instance_uuid", "project_id", "user_id", "project_domain_id",
               "user_domain_id", "created_at", "deleted")
# But on PostgreSQL (one statement, any count), up to this many roles of a
# new stash go in one multi-row INSERT compiled once per count; more take
# the Core path (executemany).
_MAX_QUICK_ROLES = 32
_UPDATE_STASH = sa.update(STASHES).where(
    STASHES.c.id == sa.bindparam("stash_id"), _LIVE)
_DELETE_ROLES = sa.delete(ROLES).where(
    ROLES.c.stash_id == sa.bindparam("stash_id"))
_SOFT_DELETE = sa.update(STASHES).where(
    STASHES.c.instance_uuid == sa.bindparam("uuid"), _LIVE).values(
        deleted=STASHES.c.id, deleted_at=sa.bindparam("now"))


def _stash_with_roles_statement():
    """PostgreSQL's write of a new stash in one statement: the stash row
    (skipped when the instance has a live stash) and its roles, the list
    :names in order. It returns the new stash's id, or no row. Run in
    autocommit it is its own transaction, in one round trip instead of
    BEGIN, two INSERTs and COMMIT."""
    new_stash = (
        postgresql.insert(STASHES)
        .values({key: sa.bindparam(key, type_=STASHES.c[key].type)
                 for key in _STASH_KEYS})
        .on_conflict_do_nothing(index_elements=["instance_uuid", "deleted"])
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


_STASH_WITH_ROLES = _stash_with_roles_statement()


@functools.cache
def _insert_roles_statement(count):
    """A multi-row INSERT of count roles of stash :sid, :name0 and on."""
    return sa.insert(ROLES).values([
        {"stash_id": sa.bindparam("sid"), "position": position,
         "name": sa.bindparam(f"name{position}")}
        for position in range(count)])


def _stash_row(stash, now):
    """The role_stashes row of a new stash."""
    return {"instance_uuid": stash.instance_uuid, "created_at": now,
            "deleted": 0, **_replaceable_columns(stash)}


def _replaceable_columns(stash):
    return {"project_id": stash.project_id, "user_id": stash.user_id,
            "project_domain_id": stash.project_domain_id,
            "user_domain_id": stash.user_domain_id}


def _write_stash(connection, wanted, replace):
    """Stash wanted in a transaction; return the Stash now live."""
    now = timeutils.utcnow()
    stash_id = _insert_stash(connection, _stash_row(wanted, now))
    if stash_id is not None:
        _insert_roles(connection, stash_id, wanted.roles)
        return wanted._replace(created_at=now)
    dialect_name = connection.dialect.name
    rows = connection.execute(_get_stash_statement(dialect_name), {
        "instance_uuid": wanted.instance_uuid}).all()
    if not rows:
        # The live stash that blocked the INSERT was deleted since.
        raise exception.StashConflict(wanted.instance_uuid)
    current = _stashes_from_rows(rows, dialect_name)[0]
    if current._payload() == wanted._payload():
        return current
    if not replace:
        raise exception.StashConflict(wanted.instance_uuid)
    stash_id = rows[0][0]
    if connection.execute(_UPDATE_STASH, {
            "stash_id": stash_id, "updated_at": now,
            **_replaceable_columns(wanted)}).rowcount != 1:
        # Deleted since it was read: nothing live to replace.
        raise exception.StashConflict(wanted.instance_uuid)
    connection.execute(_DELETE_ROLES, {"stash_id": stash_id})
    _insert_roles(connection, stash_id, wanted.roles)
    return wanted._replace(created_at=current.created_at, updated_at=now)


def _insert_stash(connection, row):
    """INSERT a stash row; return its id, or None when the instance already
    has a live stash."""
    statement = _INSERT_STASH_IF_ABSENT.get(connection.dialect.name)
    if statement is not None:
        return connection.execute(statement, row).scalar()
    try:
        return connection.execute(_INSERT_STASH, row).inserted_primary_key[0]
    except db_exc.DBDuplicateEntry:
        # MySQL undoes just the statement: the transaction goes on.
        return None


def _insert_roles(connection, stash_id, roles):
    if roles:
        connection.execute(_INSERT_ROLES, [
            {"stash_id": stash_id, "position": position, "name": name}
            for position, name in enumerate(roles)])


def _worth_a_retry(error):
    """Besides deadlock and disconnect: SQLite's lock, taken by another
    writer (a racing create then reads the winner's stash)."""
    return (isinstance(error, sa.exc.OperationalError)
            and "database is locked" in str(error.orig))


_retry = oslo_db_api.wrap_db_retry(
    max_retries=5, retry_interval=0.05, max_retry_interval=0.5,
    retry_on_disconnect=True, retry_on_deadlock=True,
    exception_checker=_worth_a_retry)


class StashRepository:
    """Stash and read the create-time roles of instances."""

    def __init__(self, context_manager):
        """Use an oslo.db enginefacade transaction context manager; pass the
        caller's own to let calls join the caller's transactions."""
        self._context_manager = context_manager
        self._lone_engines = {}
        self._prepared_statements = {}
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url=None, **options):
        """Return a repository on a database URL (default: the SQLite file,
        or $ROLE_STASH_DATABASE_URL); options go to enginefacade."""
        return cls(db.context_manager_from_url(url, **options))

    @classmethod
    def from_config(cls, conf, group="database"):
        """Return a repository on an oslo.config [database] section."""
        return cls(db.context_manager_from_config(conf, group))

    def close(self):
        """Close the pooled connections of this repository."""
        with self._lock:
            self._context_manager.dispose_pool()
            for engine in self._lone_engines.values():
                engine.dispose()
            self._lone_engines.clear()
            self._prepared_statements.clear()

    def _in_transaction(self, context):
        """Say whether the call joins the caller's transaction; refuse a
        transaction of another context manager, which the call could not
        join (it would commit apart, whatever the caller's fate)."""
        transaction = _open_transaction(context)
        if transaction is None:
            return False
        if transaction.factory is not self._context_manager._factory:
            raise exception.InvalidArgument(
                "context", "its open transaction is of another enginefacade "
                "context manager; build the StashRepository on the caller's")
        return True

    def _lone_engine(self, writer):
        """The engine of calls made alone (see db.lone_engine): autocommit
        for reads and for PostgreSQL's one-statement write of a new stash,
        transactional for the other writes."""
        engine = self._lone_engines.get(writer)
        if engine is None:
            with self._lock:
                engine = self._lone_engines.get(writer)
                if engine is None:
                    engine = self._lone_engines[writer] = db.lone_engine(
                        self._context_manager.writer.get_engine(),
                        autocommit=not writer)
        return engine

    def _dialect_name(self):
        """The name of the database's SQLAlchemy dialect."""
        return self._lone_engine(False).dialect.name

    def _prepared(self, statement, writer=False, column_keys=None):
        """The statement compiled for the lone engine of reads or writes."""
        key = (statement, writer)
        prepared = self._prepared_statements.get(key)
        if prepared is None:
            prepared = db.Prepared(self._lone_engine(writer), statement,
                                   column_keys)
            self._prepared_statements[key] = prepared
        return prepared

    def _select(self, statement, context, parameters):
        """Return the rows of a SELECT: in the caller's transaction, else
        on a pooled DBAPI cursor; a driver error there sends the read
        through _run, where it is translated and retried."""
        if not self._in_transaction(context):
            prepared = self._prepared(statement)
            try:
                return prepared.query(parameters)
            except (prepared.engine.dialect.loaded_dbapi.Error,
                    sa.exc.SQLAlchemyError):
                LOG.debug("Lone read failed; reading again on a Connection",
                          exc_info=True)
        return self._run(False, context, lambda connection: (
            connection.execute(statement, parameters).all()))

    def _stash_new(self, wanted):
        """Stash an instance that has no live stash, on a pooled DBAPI
        cursor; return None when the Core path must do it: the instance
        has a live stash, or the driver failed (the Core path translates
        and retries), or, but on PostgreSQL, it has more than
        _MAX_QUICK_ROLES roles."""
        now = timeutils.utcnow()
        row = _stash_row(wanted, now)
        engine = self._lone_engine(True)
        try:
            if self._dialect_name() == "postgresql":
                stashed = self._stash_in_one_statement(row, wanted.roles)
            elif len(wanted.roles) <= _MAX_QUICK_ROLES:
                stashed = self._stash_in_one_transaction(row, wanted.roles)
            else:
                return None
        except (engine.dialect.loaded_dbapi.Error, sa.exc.SQLAlchemyError):
            # A duplicate (MySQL), or a failure the Core path will report.
            LOG.debug("Quick stash failed; stashing on a Connection",
                      exc_info=True)
            return None
        return wanted._replace(created_at=now) if stashed else None

    def _stash_in_one_statement(self, row, roles):
        """PostgreSQL: run _STASH_WITH_ROLES in autocommit, where it is a
        transaction of its own; return whether the stash was new."""
        write = self._prepared(_STASH_WITH_ROLES)
        with db.pooled_cursor(write.engine, commit=False) as cursor:
            write.execute(cursor, {**row, "names": list(roles)})
            return cursor.fetchone() is not None

    def _stash_in_one_transaction(self, row, roles):
        """INSERT the stash row, then its roles in one multi-row INSERT
        compiled per count, and commit; return whether the stash was new
        (a MySQL duplicate raises instead)."""
        engine = self._lone_engine(True)
        returning = _INSERT_STASH_IF_ABSENT.get(engine.dialect.name)
        insert_stash = self._prepared(
            _INSERT_STASH if returning is None else returning, True,
            _STASH_KEYS)
        with db.pooled_cursor(engine, commit=True) as cursor:
            insert_stash.execute(cursor, row)
            if returning is None:
                stash_id = cursor.lastrowid
            else:
                inserted = cursor.fetchone()
                if inserted is None:
                    return False
                stash_id = inserted[0]
            if roles:
                self._prepared(_insert_roles_statement(len(roles)), True,
                               ).execute(cursor, {"sid": stash_id, **{
                                   f"name{index}": name
                                   for index, name in enumerate(roles)}})
        return True

    def _run(self, writer, context, work, conflict=None):
        """Run work(connection): in the caller's transaction when context
        has one open, else alone (see _run_alone)."""
        with db.translated_errors(conflict):
            if not self._in_transaction(context):
                return self._run_alone(writer, work)
            manager = (self._context_manager.writer if writer
                       else self._context_manager.reader)
            with manager.connection.using(context) as connection:
                return work(connection)

    @_retry
    def _run_alone(self, writer, work):
        """Run work(connection), retried: a write in a transaction of its
        own, a read in autocommit."""
        engine = self._lone_engine(writer)
        with engine.begin() if writer else engine.connect() as connection:
            return work(connection)

    def stash_roles(self, instance_uuid, *, project_id, user_id, roles,
                    project_domain_id=None, user_domain_id=None,
                    replace=False, context=None):
        """Stash the creator's identity for an instance; return the Stash.

        An exact repeat (a retried create) returns the existing stash. A
        different payload for a live stash raises StashConflict, unless
        replace is True (rebuild, or roles refreshed by an admin).
        """
        wanted = Stash(
            instance_uuid=validation.instance_uuid(instance_uuid),
            project_id=validation.text(project_id, "project_id"),
            user_id=validation.text(user_id, "user_id"),
            roles=validation.role_names(roles),
            project_domain_id=validation.optional_text(
                project_domain_id, "project_domain_id"),
            user_domain_id=validation.optional_text(
                user_domain_id, "user_domain_id"))
        replace = validation.flag(replace, "replace")
        stash = None
        if not self._in_transaction(context):
            stash = self._stash_new(wanted)
        if stash is None:
            stash = self._run(
                True, context,
                lambda connection: _write_stash(connection, wanted, replace),
                exception.StashConflict(wanted.instance_uuid))
        LOG.debug("Stashed the boot roles of instance %s", stash.instance_uuid)
        return stash

    def stash_from_context(self, context, instance_uuid, *, replace=False):
        """Stash the identity of a Nova RequestContext, inside its
        transaction. Only project, user, roles and domain ids are read:
        the context's token is never touched."""
        return self.stash_roles(
            instance_uuid, project_id=context.project_id,
            user_id=context.user_id, roles=context.roles,
            project_domain_id=getattr(context, "project_domain_id", None),
            user_domain_id=getattr(context, "user_domain_id", None),
            replace=replace, context=context)

    def get_stash(self, instance_uuid, *, context=None):
        """Return the live Stash of an instance (the metadata GET's read)."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        dialect_name = self._dialect_name()
        stashes = _stashes_from_rows(self._select(
            _get_stash_statement(dialect_name), context,
            {"instance_uuid": instance_uuid}), dialect_name)
        if not stashes:
            raise exception.StashNotFound(instance_uuid)
        return stashes[0]

    def get_stashes(self, instance_uuids, *, context=None):
        """Return {instance_uuid: Stash} for the live stashes among
        instance_uuids, in one round trip; missing ones are left out."""
        instance_uuids = validation.instance_uuids(instance_uuids)
        if not instance_uuids:
            return {}
        dialect_name = self._dialect_name()
        statement, parameters = _get_stashes_query(
            dialect_name, instance_uuids)
        rows = self._select(statement, context, parameters)
        return {stash.instance_uuid: stash
                for stash in _stashes_from_rows(rows, dialect_name)}

    def list_stashes(self, *, project_id=None, role=None, marker=None,
                     limit=None, context=None):
        """Return live stashes, oldest first, of project_id and/or with the
        role, at most limit of them (capped at 1000), after marker (the
        instance UUID that ended the previous page)."""
        filters = [_LIVE]
        if project_id is not None:
            filters.append(STASHES.c.project_id == validation.text(
                project_id, "project_id"))
        if role is not None:
            role = validation.text(role, "role", models.ROLE_NAME_LENGTH)
            filters.append(STASHES.c.id.in_(
                sa.select(ROLES.c.stash_id).where(ROLES.c.name == role)))
        if marker is not None:
            marker = validation.instance_uuid(marker, "marker")
        limit = validation.limit(limit)

        def read(connection):
            after = []
            if marker is not None:
                marker_id = connection.execute(
                    sa.select(STASHES.c.id).where(
                        STASHES.c.instance_uuid == marker, _LIVE)
                ).scalar_one_or_none()
                if marker_id is None:
                    raise exception.MarkerNotFound(marker)
                after.append(STASHES.c.id > marker_id)
            page = (sa.select(*_STASH_COLUMNS).where(*filters, *after)
                    .order_by(STASHES.c.id).limit(limit).subquery())
            dialect_name = connection.dialect.name
            return _stashes_from_rows(connection.execute(
                _with_roles(page, dialect_name)), dialect_name)

        return self._run(False, context, read)

    def delete_stash(self, instance_uuid, *, context=None):
        """Soft-delete the live stash of an instance (on instance delete)."""
        instance_uuid = validation.instance_uuid(instance_uuid)

        def delete(connection):
            return connection.execute(_SOFT_DELETE, {
                "uuid": instance_uuid,
                "now": timeutils.utcnow()}).rowcount

        if not self._run(True, context, delete):
            raise exception.StashNotFound(instance_uuid)
        LOG.debug("Soft-deleted the role stash of instance %s", instance_uuid)

    def purge_deleted(self, *, older_than, batch_size=PURGE_BATCH_SIZE):
        """Remove soft-deleted stashes deleted before older_than, batch_size
        per transaction; return how many were removed."""
        older_than = validation.utc_datetime(older_than, "older_than")
        batch_size = validation.positive_int(batch_size, "batch_size",
                                             validation.MAX_BATCH)
        batch = (sa.select(STASHES.c.id)
                 .where(STASHES.c.deleted != 0,
                        STASHES.c.deleted_at < older_than)
                 .order_by(STASHES.c.id).limit(batch_size))

        def purge_batch(connection):
            ids = connection.execute(batch).scalars().all()
            if ids:
                connection.execute(
                    sa.delete(ROLES).where(ROLES.c.stash_id.in_(ids)))
                connection.execute(
                    sa.delete(STASHES).where(STASHES.c.id.in_(ids)))
            return len(ids)

        purged = 0
        while True:
            count = self._run(True, None, purge_batch)
            purged += count
            if count < batch_size:
                break
        LOG.info("Purged %d role stashes deleted before %s",
                 purged, older_than.isoformat())
        return purged
