"""Import from Nova: live instances' boot_roles, stashed with project and user.

Nova's rows are read through nova_db, batch by batch of instance ids; the
stashes are written through the repository, a batch per transaction, so
validation and idempotence are the repository's. A row that cannot be
taken as it is (cut short, empty, a name role_stash refuses, a name twice,
no project or user) is refused and reported, never guessed at; an
instance that already has a live stash keeps it, and one whose stash says
otherwise than Nova is reported. No SQL here.
"""

import dataclasses
import types
import typing

from role_stash import exception
from role_stash.db import nova_tables
from role_stash.db import validation
from role_stash.db.values import Stash

BATCH_SIZE = 1000
# How many refusals a summary names; its counts are always complete.
LISTED_REFUSALS = 100

# Why a row is refused: its reason's key, and what it means.
REASONS = types.MappingProxyType({
    "invalid_uuid": "the instance's UUID is not of the form "
                    "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    "no_project_or_user": "the instance has no project_id or no user_id",
    "invalid_project_or_user": "the instance's project_id or user_id is one "
                               "role_stash refuses",
    "no_boot_roles": "the instance has no boot_roles in "
                     "instance_system_metadata",
    "several_values": "the instance has several live boot_roles rows that "
                      "differ",
    "empty": "boot_roles is empty",
    "truncated": f"boot_roles is exactly {nova_tables.VALUE_LENGTH} "
                 "characters long, the size of Nova's column: probably cut "
                 "short",
    "invalid_name": "boot_roles holds a role name role_stash refuses",
    "duplicate_name": "boot_roles holds a role name twice",
    "different_stash": "the instance has a live stash whose project, user or "
                       "roles differ from Nova's (left as it is)",
})


class Refusal(typing.NamedTuple):
    """An instance whose row was not taken: its UUID, the reason's key
    (one of REASONS), and what in the row made it so."""

    instance_uuid: str
    reason: str
    detail: str


def _refusal(instance_uuid, reason, detail=None):
    return Refusal(instance_uuid, reason, detail or REASONS[reason])


@dataclasses.dataclass(frozen=True)
class ImportSummary:
    """What an import took, found already stashed, refused (counts by
    reason, and the first refusals), and skipped as deleted. A dry run
    counts what it would have taken."""

    taken: int
    already_stashed: int
    skipped_deleted: int
    refused: types.MappingProxyType
    refusals: tuple
    dry_run: bool

    @property
    def refused_total(self):
        return sum(self.refused.values())

    def as_dict(self):
        """The summary as JSON-ready values."""
        return {"taken": self.taken, "already_stashed": self.already_stashed,
                "skipped_deleted": self.skipped_deleted,
                "refused": dict(self.refused),
                "refused_total": self.refused_total,
                "refusals": [refusal._asdict() for refusal in self.refusals],
                "refusals_listed": len(self.refusals),
                "dry_run": self.dry_run}


def boot_roles_of(instance):
    """Return (role names, None), or (None, Refusal) for a live
    NovaInstance whose row cannot be taken as it is."""
    uuid = instance.uuid
    for field in ("project_id", "user_id"):
        value = getattr(instance, field)
        if value is None or value == "":
            return None, _refusal(uuid, "no_project_or_user",
                                 f"the instance's {field} is empty")
        try:
            validation.text(value, field)
        except exception.InvalidArgument as error:
            return None, _refusal(uuid, "invalid_project_or_user", str(error))
    values = set(instance.boot_roles)
    if not values:
        return None, _refusal(uuid, "no_boot_roles")
    if len(values) > 1:
        return None, _refusal(uuid, "several_values",
                             f"{len(instance.boot_roles)} live boot_roles "
                             f"rows, {len(values)} different values")
    [value] = values
    if not value:
        return None, _refusal(uuid, "empty")
    if len(value) == nova_tables.VALUE_LENGTH:
        return None, _refusal(uuid, "truncated")
    names = value.split(",")
    try:
        validation.role_names(names, "boot_roles")
    except exception.InvalidArgument as error:
        return None, _refusal(uuid, "invalid_name",
                             f"role {error.field[len('boot_roles'):]} of "
                             f"boot_roles: {error.reason}")
    seen = {}
    for position, name in enumerate(names):
        if name in seen:
            return None, _refusal(
                uuid, "duplicate_name",
                f"roles [{seen[name]}] and [{position}] of boot_roles are "
                f"the same name")
        seen[name] = position
    return tuple(names), None


def _same_as_nova(stash, wanted):
    """Whether a live stash says what Nova's row says: project, user and
    roles (Nova's row has no domain ids; a stash that has them knows
    more, and is no difference)."""
    return (stash.project_id, stash.user_id, stash.roles) == (
        wanted.project_id, wanted.user_id, wanted.roles)


class _Tally:
    """The running counts of an import."""

    def __init__(self, listed):
        self.taken = self.already_stashed = self.skipped_deleted = 0
        self.refused = dict.fromkeys(REASONS, 0)
        self.refusals = []
        self._listed = listed

    def refuse(self, refusal):
        self.refused[refusal.reason] += 1
        if len(self.refusals) < self._listed:
            self.refusals.append(refusal)

    def compare(self, stash, wanted):
        if _same_as_nova(stash, wanted):
            self.already_stashed += 1
        else:
            self.refuse(_refusal(wanted.instance_uuid, "different_stash"))

    def summary(self, dry_run):
        return ImportSummary(
            taken=self.taken, already_stashed=self.already_stashed,
            skipped_deleted=self.skipped_deleted,
            refused=types.MappingProxyType(
                {reason: count for reason, count in self.refused.items()
                 if count}),
            refusals=tuple(self.refusals), dry_run=dry_run)


def _import_batch(instances, repository, tally, dry_run):
    """Stash the takeable rows of one batch of NovaInstance; count every
    row."""
    live = []
    for instance in instances:
        if instance.deleted:
            tally.skipped_deleted += 1
            continue
        try:
            uuid = validation.instance_uuid(instance.uuid)
        except exception.InvalidArgument as error:
            tally.refuse(_refusal(instance.uuid, "invalid_uuid", str(error)))
            continue
        live.append((uuid, instance))
    existing = repository.get_stashes([uuid for uuid, _ in live])
    wanted = []
    for uuid, instance in live:
        roles, refusal = boot_roles_of(instance)
        stash = existing.get(uuid)
        if refusal is not None:
            # An instance with a live stash needs nothing from Nova's row.
            if stash is not None:
                tally.already_stashed += 1
            else:
                tally.refuse(refusal)
            continue
        row = Stash(uuid, instance.project_id, instance.user_id, roles)
        if stash is not None:
            tally.compare(stash, row)
        else:
            wanted.append(row)
    if dry_run:
        tally.taken += len(wanted)
        return
    # A stash written since the read above is compared as the others.
    rivals = repository.stash_many(wanted) if wanted else {}
    for row in wanted:
        rival = rivals.get(row.instance_uuid)
        if rival is None:
            tally.taken += 1
        else:
            tally.compare(rival, row)


def import_from_nova(nova, repository, *, batch_size=BATCH_SIZE,
                     dry_run=False, listed_refusals=LISTED_REFUSALS,
                     progress=None):
    """Stash the boot_roles of every live instance of Nova's database (a
    nova_tables.NovaDatabase) that has no live stash; return an
    ImportSummary. Batches of batch_size instances by id (at most 1000),
    a transaction each; progress(instances read), when given, after each
    batch. A dry run reads and counts, and writes nothing."""
    batch_size = validation.positive_int(batch_size, "batch_size",
                                         validation.MAX_BULK)
    dry_run = validation.flag(dry_run, "dry_run")
    tally = _Tally(listed_refusals)
    after = 0
    while True:
        instances = nova.instances_after(after, batch_size)
        if not instances:
            break
        _import_batch(instances, repository, tally, dry_run)
        if progress is not None:
            progress(len(instances))
        if len(instances) < batch_size:
            break
        after = instances[-1].id
    return tally.summary(dry_run)
