"""The repository: the one door through which stashes are written and read.

Every method validates its arguments before any SQL runs, returns frozen
value objects, and raises only role_stash.exception errors.

A method called with the caller's enginefacade context while that context
has a transaction open (from the same transaction context manager) joins
it, so the stash commits or rolls back with the caller's work; it is then
not retried, since the caller owns the transaction. Otherwise the method
runs alone: a write in a transaction of its own, a read in autocommit, both
retried on deadlock, lost connection and a concurrent create.
"""

import dataclasses
import datetime
import logging
import threading

from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_utils import timeutils
import sqlalchemy as sa

from role_stash import db
from role_stash import exception
from role_stash import models
from role_stash import validation

LOG = logging.getLogger(__name__)

STASHES = models.Stash.__table__
ROLES = models.StashRole.__table__

PURGE_BATCH_SIZE = 1000


@dataclasses.dataclass(frozen=True, slots=True)
class Stash:
    """What an instance's creator was, as stashed at create time."""

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


class _OwnTransaction:
    """Holds enginefacade's state for a call outside any caller's transaction."""


def _in_transaction(context):
    """Say whether context carries an open enginefacade transaction."""
    try:
        return context.transaction_ctx is not None
    except (AttributeError, db_exc.NoEngineContextEstablished):
        return False


_STASH_COLUMNS = (
    STASHES.c.id, STASHES.c.instance_uuid, STASHES.c.project_id,
    STASHES.c.user_id, STASHES.c.project_domain_id, STASHES.c.user_domain_id,
    STASHES.c.created_at, STASHES.c.updated_at,
)
_LIVE = STASHES.c.deleted == 0


def _with_roles(stashes):
    """Return a SELECT of the stash columns of stashes plus each role name,
    one row per role (a stash with no role gives one row with name NULL)."""
    return (
        sa.select(*(stashes.c[column.name] for column in _STASH_COLUMNS),
                  ROLES.c.name)
        .select_from(stashes.outerjoin(
            ROLES, ROLES.c.stash_id == stashes.c.id))
        .order_by(stashes.c.id, ROLES.c.position))


_GET_STASH = _with_roles(STASHES).where(
    STASHES.c.instance_uuid == sa.bindparam("instance_uuid"), _LIVE)
_GET_STASHES = _with_roles(STASHES).where(
    STASHES.c.instance_uuid.in_(sa.bindparam("instance_uuids", expanding=True)),
    _LIVE)


def _stashes_from_rows(rows):
    """Fold rows of a _with_roles() SELECT into Stash objects, in row order."""
    heads = {}
    roles = {}
    for row in rows:
        if row.id not in heads:
            heads[row.id] = row
            roles[row.id] = []
        if row.name is not None:
            roles[row.id].append(row.name)
    return [
        Stash(instance_uuid=head.instance_uuid, project_id=head.project_id,
              user_id=head.user_id, roles=tuple(roles[stash_id]),
              project_domain_id=head.project_domain_id,
              user_domain_id=head.user_domain_id,
              created_at=head.created_at, updated_at=head.updated_at)
        for stash_id, head in heads.items()]


def _insert_roles(connection, stash_id, roles):
    if roles:
        connection.execute(sa.insert(ROLES), [
            {"stash_id": stash_id, "position": position, "name": name}
            for position, name in enumerate(roles)])


def _worth_a_retry(error):
    """Besides deadlock and disconnect: a concurrent create of the same
    instance (the retry reads that stash and answers as for a repeat, or
    raises StashConflict), and SQLite's lock taken by another writer."""
    return isinstance(error, db_exc.DBDuplicateEntry) or (
        isinstance(error, sa.exc.OperationalError)
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
        self._autocommit_engine = None
        self._autocommit_engine_lock = threading.Lock()

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
        self._context_manager.dispose_pool()
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose()

    def _lone_reads_engine(self):
        with self._autocommit_engine_lock:
            if self._autocommit_engine is None:
                self._autocommit_engine = db.autocommit_engine(
                    self._context_manager.reader.get_engine())
        return self._autocommit_engine

    def _run(self, writer, context, work, conflict=None):
        """Run work(connection): in the caller's transaction when context
        is given; else, retried, a write in a transaction of its own and a
        read in autocommit (one round trip per statement)."""
        manager = (self._context_manager.writer if writer
                   else self._context_manager.reader).connection

        def in_transaction(context):
            with manager.using(context) as connection:
                return work(connection)

        def alone():
            if writer:
                return in_transaction(_OwnTransaction())
            with self._lone_reads_engine().connect() as connection:
                return work(connection)

        with db.translated_errors(conflict):
            if _in_transaction(context):
                return in_transaction(context)
            return _retry(alone)()

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

        def write(connection):
            rows = connection.execute(
                _GET_STASH, {"instance_uuid": wanted.instance_uuid}).all()
            existing = _stashes_from_rows(rows)
            now = timeutils.utcnow()
            columns = {
                "project_id": wanted.project_id, "user_id": wanted.user_id,
                "project_domain_id": wanted.project_domain_id,
                "user_domain_id": wanted.user_domain_id}
            if not existing:
                stash_id = connection.execute(sa.insert(STASHES).values(
                    instance_uuid=wanted.instance_uuid, created_at=now,
                    deleted=0, **columns)).inserted_primary_key[0]
                _insert_roles(connection, stash_id, wanted.roles)
                return dataclasses.replace(wanted, created_at=now)
            current = existing[0]
            if current._payload() == wanted._payload():
                return current
            if not replace:
                raise exception.StashConflict(wanted.instance_uuid)
            stash_id = rows[0].id
            connection.execute(sa.update(STASHES).where(
                STASHES.c.id == stash_id).values(updated_at=now, **columns))
            connection.execute(
                sa.delete(ROLES).where(ROLES.c.stash_id == stash_id))
            _insert_roles(connection, stash_id, wanted.roles)
            return dataclasses.replace(
                wanted, created_at=current.created_at, updated_at=now)

        stash = self._run(True, context, write,
                          exception.StashConflict(wanted.instance_uuid))
        LOG.debug("Stashed the boot roles of instance %s", stash.instance_uuid)
        return stash

    def stash_from_context(self, context, instance_uuid, *, replace=False):
        """Stash the identity of a Nova RequestContext, inside its
        transaction. Only project, user, roles and domain ids are read:
        the context's token is never touched."""
        return self.stash_roles(
            instance_uuid, project_id=context.project_id,
            user_id=context.user_id, roles=list(context.roles),
            project_domain_id=getattr(context, "project_domain_id", None),
            user_domain_id=getattr(context, "user_domain_id", None),
            replace=replace, context=context)

    def get_stash(self, instance_uuid, *, context=None):
        """Return the live Stash of an instance (the metadata GET's read)."""
        instance_uuid = validation.instance_uuid(instance_uuid)
        stashes = self._run(False, context, lambda connection: (
            _stashes_from_rows(connection.execute(
                _GET_STASH, {"instance_uuid": instance_uuid}))))
        if not stashes:
            raise exception.StashNotFound(instance_uuid)
        return stashes[0]

    def get_stashes(self, instance_uuids, *, context=None):
        """Return {instance_uuid: Stash} for the live stashes among
        instance_uuids, in one round trip; missing ones are left out."""
        instance_uuids = validation.instance_uuids(instance_uuids)
        if not instance_uuids:
            return {}
        stashes = self._run(False, context, lambda connection: (
            _stashes_from_rows(connection.execute(
                _GET_STASHES, {"instance_uuids": list(instance_uuids)}))))
        return {stash.instance_uuid: stash for stash in stashes}

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
            if marker is not None:
                marker_id = connection.execute(
                    sa.select(STASHES.c.id).where(
                        STASHES.c.instance_uuid == marker, _LIVE)
                ).scalar_one_or_none()
                if marker_id is None:
                    raise exception.MarkerNotFound(marker)
                filters.append(STASHES.c.id > marker_id)
            page = (sa.select(*_STASH_COLUMNS).where(*filters)
                    .order_by(STASHES.c.id).limit(limit).subquery())
            return _stashes_from_rows(connection.execute(_with_roles(page)))

        return self._run(False, context, read)

    def delete_stash(self, instance_uuid, *, context=None):
        """Soft-delete the live stash of an instance (on instance delete)."""
        instance_uuid = validation.instance_uuid(instance_uuid)

        def delete(connection):
            return connection.execute(
                sa.update(STASHES)
                .where(STASHES.c.instance_uuid == instance_uuid, _LIVE)
                .values(deleted=STASHES.c.id, deleted_at=timeutils.utcnow())
            ).rowcount

        if not self._run(True, context, delete):
            raise exception.StashNotFound(instance_uuid)
        LOG.debug("Soft-deleted the role stash of instance %s", instance_uuid)

    def purge_deleted(self, *, older_than, batch_size=PURGE_BATCH_SIZE):
        """Remove soft-deleted stashes deleted before older_than, batch_size
        per transaction; return how many were removed."""
        older_than = validation.utc_datetime(older_than, "older_than")
        batch_size = validation.positive_int(batch_size, "batch_size")
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
