"""The repository: the one door through which stashes are written and read.

Every method validates its arguments before any SQL runs, returns frozen
values, and raises only role_stash.exception errors. Each operation's
semantics (idempotent stash, conflict, replace, delete) are written here
once; the SQL comes from the database's dialects.Statements, and runs on a
SQLAlchemy Connection from engines. Archive and purge, batch by batch, are
role_stash.db.archive's; the repository runs their batches.

A method called with the caller's enginefacade context while that context
has a transaction open (from the same transaction context manager) joins
it, so the stash commits or rolls back with the caller's work; it is then
not retried, since the caller owns the transaction. Otherwise the method
runs alone: a write in a transaction of its own, a read in autocommit, both
retried on deadlock and lost connection. With a read replica configured
([database] slave_connection), the lone metadata reads (get_stash,
get_stash_and_replies, get_stashes) ask it first, and the primary for what
it lacks.
"""

import datetime
import logging
import threading

from oslo_utils import timeutils
import sqlalchemy as sa

from role_stash.db import errors
from role_stash.db import oslo_internals
from role_stash.db import archive
from role_stash.db import dialects
from role_stash.db import engines
from role_stash import exception
from role_stash.db import nova_tables
from role_stash.db import validation
from role_stash.db.archive import Summary
from role_stash.db.dialects import LIVE
from role_stash.db.dialects import REPLIES
from role_stash.db.dialects import ROLES
from role_stash.db.dialects import STASHES
from role_stash.db.values import CachedReply
from role_stash.db.values import Stash
from role_stash.db.values import StashWritten

__all__ = ["CachedReply", "Stash", "StashRepository", "StashWritten",
           "Summary"]

LOG = logging.getLogger(__name__)

# A cached reply with validators is kept this long past its freshness, to
# be revalidated (a 304 costs the service less than a whole reply).
REVALIDATE_KEEP = datetime.timedelta(days=1)
# How often a write tries its INSERT again after the live stash that
# blocked it was deleted before it could be read.
_WRITE_ATTEMPTS = 3

_UPDATE_STASH = sa.update(STASHES).where(
    STASHES.c.id == sa.bindparam("stash_id"), LIVE)
_DELETE_ROLES = sa.delete(ROLES).where(
    ROLES.c.stash_id == sa.bindparam("stash_id"))
_SOFT_DELETE = sa.update(STASHES).where(
    STASHES.c.instance_uuid == sa.bindparam("uuid"), LIVE).values(
        deleted=STASHES.c.id, deleted_at=sa.bindparam("now"))
_DELETE_REPLY = sa.delete(REPLIES).where(
    REPLIES.c.instance_uuid == sa.bindparam("uuid"),
    REPLIES.c.target == sa.bindparam("target"))
_DELETE_REPLIES = sa.delete(REPLIES).where(
    REPLIES.c.instance_uuid == sa.bindparam("uuid"))
_READ_REPLIES = sa.select(*dialects.REPLY_COLUMNS).where(
    REPLIES.c.instance_uuid == sa.bindparam("uuid")).order_by(REPLIES.c.target)
_WRITTEN_AT = sa.func.coalesce(STASHES.c.updated_at, STASHES.c.created_at)
_LIVE_PAGE = sa.select(STASHES.c.instance_uuid, _WRITTEN_AT).where(
    LIVE, STASHES.c.instance_uuid > sa.bindparam("after")).order_by(
        STASHES.c.instance_uuid).limit(sa.bindparam("limit"))
_DELETED_BEFORE = sa.select(
    sa.func.count(), sa.func.min(STASHES.c.deleted_at)).where(
        STASHES.c.deleted != 0, STASHES.c.deleted_at < sa.bindparam("before"))
_ARCHIVED_BEFORE = sa.select(
    sa.func.count(), sa.func.min(archive.SHADOW_STASHES.c.deleted_at)).where(
        archive.SHADOW_STASHES.c.deleted_at < sa.bindparam("before"))
_DELETED_AT = sa.select(STASHES.c.id).where(
    STASHES.c.instance_uuid == sa.bindparam("uuid"),
    STASHES.c.deleted != 0,
    STASHES.c.deleted_at == sa.bindparam("now"))


def _stash_row(stash, now):
    """The role_stashes row of a new stash."""
    return {"instance_uuid": stash.instance_uuid, "created_at": now,
            "deleted": 0, **_replaceable_columns(stash)}


def _replaceable_columns(stash):
    return {"project_id": stash.project_id, "user_id": stash.user_id,
            "project_domain_id": stash.project_domain_id,
            "user_domain_id": stash.user_domain_id}


def _insert_or_lock(connection, statements, wanted, now):
    """Stash wanted in a transaction unless its instance has a live stash:
    return None when it was stashed, else (stash id, the live Stash),
    that row locked.

    When the live stash that blocked the INSERT is deleted before it can
    be read, the INSERT is tried again: the rival is gone, so there is no
    conflict to report.
    """
    for _ in range(_WRITE_ATTEMPTS):
        if statements.insert_new_stash(
                connection, _stash_row(wanted, now), wanted.roles) is not None:
            return None
        live = statements.fold(connection.execute(
            statements.lock_one, {"instance_uuid": wanted.instance_uuid}))
        if live:
            [(stash_id, current)] = live.items()
            return stash_id, current
    raise exception.StashConflict(wanted.instance_uuid)


def _write_stash(connection, statements, wanted, replace, now):
    """Stash wanted in a transaction; return the Stash now live.

    An exact repeat returns the live stash; a different live payload is a
    StashConflict, unless replace.
    """
    live = _insert_or_lock(connection, statements, wanted, now)
    if live is None:
        return wanted._replace(created_at=now)
    stash_id, current = live
    if current.payload() == wanted.payload():
        return current
    if not replace:
        raise exception.StashConflict(wanted.instance_uuid)
    # The row is locked: nothing can delete it before the UPDATE.
    connection.execute(_UPDATE_STASH, {
        "stash_id": stash_id, "updated_at": now,
        **_replaceable_columns(wanted)})
    connection.execute(_DELETE_ROLES, {"stash_id": stash_id})
    if wanted.roles:
        dialects.insert_roles(connection, stash_id, wanted.roles)
    return wanted._replace(created_at=current.created_at, updated_at=now)


def _validated_stash(instance_uuid, project_id, user_id, roles,
                     project_domain_id=None, user_domain_id=None, prefix=""):
    """Return the Stash of validated, normalized arguments; the fields an
    error names start with prefix."""
    return Stash(
        instance_uuid=validation.instance_uuid(
            instance_uuid, f"{prefix}instance_uuid"),
        project_id=validation.text(project_id, f"{prefix}project_id"),
        user_id=validation.text(user_id, f"{prefix}user_id"),
        roles=validation.role_names(roles, f"{prefix}roles"),
        project_domain_id=validation.optional_text(
            project_domain_id, f"{prefix}project_domain_id"),
        user_domain_id=validation.optional_text(
            user_domain_id, f"{prefix}user_domain_id"))


class StashRepository:
    """Stash and read the create-time roles of instances."""

    def __init__(self, context_manager, *, _owns_context_manager=False):
        """Use an oslo.db enginefacade transaction context manager; pass the
        caller's own to let calls join the caller's transactions."""
        self._context_manager = context_manager
        self._owns_context_manager = _owns_context_manager
        self._engines = None
        self._engines_lock = threading.Lock()

    @classmethod
    def from_url(cls, url=None, **options):
        """Return a repository on a database URL (default: the SQLite file,
        or $ROLE_STASH_DATABASE_URL); options go to enginefacade."""
        return cls(engines.context_manager_from_url(url, **options),
                   _owns_context_manager=True)

    @classmethod
    def from_config(cls, conf, group="database"):
        """Return a repository on an oslo.config [database] section."""
        return cls(engines.context_manager_from_config(conf, group),
                   _owns_context_manager=True)

    def close(self):
        """Close the connections this repository opened: its own engine,
        and the context manager's pool if it made the context manager."""
        if self._engines is not None:
            self._engines.close()
        if self._owns_context_manager:
            self._context_manager.dispose_pool()

    @property
    def context_manager(self):
        """The enginefacade transaction context manager of the stashes'
        database."""
        return self._context_manager

    @property
    def lone_engines(self):
        """The engines.LoneEngines of the calls this repository makes
        outside any caller's transaction (writer(), reader(), replica(),
        autocommit()), set up at the first call."""
        lone = self._engines
        if lone is None or lone.factory is not oslo_internals.factory_of(
                self._context_manager):
            # Under the lock: threads making their first calls at once
            # would each build a reader engine, and hold its connections.
            with self._engines_lock:
                lone = self._engines
                if lone is None or lone.factory is not oslo_internals.factory_of(
                        self._context_manager):
                    # Built anew when a test suite patched another factory
                    # into the context manager (Nova's does, per test).
                    if lone is not None:
                        lone.close()
                    lone = self._engines = engines.LoneEngines(
                        self._context_manager, lambda name: (
                            dialects.for_dialect(name).read_engine_options),
                        lambda name: (
                            dialects.for_dialect(name).write_engine_options))
        return lone

    def _statements(self):
        return dialects.for_dialect(self.lone_engines.dialect_name)

    def _joined_transaction(self, context, writer):
        """Say whether the call joins the caller's transaction; refuse a
        transaction it cannot join."""
        transaction = oslo_internals.open_transaction(context)
        if transaction is None:
            return False
        if not oslo_internals.same_factory(transaction, self._context_manager):
            # It would commit apart, whatever the caller's fate.
            raise exception.InvalidArgument(
                "context", "its open transaction is of another enginefacade "
                "context manager; build the StashRepository on the caller's")
        if writer and oslo_internals.transaction_is_reader(transaction):
            raise exception.InvalidArgument(
                "context", "its open transaction is a reader's, and a stash "
                "write cannot join it; open it with the context manager's "
                "writer (context_manager.writer.using(context))")
        return True

    def _run(self, writer, context, work, conflict=None):
        """Return work(connection): in the caller's transaction when
        context has one open, else alone, retried: a write in a
        transaction of its own, a read in autocommit where the database
        gains by it."""
        joined = self._joined_transaction(context, writer)
        with errors.translated_errors(conflict):
            if joined:
                # A read joins whatever reader the caller opened, an
                # async one (on the replica) included, as oslo.db's
                # reader.allow_async does for a DB API read (last: a
                # .connection after it would drop it).
                manager = (self._context_manager.writer.connection if writer
                           else self._context_manager.reader.connection
                           .allow_async)
                with manager.using(context) as connection:
                    return work(connection)
            return self.lone_engines.run(writer, work)

    def stash_roles(self, instance_uuid, *, project_id, user_id, roles,
                    project_domain_id=None, user_domain_id=None,
                    replace=False, context=None):
        """Stash the creator's identity for an instance; return the Stash.

        An exact repeat (a retried create) returns the existing stash. A
        different payload for a live stash raises StashConflict, unless
        replace is True (rebuild, or roles refreshed by an admin).
        """
        wanted = _validated_stash(
            instance_uuid, project_id, user_id, roles, project_domain_id,
            user_domain_id)
        replace = validation.flag(replace, "replace")
        now = timeutils.utcnow()
        stash = None
        joined = self._joined_transaction(context, writer=True)
        statements = self._statements()
        if not joined and statements.new_stash_in_one_statement:
            # One statement is atomic alone: a new stash costs one round
            # trip, in autocommit. A live stash makes it write nothing, and
            # the transaction below decides.
            with errors.translated_errors():
                if self.lone_engines.run_in_autocommit(lambda connection: (
                        statements.insert_new_stash(
                            connection, _stash_row(wanted, now),
                            wanted.roles))):
                    stash = wanted._replace(created_at=now)
        if stash is None:
            stash = self._run(
                True, context, lambda connection: _write_stash(
                    connection, statements, wanted, replace, now),
                exception.StashConflict(wanted.instance_uuid))
        LOG.debug("Stashed the boot roles of instance %s", stash.instance_uuid)
        return stash

    def stash_from_context(self, context, instance_uuid, *, replace=False):
        """Stash the identity of a Nova RequestContext, inside its
        transaction. Only project, user, roles and domain ids are read:
        the context's token is never touched."""
        project_id, user_id, roles, project_domain_id, user_domain_id = (
            validation.request_identity(context))
        return self.stash_roles(
            instance_uuid, project_id=project_id, user_id=user_id,
            roles=roles, project_domain_id=project_domain_id,
            user_domain_id=user_domain_id, replace=replace, context=context)

    def _read_replica_first(self, context, read, instance_uuids):
        """Return {instance_uuid: value} of read(connection, uuids).

        A lone call with a read replica configured ([database]
        slave_connection) reads there first, and asks the primary for the
        instances the replica lacks: not replayed there yet, or all of
        them when the replica failed. So a stash written a moment ago is
        never answered "no stash". In the caller's transaction, or with no
        replica, only the primary reads.
        """
        replica = self.lone_engines.replica()
        found = {}
        if replica is not None and not self._joined_transaction(
                context, writer=False):
            try:
                found = self.lone_engines.run_on_replica(
                    replica, lambda connection: read(connection,
                                                     instance_uuids))
            except exception.DatabaseError:
                pass  # logged; the primary answers
            instance_uuids = [instance_uuid for instance_uuid in
                              instance_uuids if instance_uuid not in found]
            if not instance_uuids:
                return found
        return {**found, **self._run(False, context, lambda connection: (
            read(connection, instance_uuids)))}

    def stash_many(self, stashes, *, context=None):
        """Stash each of stashes (Stash values, their timestamps ignored)
        whose instance has no live stash, all in one transaction, at most
        1000; return {instance_uuid: live Stash} of those whose instance
        had one, left as it was whatever its payload (an import decides
        what a difference means). Meant for instances that had no live
        stash when just read: they go in two statements, and only a rival
        stash written since makes it go one by one."""
        if not isinstance(stashes, (list, tuple)):
            raise exception.InvalidArgument(
                "stashes", f"expected a list of Stash values, got "
                           f"{type(stashes).__name__}")
        if len(stashes) > validation.MAX_BULK:
            raise exception.InvalidArgument(
                "stashes", f"more than {validation.MAX_BULK} stashes "
                           f"({len(stashes)})")
        wanted = []
        for index, stash in enumerate(stashes):
            field = f"stashes[{index}]"
            if not isinstance(stash, Stash):
                raise exception.InvalidArgument(
                    field, f"expected a Stash, got {type(stash).__name__}")
            wanted.append(_validated_stash(
                stash.instance_uuid, stash.project_id, stash.user_id,
                stash.roles, stash.project_domain_id, stash.user_domain_id,
                prefix=f"{field}."))
        uuids = [stash.instance_uuid for stash in wanted]
        if len(set(uuids)) != len(uuids):
            raise exception.InvalidArgument(
                "stashes", "names an instance more than once")
        now = timeutils.utcnow()
        statements = self._statements()

        def write_all(connection):
            statements.insert_new_stashes(
                connection, [_stash_row(stash, now) for stash in wanted],
                [stash.roles for stash in wanted])
            return {}

        def write_one_by_one(connection):
            found = {}
            for stash in wanted:
                live = _insert_or_lock(connection, statements, stash, now)
                if live is not None:
                    found[stash.instance_uuid] = live[1]
            return found

        found = None
        if not self._joined_transaction(context, writer=True):
            # Each instance had no live stash a moment ago: all at once,
            # unless a rival stashed one since (then the transaction is
            # gone, on PostgreSQL, and a new one goes one by one).
            rival = exception.StashConflict("of a batch")
            try:
                found = self._run(True, None, write_all, rival)
            except exception.StashConflict as error:
                if error is not rival:
                    raise
        if found is None:
            found = self._run(True, context, write_one_by_one)
        LOG.debug("Stashed the boot roles of %d instances",
                  len(wanted) - len(found))
        return found

    def get_stash(self, instance_uuid, *, expected_project_id=None,
                  context=None):
        """Return the live Stash of an instance (the metadata GET's read).

        A reader that knows the instance's project passes it as
        expected_project_id: a stash of another project then raises
        StashNotFound, exactly as no stash does, and reveals nothing.
        """
        instance_uuid = validation.instance_uuid(instance_uuid)
        if expected_project_id is not None:
            expected_project_id = validation.text(expected_project_id,
                                                  "expected_project_id")
        statements = self._statements()

        def read(connection, instance_uuids):
            return {stash.instance_uuid: stash for stash in statements.fold(
                connection.execute(statements.read_one, {
                    "instance_uuid": instance_uuids[0]})).values()
                if expected_project_id in (None, stash.project_id)}

        stash = self._read_replica_first(
            context, read, [instance_uuid]).get(instance_uuid)
        if stash is None:
            raise exception.StashNotFound(instance_uuid)
        return stash

    def get_stash_and_replies(self, instance_uuid, *, context=None):
        """Return (Stash, {target: CachedReply}): an instance's live stash
        and its cached vendordata replies, in one statement (the metadata
        GET with cached vendordata). StashNotFound if no stash is live."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        statements = self._statements()

        def read(connection, instance_uuids):
            stash, replies = statements.fold_with_replies(connection.execute(
                statements.read_one_with_replies,
                {"instance_uuid": instance_uuids[0]}))
            return {} if stash is None else {
                stash.instance_uuid: (stash, replies)}

        found = self._read_replica_first(
            context, read, [instance_uuid]).get(instance_uuid)
        if found is None:
            raise exception.StashNotFound(instance_uuid)
        return found

    def get_replies(self, instance_uuid, *, context=None):
        """Return {target: CachedReply} of an instance, stash or not."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        return self._run(False, context, lambda connection: {
            row[0]: CachedReply._make(row) for row in connection.execute(
                _READ_REPLIES, {"uuid": instance_uuid})})

    def store_reply(self, instance_uuid, target, body, freshness, *,
                    now=None):
        """Cache a vendordata service's reply for an instance, in place of
        the one cached before; with freshness None (a reply that must not
        be stored: no-store), only forget the one before. Return whether
        the reply was stored. A rival worker storing the same reply at the
        same moment wins quietly."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        target = validation.text(target, "target")
        body = validation.reply_body(body)
        freshness = validation.freshness(freshness)
        now = (timeutils.utcnow() if now is None
               else validation.utc_datetime(now, "now"))
        keys = {"uuid": instance_uuid, "target": target}

        def write(connection):
            connection.execute(_DELETE_REPLY, keys)
            if freshness is None:
                return False
            keep_until = freshness.keep_until
            if freshness.etag or freshness.last_modified:
                keep_until = max(filter(None, (keep_until,
                                               now + REVALIDATE_KEEP)))
            connection.execute(sa.insert(REPLIES), {
                "instance_uuid": instance_uuid, "target": target,
                "body": body, "etag": freshness.etag,
                "last_modified": freshness.last_modified, "stored_at": now,
                "fresh_until": freshness.fresh_until,
                "stale_until": freshness.stale_until,
                "keep_until": keep_until})
            return True

        race = exception.StashConflict(instance_uuid)
        try:
            return self._run(True, None, write, race)
        except exception.StashConflict as error:
            if error is not race:
                raise
            return False

    def get_stashes(self, instance_uuids, *, context=None):
        """Return {instance_uuid: Stash} for the live stashes among
        instance_uuids, in one round trip; missing ones are left out."""
        instance_uuids = validation.instance_uuids(instance_uuids)
        if not instance_uuids:
            return {}
        statements = self._statements()

        def read(connection, instance_uuids):
            return {stash.instance_uuid: stash for stash in statements.fold(
                connection.execute(statements.read_many,
                                   statements.bulk_parameters(
                                       instance_uuids))).values()}

        return self._read_replica_first(context, read, instance_uuids)

    def list_stashes(self, *, project_id=None, role=None, marker=None,
                     limit=None, context=None):
        """Return live stashes, oldest first, of project_id and/or with the
        role, at most limit of them (capped at 1000), after marker (the
        instance UUID that ended the previous page)."""
        filters = [LIVE]
        if project_id is not None:
            filters.append(STASHES.c.project_id == validation.text(
                project_id, "project_id"))
        if role is not None:
            filters.append(STASHES.c.id.in_(
                sa.select(ROLES.c.stash_id).where(
                    ROLES.c.name == validation.role_name(role, "role"))))
        if marker is not None:
            marker = validation.instance_uuid(marker, "marker")
        limit = validation.limit(limit)
        statements = self._statements()

        def read(connection):
            after = []
            if marker is not None:
                marker_id = connection.execute(
                    sa.select(STASHES.c.id).where(
                        STASHES.c.instance_uuid == marker, LIVE)
                ).scalar_one_or_none()
                if marker_id is None:
                    raise exception.MarkerNotFound(marker)
                after.append(STASHES.c.id > marker_id)
            page = (sa.select(*dialects.STASH_COLUMNS)
                    .where(*filters, *after)
                    .order_by(STASHES.c.id).limit(limit).subquery())
            return list(statements.fold(connection.execute(
                statements.with_roles(page))).values())

        return self._run(False, context, read)

    def delete_stash(self, instance_uuid, *, missing_ok=False, context=None):
        """Soft-delete the live stash of an instance (on instance delete);
        return whether there was one. No live stash raises StashNotFound,
        unless missing_ok (an instance created before role_stash was
        deployed has none)."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        missing_ok = validation.flag(missing_ok, "missing_ok")
        parameters = {"uuid": instance_uuid, "now": timeutils.utcnow()}
        attempts = 0

        def delete(connection):
            nonlocal attempts
            attempts += 1
            if connection.execute(_SOFT_DELETE, parameters).rowcount:
                connection.execute(_DELETE_REPLIES, parameters)
                return True
            # A retry after a commit whose answer was lost finds the stash
            # deleted at this very call's timestamp: the delete happened.
            return attempts > 1 and connection.execute(
                _DELETED_AT, parameters).first() is not None

        deleted = self._run(True, context, delete)
        if not deleted and not missing_ok:
            raise exception.StashNotFound(instance_uuid)
        if deleted:
            LOG.debug("Soft-deleted the role stash of instance %s",
                      instance_uuid)
        return deleted

    def live_stash_page(self, *, after=None, limit=None):
        """Return up to limit (capped at 1000) StashWritten of live
        stashes, by instance UUID, of UUIDs after `after`: the pages of a
        walk over every live stash that keeps its course while the walk
        deletes stashes behind it."""
        after = ("" if after is None
                 else validation.instance_uuid(after, "after"))
        limit = validation.limit(limit)
        return self._run(False, None, lambda connection: [
            StashWritten._make(row) for row in connection.execute(
                _LIVE_PAGE, {"after": after, "limit": limit})])

    def delete_orphaned_stashes(self, instance_uuids, *, written_before=None,
                                unless_live_here=False):
        """Soft-delete the live stashes of instance_uuids (at most 1000)
        in one transaction, each by a statement that requires it still
        live and, given written_before, last written before then; with
        unless_live_here (Nova's instances table is in this database), the
        same statement also requires that Nova has no live row for the
        instance, so an instance committed since it was found keeps its
        stash. Return the UUIDs whose stash was soft-deleted; their cached
        vendordata replies go with them."""
        instance_uuids = validation.instance_uuids(instance_uuids)
        conditions = []
        parameters = {"now": timeutils.utcnow()}
        if written_before is not None:
            parameters["before"] = validation.utc_datetime(
                written_before, "written_before")
            conditions.append(_WRITTEN_AT < sa.bindparam("before"))
        if validation.flag(unless_live_here, "unless_live_here"):
            conditions.append(nova_tables.no_live_instance(
                STASHES.c.instance_uuid))
        soft_delete = _SOFT_DELETE.where(*conditions)

        def delete(connection):
            deleted = []
            for instance_uuid in instance_uuids:
                keys = {**parameters, "uuid": instance_uuid}
                if connection.execute(soft_delete, keys).rowcount:
                    connection.execute(_DELETE_REPLIES, keys)
                    deleted.append(instance_uuid)
            return deleted

        deleted = self._run(True, None, delete) if instance_uuids else []
        for instance_uuid in deleted:
            LOG.debug("Soft-deleted the orphaned role stash of instance %s",
                      instance_uuid)
        return deleted

    def count_deleted(self, *, before):
        """Return (how many, the oldest deleted_at or None) of the stashes
        soft-deleted before a time that are still in role_stashes."""
        before = validation.utc_datetime(before, "before")
        return tuple(self._run(False, None, lambda connection: (
            connection.execute(_DELETED_BEFORE, {"before": before}).one())))

    def count_archived(self, *, before):
        """Return (how many, the oldest deleted_at or None) of the archived
        stashes deleted before a time (role_stashes_shadow's)."""
        before = validation.utc_datetime(before, "before")
        return tuple(self._run(False, None, lambda connection: (
            connection.execute(_ARCHIVED_BEFORE, {"before": before}).one())))

    def _archive_or_purge(self, operation, parts, statements, *,
                          max_rows, batch_size, until_complete, dry_run,
                          progress, conflict=None):
        """Run archive.run with lone transactions, arguments checked."""
        if max_rows is not None:
            max_rows = validation.positive_int(max_rows, "max_rows")
        batch_size = validation.positive_int(batch_size, "batch_size",
                                             validation.MAX_BATCH)
        until_complete = validation.flag(until_complete, "until_complete")
        dry_run = validation.flag(dry_run, "dry_run")
        if progress is not None and not callable(progress):
            raise exception.InvalidArgument(
                "progress", f"expected a callable, got "
                            f"{type(progress).__name__}")
        summary = archive.run(
            operation, parts, statements,
            write=lambda work: self._run(True, None, work, conflict),
            read=lambda work: self._run(False, None, work),
            max_rows=max_rows, batch_size=batch_size,
            until_complete=until_complete, dry_run=dry_run,
            progress=progress)
        LOG.info("%s%s: %s rows in %d batches, %.1f s%s", operation,
                 " (dry run)" if dry_run else "", ", ".join(
                     f"{table} {count}"
                     for table, count in summary.rows.items()),
                 summary.batches, summary.seconds,
                 "" if summary.complete else "; rows are left")
        return summary

    def archive_deleted(self, *, before=None, max_rows=None,
                        batch_size=archive.BATCH_SIZE, until_complete=False,
                        dry_run=False, progress=None):
        """Move soft-deleted stashes, with their roles, and the cached
        vendordata replies of instances with no live stash, to the shadow
        tables, one transaction per batch; return an archive.Summary.

        before: only stashes deleted, and replies of no more use, before
        it. max_rows: at most that many stashes and replies (their roles
        go along), None for no bound; until_complete goes on until nothing
        is left, max_rows then bounding each batch. dry_run counts what
        would move and writes nothing. progress(summary) is called after
        each batch. Killed at any moment, a run loses and doubles nothing.
        """
        if before is not None:
            before = validation.utc_datetime(before, "before")
        statements = self._statements()
        return self._archive_or_purge(
            archive.ARCHIVE, archive.archive_parts(statements, before),
            statements, max_rows=max_rows, batch_size=batch_size,
            until_complete=until_complete, dry_run=dry_run,
            progress=progress, conflict=exception.DatabaseError(
                "a row of the batch is already in a shadow table (a "
                "restored backup, or a stash id given twice); the batch "
                "was rolled back"))

    def purge_deleted(self, *, before=None, everything=False, max_rows=None,
                      batch_size=archive.BATCH_SIZE, until_complete=False,
                      dry_run=False, progress=None):
        """Remove for good what was deleted before a time, one transaction
        per batch; return an archive.Summary.

        That is archived stashes deleted before it, with their roles, and
        archived replies of no more use by then (the shadow tables); and
        in the live tables, soft-deleted stashes deleted before it, with
        their roles, and cached replies of no more use by then. Give
        before, or everything=True: every archived row and soft-deleted
        stash, and the replies of no more use now. max_rows, batch_size,
        until_complete, dry_run and progress as archive_deleted's.
        """
        everything = validation.flag(everything, "everything")
        if (before is None) == (not everything):
            raise exception.InvalidArgument(
                "before", "give the time to purge what was deleted before, "
                          "or everything=True, not both")
        if before is not None:
            before = validation.utc_datetime(before, "before")
        statements = self._statements()
        return self._archive_or_purge(
            archive.PURGE, archive.purge_parts(
                statements, before, timeutils.utcnow()),
            statements, max_rows=max_rows, batch_size=batch_size,
            until_complete=until_complete, dry_run=dry_run,
            progress=progress)
