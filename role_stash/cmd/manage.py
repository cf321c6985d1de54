"""role-stash-manage: the operator's command, as nova-manage, keystone-manage.

Exit codes: 0 done; 1 database failure (unreachable, error); 2 bad usage or
input (a log file that cannot be opened included); 3 no such stash; 4
conflicting stash; 5 rows are left (archive-deleted or purge stopped at
--max-rows: run it again, or with --until-complete); 130 interrupted (the
batches done are kept). `db check` answers as
`keystone-manage db_sync --check`: 0 at head, 2 expand pending, 4 contract
pending (run `db sync --expand`, or `db sync --contract`). `upgrade check`
answers as oslo.upgradecheck (and `nova-status upgrade check`): 0 success,
1 warning, 2 failure, 255 a check that could not run.

Nova's database (import-nova, delete-orphans, upgrade check) is
--nova-database-url, or nova.conf's [database] connection with
--nova-config-file; else role_stash's own, as in a deployment where
role_stash's tables live in each cell database beside Nova's. Naming only
one of the two databases names both.
"""

import contextlib
import logging
import sys

from oslo_config import cfg
from oslo_log import log as oslo_log
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash import exception
from role_stash.cmd import batch_commands
from role_stash.cmd import common
from role_stash.cmd import db_commands
from role_stash.cmd import nova_commands
from role_stash.cmd import stash_commands
from role_stash.cmd.common import BAD_INPUT  # noqa: F401
from role_stash.cmd.common import CONFLICT
from role_stash.cmd.common import DATABASE_FAILURE
from role_stash.cmd.common import INTERRUPTED
from role_stash.cmd.common import NOT_FOUND
from role_stash.cmd.common import OK  # noqa: F401
from role_stash.cmd.common import ROWS_LEFT  # noqa: F401
from role_stash.conf import manage as conf_manage
from role_stash.db import errors
from role_stash.db import oslo_internals
from role_stash.db import urls

LOG = logging.getLogger(__name__)

_CLI_OPTIONS = [
    cfg.StrOpt(
        "database-url",
        help="role_stash's database URL, driver named "
             "(postgresql+psycopg2://..., mysql+pymysql://...); default: "
             "the --config-file's [database] connection, else "
             f"${urls.URL_ENVIRONMENT_VARIABLE}, else Nova's database "
             "when one is named, else " + urls.DEFAULT_URL),
]


def add_commands(commands):
    """Add role-stash-manage's commands to an argparse subparsers object
    (the handler of oslo.config's SubCommandOpt); each command's options
    are declared beside its handler."""
    db_parser = commands.add_parser("db", help="schema migrations")
    db_parsers = db_parser.add_subparsers(dest="db_command", required=True)
    for name, handler in db_commands.COMMANDS.items():
        common.add_command(db_parsers, name, handler, json=False)
    for name, handler in stash_commands.COMMANDS.items():
        common.add_command(commands, name, handler)
    common.add_command(commands, "archive-deleted",
                       batch_commands.archive_deleted, aliases=["archive"])
    common.add_command(commands, "purge", batch_commands.purge)
    common.add_command(commands, "import-nova", nova_commands.import_nova)
    common.add_command(commands, "delete-orphans",
                       nova_commands.delete_orphans)
    upgrade_parser = commands.add_parser(
        "upgrade", help="upgrade readiness checks (oslo.upgradecheck)")
    upgrade_parsers = upgrade_parser.add_subparsers(
        dest="upgrade_command", required=True)
    common.add_command(upgrade_parsers, "check", nova_commands.upgrade_check)


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
            context_manager = common.context_manager(args.conf, args)
            LOG.debug("role-stash-manage %s on %s", command, make_url(
                oslo_internals.configured_url(context_manager))
                .render_as_string(hide_password=True))
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
