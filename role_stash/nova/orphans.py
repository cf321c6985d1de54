"""Stashes whose instance Nova deleted or no longer has: found, soft-deleted.

Nova's own archive and purge never touch role_stash's tables, so a stash
outlives its instance whenever a delete path forgets it. An instance that
Nova deleted (instances.deleted != 0) never comes back: its stash goes. An
instance with no row at all may be gone (archived into shadow_instances,
purged) or not yet committed (a stash written alone, before the instance
row of its create): its stash goes only once it was last written longer
ago than a grace period. Just before a stash is soft-deleted its instance
is checked again, in the very statement that deletes it when Nova's tables
share the database, else by a read of Nova's database just before it.
Nova's rows are read through nova_db, stashes through the repository; no
SQL here.
"""

import dataclasses
import datetime
import typing

from oslo_utils import timeutils

from role_stash.conf import manage as conf_manage
from role_stash.db import validation

BATCH_SIZE = 1000
LISTED_ORPHANS = 100
DELETED = "deleted"
GONE = "gone"


class Orphan(typing.NamedTuple):
    """A live stash found orphaned: its instance, whether Nova deleted the
    instance (DELETED) or has no row of it (GONE), and whether this run
    soft-deleted the stash."""

    instance_uuid: str
    instance: str
    soft_deleted: bool


@dataclasses.dataclass(frozen=True)
class OrphanSummary:
    """What a run found and did; a dry run soft-deletes nothing."""

    scanned: int
    found_deleted: int
    found_gone: int
    gone_within_grace: int
    kept_on_recheck: int
    soft_deleted: int
    orphans: tuple
    grace_period: int
    dry_run: bool

    def as_dict(self):
        """The summary as JSON-ready values."""
        return {"scanned": self.scanned, "found_deleted": self.found_deleted,
                "found_gone": self.found_gone,
                "gone_within_grace": self.gone_within_grace,
                "kept_on_recheck": self.kept_on_recheck,
                "soft_deleted": self.soft_deleted,
                "orphans": [orphan._asdict() for orphan in self.orphans],
                "orphans_listed": len(self.orphans),
                "grace_period": self.grace_period, "dry_run": self.dry_run}


def _soft_delete(nova, repository, deleted, old_gone, cutoff):
    """Soft-delete the stashes of instances found deleted, and of those
    found gone (stashes last written before cutoff), each checked again
    first; return the UUIDs whose stash went."""
    if nova.context_manager is repository.context_manager:
        # One database: the statement that deletes checks Nova's row.
        return (repository.delete_orphaned_stashes(
                    deleted, unless_live_here=True)
                + repository.delete_orphaned_stashes(
                    old_gone, written_before=cutoff, unless_live_here=True))
    # Nova deletes for good; a missing row may have been committed since.
    again = nova.instance_states(old_gone)
    still_orphaned = [uuid for uuid in old_gone if again.get(uuid, True)]
    return (repository.delete_orphaned_stashes(deleted)
            + repository.delete_orphaned_stashes(
                still_orphaned, written_before=cutoff))


def delete_orphans(nova, repository, *,
                   grace_period=conf_manage.ORPHAN_GRACE_PERIOD,
                   dry_run=False, batch_size=BATCH_SIZE,
                   listed_orphans=LISTED_ORPHANS, now=None, progress=None):
    """Find the live stashes whose instance Nova (a nova_db.NovaDatabase)
    deleted or has no row of, and soft-delete them; return an
    OrphanSummary. A stash of an instance with no row is an orphan only
    once last written more than grace_period seconds before now. Pages of
    batch_size stashes (at most 1000); progress(stashes read), when
    given, after each."""
    grace_period = validation.non_negative_int(grace_period, "grace_period")
    dry_run = validation.flag(dry_run, "dry_run")
    batch_size = validation.positive_int(batch_size, "batch_size",
                                         validation.MAX_LIMIT)
    cutoff = (now or timeutils.utcnow()) - datetime.timedelta(
        seconds=grace_period)
    counts = dict.fromkeys(("scanned", "found_deleted", "found_gone",
                            "gone_within_grace", "kept_on_recheck",
                            "soft_deleted"), 0)
    orphans = []
    after = None
    while True:
        page = repository.live_stash_page(after=after, limit=batch_size)
        if not page:
            break
        states = nova.instance_states([entry.instance_uuid for entry in page])
        deleted = [entry.instance_uuid for entry in page
                   if states.get(entry.instance_uuid) is True]
        gone = [entry for entry in page if entry.instance_uuid not in states]
        old_gone = [entry.instance_uuid for entry in gone
                    if entry.written_at < cutoff]
        removed = set()
        if not dry_run and (deleted or old_gone):
            removed = set(_soft_delete(nova, repository, deleted, old_gone,
                                       cutoff))
        counts["scanned"] += len(page)
        counts["found_deleted"] += len(deleted)
        counts["found_gone"] += len(old_gone)
        counts["gone_within_grace"] += len(gone) - len(old_gone)
        counts["soft_deleted"] += len(removed)
        if not dry_run:
            counts["kept_on_recheck"] += (len(deleted) + len(old_gone)
                                          - len(removed))
        for kind, uuids in ((DELETED, deleted), (GONE, old_gone)):
            for uuid in uuids[:max(0, listed_orphans - len(orphans))]:
                orphans.append(Orphan(uuid, kind, uuid in removed))
        if progress is not None:
            progress(len(page))
        if len(page) < batch_size:
            break
        after = page[-1].instance_uuid
    return OrphanSummary(orphans=tuple(orphans), grace_period=grace_period,
                         dry_run=dry_run, **counts)
