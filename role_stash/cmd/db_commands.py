"""role-stash-manage db: the schema's migrations (sync, version, check),
and the move of role_stash's tables out of Nova's schema (move-tables)."""

from role_stash.cmd import common
from role_stash.cmd.common import args
from role_stash.db import migration
from role_stash.db import schemas


@args("--expand", action="store_true", exclusive="phase",
      help="apply only the additive revisions, up to the first pending "
           "contract one")
@args("--contract", action="store_true", exclusive="phase",
      help="apply the pending contract revisions (once every service runs "
           "the new release)")
def sync(arguments, context_manager):
    """Upgrade the schema: everything pending, or one phase."""
    phase = (migration.EXPAND if arguments.expand
             else migration.CONTRACT if arguments.contract else None)
    with context_manager.writer.get_engine().begin() as connection:
        reached = migration.sync(connection, phase, common.schema(arguments))
        status = migration.check(connection, common.schema(arguments))
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
    return common.OK


def version(arguments, context_manager):
    """Print the schema's revision."""
    with context_manager.writer.get_engine().connect() as connection:
        print(migration.current_revision(connection, common.schema(
            arguments)) or "None (empty schema)")
    return common.OK


def check(arguments, context_manager):
    """Say whether the schema is at head; exit 0, 2 or 4."""
    with context_manager.writer.get_engine().connect() as connection:
        status = migration.check(connection, common.schema(arguments))
    print({migration.AT_HEAD: "schema at head",
           migration.EXPAND_PENDING: "expand revisions pending: "
                                     "run `role-stash-manage db sync "
                                     "--expand`",
           migration.CONTRACT_PENDING: "contract revisions pending: "
                                       "run `role-stash-manage db sync "
                                       "--contract`"}[status])
    return status


def move_tables(arguments, context_manager):
    """Move role_stash's tables from the default schema (Nova's) to the
    schema of their own ([role_stash] schema, else role_stash's choice),
    by their metadata alone; safe to run again."""
    with context_manager.writer.get_engine().begin() as connection:
        moved = schemas.move(connection, common.schema(arguments))
        schema = schemas.locate(connection, common.schema(arguments))
    if moved:
        print(f"moved to {schema}: {', '.join(moved)}")
    else:
        print(f"nothing to move: role_stash's tables are in {schema}")
    return common.OK


COMMANDS = {"sync": sync, "version": version, "check": check,
            "move-tables": move_tables}
