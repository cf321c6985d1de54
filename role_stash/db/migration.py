"""Schema migrations: Alembic, one linear history, each revision in a phase.

Every revision module declares ``phase = "expand"`` (additive, safe while
services of the previous release run) or ``phase = "contract"`` (destructive,
run once every service is upgraded). The history stays linear so that a plain
``alembic upgrade head`` always works; an online upgrade applies the pending
revisions phase by phase instead:

    sync(..., phase=EXPAND)    up to, not including, the first pending
                               contract revision
    sync(..., phase=CONTRACT)  the pending contract revisions, stopping
                               before the next expand one
"""

import os

from alembic import command
from alembic import config as alembic_config
from alembic import script as alembic_script
from alembic.runtime import migration as alembic_migration

from role_stash import exception
from role_stash.db import models
from role_stash.db import schemas

EXPAND = "expand"
CONTRACT = "contract"
PHASES = (EXPAND, CONTRACT)

VERSION_TABLE = models.VERSION_TABLE

# Exit codes of `role-stash-manage db check`, as `keystone-manage db_sync
# --check` answers them.
AT_HEAD = 0
EXPAND_PENDING = 2
CONTRACT_PENDING = 4


def script_location():
    """Return the migrations folder: the installed package's, else the
    source checkout's alembic/ (an editable install)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    installed = os.path.join(package, "migrations")
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(package), "alembic")


def make_config(connection=None, schema=schemas.AUTOMATIC):
    """Return an Alembic Config on the packaged migrations, handing env.py
    connection and the schema of role_stash's tables there (None: the
    default schema; AUTOMATIC: schemas.locate's) in config.attributes,
    Alembic's cookbook convention."""
    config = alembic_config.Config()
    config.set_main_option("script_location", script_location())
    if connection is not None:
        config.attributes["connection"] = connection
        config.attributes["schema"] = schemas.locate(connection, schema)
    return config


def revisions(config=None):
    """Return the revision scripts, base first."""
    scripts = alembic_script.ScriptDirectory.from_config(
        config or make_config())
    return list(reversed(list(scripts.walk_revisions())))


def phase_of(script):
    """Return the phase a revision script declares."""
    phase = getattr(script.module, "phase", None)
    if phase not in PHASES:
        raise ValueError(
            f"revision {script.revision} declares phase {phase!r}; "
            f"expected one of {PHASES}")
    return phase


def current_revision(connection, schema=schemas.AUTOMATIC):
    """Return the revision the database is at, or None (empty schema);
    schema as schemas.locate takes it."""
    schema = schemas.locate(connection, schema)
    if not schemas.exists(connection, schema):
        return None
    context = alembic_migration.MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE,
                          "version_table_schema": schema})
    return context.get_current_revision()


def pending_revisions(connection, schema=schemas.AUTOMATIC):
    """Return the revision scripts not yet applied, in order."""
    history = revisions()
    current = current_revision(connection, schema)
    if current is None:
        return history
    known = [script.revision for script in history]
    if current not in known:
        raise exception.DatabaseError(
            f"the schema is at revision {current}, which this role_stash "
            "does not know: is it older than the database?")
    return history[known.index(current) + 1:]


def sync_target(pending, phase=None):
    """Return the revision to upgrade to for a phase (None: everything),
    or None when that phase has nothing to apply."""
    if phase is not None and phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    stop = len(pending)
    if phase is not None:
        # A run of the wanted phase from the first pending revision.
        stop = 0
        while stop < len(pending) and phase_of(pending[stop]) == phase:
            stop += 1
    return pending[stop - 1].revision if stop else None


def upgrade(connection, target="head", schema=schemas.AUTOMATIC):
    """Upgrade the schema to a revision, in schema (created if need be;
    AUTOMATIC: where schemas.locate places it)."""
    schema = schemas.locate(connection, schema, for_sync=True)
    schemas.create(connection, schema)
    command.upgrade(make_config(connection, schema), target)


def downgrade(connection, target, schema=schemas.AUTOMATIC):
    """Downgrade the schema to a revision ("base": no tables)."""
    command.downgrade(make_config(
        connection, schemas.locate(connection, schema)), target)


def sync(connection, phase=None, schema=schemas.AUTOMATIC):
    """Upgrade the schema (all pending, or one phase); return the revision
    reached, or None when nothing was to apply."""
    schema = schemas.locate(connection, schema, for_sync=True)
    schemas.create(connection, schema)
    target = sync_target(pending_revisions(connection, schema), phase)
    if target is not None:
        upgrade(connection, target, schema)
    return target


def status(pending):
    """Return AT_HEAD, EXPAND_PENDING or CONTRACT_PENDING for the pending
    revision scripts: what the next one is."""
    if not pending:
        return AT_HEAD
    return (EXPAND_PENDING if phase_of(pending[0]) == EXPAND
            else CONTRACT_PENDING)


def check(connection, schema=schemas.AUTOMATIC):
    """Return the schema's status (see status())."""
    return status(pending_revisions(connection, schema))
