"""role-stash-manage: the operator's command, as nova-manage and keystone-manage.

Exit codes: 0 done; 1 database failure (unreachable, error); 2 bad usage or
input (a log file that cannot be opened included); 3 no such stash; 4
conflicting stash; 5 rows are left (archive-deleted or purge stopped at
--max-rows: run it again, or with --until-complete); 130 interrupted (the
batches done are kept). `db check` answers as `keystone-manage db_sync --check`:
0 at head, 2 expand pending, 4 contract pending (run `db sync --expand`, or
`db sync --contract`). `upgrade check` answers as oslo.upgradecheck (and
`nova-status upgrade check`): 0 success, 1 warning, 2 failure, 255 a check
that could not run.

Nova's database (import-nova, delete-orphans, upgrade check) is
--nova-database-url, or nova.conf's [database] connection with
--nova-config-file; else role_stash's own, as in a deployment where
role_stash's tables live in each cell database beside Nova's. Naming only
one of the two databases names both.
"""

import argparse
import contextlib
import json
import logging
import os
import sys

from oslo_config import cfg
from oslo_log import log as oslo_log
from oslo_utils import timeutils
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash.db import errors
from role_stash.db import oslo_internals
from role_stash.db import api
from role_stash.db import archive
from role_stash.db import engines
from role_stash import exception
from role_stash.db import migration
from role_stash.db import nova_tables
from role_stash.nova import boot_roles
from role_stash.conf import manage as conf_manage
from role_stash.nova import orphans
from role_stash.cmd import status as upgrade_checks

LOG = logging.getLogger(__name__)

OK = 0
DATABASE_FAILURE = 1
BAD_INPUT = 2
NOT_FOUND = 3
CONFLICT = 4
# Not nova-manage's 1 for "rows were archived": 1 is a database failure
# here, and a loop that runs again on it would never stop.
ROWS_LEFT = 5
INTERRUPTED = 130
# nova-manage db archive_deleted_rows's default bound.
ARCHIVE_MAX_ROWS = 1000

_CLI_OPTIONS = [
    cfg.StrOpt(
        "database-url",
        help="role_stash's database URL, driver named "
             "(postgresql+psycopg2://..., mysql+pymysql://...); default: "
             "the --config-file's [database] connection, else "
             f"${engines.URL_ENVIRONMENT_VARIABLE}, else Nova's database "
             "when one is named, else " + engines.DEFAULT_URL),
]


def _role_stash_database_named(conf):
    return bool(conf.database_url or conf.config_file or conf.config_dir
                or os.environ.get(engines.URL_ENVIRONMENT_VARIABLE))


def _nova_settings(args):
    """Return (Nova's URL or None, nova.conf's ConfigOpts or None) as the
    command's options name them."""
    url = getattr(args, "nova_database_url", None)
    config_file = getattr(args, "nova_config_file", None)
    if url and config_file:
        raise exception.InvalidArgument(
            "--nova-database-url", "give either it or --nova-config-file, "
                                   "not both")
    if not config_file:
        return url, None
    nova_conf = cfg.ConfigOpts()
    nova_conf(args=[], project="nova", default_config_files=[config_file])
    return None, nova_conf


def _context_manager(conf, args):
    """Return the enginefacade context manager of role_stash's database."""
    if (conf.config_file or conf.config_dir) and conf.database_url:
        raise exception.InvalidArgument(
            "--database-url", "give either it or --config-file, not both")
    if conf.config_file or conf.config_dir:
        context_manager = engines.context_manager_from_config(conf)
    elif not _role_stash_database_named(conf) and any(_nova_settings(args)):
        # One database named: role_stash's tables live beside Nova's.
        url, nova_conf = _nova_settings(args)
        context_manager = (engines.context_manager_from_url(url) if url
                           else engines.context_manager_from_config(nova_conf))
    else:
        context_manager = engines.context_manager_from_url(conf.database_url)
    # Fail fast on an unreachable database: an operator is waiting.
    context_manager.configure(max_retries=0)
    return context_manager


def _nova_database(args, repository):
    """Return the nova_tables.NovaDatabase the command names, else (or when it
    names the same URL) one on role_stash's own database."""
    url, nova_conf = _nova_settings(args)
    if url is None and nova_conf is None:
        return nova_tables.NovaDatabase(repository.context_manager)
    nova = (nova_tables.NovaDatabase.from_url(url) if nova_conf is None
            else nova_tables.NovaDatabase.from_config(nova_conf))
    if make_url(oslo_internals.configured_url(nova.context_manager)) == make_url(
            oslo_internals.configured_url(repository.context_manager)):
        return nova_tables.NovaDatabase(repository.context_manager)
    nova.context_manager.configure(max_retries=0)
    return nova


@contextlib.contextmanager
def _progress_bar(args, total_of, unit):
    """Yield a progress callback, progress(units done since the last
    call), drawing a bar on a terminal's standard error; None when it is
    not one, or the answer is JSON."""
    if args.json or not sys.stderr.isatty():
        yield None
        return
    import tqdm
    with tqdm.tqdm(total=total_of(), unit=unit, file=sys.stderr,
                   dynamic_ncols=True) as bar:
        yield bar.update


def _print(args, payload, text):
    print(json.dumps(payload, indent=2, sort_keys=True) if args.json else text)


def _stash_payload(stash):
    payload = stash._asdict()
    payload["roles"] = list(stash.roles)
    for key in ("created_at", "updated_at"):
        if payload[key] is not None:
            payload[key] = payload[key].isoformat()
    return payload


def _stash_text(stash):
    return "\n".join([
        f"instance_uuid:     {stash.instance_uuid}",
        f"project_id:        {stash.project_id}",
        f"user_id:           {stash.user_id}",
        f"project_domain_id: {stash.project_domain_id or '-'}",
        f"user_domain_id:    {stash.user_domain_id or '-'}",
        f"roles:             {json.dumps(list(stash.roles), ensure_ascii=False)}",
        f"created_at:        {stash.created_at.isoformat()}",
        f"updated_at:        "
        f"{stash.updated_at.isoformat() if stash.updated_at else '-'}",
    ])


def db_sync(args, context_manager):
    """Upgrade the schema: everything pending, or one phase."""
    phase = (migration.EXPAND if args.expand
             else migration.CONTRACT if args.contract else None)
    with context_manager.writer.get_engine().begin() as connection:
        reached = migration.sync(connection, phase)
        status = migration.check(connection)
    if reached:
        print(f"schema upgraded to {reached}")
    elif status == migration.EXPAND_PENDING:
        print("expand revisions are pending: run `role-stash-manage db sync "
              "--expand` first")
        return status
    elif status == migration.CONTRACT_PENDING:
        print("no expand revision is pending; contract ones are: run "
              "`role-stash-manage db sync --contract` once every service "
              "runs the new release")
    else:
        print("nothing to apply")
    return OK


def db_version(args, context_manager):
    """Print the schema's revision."""
    with context_manager.writer.get_engine().connect() as connection:
        print(migration.current_revision(connection) or "None (empty schema)")
    return OK


def db_check(args, context_manager):
    """Say whether the schema is at head; exit 0, 2 or 4."""
    with context_manager.writer.get_engine().connect() as connection:
        status = migration.check(connection)
    print({migration.AT_HEAD: "schema at head",
           migration.EXPAND_PENDING: "expand revisions pending: "
                                     "run `role-stash-manage db sync --expand`",
           migration.CONTRACT_PENDING: "contract revisions pending: "
                                       "run `role-stash-manage db sync "
                                       "--contract`"}[status])
    return status


def stash(args, context_manager):
    """Stash an instance's roles (as Nova does at server create)."""
    stashed = api.StashRepository(context_manager).stash_roles(
        args.instance_uuid, project_id=args.project_id, user_id=args.user_id,
        roles=args.role, project_domain_id=args.project_domain_id,
        user_domain_id=args.user_domain_id, replace=args.replace)
    _print(args, _stash_payload(stashed), _stash_text(stashed))
    return OK


def show(args, context_manager):
    """Print an instance's stash, or the vendordata fields made of it."""
    found = api.StashRepository(context_manager).get_stash(args.instance_uuid)
    if args.vendordata:
        fields = found.vendordata()
        _print(args, fields, "\n".join(f"{key}: {value}"
                                       for key, value in fields.items()))
    else:
        _print(args, _stash_payload(found), _stash_text(found))
    return OK


def list_stashes(args, context_manager):
    """Print live stashes of a project and/or with a role, one page."""
    found = api.StashRepository(context_manager).list_stashes(
        project_id=args.project_id, role=args.role, marker=args.marker,
        limit=args.limit)
    _print(args, [_stash_payload(item) for item in found], "\n".join(
        f"{item.instance_uuid}  {item.project_id}  "
        f"{json.dumps(list(item.roles), ensure_ascii=False)}"
        for item in found))
    return OK


def delete(args, context_manager):
    """Soft-delete an instance's stash."""
    api.StashRepository(context_manager).delete_stash(args.instance_uuid)
    _print(args, {"deleted": args.instance_uuid},
           f"deleted the stash of {args.instance_uuid}")
    return OK


_DOING = {
    archive.ARCHIVE: ("moved to the shadow tables",
                      "it would move to the shadow tables"),
    archive.PURGE: ("removed for good", "it would remove for good"),
}


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


def _in_batches(args, name, operation, **arguments):
    """Run an archive or purge operation of the repository as the command
    line says, a progress bar on a terminal (its total from a dry run's
    count); print its summary; return the exit code."""
    options = {"max_rows": args.max_rows, "batch_size": args.batch_size,
               "until_complete": args.until_complete, **arguments}
    bar = (contextlib.nullcontext() if args.dry_run else _progress_bar(
        args, lambda: operation(dry_run=True, **options).total, "row"))
    with bar as advance:
        progress = None
        if advance is not None:
            drawn = 0

            def progress(summary):
                nonlocal drawn
                advance(summary.total - drawn)
                drawn = summary.total
        summary = operation(dry_run=args.dry_run, progress=progress,
                            **options)
    _print(args, summary.as_dict(), _batches_text(name, summary))
    return OK if summary.complete else ROWS_LEFT


def archive_deleted(args, context_manager):
    """Move soft-deleted stashes, with their roles, and the cached
    vendordata replies of instances with no live stash, to the shadow
    tables."""
    return _in_batches(
        args, "archive-deleted",
        api.StashRepository(context_manager).archive_deleted,
        before=args.before)


def purge(args, context_manager):
    """Remove for good what was deleted before --before (or --all): rows
    of the shadow tables, and soft-deleted rows of the live ones."""
    return _in_batches(
        args, "purge", api.StashRepository(context_manager).purge_deleted,
        before=args.before, everything=args.all)


def import_nova(args, context_manager):
    """Stash the boot_roles of Nova's live instances that have no stash."""
    repository = api.StashRepository(context_manager)
    nova = _nova_database(args, repository)
    nova.require_nova_tables("Nova's database")
    with _progress_bar(args, nova.count_instances, "instance") as progress:
        summary = boot_roles.import_from_nova(
            nova, repository, batch_size=args.batch_size,
            dry_run=args.dry_run, listed_refusals=args.max_listed,
            progress=progress)
    LOG.info("Import from Nova%s: %d taken, %d already stashed, %d "
             "refused, %d deleted instances skipped",
             " (dry run)" if summary.dry_run else "", summary.taken,
             summary.already_stashed, summary.refused_total,
             summary.skipped_deleted)
    _print(args, summary.as_dict(), _import_text(summary))
    return OK


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


def delete_orphans(args, context_manager):
    """Soft-delete stashes whose instance Nova deleted or no longer has."""
    repository = api.StashRepository(context_manager)
    nova = _nova_database(args, repository)
    nova.require_nova_tables("Nova's database")
    grace_period = (args.grace_period if args.grace_period is not None
                    else args.conf.role_stash.orphan_grace_period)
    with _progress_bar(args, lambda: None, "stash") as progress:
        summary = orphans.delete_orphans(
            nova, repository, grace_period=grace_period,
            dry_run=args.dry_run, batch_size=args.batch_size,
            listed_orphans=args.max_listed, progress=progress)
    LOG.info("Orphaned stashes%s: %d of deleted instances, %d of instances "
             "gone, %d soft-deleted, %d kept on re-check",
             " (dry run)" if summary.dry_run else "", summary.found_deleted,
             summary.found_gone, summary.soft_deleted,
             summary.kept_on_recheck)
    _print(args, summary.as_dict(), _orphans_text(summary))
    return OK


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


def upgrade_check(args, context_manager):
    """Check that role_stash is ready for an upgrade (oslo.upgradecheck)."""
    repository = api.StashRepository(context_manager)
    checks = upgrade_checks.Checks(
        repository, _nova_database(args, repository),
        nova_named=any(_nova_settings(args)),
        deleted_rows_age_days=(
            args.conf.role_stash.deleted_rows_warn_after_days),
        orphan_grace_period=args.conf.role_stash.orphan_grace_period)
    return upgrade_checks.run(checks, json=args.json)


def _date(text):
    """A --before value: an ISO 8601 date or time, UTC unless it says."""
    try:
        return timeutils.parse_isotime(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time, such as 2026-11-01 "
            "or 2026-11-01T12:00:00Z (UTC unless a zone is given)") from None


def _rows(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive whole number of rows")
    return value


def _batch_options(max_rows):
    """The options archive-deleted and purge share, max_rows the default
    bound."""
    bound = (f"default {max_rows}, as nova-manage's" if max_rows
             else "default: no bound, as nova-manage db purge")
    return (
        (("--max-rows",), {
            "type": _rows, "metavar": "N", "default": max_rows,
            "help": f"stop after N stashes and replies, their roles going "
                    f"along ({bound}); with --until-complete, the most "
                    f"rows of a batch"}),
        (("--batch-size",), {
            "type": _rows, "metavar": "N", "default": archive.BATCH_SIZE,
            "help": f"rows per transaction (default {archive.BATCH_SIZE}, "
                    f"at most {api.validation.MAX_BATCH})"}),
        (("--until-complete",), {
            "action": "store_true",
            "help": "go on until nothing is left, whatever --max-rows"}),
        (("--dry-run",), {
            "action": "store_true",
            "help": "count what it would take; write nothing"}),
    )


def add_commands(commands):
    """Add role-stash-manage's commands to an argparse subparsers object
    (the handler of oslo.config's SubCommandOpt)."""
    db_parser = commands.add_parser("db", help="schema migrations")
    db_commands = db_parser.add_subparsers(dest="db_command", required=True)
    sync_parser = db_commands.add_parser("sync", help=db_sync.__doc__)
    phase = sync_parser.add_mutually_exclusive_group()
    phase.add_argument("--expand", action="store_true",
                       help="apply only the additive revisions, up to the "
                            "first pending contract one")
    phase.add_argument("--contract", action="store_true",
                       help="apply the pending contract revisions (once "
                            "every service runs the new release)")
    sync_parser.set_defaults(run=db_sync)
    db_commands.add_parser(
        "version", help=db_version.__doc__).set_defaults(run=db_version)
    db_commands.add_parser(
        "check", help=db_check.__doc__).set_defaults(run=db_check)

    def command(name, run, *arguments, aliases=()):
        sub = commands.add_parser(name, help=run.__doc__, aliases=aliases)
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        sub.add_argument("--json", action="store_true",
                         help="print JSON")
        sub.set_defaults(run=run)
        return sub

    instance = (("instance_uuid",), {})
    command("stash", stash, instance,
            (("--project-id",), {"required": True}),
            (("--user-id",), {"required": True}),
            (("--role",), {"action": "append", "default": [],
                           "help": "a role name; repeat for each role"}),
            (("--project-domain-id",), {}),
            (("--user-domain-id",), {}),
            (("--replace",), {"action": "store_true",
                              "help": "overwrite a different live stash"}))
    command("show", show, instance,
            (("--vendordata",), {"action": "store_true",
                                 "help": "print the vendordata fields"}))
    command("list", list_stashes,
            (("--project-id",), {}), (("--role",), {}), (("--marker",), {}),
            (("--limit",), {"type": int}))
    command("delete", delete, instance)
    command("archive-deleted", archive_deleted,
            (("--before",), {
                "type": _date, "metavar": "DATE",
                "help": "only stashes deleted, and replies of no more use, "
                        "before DATE (ISO 8601, UTC unless a zone is "
                        "given)"}),
            *_batch_options(ARCHIVE_MAX_ROWS), aliases=["archive"])
    purge_parser = command("purge", purge, *_batch_options(None))
    what = purge_parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--before", type=_date, metavar="DATE",
                      help="remove what was deleted before DATE (ISO 8601, "
                           "UTC unless a zone is given), and replies of no "
                           "more use by then")
    what.add_argument("--all", action="store_true",
                      help="remove every archived row and soft-deleted "
                           "stash, and the replies of no more use now")
    nova_database = (
        (("--nova-database-url",), {
            "help": "Nova's (cell) database URL; default: role_stash's own "
                    "database"}),
        (("--nova-config-file",), {
            "help": "a nova.conf whose [database] connection is Nova's "
                    "database"}))
    batches = (
        (("--batch-size",), {"type": int, "default": boot_roles.BATCH_SIZE,
                             "help": "rows per batch and transaction, at "
                                     "most 1000"}),
        (("--dry-run",), {"action": "store_true",
                          "help": "count, and write nothing"}),
        (("--max-listed",), {"type": int, "default": 100,
                             "help": "how many instances the report names "
                                     "(its counts are complete)"}))
    command("import-nova", import_nova, *nova_database, *batches)
    command("delete-orphans", delete_orphans, *nova_database, *batches,
            (("--grace-period",), {
                "type": int, "metavar": "SECONDS",
                "help": "keep a stash whose instance has no row in Nova's "
                        "database this long after it was written; default "
                        "[role_stash] orphan_grace_period, "
                        f"{conf_manage.ORPHAN_GRACE_PERIOD}"}))
    upgrade_parser = commands.add_parser(
        "upgrade", help="upgrade readiness checks (oslo.upgradecheck)")
    upgrade_commands = upgrade_parser.add_subparsers(
        dest="upgrade_command", required=True)
    check_parser = upgrade_commands.add_parser("check",
                                               help=upgrade_check.__doc__)
    for flags, options in nova_database:
        check_parser.add_argument(*flags, **options)
    check_parser.add_argument("--json", action="store_true",
                              help="print the results as JSON")
    check_parser.set_defaults(run=upgrade_check)


class _Arguments:
    """A command's arguments, read from oslo.config's parse of the command
    line, and the configuration as conf."""

    def __init__(self, conf):
        self.conf = conf

    def __getattr__(self, name):
        return getattr(self.conf.command, name)


def _configuration(argv):
    """Return the parsed ConfigOpts of role-stash-manage: oslo.log's
    options, --config-file's and --database-url, and the command."""
    conf = cfg.ConfigOpts()
    oslo_log.register_options(conf)
    conf.register_cli_opts(_CLI_OPTIONS)
    conf.register_opts(conf_manage.OPTIONS, conf_manage.GROUP)
    # Alembic says which implementation it took at every look at the
    # schema; db sync prints what it applied.
    conf.set_default("default_log_levels", oslo_log.get_default_log_levels()
                     + ["alembic.runtime.migration=WARN"])
    conf.register_cli_opt(cfg.SubCommandOpt(
        "command", title="commands", handler=add_commands))
    conf(args=argv, project="role_stash", prog="role-stash-manage",
         description="Manage role_stash's schema and stashes.",
         epilog=__doc__.split("\n", 2)[2], default_config_files=[])
    return conf


def _log_options(conf):
    if conf.log_config_append:
        return "--log-config-append"
    return "--log-file" if conf.log_file else "--log-dir"


@contextlib.contextmanager
def _logging(conf):
    """Log as oslo.log's options say, for the block; the logging set up
    before is put back after (main may run more than once in a process).
    A log that cannot be opened is InvalidArgument."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    excepthook = sys.excepthook
    if not (conf.log_file or conf.log_dir or conf.use_journal
            or conf.log_config_append):
        # Standard output carries the command's answer (its JSON).
        conf.set_override("use_stderr", True)
    try:
        try:
            oslo_log.setup(conf, "role_stash", fix_eventlet=False)
        except (OSError, ValueError, TypeError,
                oslo_log.LogConfigError) as error:
            raise exception.InvalidArgument(
                _log_options(conf), f"cannot log as asked: {error}") from None
        # Errors are reported by main, once, without oslo.db's tracebacks
        # (whose driver messages may quote values).
        for name in ("oslo_db.sqlalchemy.exc_filters", "oslo_db.api"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook = excepthook


def main(argv=None):
    """Run role-stash-manage; return its exit code."""
    try:
        conf = _configuration(sys.argv[1:] if argv is None else list(argv))
        with _logging(conf):
            return _run(_Arguments(conf))
    except (cfg.Error, exception.InvalidArgument) as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT


_EXIT_CODES = (
    ((exception.InvalidArgument, cfg.Error, sa.exc.ArgumentError), BAD_INPUT,
     ""),
    ((exception.StashNotFound, exception.MarkerNotFound), NOT_FOUND, ""),
    ((exception.StashConflict,), CONFLICT, ""),
    ((exception.DatabaseUnavailable,), DATABASE_FAILURE,
     "cannot reach the database: "),
    ((exception.DatabaseError,), DATABASE_FAILURE, ""),
)


def _run(args):
    """Run the command args name; return its exit code. role_stash's
    errors are printed, one line, their messages free of bound values."""
    command = " ".join(filter(None, (
        args.conf.command.name, getattr(args, "db_command", None),
        getattr(args, "upgrade_command", None))))
    try:
        with errors.translated_errors():
            context_manager = _context_manager(args.conf, args)
            LOG.debug("role-stash-manage %s on %s", command, make_url(
                oslo_internals.configured_url(context_manager)).render_as_string(
                    hide_password=True))
            return args.run(args, context_manager)
    except KeyboardInterrupt:
        print("\ninterrupted: what was done is kept; run it again to go "
              "on", file=sys.stderr)
        return INTERRUPTED
    except tuple(error for kinds, _, _ in _EXIT_CODES
                 for error in kinds) as error:
        for kinds, code, prefix in _EXIT_CODES:
            if isinstance(error, kinds):
                LOG.debug("role-stash-manage %s failed (exit %d): %s",
                          command, code, error)
                print(f"error: {prefix}{error}", file=sys.stderr)
                return code


if __name__ == "__main__":
    sys.exit(main())
