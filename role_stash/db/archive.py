"""Archive and purge: deleted rows moved to shadow tables, or removed for good.

archive moves soft-deleted stashes, each with its roles, and the cached
vendordata replies of instances that have no live stash, from the live
tables to their shadows (role_stashes_shadow, role_stash_roles_shadow,
role_stash_vendordata_shadow). purge removes for good what was deleted
before a date: archived rows, and soft-deleted rows still in the live
tables.

A run is a series of bounded batches, each one short transaction: it picks
at most a batch of rows, copies them to the shadow tables (archive only,
INSERT ... SELECT) and deletes them where they were. Killed at any moment,
a run leaves every stash whole, with its roles, in one table or the other:
the next run goes on from there, nothing lost, nothing doubled. A batch
touches deleted rows only, and replies no live stash uses, so the
repository's reads and writes go on meanwhile.

max_rows counts records: stashes and replies. Roles go with their stash,
uncounted; a stash is never parted from them.

A stash counts as deleted when deleted != 0 and deleted_at is set, as
StashRepository.delete_stash leaves it. A reply is dated by keep_until, the
time it is of no more use.
"""

import collections
import dataclasses
import time
import types
import typing

import sqlalchemy as sa

from role_stash import exception
from role_stash.db.models import REPLIES
from role_stash.db.models import ROLES
from role_stash.db.models import SHADOW_REPLIES
from role_stash.db.models import SHADOW_ROLES
from role_stash.db.models import SHADOW_STASHES
from role_stash.db.models import STASHES

ARCHIVE = "archive"
PURGE = "purge"
BATCH_SIZE = 1000


# Each live table's shadow, and the columns a row takes there: a reply
# gets an id of the shadow table's own.
SHADOWS = {STASHES: SHADOW_STASHES, ROLES: SHADOW_ROLES,
           REPLIES: SHADOW_REPLIES}
_COPIED = {table: [column.name for column in table.c
                   if table is not REPLIES or column.name != "id"]
           for table in SHADOWS}
# The roles of a table of stashes.
_ROLES_OF = {STASHES: ROLES, SHADOW_STASHES: SHADOW_ROLES}

_IDS = sa.bindparam("ids", expanding=True)


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a run of archive or purge took, or in a dry run would take."""

    operation: str  # ARCHIVE or PURGE
    # Rows per table the run takes from, every one named, 0 included:
    # archive's are the live tables (moved to their shadows).
    rows: typing.Mapping[str, int]
    # Nothing was left that the run could take; False when max_rows
    # stopped it with rows left.
    complete: bool
    dry_run: bool
    batches: int
    seconds: float

    @property
    def total(self):
        """The rows taken, every table's together."""
        return sum(self.rows.values())

    def as_dict(self):
        """Return the summary as plain JSON values."""
        fields = {field.name: getattr(self, field.name)
                  for field in dataclasses.fields(self)}
        return {**fields, "rows": dict(self.rows), "total": self.total}


@dataclasses.dataclass(frozen=True)
class _Part:
    """The records of one table that a run takes, batch after batch."""

    records: sa.Table
    eligible: tuple  # WHERE clauses
    order: tuple  # ORDER BY of a batch: an index's, so it reads no further
    # Whether the batches go on after the last id taken, where rows that
    # are not taken lie among those that are. Other parts' batches go on
    # from the first order column's last value taken: the index entries
    # of the rows deleted before are not yet cleared away (PostgreSQL's
    # vacuum, InnoDB's purge), and a batch starting from the first would
    # step over all of them again.
    walks: bool = False

    def resume_from(self, after):
        """The WHERE clause of a batch after one that ended at after."""
        if self.walks:
            return self.records.c.id > after
        return self.order[0] >= after

    @property
    def roles(self):
        return _ROLES_OF.get(self.records)

    def tables(self):
        """Yield (table, WHERE on :ids) of the rows a batch takes: the
        roles before their stashes (the live roles name their stash by a
        foreign key)."""
        if self.roles is not None:
            yield self.roles, self.roles.c.stash_id.in_(_IDS)
        yield self.records, self.records.c.id.in_(_IDS)


def _deleted_stashes(statements, before, archiving):
    """The WHERE clauses of soft-deleted stashes that may leave
    role_stashes (to be archived, or purged), deleted before before (a
    naive UTC datetime) unless it is None."""
    clauses = [STASHES.c.deleted != 0, STASHES.c.deleted_at.is_not(None),
               *statements.removable_stashes(archiving)]
    if before is not None:
        clauses.append(STASHES.c.deleted_at < before)
    return tuple(clauses)


def archive_parts(statements, before=None):
    """The parts of an archive: soft-deleted stashes, with their roles;
    then the replies of instances with no live stash."""
    live_stash = sa.select(STASHES.c.id).where(
        STASHES.c.instance_uuid == REPLIES.c.instance_uuid,
        STASHES.c.deleted == 0).exists()
    unused = (~live_stash,)
    if before is not None:
        unused += (REPLIES.c.keep_until < before,)
    return (
        _Part(STASHES, _deleted_stashes(statements, before, True),
              (STASHES.c.deleted_at, STASHES.c.id)),
        # Replies that live stashes use lie among those taken.
        _Part(REPLIES, unused, (REPLIES.c.id,), walks=True),
    )


def purge_parts(statements, before, now):
    """The parts of a purge of what was deleted before before (None:
    everything, the live replies of no more use by now): archived stashes
    with their roles, archived replies, soft-deleted stashes with their
    roles, replies of no more use."""
    def dated(column):
        return () if before is None else (column < before,)

    return (
        _Part(SHADOW_STASHES, dated(SHADOW_STASHES.c.deleted_at),
              (SHADOW_STASHES.c.deleted_at, SHADOW_STASHES.c.id)),
        _Part(SHADOW_REPLIES, dated(SHADOW_REPLIES.c.keep_until),
              (SHADOW_REPLIES.c.keep_until, SHADOW_REPLIES.c.id)),
        _Part(STASHES, _deleted_stashes(statements, before, False),
              (STASHES.c.deleted_at, STASHES.c.id)),
        _Part(REPLIES, (REPLIES.c.keep_until < (before or now),),
              (REPLIES.c.keep_until, REPLIES.c.id)),
    )


def _table_names(parts):
    """The names of the tables parts take rows from: each stash table
    before its roles."""
    names = []
    for part in parts:
        names.append(part.records.name)
        if part.roles is not None:
            names.append(part.roles.name)
    return names


def _take_batch(connection, statements, part, limit, after, archives):
    """Take one batch of part's records, at most limit, after where the
    batch before ended (after: None for the first), in connection's
    transaction: copy them to the shadow tables if archives, then delete
    them. Return ({table name: rows}, where this batch ended)."""
    statements.begin_batch(connection)
    resume = part.records.c.id if part.walks else part.order[0]
    pick = sa.select(part.records.c.id, resume).where(*part.eligible)
    if after is not None:
        pick = pick.where(part.resume_from(after))
    pick = statements.lock_batch(pick.order_by(*part.order).limit(limit),
                                 part.records)
    picked = connection.execute(pick).all()
    if not picked:
        return {}, after
    ids = [row[0] for row in picked]
    taken = {}
    for table, where in part.tables():
        parameters = {"ids": ids}
        if archives:
            columns = _COPIED[table]
            copied = connection.execute(
                sa.insert(SHADOWS[table]).from_select(
                    columns, sa.select(*(table.c[name] for name in columns))
                    .where(where))
                # An INSERT's rowcount is read after the cursor is closed
                # otherwise, and psycopg 3 then says -1.
                .execution_options(preserve_rowcount=True),
                parameters).rowcount
        removed = connection.execute(
            sa.delete(table).where(where), parameters).rowcount
        if archives and copied != removed:
            # Raised inside the transaction: the batch rolls back whole.
            raise exception.DatabaseError(
                f"archive copied {copied} rows of {table.name} to "
                f"{SHADOWS[table].name} but deleted {removed}; the batch "
                "was rolled back")
        taken[table.name] = removed
    ends = [row[1] for row in picked]
    # A NULL deleted_at orders nowhere: the next batch starts afresh.
    return taken, None if None in ends else max(ends)


def _count(connection, part, limit):
    """Return ({table name: rows}, whether more records are left) of the
    records part's next batches would take, limit at most (None: all)."""
    pick = sa.select(part.records.c.id).where(*part.eligible)
    if limit is not None:
        # One more than limit says whether the bound leaves records.
        pick = pick.order_by(*part.order).limit(limit + 1)
    found = connection.execute(
        sa.select(sa.func.count()).select_from(pick.subquery())).scalar()
    more = limit is not None and found > limit
    counts = {part.records.name: min(found, limit) if more else found}
    roles = part.roles
    if roles is not None:
        picked = (pick.limit(limit) if more else pick).subquery()
        counts[roles.name] = connection.execute(
            sa.select(sa.func.count()).select_from(
                roles.join(picked, roles.c.stash_id == picked.c.id))
        ).scalar()
    return counts, more


def _any_left(connection, parts):
    """Whether any part has a record left to take."""
    return any(connection.execute(
        sa.select(part.records.c.id).where(*part.eligible).limit(1)
    ).first() is not None for part in parts)


def run(operation, parts, statements, *, write, read, max_rows, batch_size,
        until_complete, dry_run, progress=None):
    """Run archive (operation ARCHIVE) or purge (PURGE) of parts; return
    a Summary.

    write(work) returns work(connection) in a transaction of its own,
    read(work) on a connection for reads. Batches take at most
    min(batch_size, max_rows) records. Without until_complete the run
    stops once it took max_rows records (None: no bound); with it, it
    goes on, round after round, until a round finds nothing, as
    nova-manage's --until-complete does. A dry run only counts, in one
    read, what the run would take. progress(summary) is called after each
    batch.
    """
    started = time.monotonic()
    taken = collections.Counter(dict.fromkeys(_table_names(parts), 0))
    left = None if until_complete or max_rows is None else max_rows
    batch = batch_size if max_rows is None else min(batch_size, max_rows)
    batches = 0

    def summary(complete):
        return Summary(operation, types.MappingProxyType(dict(taken)),
                       complete, dry_run, batches,
                       round(time.monotonic() - started, 3))

    if dry_run:
        def count(connection):
            """Count as the batches would take; return whether the bound
            leaves nothing."""
            remaining = left
            for index, part in enumerate(parts):
                counts, more = _count(connection, part, remaining)
                taken.update(counts)
                if remaining is None:
                    continue
                remaining -= counts[part.records.name]
                if more:
                    return False
                if remaining == 0:
                    return not _any_left(connection, parts[index + 1:])
            return True

        return summary(read(count))

    archives = operation == ARCHIVE
    while True:
        round_taken = 0
        for part in parts:
            after = None
            while left is None or left > 0:
                limit = batch if left is None else min(batch, left)
                rows, after = write(
                    lambda connection, part=part, limit=limit, after=after:
                    _take_batch(connection, statements, part, limit, after,
                                archives))
                batches += 1
                taken.update(rows)
                records = rows.get(part.records.name, 0)
                round_taken += records
                if left is not None:
                    left -= records
                if progress is not None:
                    progress(summary(False))
                if records < limit:
                    break
        if not until_complete or not round_taken:
            break
    complete = left != 0 or not read(
        lambda connection: _any_left(connection, parts))
    return summary(complete)
