"""The repository: the one door through which stashes are written and read.

Every method validates its arguments before any SQL runs, returns frozen
values, and raises only role_stash.exception errors. Each operation's
semantics (idempotent stash, conflict, replace, delete) are written here
once; the SQL comes from the database's dialects.Statements, and runs on a
SQLAlchemy Connection. Whether a call joins the caller's transaction or
runs alone, retried, is role_stash.db.calls'. The reply cache's operations
are reply_cache's, the operators' (walk, orphans, archive, purge)
housekeeping's: StashRepository is made of the three.
"""

import logging

from oslo_db import exception as db_exc
from oslo_utils import timeutils
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import calls
from role_stash.db import dialects
from role_stash.db import engines
from role_stash.db import housekeeping
from role_stash.db import reply_cache
from role_stash.db import schemas
from role_stash.db import validation
from role_stash.db.archive import Summary
from role_stash.db.dialects import LIVE
from role_stash.db.models import ROLES
from role_stash.db.models import STASHES
from role_stash.db.values import CachedReply
from role_stash.db.values import Stash
from role_stash.db.values import StashWritten

__all__ = ["CachedReply", "Stash", "StashRepository", "StashWritten",
           "Summary"]

LOG = logging.getLogger(__name__)

# How often a write tries its INSERT again, in one transaction, after the
# live stash that blocked it was deleted before it could be read.
_WRITE_ATTEMPTS = 3

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
    conflict to report. Rivals that keep stashing and deleting in between
    (PostgreSQL: a conflicting INSERT locks nothing) end the attempts with
    oslo.db's DBDeadlock, as a serialization failure would: a lone call is
    retried whole after a pause, a caller's transaction is the caller's to
    retry.
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
    raise db_exc.DBDeadlock()


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
    connection.execute(statements.update_stash, {
        "stash_id": stash_id, "updated_at": now,
        **_replaceable_columns(wanted)})
    connection.execute(statements.delete_roles, {"stash_id": stash_id})
    if wanted.roles:
        statements.insert_roles(connection, stash_id, wanted.roles)
    # The replies were answers to what the stash said before.
    connection.execute(statements.delete_replies,
                       {"uuid": wanted.instance_uuid})
    return wanted._replace(created_at=current.created_at, updated_at=now)


class StashRepository(reply_cache.ReplyCacheOperations,
                      housekeeping.HousekeepingOperations):
    """Stash and read the create-time roles of instances."""

    def __init__(self, context_manager, *, schema=schemas.AUTOMATIC,
                 _owns_context_manager=False):
        """Use an oslo.db enginefacade transaction context manager; pass the
        caller's own to let calls join the caller's transactions. schema:
        where role_stash's tables are (None: the default schema), else
        found at the first call (see role_stash.db.schemas)."""
        self._database = calls.Database(context_manager, schema)
        self._owns_context_manager = _owns_context_manager

    @classmethod
    def from_url(cls, url=None, *, schema=schemas.AUTOMATIC, **options):
        """Return a repository on a database URL (default: the SQLite file,
        or $ROLE_STASH_DATABASE_URL); options go to enginefacade."""
        return cls(engines.context_manager_from_url(url, **options),
                   schema=schema, _owns_context_manager=True)

    @classmethod
    def from_config(cls, conf, group="database", *,
                    schema=schemas.AUTOMATIC):
        """Return a repository on an oslo.config [database] section."""
        return cls(engines.context_manager_from_config(conf, group),
                   schema=schema, _owns_context_manager=True)

    def close(self):
        """Close the connections this repository opened: its own engines,
        and the context manager's pool if it made the context manager."""
        self._database.close()
        if self._owns_context_manager:
            self.context_manager.dispose_pool()

    @property
    def context_manager(self):
        """The enginefacade transaction context manager of the stashes'
        database."""
        return self._database.context_manager

    @property
    def schema(self):
        """The schema of role_stash's tables, None for the default one;
        schemas.AUTOMATIC until the first call finds it."""
        return self._database.schema

    @property
    def lone_engines(self):
        """The engines.LoneEngines of the calls this repository makes
        outside any caller's transaction (writer(), reader(), replica(),
        autocommit()), set up at the first call."""
        return self._database.lone_engines

    def _call(self, context, *, writer):
        """The calls.Call of a method given the caller's context."""
        return self._database.call(context, writer=writer)

    def _statements(self):
        return self._database.statements()

    def stash_roles(self, instance_uuid, *, project_id, user_id, roles,
                    project_domain_id=None, user_domain_id=None,
                    replace=False, context=None):
        """Stash the creator's identity for an instance; return the Stash.

        An exact repeat (a retried create) returns the existing stash. A
        different payload for a live stash raises StashConflict, unless
        replace is True (rebuild, or roles refreshed by an admin).
        """
        wanted = validation.stash(
            instance_uuid, project_id, user_id, roles, project_domain_id,
            user_domain_id)
        replace = validation.flag(replace, "replace")
        now = timeutils.utcnow()
        call = self._call(context, writer=True)
        statements = call.statements
        stash = None
        if statements.new_stash_in_one_statement:
            # One statement is atomic alone: a new stash costs one round
            # trip, in autocommit. A live stash makes it write nothing, and
            # the transaction below decides.
            if call.run_in_autocommit(lambda connection: (
                    statements.insert_new_stash(
                        connection, _stash_row(wanted, now), wanted.roles)),
                    named=True):
                stash = wanted._replace(created_at=now)
        if stash is None:
            stash = call.run(
                lambda connection: _write_stash(
                    connection, statements, wanted, replace, now),
                on_duplicate=calls.raising(exception.StashConflict,
                                           wanted.instance_uuid), named=True)
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
            wanted.append(validation.stash(
                stash.instance_uuid, stash.project_id, stash.user_id,
                stash.roles, stash.project_domain_id, stash.user_domain_id,
                prefix=f"{field}."))
        uuids = [stash.instance_uuid for stash in wanted]
        if len(set(uuids)) != len(uuids):
            raise exception.InvalidArgument(
                "stashes", "names an instance more than once")
        now = timeutils.utcnow()
        call = self._call(context, writer=True)
        statements = call.statements

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
        if not call.joined:
            # Each instance had no live stash a moment ago: all at once,
            # unless a rival stashed one since (then the transaction is
            # gone, on PostgreSQL, and a new one goes one by one).
            found = call.run(write_all, on_duplicate=lambda: None)
        if found is None:
            found = call.run(write_one_by_one, named=True)
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
        expected_project_id = validation.optional_text(
            expected_project_id, "expected_project_id")

        def read(statements, connection, instance_uuids):
            return {stash.instance_uuid: stash for stash in statements.fold(
                connection.execute(statements.read_one, {
                    "instance_uuid": instance_uuids[0]})).values()
                if expected_project_id in (None, stash.project_id)}

        found = self._database.bare_read(context, read, [instance_uuid])
        if found is None:
            found = self._call(context, writer=False).read_replica_first(
                read, [instance_uuid])
        stash = found.get(instance_uuid)
        if stash is None:
            raise exception.StashNotFound(instance_uuid)
        return stash

    def get_stashes(self, instance_uuids, *, context=None):
        """Return {instance_uuid: Stash} for the live stashes among
        instance_uuids, in one round trip; missing ones are left out."""
        instance_uuids = validation.instance_uuids(instance_uuids)
        if not instance_uuids:
            return {}

        def read(statements, connection, instance_uuids):
            return {stash.instance_uuid: stash for stash in statements.fold(
                connection.execute(statements.read_many,
                                   statements.bulk_parameters(
                                       instance_uuids))).values()}

        found = self._database.bare_read(context, read, instance_uuids)
        if found is None:
            found = self._call(context, writer=False).read_replica_first(
                read, instance_uuids)
        return found

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
        call = self._call(context, writer=False)
        statements = call.statements

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

        return call.run(read)

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
            if connection.execute(dialects.SOFT_DELETE, parameters).rowcount:
                connection.execute(dialects.DELETE_REPLIES, parameters)
                return True
            # A retry after a commit whose answer was lost finds the stash
            # deleted at this very call's timestamp: the delete happened.
            return attempts > 1 and connection.execute(
                _DELETED_AT, parameters).first() is not None

        deleted = self._call(context, writer=True).run(delete)
        if not deleted and not missing_ok:
            raise exception.StashNotFound(instance_uuid)
        if deleted:
            LOG.debug("Soft-deleted the role stash of instance %s",
                      instance_uuid)
        return deleted
