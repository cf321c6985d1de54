"""Options of role_stash's own group, [role_stash]: where its tables
live, the orphan sweep's grace period and the upgrade check's age of
deleted rows."""

from oslo_config import cfg

GROUP = "role_stash"

# A stash written alone before its instance row commits (a deployment
# that stashes in nova-api, before scheduling) may wait that long for the
# row; a stash deleted too early cannot be made again (the creator's token
# is gone), a stash kept a day too long costs a row.
ORPHAN_GRACE_PERIOD = 24 * 3600
DELETED_ROWS_WARN_AFTER_DAYS = 30

OPTIONS = [
    cfg.StrOpt(
        "schema",
        help="Where role_stash's tables live: a PostgreSQL schema, a "
             "MySQL/MariaDB database on the same server, or an attached "
             "SQLite database, reached on the same connection as Nova's "
             "tables. Unset: where role-stash-manage db sync put them, "
             "which is beside a database holding Nova's tables the "
             "PostgreSQL schema role_stash, the MySQL database named after "
             "Nova's with _role_stash appended, or a SQLite database "
             "attached as role_stash; else the connection's own schema. "
             "Nova's nova-manage db archive_deleted_rows fails on any table "
             "in its own schema that is not Nova's."),
    cfg.IntOpt(
        "orphan_grace_period", default=ORPHAN_GRACE_PERIOD, min=0,
        help="Seconds a stash whose instance has no row in Nova's database "
             "is kept after it was last written, before `role-stash-manage "
             "delete-orphans` takes it for an orphan: its instance may not "
             "be committed yet. A stash whose instance Nova deleted is an "
             "orphan at once."),
    cfg.IntOpt(
        "deleted_rows_warn_after_days", default=DELETED_ROWS_WARN_AFTER_DAYS,
        min=0,
        help="`role-stash-manage upgrade check` warns of stashes "
             "soft-deleted more than this many days ago that are still in "
             "role_stash's tables, neither purged nor archived."),
]


def register_options(conf):
    """Register [role_stash]'s options on conf."""
    conf.register_opts(OPTIONS, GROUP)
