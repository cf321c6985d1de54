"""role-stash-manage's commands that read Nova's tables: import-nova,
delete-orphans and upgrade check."""

import logging

from role_stash.cmd import common
from role_stash.cmd import status
from role_stash.cmd.common import args
from role_stash.conf import manage as conf_manage
from role_stash.db import api
from role_stash.nova import boot_roles
from role_stash.nova import orphans

LOG = logging.getLogger(__name__)


def _batch_args(handler):
    """Declare --batch-size, --dry-run and --max-listed: the options
    import-nova and delete-orphans share."""
    handler = args("--max-listed", type=int, default=100,
                   help="how many instances the report names (its counts "
                        "are complete)")(handler)
    handler = args("--dry-run", action="store_true",
                   help="count, and write nothing")(handler)
    return args("--batch-size", type=int, default=boot_roles.BATCH_SIZE,
                help="rows per batch and transaction, at most 1000")(handler)


def _with_nova(arguments, context_manager):
    """Return (the repository, Nova's database) of a command that reads
    Nova's tables; InvalidArgument if Nova's database has none."""
    repository = api.StashRepository(context_manager)
    nova = common.nova_database(arguments, repository)
    nova.require_nova_tables("Nova's database")
    return repository, nova


def _import_text(summary):
    verb = "would take" if summary.dry_run else "taken"
    lines = [f"{verb}: {summary.taken}",
             f"already stashed: {summary.already_stashed}",
             f"refused: {summary.refused_total}"]
    lines += [f"  {reason}: {count}"
              for reason, count in sorted(summary.refused.items())]
    lines.append(f"skipped deleted: {summary.skipped_deleted}")
    if summary.refusals:
        lines.append(f"refused instances (first {len(summary.refusals)} of "
                     f"{summary.refused_total}):")
        lines += [f"  {refusal.instance_uuid}  {refusal.reason}: "
                  f"{refusal.detail}" for refusal in summary.refusals]
    return "\n".join(lines)


@common.nova_database_args
@_batch_args
def import_nova(arguments, context_manager):
    """Stash the boot_roles of Nova's live instances that have no stash."""
    repository, nova = _with_nova(arguments, context_manager)
    with common.progress_bar(arguments, nova.count_instances,
                             "instance") as progress:
        summary = boot_roles.import_from_nova(
            nova, repository, batch_size=arguments.batch_size,
            dry_run=arguments.dry_run, listed_refusals=arguments.max_listed,
            progress=progress)
    LOG.info("Import from Nova%s: %d taken, %d already stashed, %d "
             "refused, %d deleted instances skipped",
             " (dry run)" if summary.dry_run else "", summary.taken,
             summary.already_stashed, summary.refused_total,
             summary.skipped_deleted)
    common.answer(arguments, summary.as_dict(), _import_text(summary))
    return common.OK


def _orphans_text(summary):
    lines = [f"scanned: {summary.scanned} live stashes",
             f"found deleted: {summary.found_deleted} (Nova deleted the "
             "instance)",
             f"found gone: {summary.found_gone} (Nova has no row of the "
             f"instance; last written over {summary.grace_period} s ago)",
             f"gone within the grace period, kept: "
             f"{summary.gone_within_grace}"]
    if summary.dry_run:
        lines.append("soft-deleted: 0 (dry run)")
    else:
        lines += [f"kept on re-check: {summary.kept_on_recheck}",
                  f"soft-deleted: {summary.soft_deleted}"]
    lines += [f"  {orphan.instance_uuid}  {orphan.instance}"
              f"{'  soft-deleted' if orphan.soft_deleted else ''}"
              for orphan in summary.orphans]
    return "\n".join(lines)


@common.nova_database_args
@_batch_args
@args("--grace-period", type=int, metavar="SECONDS",
      help="keep a stash whose instance has no row in Nova's database this "
           "long after it was written; default [role_stash] "
           f"orphan_grace_period, {conf_manage.ORPHAN_GRACE_PERIOD}")
def delete_orphans(arguments, context_manager):
    """Soft-delete stashes whose instance Nova deleted or no longer has."""
    repository, nova = _with_nova(arguments, context_manager)
    grace_period = (arguments.grace_period
                    if arguments.grace_period is not None
                    else arguments.conf.role_stash.orphan_grace_period)
    with common.progress_bar(arguments, lambda: None, "stash") as progress:
        summary = orphans.delete_orphans(
            nova, repository, grace_period=grace_period,
            dry_run=arguments.dry_run, batch_size=arguments.batch_size,
            listed_orphans=arguments.max_listed, progress=progress)
    LOG.info("Orphaned stashes%s: %d of deleted instances, %d of instances "
             "gone, %d soft-deleted, %d kept on re-check",
             " (dry run)" if summary.dry_run else "", summary.found_deleted,
             summary.found_gone, summary.soft_deleted,
             summary.kept_on_recheck)
    common.answer(arguments, summary.as_dict(), _orphans_text(summary))
    return common.OK


@common.nova_database_args
def upgrade_check(arguments, context_manager):
    """Check that role_stash is ready for an upgrade (oslo.upgradecheck)."""
    repository = api.StashRepository(context_manager)
    checks = status.Checks(
        repository, common.nova_database(arguments, repository),
        nova_named=any(common.nova_settings(arguments)),
        deleted_rows_age_days=(
            arguments.conf.role_stash.deleted_rows_warn_after_days),
        orphan_grace_period=arguments.conf.role_stash.orphan_grace_period)
    return status.run(checks, json=arguments.json)
