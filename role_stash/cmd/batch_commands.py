"""role-stash-manage's batch commands on deleted rows: archive-deleted and
purge, run batch by batch by the repository, a progress bar on a
terminal."""

import contextlib

from role_stash.cmd import common
from role_stash.cmd.common import args
from role_stash.db import api
from role_stash.db import archive
from role_stash.db import validation

# nova-manage db archive_deleted_rows's default bound.
ARCHIVE_MAX_ROWS = 1000

_DOING = {
    archive.ARCHIVE: ("moved to the shadow tables",
                      "it would move to the shadow tables"),
    archive.PURGE: ("removed for good", "it would remove for good"),
}


def _batch_args(max_rows):
    """Declare the options archive-deleted and purge share, max_rows the
    default bound."""
    bound = (f"default {max_rows}, as nova-manage's" if max_rows
             else "default: no bound, as nova-manage db purge")
    declarations = (
        args("--max-rows", type=common.rows, metavar="N", default=max_rows,
             help=f"stop after N stashes and replies, their roles going "
                  f"along ({bound}); with --until-complete, the most rows "
                  f"of a batch"),
        args("--batch-size", type=common.rows, metavar="N",
             default=archive.BATCH_SIZE,
             help=f"rows per transaction (default {archive.BATCH_SIZE}, at "
                  f"most {validation.MAX_BATCH})"),
        args("--until-complete", action="store_true",
             help="go on until nothing is left, whatever --max-rows"),
        args("--dry-run", action="store_true",
             help="count what it would take; write nothing"),
    )

    def decorate(handler):
        for declaration in reversed(declarations):
            handler = declaration(handler)
        return handler
    return decorate


def _batches_text(name, summary):
    done, would = _DOING[summary.operation]
    if summary.dry_run:
        head = f"{name} --dry-run: rows {would} (nothing written)"
    else:
        head = (f"{name}: rows {done}, in {summary.batches} "
                f"batch{'es' if summary.batches != 1 else ''} "
                f"({summary.seconds:.1f} s)")
    width = max(map(len, summary.rows))
    lines = [head] + [f"  {table:<{width}}  {count:>10}"
                      for table, count in summary.rows.items()]
    if not summary.complete:
        lines.append("rows are left beyond --max-rows: run it again, or "
                     "with --until-complete")
    return "\n".join(lines)


def _in_batches(arguments, name, operation, **options):
    """Run an archive or purge operation of the repository as the command
    line says, a progress bar on a terminal (its total from a dry run's
    count); print its summary; return the exit code."""
    options = {"max_rows": arguments.max_rows,
               "batch_size": arguments.batch_size,
               "until_complete": arguments.until_complete, **options}
    bar = (contextlib.nullcontext() if arguments.dry_run
           else common.progress_bar(arguments, lambda: operation(
               dry_run=True, **options).total, "row"))
    with bar as advance:
        progress = None
        if advance is not None:
            drawn = 0

            def progress(summary):
                nonlocal drawn
                advance(summary.total - drawn)
                drawn = summary.total
        summary = operation(dry_run=arguments.dry_run, progress=progress,
                            **options)
    common.answer(arguments, summary.as_dict(), _batches_text(name, summary))
    return common.OK if summary.complete else common.ROWS_LEFT


@args("--before", type=common.date, metavar="DATE",
      help="only stashes deleted, and replies of no more use, before DATE "
           "(ISO 8601, UTC unless a zone is given)")
@_batch_args(ARCHIVE_MAX_ROWS)
def archive_deleted(arguments, context_manager):
    """Move soft-deleted stashes, with their roles, and the cached
    vendordata replies of instances with no live stash, to the shadow
    tables."""
    return _in_batches(
        arguments, "archive-deleted",
        api.StashRepository(context_manager).archive_deleted,
        before=arguments.before)


@_batch_args(None)
@args("--before", type=common.date, metavar="DATE", exclusive="what",
      help="remove what was deleted before DATE (ISO 8601, UTC unless a "
           "zone is given), and replies of no more use by then")
@args("--all", action="store_true", exclusive="what",
      help="remove every archived row and soft-deleted stash, and the "
           "replies of no more use now")
@common.required_one_of("what")
def purge(arguments, context_manager):
    """Remove for good what was deleted before --before (or --all): rows
    of the shadow tables, and soft-deleted rows of the live ones."""
    return _in_batches(
        arguments, "purge",
        api.StashRepository(context_manager).purge_deleted,
        before=arguments.before, everything=arguments.all)
