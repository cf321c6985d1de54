"""The repository's housekeeping: the walk over live stashes, the soft
delete of orphaned ones, and archive and purge (their batches are
role_stash.db.archive's; the repository runs them, one lone transaction a
batch)."""

import logging

from oslo_utils import timeutils
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import archive
from role_stash.db import calls
from role_stash.db import dialects
from role_stash.db import nova_tables
from role_stash.db import validation
from role_stash.db.models import SHADOW_STASHES
from role_stash.db.models import STASHES
from role_stash.db.values import StashWritten

LOG = logging.getLogger(__name__)

_LIVE_PAGE = sa.select(STASHES.c.instance_uuid, dialects.WRITTEN_AT).where(
    dialects.LIVE, STASHES.c.instance_uuid > sa.bindparam("after")).order_by(
        STASHES.c.instance_uuid).limit(sa.bindparam("limit"))
_DELETED_BEFORE = sa.select(
    sa.func.count(), sa.func.min(STASHES.c.deleted_at)).where(
        STASHES.c.deleted != 0, STASHES.c.deleted_at < sa.bindparam("before"))
_ARCHIVED_BEFORE = sa.select(
    sa.func.count(), sa.func.min(SHADOW_STASHES.c.deleted_at)).where(
        SHADOW_STASHES.c.deleted_at < sa.bindparam("before"))


class HousekeepingOperations:
    """StashRepository's operations for operators' commands: walk, orphan
    sweep, counts, archive and purge."""

    def live_stash_page(self, *, after=None, limit=None):
        """Return up to limit (capped at 1000) StashWritten of live
        stashes, by instance UUID, of UUIDs after `after`: the pages of a
        walk over every live stash that keeps its course while the walk
        deletes stashes behind it."""
        after = ("" if after is None
                 else validation.instance_uuid(after, "after"))
        limit = validation.limit(limit)
        return self._call(None, writer=False).run(lambda connection: [
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
            conditions.append(dialects.WRITTEN_AT < sa.bindparam("before"))
        if validation.flag(unless_live_here, "unless_live_here"):
            conditions.append(nova_tables.no_live_instance(
                STASHES.c.instance_uuid))
        soft_delete = dialects.SOFT_DELETE.where(*conditions)

        def delete(connection):
            deleted = []
            for instance_uuid in instance_uuids:
                keys = {**parameters, "uuid": instance_uuid}
                if connection.execute(soft_delete, keys).rowcount:
                    connection.execute(dialects.DELETE_REPLIES, keys)
                    deleted.append(instance_uuid)
            return deleted

        deleted = (self._call(None, writer=True).run(delete) if instance_uuids
                   else [])
        for instance_uuid in deleted:
            LOG.debug("Soft-deleted the orphaned role stash of instance %s",
                      instance_uuid)
        return deleted

    def count_deleted(self, *, before):
        """Return (how many, the oldest deleted_at or None) of the stashes
        soft-deleted before a time that are still in role_stashes."""
        before = validation.utc_datetime(before, "before")
        return tuple(self._call(None, writer=False).run(lambda connection: (
            connection.execute(_DELETED_BEFORE, {"before": before}).one())))

    def count_archived(self, *, before):
        """Return (how many, the oldest deleted_at or None) of the archived
        stashes deleted before a time (role_stashes_shadow's)."""
        before = validation.utc_datetime(before, "before")
        return tuple(self._call(None, writer=False).run(lambda connection: (
            connection.execute(_ARCHIVED_BEFORE, {"before": before}).one())))

    def _archive_or_purge(self, operation, parts, statements, *,
                          max_rows, batch_size, until_complete, dry_run,
                          progress, on_duplicate=None):
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
            write=lambda work: self._call(None, writer=True).run(
                work, on_duplicate=on_duplicate),
            read=lambda work: self._call(None, writer=False).run(work),
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
            progress=progress, on_duplicate=calls.raising(
                exception.DatabaseError,
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
