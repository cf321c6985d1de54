"""role-stash-manage: the operator's command, as nova-manage and keystone-manage.

Exit codes: 0 done; 1 database failure (unreachable, error); 2 bad usage or
input; 3 no such stash; 4 conflicting stash. `db check` answers as
`keystone-manage db_sync --check`: 0 at head, 2 expand pending, 4 contract
pending (run `db sync --expand`, or `db sync --contract`).
"""

import argparse
import datetime
import json
import logging
import sys

from oslo_config import cfg
import sqlalchemy as sa

from role_stash import api
from role_stash import engines
from role_stash import exception
from role_stash import migration

OK = 0
DATABASE_FAILURE = 1
BAD_INPUT = 2
NOT_FOUND = 3
CONFLICT = 4


def _context_manager(args):
    if args.config_file and args.database_url:
        raise exception.InvalidArgument(
            "--database-url", "give either it or --config-file, not both")
    if args.config_file:
        conf = cfg.ConfigOpts()
        conf(args=[], project="role_stash",
             default_config_files=[args.config_file])
        context_manager = engines.context_manager_from_config(conf)
    else:
        context_manager = engines.context_manager_from_url(args.database_url)
    # Fail fast on an unreachable database: an operator is waiting.
    context_manager.configure(max_retries=0)
    return context_manager


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


def purge(args, context_manager):
    """Remove stashes soft-deleted more than --older-than-days ago."""
    cutoff = (datetime.datetime.now(datetime.timezone.utc)
              - datetime.timedelta(days=args.older_than_days))
    purged = api.StashRepository(context_manager).purge_deleted(
        older_than=cutoff, batch_size=args.batch_size)
    _print(args, {"purged": purged}, f"purged {purged} deleted stashes")
    return OK


def _days(text):
    value = float(text)
    if not 0 <= value <= 36500:
        raise argparse.ArgumentTypeError("must be from 0 to 36500 days")
    return value


def build_parser():
    """Return the argument parser of role-stash-manage."""
    parser = argparse.ArgumentParser(
        prog="role-stash-manage",
        description="Manage role_stash's schema and stashes.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--database-url",
        help="database URL, driver named (postgresql+psycopg2://..., "
             "mysql+pymysql://...); default: $ROLE_STASH_DATABASE_URL, "
             f"else {engines.DEFAULT_URL}")
    parser.add_argument(
        "--config-file",
        help="an oslo.config file whose [database] connection to use")
    commands = parser.add_subparsers(dest="command", required=True)

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

    def command(name, run, *arguments):
        sub = commands.add_parser(name, help=run.__doc__)
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        sub.add_argument("--json", action="store_true",
                         help="print JSON")
        sub.set_defaults(run=run)

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
    command("purge", purge,
            (("--older-than-days",), {"type": _days, "default": 0,
                                      "help": "default 0: every deleted "
                                              "stash"}),
            (("--batch-size",), {"type": int,
                                 "default": api.PURGE_BATCH_SIZE}))
    return parser


def main(argv=None):
    """Run role-stash-manage; return its exit code."""
    args = build_parser().parse_args(argv)
    # Errors are reported below, once, without oslo.db's tracebacks.
    for name in ("oslo_db.sqlalchemy.exc_filters", "oslo_db.api"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with engines.translated_errors():
            return args.run(args, _context_manager(args))
    except (exception.InvalidArgument, cfg.Error,
            sa.exc.ArgumentError) as error:
        print(f"error: {error}", file=sys.stderr)
        return BAD_INPUT
    except (exception.StashNotFound, exception.MarkerNotFound) as error:
        print(f"error: {error}", file=sys.stderr)
        return NOT_FOUND
    except exception.StashConflict as error:
        print(f"error: {error}", file=sys.stderr)
        return CONFLICT
    except exception.DatabaseUnavailable as error:
        print(f"error: cannot reach the database: {error}", file=sys.stderr)
        return DATABASE_FAILURE
    except exception.DatabaseError as error:
        print(f"error: {error}", file=sys.stderr)
        return DATABASE_FAILURE


if __name__ == "__main__":
    sys.exit(main())
