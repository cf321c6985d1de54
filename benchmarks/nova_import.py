"""`python -m benchmarks.nova_import`: import-nova from a Nova-shaped database.

For each backend: a database of its own (made and dropped here) with Nova's
main schema made by Nova's own migrations (the `nova` extra) and
role_stash's beside it, as in a cell database; N instances INSERTed into
Nova's real instances and instance_system_metadata tables in a realistic
mix, seeded (live instances with 1 to 6 roles, deleted ones, values cut
short at 255 characters, empty values, names twice, a blank name, no
boot_roles row, no user, two rows, stashes already there, one of them
different). It prints the import's counts, taken and refused by reason,
and its rate, then a second run's (idempotent) and a dry run's; with
--upgrade-check, the upgrade check's verbatim output on the database as
imported (healthy) and once broken (schema behind head, orphans, old
soft-deleted rows, and on MariaDB a utf8mb3 table).
"""

import argparse
import contextlib
import datetime
import io
import random
import sys
import time
import uuid

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash.cmd import manage
from role_stash.db import api
from role_stash.db import dialects
from role_stash.db import migration
from role_stash.db import models
from role_stash.db import nova_tables
from role_stash.nova import boot_roles

DEFAULT_URLS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/"
                  "role_stash_nova_import",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/role_stash_nova_import"
               "?charset=utf8mb4",
    "sqlite": "sqlite:////tmp/role_stash_nova_import.sqlite",
}
ROLE_POOL = ("member", "reader", "admin", "load-balancer_member",
             "heat_stack_owner", "creator", "swiftoperator", "observer",
             "ResellerAdmin", "service", "manager", "ロール")
# What one instance of the mix is, and how often (out of 1000).
MIX = (
    ("live", 838), ("deleted", 100), ("truncated", 15), ("empty", 10),
    ("no_boot_roles", 20), ("duplicate_name", 5), ("invalid_name", 3),
    ("no_user", 2), ("several_values", 2), ("stashed_same", 4),
    ("stashed_different", 1),
)
INSERT_BATCH = 1000


def _admin(url):
    parsed = make_url(url)
    admin = parsed.set(database={"postgresql": "postgres",
                                 "mysql": "mysql"}[parsed.get_backend_name()])
    return sa.create_engine(admin, isolation_level="AUTOCOMMIT"), \
        parsed.database


def create_database(url):
    """Make the database at url anew (a SQLite file: removed first)."""
    drop_database(url)
    if make_url(url).get_backend_name() == "sqlite":
        return
    engine, name = _admin(url)
    with engine.connect() as connection:
        connection.execute(sa.text(
            f"CREATE DATABASE {name}"
            + (" CHARACTER SET utf8mb4" if engine.dialect.name == "mysql"
               else "")))
    engine.dispose()


def drop_database(url):
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with contextlib.suppress(FileNotFoundError):
            import os
            os.remove(parsed.database)
        return
    engine, name = _admin(url)
    if engine.dialect.name == "postgresql":
        drops = [f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"]
    else:
        # And role_stash's own database beside it, where its tables went
        # beside Nova's: left, the next run would find the last one's.
        drops = [f"DROP DATABASE IF EXISTS {database}" for database in (
            name, dialects.mysql_own_database(name))]
    with engine.connect() as connection:
        for drop in drops:
            connection.execute(sa.text(drop))
    engine.dispose()


def make_schemas(url):
    """Nova's main schema by Nova's own db_sync, then role_stash's."""
    import nova.conf
    import nova.context
    from nova.db import migration as nova_migration
    from nova.db.main import api as nova_main_db
    nova.conf.CONF([], project="nova", default_config_files=[])
    context_manager = nova_main_db.create_context_manager(connection=url)
    admin = nova.context.get_admin_context()
    admin.db_connection = context_manager
    nova_migration.db_sync(context=admin)
    context_manager.writer.get_engine().dispose()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        migration.sync(connection)
    engine.dispose()


def _roles(rng):
    return rng.sample(ROLE_POOL, rng.randint(1, 6))


def mixed_instances(count, seed):
    """Return [(kind, uuid, project_id, user_id, [boot_roles values])] of a
    seeded mix (see MIX)."""
    rng = random.Random(seed)
    kinds = [kind for kind, weight in MIX for _ in range(weight)]
    rows = []
    for _ in range(count):
        kind = rng.choice(kinds)
        roles = _roles(rng)
        values = [",".join(roles)]
        user_id = uuid.UUID(int=rng.getrandbits(128)).hex
        if kind == "truncated":
            values = [",".join(f"{name}-{number}" for number in range(40)
                               for name in roles)[:255]]
        elif kind == "empty":
            values = [""]
        elif kind == "no_boot_roles":
            values = []
        elif kind == "duplicate_name":
            values = [",".join(roles + roles[:1])]
        elif kind == "invalid_name":
            values = [",".join(roles + [" "])]
        elif kind == "no_user":
            user_id = None
        elif kind == "several_values":
            values = [values[0], ",".join(reversed(roles)) + ",extra"]
        rows.append((kind, str(uuid.UUID(int=rng.getrandbits(128),
                                         version=4)),
                     f"project-{rng.randrange(500)}", user_id, values))
    return rows


def fill(url, rows):
    """INSERT the rows into Nova's real tables, by Nova's own table
    definitions; stash the stashed_* kinds through the repository."""
    from nova.db.main import models as nova_models
    instances = nova_models.Instance.__table__
    metadata = nova_models.InstanceSystemMetadata.__table__
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        for low in range(0, len(rows), INSERT_BATCH):
            batch = rows[low:low + INSERT_BATCH]
            connection.execute(instances.insert(), [
                {"uuid": uuid_, "project_id": project_id, "user_id": user_id,
                 "vm_state": "active"}
                for _, uuid_, project_id, user_id, _ in batch])
            values = [{"instance_uuid": uuid_, "key": "boot_roles",
                       "value": value}
                      for _, uuid_, _, _, row_values in batch
                      for value in row_values]
            if values:
                connection.execute(metadata.insert(), values)
        deleted = [row[1] for row in rows if row[0] == "deleted"]
        for low in range(0, len(deleted), INSERT_BATCH):
            connection.execute(
                instances.update()
                .where(instances.c.uuid.in_(deleted[low:low + INSERT_BATCH]))
                .values(deleted=instances.c.id, deleted_at=sa.func.now()))
    engine.dispose()
    repository = api.StashRepository.from_url(url)
    for kind, uuid_, project_id, user_id, values in rows:
        if kind == "stashed_same":
            repository.stash_roles(uuid_, project_id=project_id,
                                   user_id=user_id,
                                   roles=values[0].split(","))
        elif kind == "stashed_different":
            repository.stash_roles(uuid_, project_id=project_id,
                                   user_id=user_id, roles=["observer"])
    repository.close()


def timed_import(url, **options):
    """Return (ImportSummary, seconds) of an import on one database."""
    repository = api.StashRepository.from_url(url)
    nova = nova_tables.NovaDatabase(repository.context_manager)
    started = time.perf_counter()
    summary = boot_roles.import_from_nova(nova, repository, **options)
    seconds = time.perf_counter() - started
    repository.close()
    return summary, seconds


def print_summary(label, summary, seconds, count):
    print(f"  {label}: taken {summary.taken}, already stashed "
          f"{summary.already_stashed}, refused {summary.refused_total}, "
          f"skipped deleted {summary.skipped_deleted}; {seconds:.2f} s, "
          f"{count / seconds:,.0f} instances/s")
    for reason, number in sorted(summary.refused.items()):
        print(f"    refused {reason}: {number}")


def upgrade_check_output(url):
    """Return (exit code, the upgrade check's table) on url."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = manage.main(["--database-url", url, "upgrade", "check"])
    return code, out.getvalue()


def break_database(url, rows):
    """Orphans (Nova deletes three instances and forgets the stashes; one
    stash of an instance never created, written two days ago), two
    stashes soft-deleted forty days ago, on MariaDB role_stash_roles
    converted to utf8mb3, and the schema back at its first revision."""
    taken = [row for row in rows if row[0] == "live"]
    stashes = models.Stash.__table__
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    repository = api.StashRepository.from_url(url)
    for row in taken[3:5]:
        repository.delete_stash(row[1])
    never_created = str(uuid.uuid4())
    repository.stash_roles(never_created, project_id="project-0",
                           user_id="user-0", roles=["member"])
    repository.close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            "UPDATE instances SET deleted = id WHERE uuid IN "
            "(:a, :b, :c)"), dict(zip("abc", [row[1] for row in taken[:3]])))
        connection.execute(
            stashes.update()
            .where(stashes.c.instance_uuid.in_([row[1] for row in taken[3:5]]))
            .values(deleted_at=now - datetime.timedelta(days=40)))
        connection.execute(
            stashes.update().where(stashes.c.instance_uuid == never_created)
            .values(created_at=now - datetime.timedelta(days=2)))
    with engine.begin() as connection:
        if engine.dialect.name == "mysql":
            connection.execute(sa.text(
                "ALTER TABLE role_stash_roles CONVERT TO CHARACTER SET "
                "utf8mb3"))
        migration.downgrade(connection, migration.revisions()[0].revision)
    engine.dispose()


def run_backend(name, url, count, seed, upgrade_check):
    print(f"{name} ({make_url(url).render_as_string(hide_password=True)}), "
          f"{count} instances, seed {seed}")
    create_database(url)
    try:
        started = time.perf_counter()
        make_schemas(url)
        print(f"  schemas (Nova's db_sync, role_stash's): "
              f"{time.perf_counter() - started:.1f} s")
        rows = mixed_instances(count, seed)
        fill(url, rows)
        kinds = {}
        for row in rows:
            kinds[row[0]] = kinds.get(row[0], 0) + 1
        print("  mix: " + ", ".join(f"{kind} {number}"
                                    for kind, number in kinds.items()))
        print_summary("dry run", *timed_import(url, dry_run=True), count)
        print_summary("import", *timed_import(url), count)
        print_summary("again", *timed_import(url), count)
        if upgrade_check:
            code, table = upgrade_check_output(url)
            print(f"  upgrade check, healthy (exit {code}):\n{table}")
            break_database(url, rows)
            code, table = upgrade_check_output(url)
            print(f"  upgrade check, broken (exit {code}):\n{table}")
    finally:
        drop_database(url)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.nova_import", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--backend", action="append",
                        choices=sorted(DEFAULT_URLS),
                        help="default: postgresql and mariadb")
    parser.add_argument("--url", action="append", default=[],
                        metavar="BACKEND=URL",
                        help="a database this may make and drop")
    parser.add_argument("--upgrade-check", action="store_true")
    args = parser.parse_args(argv)
    urls = dict(DEFAULT_URLS, **dict(item.split("=", 1) for item in args.url))
    for name in args.backend or ["postgresql", "mariadb"]:
        run_backend(name, urls[name], args.instances, args.seed,
                    args.upgrade_check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
