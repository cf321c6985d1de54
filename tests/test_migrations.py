"""Alembic migrations: up, down and up again on every backend; data kept;
models and migrations in step; expand revisions additive; offline SQL valid."""

import contextlib
import os
import pathlib
import re
import subprocess
import sys
import types

import alembic
from alembic import autogenerate
from alembic import op
from alembic import operations
from alembic.runtime import migration as alembic_migration
import pytest
import sqlalchemy as sa

from role_stash.db import api
from role_stash.db import dialects
from role_stash.db import migration
from role_stash.db import models

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALEMBIC = pathlib.Path(sys.executable).with_name("alembic")
TABLES = set(models.Base.metadata.tables)


@pytest.fixture
def connect(database_url):
    """connect(): a connection in a transaction on the test's database."""
    engine = sa.create_engine(database_url)
    yield lambda: engine.begin()
    engine.dispose()


def tables(connection):
    return set(sa.inspect(connection).get_table_names())


def revision_ids():
    return [script.revision for script in migration.revisions()]


def test_history_is_linear_and_every_revision_declares_its_phase():
    scripts = migration.revisions()
    assert scripts[0].down_revision is None
    for previous, script in zip(scripts, scripts[1:]):
        assert script.down_revision == previous.revision
    for script in scripts:
        assert migration.phase_of(script) in migration.PHASES
        assert len(script.revision) <= 32


def test_upgrade_downgrade_upgrade(connect):
    with connect() as connection:
        migration.upgrade(connection)
        assert tables(connection) >= TABLES
        assert migration.current_revision(connection) == revision_ids()[-1]
        migration.downgrade(connection, "base")
        assert tables(connection) == {migration.VERSION_TABLE}
        assert migration.current_revision(connection) is None
        migration.upgrade(connection)
        assert tables(connection) == TABLES | {migration.VERSION_TABLE}


def test_each_revision_steps_up_down_up(connect):
    with connect() as connection:
        for script in migration.revisions():
            migration.upgrade(connection, script.revision)
            migration.downgrade(connection, script.down_revision or "base")
            assert migration.current_revision(connection) == (
                script.down_revision)
            migration.upgrade(connection, script.revision)
            assert migration.current_revision(connection) == script.revision


def seed_0001(connection):
    """Write a stash as revision 0001's schema holds it."""
    connection.execute(sa.text(
        "INSERT INTO role_stashes (instance_uuid, project_id, user_id, "
        "created_at, deleted) VALUES ('11111111-1111-4111-8111-111111111111', "
        "'p-0001', 'u-0001', '2026-01-02 03:04:05', 0)"))
    stash_id = connection.scalar(sa.text(
        "SELECT id FROM role_stashes WHERE project_id = 'p-0001'"))
    connection.execute(sa.text(
        "INSERT INTO role_stash_roles (stash_id, position, name) VALUES "
        f"({stash_id}, 0, 'member'), ({stash_id}, 1, 'a,b')"))
    return api.Stash(
        instance_uuid="11111111-1111-4111-8111-111111111111",
        project_id="p-0001", user_id="u-0001", roles=("member", "a,b"))


def seed_0002(connection):
    """Write a stash, and a cached vendordata reply of its instance."""
    connection.execute(sa.text(
        "INSERT INTO role_stashes (instance_uuid, project_id, user_id, "
        "created_at, deleted) VALUES ('22222222-2222-4222-8222-222222222222', "
        "'p-0002', 'u-0002', '2026-01-02 03:04:05', 0)"))
    connection.execute(sa.text(
        "INSERT INTO role_stash_vendordata (instance_uuid, target, body, "
        "stored_at, keep_until) VALUES "
        "('22222222-2222-4222-8222-222222222222', 'service', '{}', "
        "'2026-01-02 03:04:05', '2026-01-02 03:05:05')"))
    return api.Stash(
        instance_uuid="22222222-2222-4222-8222-222222222222",
        project_id="p-0002", user_id="u-0002", roles=())


ARCHIVED = "33333333-3333-4333-8333-333333333333"


def seed_0003(connection):
    """Write a live stash, and an archived one with its roles and a
    cached reply of its instance, in the shadow tables."""
    connection.execute(sa.text(
        "INSERT INTO role_stashes (instance_uuid, project_id, user_id, "
        "created_at, deleted) VALUES ('44444444-4444-4444-8444-444444444444', "
        "'p-0003', 'u-0003', '2026-01-02 03:04:05', 0)"))
    connection.execute(sa.text(
        "INSERT INTO role_stashes_shadow (id, instance_uuid, project_id, "
        "user_id, created_at, deleted_at, deleted) VALUES (900, "
        f"'{ARCHIVED}', 'p-0003', 'u-0003', '2026-01-02 03:04:05', "
        "'2026-01-03 03:04:05', 900)"))
    connection.execute(sa.text(
        "INSERT INTO role_stash_roles_shadow (stash_id, position, name) "
        "VALUES (900, 0, 'member'), (900, 1, 'reader')"))
    connection.execute(sa.text(
        "INSERT INTO role_stash_vendordata_shadow (instance_uuid, target, "
        f"body, stored_at, keep_until) VALUES ('{ARCHIVED}', 'service', "
        "'{}', '2026-01-02 03:04:05', '2026-01-02 03:05:05')"))
    return api.Stash(
        instance_uuid="44444444-4444-4444-8444-444444444444",
        project_id="p-0003", user_id="u-0003", roles=())


def archived_rows(connection):
    """The archived stash of seed_0003, its role names and reply targets."""
    return (
        connection.execute(sa.text(
            "SELECT instance_uuid, deleted FROM role_stashes_shadow")).all(),
        connection.execute(sa.text(
            "SELECT name FROM role_stash_roles_shadow WHERE stash_id = 900 "
            "ORDER BY position")).scalars().all(),
        connection.execute(sa.text(
            "SELECT target FROM role_stash_vendordata_shadow")).scalars()
        .all())


def seed_0004(connection):
    """Write a stash, and a cached reply keyed by its request's digest."""
    connection.execute(sa.text(
        "INSERT INTO role_stashes (instance_uuid, project_id, user_id, "
        "created_at, deleted) VALUES ('55555555-5555-4555-8555-555555555555', "
        "'p-0004', 'u-0004', '2026-01-02 03:04:05', 0)"))
    connection.execute(sa.text(
        "INSERT INTO role_stash_vendordata (instance_uuid, target, body, "
        "stored_at, keep_until, request_digest) VALUES "
        "('55555555-5555-4555-8555-555555555555', 'service', '{}', "
        "'2026-01-02 03:04:05', '2026-01-02 03:05:05', '" + "d" * 64 + "')"))
    return api.Stash(
        instance_uuid="55555555-5555-4555-8555-555555555555",
        project_id="p-0004", user_id="u-0004", roles=())


# Each revision writes data its own way; every later upgrade must keep it.
SEEDS = {"0001_create_role_stashes": seed_0001,
         "0002_create_vendordata_replies": seed_0002,
         "0003_create_shadow_tables": seed_0003,
         "0004_key_replies_by_request": seed_0004}


def test_every_revision_has_a_seed():
    assert list(SEEDS) == revision_ids()


def test_data_written_at_each_revision_survives_upgrade(connect,
                                                        database_url):
    expected = []
    with connect() as connection:
        for revision in revision_ids():
            migration.upgrade(connection, revision)
            expected.append(SEEDS[revision](connection))
        migration.upgrade(connection)
        assert archived_rows(connection) == (
            [(ARCHIVED, 900)], ["member", "reader"], ["service"])
    repository = api.StashRepository.from_url(database_url)
    try:
        found = repository.get_stashes([s.instance_uuid for s in expected])
        for stash in expected:
            read = found[stash.instance_uuid]
            assert (read.project_id, read.user_id, read.roles) == (
                stash.project_id, stash.user_id, stash.roles)
    finally:
        repository.close()


def schema_diff(connection):
    context = alembic_migration.MigrationContext.configure(
        connection, opts={
            "compare_type": True, "compare_server_default": True,
            "include_name": lambda name, type_, parent: not (
                type_ == "table" and name == migration.VERSION_TABLE)})
    return autogenerate.compare_metadata(context, models.Base.metadata)


def test_models_match_the_migrated_schema(connect):
    with connect() as connection:
        migration.upgrade(connection)
        assert schema_diff(connection) == []


def column_shapes(table):
    return [(column.name, repr(column.type), column.nullable,
             column.primary_key) for column in table.c]


@pytest.mark.parametrize("live", ["role_stashes", "role_stash_roles",
                                  "role_stash_vendordata"])
def test_a_shadow_table_has_its_live_tables_columns_and_no_constraint(live):
    """As Nova's shadow tables: the same columns (types, nullability,
    primary key), no unique constraint or foreign key to refuse history."""
    live_table = models.Base.metadata.tables[live]
    shadow = models.Base.metadata.tables[f"{live}_shadow"]
    assert column_shapes(shadow) == column_shapes(live_table)
    assert not [constraint for constraint in shadow.constraints
                if isinstance(constraint, (sa.UniqueConstraint,
                                           sa.ForeignKeyConstraint))]
    assert not [index for index in shadow.indexes if index.unique]


def test_schema_diff_sees_a_drift(connect):
    with connect() as connection:
        migration.upgrade(connection)
        connection.execute(sa.text(
            "CREATE INDEX role_stashes_user_id_idx ON role_stashes (user_id)"))
        assert schema_diff(connection) != []


def test_constraints_and_indexes_carry_the_same_names_everywhere(connect):
    with connect() as connection:
        migration.upgrade(connection)
        inspector = sa.inspect(connection)
        names = set()
        for table in TABLES:
            names.update(c["name"] for c in
                         inspector.get_unique_constraints(table))
            names.update(c["name"] for c in inspector.get_foreign_keys(table))
            names.update(i["name"] for i in inspector.get_indexes(table))
    assert names == {
        "uniq_role_stash_vendordata0instance_uuid_target",
        "role_stash_vendordata_keep_until_idx",
        "uniq_role_stashes0instance_uuid_deleted",
        "uniq_role_stash_roles0stash_id_name",
        "role_stash_roles_stash_id_fkey",
        "role_stashes_project_id_deleted_id_idx",
        "role_stashes_deleted_at_idx",
        "role_stash_roles_name_stash_id_idx",
        "role_stashes_shadow_deleted_at_id_idx",
        "role_stash_vendordata_shadow_keep_until_id_idx",
    }


def test_version_table_is_role_stashs_own(connect):
    with connect() as connection:
        migration.upgrade(connection)
        assert "alembic_version" not in tables(connection)


class DestructiveOperation(AssertionError):
    pass


# What an expand revision may not do: anything that breaks code of the
# previous release still running against the schema.
DESTRUCTIVE = ("drop_table", "drop_column", "drop_constraint", "drop_index",
               "alter_column", "rename_table", "drop_table_comment")
DESTRUCTIVE_SQL = re.compile(
    r"\b(DROP|DELETE|TRUNCATE|RENAME|ALTER\s+TABLE\s+\S+\s+(DROP|MODIFY|"
    r"CHANGE|ALTER|RENAME))\b", re.IGNORECASE)


@contextlib.contextmanager
def expand_guard(monkeypatch):
    """Make every destructive alembic.op call (batch ones too) fail."""

    def banned(name):
        def refuse(*args, **kwargs):
            raise DestructiveOperation(f"op.{name} in an expand revision")
        return refuse

    real_execute = op.execute

    def execute(sql, *args, **kwargs):
        if DESTRUCTIVE_SQL.search(str(sql)):
            raise DestructiveOperation(f"op.execute({sql!s}) in expand")
        return real_execute(sql, *args, **kwargs)

    with monkeypatch.context() as patch:
        for name in DESTRUCTIVE:
            patch.setattr(op, name, banned(name))
            if hasattr(operations.BatchOperations, name):
                patch.setattr(operations.BatchOperations, name, banned(name))
        patch.setattr(op, "execute", execute)
        yield


@pytest.mark.parametrize("call", [
    lambda: op.drop_table("role_stashes"),
    lambda: op.drop_column("role_stashes", "user_id"),
    lambda: op.alter_column("role_stashes", "user_id", nullable=True),
    lambda: op.execute("DROP TABLE role_stashes"),
    lambda: op.execute("ALTER TABLE role_stashes DROP COLUMN user_id"),
], ids=["drop_table", "drop_column", "alter_column", "execute_drop",
        "execute_alter_drop"])
def test_expand_guard_catches_destructive_operations(monkeypatch, call):
    with expand_guard(monkeypatch):
        with pytest.raises(DestructiveOperation):
            call()


def test_expand_revisions_are_additive(connect, monkeypatch):
    with connect() as connection:
        for script in migration.revisions():
            if migration.phase_of(script) == migration.EXPAND:
                with expand_guard(monkeypatch):
                    migration.upgrade(connection, script.revision)
            else:
                migration.upgrade(connection, script.revision)
        assert migration.check(connection) == migration.AT_HEAD


def fake_history(*phases):
    return [types.SimpleNamespace(revision=f"r{index}",
                                  module=types.SimpleNamespace(phase=phase))
            for index, phase in enumerate(phases)]


def test_sync_phases_on_an_interleaved_history():
    history = fake_history("expand", "expand", "contract", "contract",
                           "expand")
    assert migration.sync_target(history) == "r4"
    assert migration.sync_target(history, migration.EXPAND) == "r1"
    assert migration.sync_target(history, migration.CONTRACT) is None
    assert migration.sync_target(history[2:], migration.EXPAND) is None
    assert migration.sync_target(history[2:], migration.CONTRACT) == "r3"
    assert migration.sync_target(history[4:], migration.EXPAND) == "r4"
    assert migration.sync_target([], migration.EXPAND) is None


def test_status_names_the_next_pending_phase():
    history = fake_history("expand", "contract", "expand")
    assert migration.status(history) == migration.EXPAND_PENDING
    assert migration.status(history[1:]) == migration.CONTRACT_PENDING
    assert migration.status([]) == migration.AT_HEAD


def test_a_revision_must_declare_its_phase():
    with pytest.raises(ValueError, match="phase"):
        migration.phase_of(fake_history(None)[0])


def test_an_unknown_schema_revision_is_a_database_error(connect):
    with connect() as connection:
        migration.upgrade(connection)
        connection.execute(sa.text(
            f"UPDATE {migration.VERSION_TABLE} SET version_num = 'future'"))
        with pytest.raises(migration.exception.DatabaseError,
                           match="future"):
            migration.check(connection)


def test_sync_expand_then_contract_reaches_head(connect):
    with connect() as connection:
        assert migration.check(connection) == migration.EXPAND_PENDING
        migration.sync(connection, migration.EXPAND)
        migration.sync(connection, migration.CONTRACT)
        assert migration.check(connection) == migration.AT_HEAD
        assert migration.sync(connection) is None


def run_alembic(*arguments, cwd=ROOT, env=None):
    return subprocess.run(
        [str(ALEMBIC), *arguments], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=120, check=True)


def test_alembic_command_line_with_x_url(database_url, connect):
    run_alembic("-x", f"url={database_url}", "upgrade", "head")
    current = run_alembic("-x", f"url={database_url}", "current").stdout
    assert f"{revision_ids()[-1]} (head)" in current
    history = run_alembic("-x", f"url={database_url}", "history").stdout
    assert revision_ids()[0] in history
    run_alembic("-x", f"url={database_url}", "downgrade", "base")
    with connect() as connection:
        assert tables(connection) == {migration.VERSION_TABLE}


def test_alembic_command_line_with_environment_url(database_url, connect):
    run_alembic("upgrade", "head",
                env={"ROLE_STASH_DATABASE_URL": database_url})
    with connect() as connection:
        assert migration.current_revision(connection) == revision_ids()[-1]


def test_alembic_upgrade_head_with_no_flags_makes_the_sqlite_default(
        tmp_path):
    run_alembic("-c", str(ROOT / "alembic.ini"), "upgrade", "head",
                cwd=tmp_path, env={"ROLE_STASH_DATABASE_URL": ""})
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'role_stash.sqlite'}")
    with engine.connect() as connection:
        assert migration.current_revision(connection) == revision_ids()[-1]
    engine.dispose()


def statements(script):
    """The statements of an offline script, without comments or BEGIN and
    COMMIT (the test's connection holds the transaction)."""
    text = "\n".join(line for line in script.splitlines()
                     if not line.startswith("--"))
    return [statement.strip() for statement in text.split(";")
            if statement.strip().upper() not in ("", "BEGIN", "COMMIT")]


def test_offline_sql_is_valid(database_url, connect):
    upgrade_sql = run_alembic(
        "-x", f"url={database_url}", "upgrade", "head", "--sql").stdout
    downgrade_sql = run_alembic(
        "-x", f"url={database_url}", "downgrade", "head:base", "--sql").stdout
    assert "CREATE TABLE role_stashes" in upgrade_sql
    with connect() as connection:
        for statement in statements(upgrade_sql):
            connection.exec_driver_sql(statement)
        assert migration.current_revision(connection) == revision_ids()[-1]
        assert schema_diff(connection) == []
        for statement in statements(downgrade_sql):
            connection.exec_driver_sql(statement)
        assert tables(connection) == {migration.VERSION_TABLE}


def test_offline_sql_names_the_schema_it_is_given(database_url, tmp_path):
    """`alembic -x schema=NAME upgrade head --sql`: every table, the
    version table included, in that schema (PostgreSQL and MySQL: created
    by the script; SQLite: a database attached by the operator)."""
    url = sa.make_url(database_url)
    backend = url.get_backend_name()
    schema = (dialects.mysql_own_database(url.database)
              if backend == "mysql" else "role_stash")
    upgrade_sql = run_alembic("-x", f"url={database_url}", "-x",
                              f"schema={schema}", "upgrade", "head",
                              "--sql").stdout
    engine = sa.create_engine(database_url)
    if backend == "sqlite":
        path = str(tmp_path / "role_stash.sqlite")
        sa.event.listen(engine, "connect", lambda dbapi, record: (
            dbapi.execute("ATTACH DATABASE ? AS role_stash", (path,))))
    try:
        with engine.begin() as connection:
            for statement in statements(upgrade_sql):
                connection.exec_driver_sql(statement)
        with engine.connect() as connection:
            assert tables(connection) == set()
            assert set(sa.inspect(connection).get_table_names(schema)) == {
                migration.VERSION_TABLE, *models.Base.metadata.tables}
            assert migration.current_revision(connection) == (
                revision_ids()[-1])
    finally:
        engine.dispose()


def test_root_alembic_folder_never_shadows_the_library():
    assert not (ROOT / "alembic" / "__init__.py").exists()
    library = pathlib.Path(alembic.__file__).resolve().parent
    assert library != ROOT / "alembic" and "site-packages" in library.parts
    ini = (ROOT / "alembic.ini").read_text()
    assert re.search(r"^prepend_sys_path\s*=\s*$", ini, re.MULTILINE)


def test_a_migration_waiting_for_a_lock_gives_up_on_postgresql(database_url):
    """On PostgreSQL a migration runs under lock_timeout: a DROP that
    waits behind a reader's lock fails instead of queueing the metadata
    reads behind it. Elsewhere nothing is set."""
    run_alembic("-x", f"url={database_url}", "upgrade", "head")
    offline = run_alembic("-x", f"url={database_url}", "-x",
                          "lock_timeout=200ms", "upgrade", "head", "--sql")
    if sa.make_url(database_url).get_backend_name() != "postgresql":
        assert "lock_timeout" not in offline.stdout
        return
    assert "SET LOCAL lock_timeout = '200ms'" in offline.stdout
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as reader, reader.begin():
            reader.execute(sa.text("SELECT COUNT(*) FROM role_stashes"))
            with pytest.raises(subprocess.CalledProcessError) as failed:
                run_alembic("-x", f"url={database_url}", "-x",
                            "lock_timeout=200ms", "downgrade", "base")
        assert "lock timeout" in failed.value.stderr
    finally:
        engine.dispose()
    with pytest.raises(subprocess.CalledProcessError) as refused:
        run_alembic("-x", f"url={database_url}", "-x",
                    "lock_timeout=1; DROP TABLE x", "downgrade", "base")
    assert "expected a number" in refused.value.stderr
