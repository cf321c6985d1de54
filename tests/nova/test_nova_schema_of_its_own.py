"""Where role_stash's tables live beside Nova's: db sync puts them in a
schema of their own (a database of their own on MariaDB, an attached
database on SQLite) when Nova's tables are there, or where [role_stash]
schema says; an account that may not create it is told the statements to
run; a deployment whose tables sit in Nova's schema is moved out by `db
move-tables`, and the upgrade check warns until then."""

import json
import random
import string

from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash.cmd import manage
from role_stash.db import api
from role_stash.db import dialects
from role_stash.db import migration
from role_stash.db import models
from role_stash.db import schemas as stash_schemas

INSTANCE = "6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8c"
OTHER_INSTANCE = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
SERVERS = ["postgresql", "postgresql-psycopg", "mariadb"]


def run_manage(capsys, *arguments):
    code = manage.main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def own_schema_of(server, url):
    return (dialects.mysql_own_database(make_url(url).database)
            if server.name == "mysql" else "role_stash")


def tables_in(url, schema):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return stash_schemas.tables_in(connection, schema)
    finally:
        engine.dispose()


def upgrade_check(capsys, url):
    code, out, _ = run_manage(capsys, "--database-url", url, "upgrade",
                              "check", "--json")
    checks = {check["check"]: check for check in json.loads(out)["checks"]}
    return code, checks["Tables apart from Nova's"]


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_db_sync_beside_nova_makes_a_schema_of_its_own(
        nova_database_url, server, capsys):
    """Nova's tables there: `role-stash-manage db sync` creates the schema
    (database) of role_stash's own and every table of its in it, the
    version table and the shadow tables too; none in Nova's."""
    code, out, err = run_manage(capsys, "--database-url", nova_database_url,
                                "db", "sync")
    assert code == manage.OK, err
    own = own_schema_of(server, nova_database_url)
    assert set(tables_in(nova_database_url, own)) == {
        models.VERSION_TABLE, *models.Base.metadata.tables}
    assert tables_in(nova_database_url, None) == []
    code, check = upgrade_check(capsys, nova_database_url)
    assert check["result"] == 0, check
    assert own in check["details"]
    # Again: nothing to apply, found where it is.
    assert run_manage(capsys, "--database-url", nova_database_url, "db",
                      "sync")[1] == "nothing to apply\n"


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_metadata_reads_and_stash_writes_name_the_schema_and_run_with_no_map(
        nova_database_url, server, capsys):
    """In a schema of its own, the metadata reads (get_stash, get_stashes,
    the read with cached replies) and the stash writes (a create's, a
    replace's) name it in their SQL, on a Connection with no
    schema_translate_map, which SQLAlchemy would apply to the SQL at every
    execution; every other call still runs with the map."""
    assert run_manage(capsys, "--database-url", nova_database_url, "db",
                      "sync")[0] == manage.OK
    repository = api.StashRepository.from_url(nova_database_url)
    try:
        assert_named_where_they_may_be(
            repository, own_schema_of(server, nova_database_url))
    finally:
        repository.close()


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_on_sqlite_they_name_the_attached_database(database_url):
    """The same on SQLite, role_stash's tables in a database attached to
    each connection."""
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=database_url)
    stash_schemas.attach_sqlite_database(
        context_manager, f"{make_url(database_url).database}-role_stash")
    with context_manager.writer.get_engine().begin() as connection:
        migration.upgrade(connection, schema="role_stash")
    repository = api.StashRepository(context_manager)
    try:
        assert_named_where_they_may_be(repository, "role_stash")
    finally:
        repository.close()
        context_manager.writer.get_engine().dispose()


def assert_named_where_they_may_be(repository, own):
    seen = []

    def executing(connection, cursor, statement, parameters, context,
                  executemany):
        if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            seen.append((statement, connection.get_execution_options().get(
                "schema_translate_map")))

    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["member"])
    for engine in {repository.lone_engines.reader(),
                   repository.lone_engines.writer()}:
        sa.event.listen(engine, "before_cursor_execute", executing)
    assert repository.get_stash(INSTANCE).roles == ("member",)
    assert list(repository.get_stashes([INSTANCE])) == [INSTANCE]
    assert repository.get_stash_and_replies(INSTANCE)[1] == {}
    assert len(seen) == 3, seen
    repository.stash_roles(OTHER_INSTANCE, project_id="p", user_id="u",
                           roles=["member"])
    repository.stash_roles(INSTANCE, project_id="p", user_id="v",
                           roles=["reader", "admin"], replace=True)
    assert repository.get_stash(INSTANCE).roles == ("reader", "admin")
    # The create: an INSERT, with its roles' where they are apart; the
    # replace: its INSERT, the lock, the UPDATE, the roles' DELETE and
    # INSERT, the replies' DELETE.
    assert len(seen) > 3 + 6, seen
    for statement, translate in seen:
        assert f"{own}.role_stash" in statement.replace('"', "").replace(
            "`", ""), statement
        assert translate is None, statement
    del seen[:]
    repository.delete_stash(INSTANCE)
    assert seen and all((translate or {}).get(None) == own
                        for _, translate in seen), seen


def test_a_database_of_role_stash_alone_keeps_the_default_schema(
        database_url, capsys):
    """No Nova table: the tables go where they always went."""
    code, _, err = run_manage(capsys, "--database-url", database_url, "db",
                              "sync")
    assert code == manage.OK, err
    assert set(tables_in(database_url, None)) == {
        models.VERSION_TABLE, *models.Base.metadata.tables}
    repository = api.StashRepository.from_url(database_url)
    try:
        repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                               roles=["member"])
        assert repository.schema is None
    finally:
        repository.close()


def test_role_stash_first_in_its_own_schema_gets_no_shadow_from_nova(
        schemas, server, database_url):
    """role_stash migrated before Nova, into its own schema (db sync with
    [role_stash] schema set; on SQLite an attached database): Nova's
    first migration, which copies every table it finds to shadow_<name>,
    finds none of role_stash's; role_stash then finds its tables there."""
    if server.name == "sqlite":
        engine = sa.create_engine(database_url)
        stash_schemas_path = f"{make_url(database_url).database}-role_stash"
        sa.event.listen(engine, "connect", lambda dbapi, record: (
            dbapi.execute("ATTACH DATABASE ? AS role_stash",
                          (stash_schemas_path,))))
        schema = "role_stash"
    else:
        engine = sa.create_engine(database_url)
        schema = own_schema_of(server, database_url)
    try:
        with engine.begin() as connection:
            migration.upgrade(connection, schema=schema)
        schemas.install_nova(database_url)
        with engine.connect() as connection:
            names = sa.inspect(connection).get_table_names()
            assert "instances" in names
            assert not [name for name in names if "role_stash" in name]
            assert stash_schemas.locate(connection) == schema
            assert migration.check(connection) == migration.AT_HEAD
    finally:
        engine.dispose()


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_move_tables_takes_role_stash_out_of_novas_schema(
        nova_database_url, server, capsys):
    """A deployment made before: role_stash's tables in Nova's schema, a
    stash in them; the upgrade check warns. `db move-tables` moves every
    table by its metadata, rows kept; run again it moves nothing; the
    check passes and the stash is read where it went."""
    engine = sa.create_engine(nova_database_url)
    try:
        with engine.begin() as connection:
            migration.upgrade(connection, schema=None)
    finally:
        engine.dispose()
    before = api.StashRepository.from_url(nova_database_url)
    try:
        before.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["member", "reader"])
        assert before.schema is None
    finally:
        before.close()
    code, check = upgrade_check(capsys, nova_database_url)
    assert check["result"] == 1
    assert "db move-tables" in check["details"]

    code, out, err = run_manage(capsys, "--database-url", nova_database_url,
                                "db", "move-tables")
    own = own_schema_of(server, nova_database_url)
    assert code == manage.OK, err
    assert out.startswith(f"moved to {own}: ")
    assert tables_in(nova_database_url, None) == []
    assert set(tables_in(nova_database_url, own)) == {
        models.VERSION_TABLE, *models.Base.metadata.tables}
    code, out, err = run_manage(capsys, "--database-url", nova_database_url,
                                "db", "move-tables")
    assert (code, out) == (manage.OK, "nothing to move: role_stash's tables "
                                      f"are in {own}\n")
    assert upgrade_check(capsys, nova_database_url)[1]["result"] == 0
    after = api.StashRepository.from_url(nova_database_url)
    try:
        assert after.get_stash(INSTANCE).roles == ("member", "reader")
        assert after.schema == own
    finally:
        after.close()
    assert run_manage(capsys, "--database-url", nova_database_url, "db",
                      "check")[0] == migration.AT_HEAD


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_move_tables_on_sqlite_says_why_not(nova_database_url, capsys):
    """SQLite moves no table to another database: the command says so."""
    run_manage(capsys, "--database-url", nova_database_url, "db", "sync")
    code, _, err = run_manage(capsys, "--database-url", nova_database_url,
                              "db", "move-tables")
    assert code == manage.BAD_INPUT
    assert "sqlite moves no table between schemas" in err


def _account():
    return "rs_" + "".join(random.choices(string.ascii_lowercase, k=8))


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_an_account_that_may_not_create_the_schema_is_told_what_to_run(
        nova_database_url, server, capsys):
    """db sync by an account with every right on Nova's database but
    none to create a schema (database): a database failure naming the
    statements an administrator runs; run as given, by the
    administrator, they let the account's db sync and a runtime
    account's reads and writes work."""
    admin = make_url(nova_database_url)
    engine = sa.create_engine(admin)
    owner, runtime = _account(), _account()
    own = own_schema_of(server, nova_database_url)
    with engine.begin() as connection:
        if server.name == "postgresql":
            for account in (owner, runtime):
                connection.exec_driver_sql(f"CREATE ROLE {account} LOGIN")
            connection.exec_driver_sql(
                f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {owner}")
        else:
            for account in (owner, runtime):
                connection.execute(sa.text(f"CREATE USER '{account}'@'%'"))
            # Nova's account, which role_stash's runtime shares.
            for account in (owner, runtime):
                connection.execute(sa.text(
                    f"GRANT ALL ON `{admin.database}`.* TO '{account}'@'%'"))
    owner_url = admin.set(username=owner, password=None).render_as_string(
        hide_password=False)
    runtime_url = admin.set(username=runtime, password=None)
    try:
        code, _, err = run_manage(capsys, "--database-url", owner_url, "db",
                                  "sync")
        assert code == manage.DATABASE_FAILURE
        assert f"cannot create the schema '{own}'" in err
        quoted = (lambda name: f"'{name}'@'%'") if server.name == "mysql" \
            else (lambda name: name)
        grants = dialects.for_dialect(server.name).schema_grants(
            own, quoted(owner), quoted(runtime))
        assert grants[0].split(" IF NOT EXISTS")[0] in err
        with engine.begin() as connection:
            for statement in grants:
                connection.execute(sa.text(statement))
        code, _, err = run_manage(capsys, "--database-url", owner_url, "db",
                                  "sync")
        assert code == manage.OK, err
        app = api.StashRepository.from_url(
            runtime_url.render_as_string(hide_password=False))
        try:
            app.stash_roles(INSTANCE, project_id="p", user_id="u",
                            roles=["member"])
            app.delete_stash(INSTANCE)
            assert app.archive_deleted().rows["role_stashes"] == 1
            assert app.purge_deleted(everything=True).rows[
                "role_stashes_shadow"] == 1
            # Rows only: no DDL.
            with pytest.raises((sa.exc.DBAPIError, db_exc.DBError)):
                with app.lone_engines.writer().begin() as connection:
                    connection.exec_driver_sql(
                        f"DROP TABLE {own}.role_stash_roles")
        finally:
            app.close()
    finally:
        with engine.begin() as connection:
            if server.name == "postgresql":
                # The command's pool, left open as a process exiting would.
                connection.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE usename IN (:owner, :runtime)"),
                    {"owner": owner, "runtime": runtime})
                for account in (owner, runtime):
                    connection.exec_driver_sql(
                        f"DROP OWNED BY {account} CASCADE")
                    connection.exec_driver_sql(f"DROP ROLE {account}")
            else:
                for account in (owner, runtime):
                    connection.execute(sa.text(
                        f"DROP USER '{account}'@'%'"))
        engine.dispose()
