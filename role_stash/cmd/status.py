"""role-stash-manage upgrade check: oslo.upgradecheck on role_stash's database.

As `nova-status upgrade check` runs Nova's, each check returns an
oslo.upgradecheck Result: SUCCESS (nothing to do, or the check does not
apply, saying why), WARNING (look into it; the upgrade may go on) or
FAILURE (fix it first). oslo.upgradecheck prints them as its table, or as
JSON, and turns the worst into the exit code; a check that raises makes
it 255.
"""

import datetime
import typing

from oslo_config import cfg
from oslo_upgradecheck import upgradecheck
from oslo_utils import timeutils
import sqlalchemy as sa

from role_stash.conf import manage as conf_manage
from role_stash.db import dialects
from role_stash.db import engines
from role_stash.db import errors
from role_stash.db import migration
from role_stash.db import models
from role_stash.db import schemas
from role_stash.nova import orphans

Code = upgradecheck.Code
Result = upgradecheck.Result

_COMMAND = "role-stash-manage"


class UnarchivedRows(typing.NamedTuple):
    """Rows soft-deleted before the check's threshold and still waiting
    where they are: what they are, how many, the oldest's deletion time,
    and the command that clears them."""

    what: str
    count: int
    oldest: datetime.datetime | None
    remedy: str


class Checks(upgradecheck.UpgradeCommands):
    """The upgrade checks of role_stash's database, and of its stashes
    against Nova's instances when Nova's database is known."""

    def __init__(self, repository, nova=None, *, nova_named=True,
                 deleted_rows_age_days=conf_manage.DELETED_ROWS_WARN_AFTER_DAYS,
                 orphan_grace_period=conf_manage.ORPHAN_GRACE_PERIOD):
        """repository: a StashRepository; nova: a nova_db.NovaDatabase, or
        None when Nova's database is not known; nova_named False when nova
        is only role_stash's own database, checked only if it holds Nova's
        tables."""
        self._repository = repository
        self._nova = nova
        self._nova_named = nova_named
        self._deleted_rows_age_days = deleted_rows_age_days
        self._orphan_grace_period = orphan_grace_period

    def _connect(self):
        return self._repository.context_manager.writer.get_engine().connect()

    def _schema(self, connection):
        """The schema of role_stash's tables: the repository's, or found."""
        return schemas.locate(connection, self._repository.schema)

    def _schema_created(self):
        with errors.translated_errors(), self._connect() as connection:
            return migration.current_revision(
                connection, self._schema(connection)) is not None

    def _not_checked(self):
        return Result(Code.WARNING, "Not checked: role_stash's schema is not "
                                    "created (see the schema check).")

    def _check_schema(self):
        """The schema is at head: no expand or contract revision pending."""
        with errors.translated_errors(), self._connect() as connection:
            schema = self._schema(connection)
            current = migration.current_revision(connection, schema)
            pending = migration.pending_revisions(connection, schema)
        if not pending:
            return Result(Code.SUCCESS, f"At head, revision {current}.")
        names = ", ".join(script.revision for script in pending)
        if current is None:
            return Result(Code.FAILURE, f"role_stash's schema is not created "
                                        f"(pending: {names}): run "
                                        f"`{_COMMAND} db sync`.")
        if migration.status(pending) == migration.EXPAND_PENDING:
            return Result(Code.FAILURE, f"At revision {current}; expand "
                                        f"revisions are pending ({names}): "
                                        f"run `{_COMMAND} db sync --expand` "
                                        f"before this release's services "
                                        f"start.")
        return Result(Code.WARNING, f"At revision {current}; contract "
                                    f"revisions are pending ({names}): run "
                                    f"`{_COMMAND} db sync --contract` once "
                                    f"every service runs this release.")

    def _check_tables_apart_from_novas(self):
        """role_stash's tables are not in the schema of Nova's, where
        `nova-manage db archive_deleted_rows` fails on any table that is
        not Nova's."""
        if not self._schema_created():
            return self._not_checked()
        with errors.translated_errors(), self._connect() as connection:
            schema = self._schema(connection)
            default = schemas.default_schema(connection)
            holds_nova = schemas.holds_nova(connection)
        if schema not in (None, default):
            return Result(Code.SUCCESS, f"role_stash's tables are in "
                                        f"{schema}, apart from Nova's.")
        if not holds_nova:
            return Result(Code.SUCCESS, f"Does not apply: Nova's tables are "
                                        f"not in {default}.")
        return Result(Code.WARNING, "role_stash's tables are in "
                                    f"{default}, beside Nova's, where `nova-"
                                    "manage db archive_deleted_rows` stops "
                                    "on them half way: run "
                                    f"`{_COMMAND} db move-tables` "
                                    "(PostgreSQL, MySQL, MariaDB; on SQLite "
                                    "attach a database for them).")

    def _check_character_sets(self):
        """MySQL and MariaDB: tables, columns and the connection in
        utf8mb4 with role_stash's collation, so every role name fits and
        compares exactly."""
        with errors.translated_errors(), self._connect() as connection:
            found = dialects.for_dialect(
                connection.dialect.name).character_sets(
                    connection, models.Base.metadata.tables,
                    self._schema(connection))
        if found is None:
            return Result(Code.SUCCESS, "Does not apply: only MySQL and "
                                        "MariaDB choose a character set per "
                                        "table and connection.")
        faults = [f"the connection's {name} is {value}"
                  for name, value in found.connection.items()
                  if value != found.charset]
        if faults:
            faults[-1] += (f" (put charset={found.charset} in the [database] "
                           f"connection URL)")
        wanted = (found.charset, found.collation)
        bad_tables = [(table, collation) for table, collation in found.tables
                      if collation != found.collation]
        bad_columns = [(table, column, charset, collation)
                       for table, column, charset, collation in found.columns
                       if (charset, collation) != wanted]
        faults += [f"table {table} defaults to {collation}"
                   for table, collation in bad_tables]
        faults += [f"column {table}.{column} is {charset} {collation}"
                   for table, column, charset, collation in bad_columns]
        wanted = f"{found.charset} with collation {found.collation}"
        if faults:
            remedy = "".join(
                f"; ALTER TABLE {table} CONVERT TO CHARACTER SET "
                f"{found.charset} COLLATE {found.collation}"
                for table in sorted({fault[0] for fault in bad_tables}
                                    | {fault[0] for fault in bad_columns}))
            return Result(Code.FAILURE, "Some role names cannot be stored or "
                                        "compared exactly: "
                                        + "; ".join(faults)
                                        + f". Wanted: {wanted}" + remedy
                                        + ".")
        if engines.chose_utf8mb4(self._repository.context_manager):
            return Result(Code.WARNING, "role_stash's tables and its own "
                                        f"connections are {wanted}, but the "
                                        "[database] connection URL names no "
                                        "charset: Nova's engines on it get "
                                        "oslo.db's 3-byte utf8, and a stash "
                                        "written inside Nova's transaction "
                                        "fails on a role name with a 4-byte "
                                        "character. Put charset=utf8mb4 in "
                                        "the URL.")
        return Result(Code.SUCCESS, f"Tables and connection are {wanted}.")

    def _check_orphans(self):
        """No live stash whose instance Nova deleted, or has no row of."""
        if self._nova is None or not (self._nova_named
                                      or self._nova.holds_nova_tables()):
            return Result(Code.SUCCESS, "Not checked: Nova's database is not "
                                        "known, and role_stash's holds no "
                                        "Nova tables. To check, run "
                                        f"`{_COMMAND} upgrade check "
                                        "--nova-database-url URL` or "
                                        "--nova-config-file nova.conf.")
        if not self._schema_created():
            return self._not_checked()
        found = orphans.delete_orphans(
            self._nova, self._repository,
            grace_period=self._orphan_grace_period, dry_run=True,
            listed_orphans=0)
        orphaned = found.found_deleted + found.found_gone
        if orphaned:
            return Result(Code.WARNING, f"{orphaned} of {found.scanned} live "
                                        "stashes are orphans: "
                                        f"{found.found_deleted} of instances "
                                        "Nova deleted, "
                                        f"{found.found_gone} of instances "
                                        "Nova has no row of (last written "
                                        f"over {found.grace_period} s ago). "
                                        f"Run `{_COMMAND} delete-orphans "
                                        "--dry-run` to list them, then "
                                        "without --dry-run to soft-delete "
                                        "them.")
        return Result(Code.SUCCESS, f"No orphan among {found.scanned} live "
                                    "stashes.")

    def _unarchived_rows(self, before):
        """[UnarchivedRows] of each place where rows deleted before a time
        still wait: the live table's soft-deleted stashes (to archive),
        and the archived ones (to purge) once revision
        0003_create_shadow_tables made their table."""
        count, oldest = self._repository.count_deleted(before=before)
        waiting = [UnarchivedRows(
            "stashes soft-deleted in role_stashes", count, oldest,
            f"{_COMMAND} archive-deleted --until-complete")]
        with errors.translated_errors(), self._connect() as connection:
            archived_table = sa.inspect(connection).has_table(
                models.ShadowStash.__tablename__, self._schema(connection))
        if archived_table:
            count, oldest = self._repository.count_archived(before=before)
            waiting.append(UnarchivedRows(
                "stashes archived in role_stashes_shadow", count, oldest,
                f"{_COMMAND} purge --before {before:%Y-%m-%d}"))
        return waiting

    def _check_deleted_rows(self):
        """No row soft-deleted longer ago than the threshold still waits
        unarchived."""
        if not self._schema_created():
            return self._not_checked()
        days = self._deleted_rows_age_days
        before = timeutils.utcnow() - datetime.timedelta(days=days)
        waiting = [rows for rows in self._unarchived_rows(before)
                   if rows.count]
        if not waiting:
            return Result(Code.SUCCESS, "No row soft-deleted more than "
                                        f"{days} days ago waits.")
        return Result(Code.WARNING, "; ".join(
            f"{rows.count} {rows.what} more than {days} days ago (the "
            f"oldest on {rows.oldest:%Y-%m-%d}) wait: run `{rows.remedy}`"
            for rows in waiting) + ".")

    _upgrade_checks = (
        ("Schema at head", _check_schema),
        ("Tables apart from Nova's", _check_tables_apart_from_novas),
        ("MySQL character sets", _check_character_sets),
        ("Orphaned stashes", _check_orphans),
        ("Unarchived deleted rows", _check_deleted_rows),
    )


def run(checks, *, json=False):
    """Run the checks as oslo.upgradecheck's main does (its table, or JSON;
    255 and the traceback when a check raises); return the exit code."""
    return int(upgradecheck.main(
        cfg.ConfigOpts(), "role_stash", checks,
        argv=["upgrade", "check", *(["--json"] if json else [])],
        default_config_files=[]))
