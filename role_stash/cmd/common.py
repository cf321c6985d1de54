"""What role-stash-manage's commands share: exit codes, the @args decorator
that puts a command's options beside its handler (as nova-manage's), the
databases a command names, and how an answer is printed."""

import argparse
import contextlib
import json
import os
import sys

from oslo_config import cfg
from oslo_utils import timeutils
from sqlalchemy.engine import make_url

from role_stash import exception
from role_stash.db import api
from role_stash.db import engines
from role_stash.db import nova_tables
from role_stash.db import oslo_internals
from role_stash.db import schemas
from role_stash.db import urls

OK = 0
DATABASE_FAILURE = 1
BAD_INPUT = 2
NOT_FOUND = 3
CONFLICT = 4
# Not nova-manage's 1 for "rows were archived": 1 is a database failure
# here, and a loop that runs again on it would never stop.
ROWS_LEFT = 5
INTERRUPTED = 130


def args(*flags, exclusive=None, **options):
    """Declare one argparse argument of the command it decorates, as
    nova-manage's @args: the options read top down. Arguments of the same
    exclusive name are mutually exclusive (see required_one_of)."""
    def decorate(handler):
        handler.__dict__.setdefault("arguments", []).insert(
            0, (flags, exclusive, options))
        return handler
    return decorate


def required_one_of(exclusive):
    """Declare that the command it decorates needs one of the arguments of
    that exclusive name."""
    def decorate(handler):
        handler.__dict__.setdefault("required", set()).add(exclusive)
        return handler
    return decorate


def add_command(parsers, name, handler, *, aliases=(), json=True):
    """Add a command running handler to an argparse subparsers object, with
    the arguments @args declared on it, and --json."""
    parser = parsers.add_parser(name, help=handler.__doc__,
                                aliases=list(aliases))
    groups = {}
    required = handler.__dict__.get("required", set())
    for flags, exclusive, options in handler.__dict__.get("arguments", []):
        target = parser
        if exclusive is not None:
            if exclusive not in groups:
                groups[exclusive] = parser.add_mutually_exclusive_group(
                    required=exclusive in required)
            target = groups[exclusive]
        target.add_argument(*flags, **options)
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=handler)
    return parser


def nova_database_args(handler):
    """Declare --nova-database-url and --nova-config-file: the commands
    that read Nova's tables."""
    handler = args(
        "--nova-config-file",
        help="a nova.conf whose [database] connection is Nova's "
             "database")(handler)
    return args(
        "--nova-database-url",
        help="Nova's (cell) database URL; default: role_stash's own "
             "database")(handler)


def date(text):
    """A --before value: an ISO 8601 date or time, UTC unless it says."""
    try:
        return timeutils.parse_isotime(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time, such as 2026-11-01 "
            "or 2026-11-01T12:00:00Z (UTC unless a zone is given)") from None


def rows(text):
    """A --max-rows or --batch-size value: a positive whole number."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive whole number of rows")
    return value


def role_stash_database_named(conf):
    """Whether the command line or the environment names role_stash's
    database."""
    return bool(conf.database_url or conf.config_file or conf.config_dir
                or os.environ.get(urls.URL_ENVIRONMENT_VARIABLE))


def nova_settings(arguments):
    """Return (Nova's URL or None, nova.conf's ConfigOpts or None) as the
    command's options name them."""
    url = getattr(arguments, "nova_database_url", None)
    config_file = getattr(arguments, "nova_config_file", None)
    if url and config_file:
        raise exception.InvalidArgument(
            "--nova-database-url", "give either it or --nova-config-file, "
                                   "not both")
    if not config_file:
        return url, None
    nova_conf = cfg.ConfigOpts()
    nova_conf(args=[], project="nova", default_config_files=[config_file])
    return None, nova_conf


def schema(arguments):
    """The schema of role_stash's tables as [role_stash] schema names it,
    else schemas.AUTOMATIC."""
    return schemas.validated(arguments.conf.role_stash.schema
                             or schemas.AUTOMATIC)


def repository(arguments, context_manager):
    """Return the StashRepository of a command on context_manager."""
    return api.StashRepository(context_manager, schema=schema(arguments))


def context_manager(conf, arguments):
    """Return the enginefacade context manager of role_stash's database."""
    if (conf.config_file or conf.config_dir) and conf.database_url:
        raise exception.InvalidArgument(
            "--database-url", "give either it or --config-file, not both")
    if conf.config_file or conf.config_dir:
        manager = engines.context_manager_from_config(conf)
    elif not role_stash_database_named(conf) and any(
            nova_settings(arguments)):
        # One database named: role_stash's tables live beside Nova's.
        url, nova_conf = nova_settings(arguments)
        manager = (engines.context_manager_from_url(url) if url
                   else engines.context_manager_from_config(nova_conf))
    else:
        manager = engines.context_manager_from_url(conf.database_url)
    # Fail fast on an unreachable database: an operator is waiting.
    manager.configure(max_retries=0)
    return manager


def nova_database(arguments, repository):
    """Return the nova_tables.NovaDatabase the command names, else (or when
    it names the same URL) one on role_stash's own database."""
    url, nova_conf = nova_settings(arguments)
    if url is None and nova_conf is None:
        return nova_tables.NovaDatabase(repository.context_manager)
    nova = (nova_tables.NovaDatabase.from_url(url) if nova_conf is None
            else nova_tables.NovaDatabase.from_config(nova_conf))
    if make_url(oslo_internals.configured_url(nova.context_manager)) == (
            make_url(oslo_internals.configured_url(
                repository.context_manager))):
        return nova_tables.NovaDatabase(repository.context_manager)
    nova.context_manager.configure(max_retries=0)
    return nova


@contextlib.contextmanager
def progress_bar(arguments, total_of, unit):
    """Yield a progress callback, progress(units done since the last
    call), drawing a bar on a terminal's standard error; None when it is
    not one, or the answer is JSON."""
    if arguments.json or not sys.stderr.isatty():
        yield None
        return
    import tqdm
    with tqdm.tqdm(total=total_of(), unit=unit, file=sys.stderr,
                   dynamic_ncols=True) as bar:
        yield bar.update


def answer(arguments, payload, text):
    """Print the command's answer: payload as JSON with --json, else
    text."""
    print(json.dumps(payload, indent=2, sort_keys=True) if arguments.json
          else text)
