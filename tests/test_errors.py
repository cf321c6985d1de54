"""Database failures reach callers as role_stash errors, never raw; a
dropped connection is recovered; nothing secret or role-bearing is logged."""

import logging

from oslo_db.sqlalchemy import enginefacade
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from role_stash.db import engines
from role_stash.db import migration
from tests import helpers
from tests.helpers import INSTANCE

ROLES = ["member", "secret-project-role"]


def assert_read_and_write_raise(url, error, match=None, **options):
    repository = api.StashRepository.from_url(url, **options)
    try:
        with pytest.raises(error, match=match):
            repository.get_stash(INSTANCE)
        with pytest.raises(error, match=match):
            repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                   roles=ROLES)
    finally:
        repository.close()


def test_unmigrated_database_is_a_database_error(database_url):
    assert_read_and_write_raise(database_url, exception.DatabaseError,
                                match="schema is not at head")


def test_a_statement_the_database_refuses_is_not_retried(database_url,
                                                         database_events):
    """No retry makes a missing table appear: a read and a write on an
    unmigrated database fail at their first try."""
    assert_read_and_write_raise(database_url, exception.DatabaseError,
                                match="schema is not at head")
    assert database_events.retries == 0
    assert sum(database_events.errors.values()) == 2


def test_unreachable_database_is_unavailable(unreachable_url):
    # The retries' window is tested in test_engines.
    assert_read_and_write_raise(unreachable_url,
                                exception.DatabaseUnavailable,
                                db_max_retries=0)


def kill_pooled_connections(repository):
    """Drop the idle connection each lone engine would hand out next (the
    autocommit engine's: its kept Connection): the server ends its session
    (SQLite: the driver closes its handle)."""
    lone = repository.lone_engines
    writer = lone.writer()
    if writer.dialect.name == "sqlite":
        with writer.connect() as victim:
            victim.connection.dbapi_connection.close()
        return
    with writer.connect() as connection:
        victims = [helpers.session_id(connection)]
    if lone.autocommit() is not None:
        victims.append(lone.run_in_autocommit(helpers.session_id))
    helpers.end_sessions(writer.url, victims)


def test_reads_and_writes_recover_from_a_dropped_connection(repository):
    stashed = repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                     roles=ROLES)
    kill_pooled_connections(repository)
    assert repository.get_stash(INSTANCE) == stashed
    other = "0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c"
    assert repository.stash_roles(other, project_id="p", user_id="u",
                                  roles=ROLES) == repository.get_stash(other)


def test_no_role_payload_is_logged_at_info_or_above(repository, caplog):
    caplog.set_level(logging.DEBUG)
    repository.stash_roles(INSTANCE, project_id="p", user_id="u", roles=ROLES)
    repository.get_stash(INSTANCE)
    repository.delete_stash(INSTANCE)
    with pytest.raises(exception.StashNotFound):
        repository.delete_stash(INSTANCE)
    repository.stash_roles(INSTANCE, project_id="p", user_id="u", roles=ROLES)
    repository.archive_deleted()
    repository.purge_deleted(everything=True)
    assert caplog.records
    for record in caplog.records:
        assert "secret-project-role" not in record.getMessage()


def test_a_failed_write_hides_its_values_and_leaves_nothing_behind(
        database_url):
    """With the roles table gone, the roles INSERT fails with role names
    bound: the error chain names the table but not the values, and the
    stash row is rolled back with it (the two commit together or not)."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        migration.upgrade(connection)
        connection.execute(sa.text("DROP TABLE role_stash_roles"))
    repository = api.StashRepository.from_url(database_url)
    try:
        with pytest.raises(exception.DatabaseError) as raised:
            repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                   roles=ROLES)
        chain = []
        error = raised.value
        while error is not None:
            chain.append(str(error))
            error = error.__cause__ or error.__context__
        text = "\n".join(chain)
        assert "role_stash_roles" in text
        assert "SQL parameters hidden" in text
        assert "secret-project-role" not in text
        with engine.connect() as connection:
            assert connection.scalar(sa.text(
                "SELECT COUNT(*) FROM role_stashes")) == 0
    finally:
        repository.close()
        engine.dispose()


def test_a_three_byte_mysql_connection_names_the_charset_fix(migrated_url):
    """Nova's [database] connection often says charset=utf8 (3 bytes on
    MySQL): a 4-byte role name then fails with an error naming the cause
    and the fix. Other backends store it."""
    url = sa.make_url(migrated_url)
    mysql = url.get_backend_name() == "mysql"
    if mysql:
        url = url.update_query_dict({"charset": "utf8"})
    repository = api.StashRepository.from_url(
        url.render_as_string(hide_password=False))
    try:
        if mysql:
            with pytest.raises(exception.DatabaseError,
                               match="charset=utf8mb4"):
                repository.stash_roles(INSTANCE, project_id="p",
                                       user_id="u", roles=["emoji \U0001f600"])
            with pytest.raises(exception.StashNotFound):
                repository.get_stash(INSTANCE)
        else:
            repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                   roles=["emoji \U0001f600"])
            assert repository.get_stash(INSTANCE).roles == (
                "emoji \U0001f600",)
            repository.delete_stash(INSTANCE)
            repository.purge_deleted(everything=True)
    finally:
        repository.close()


def bare_mariadb_url(url, drivername=None):
    """url without its charset, on another driver name if given."""
    parsed = sa.make_url(url)
    parsed = parsed.set(query={key: value for key, value in
                               parsed.query.items() if key != "charset"})
    if drivername is not None:
        parsed = parsed.set(drivername=drivername)
    return parsed.render_as_string(hide_password=False)


@pytest.mark.parametrize("server", ["mariadb"], indirect=True)
def test_a_mysql_url_without_charset_keeps_4_byte_role_names(
        migrated_url, repository):
    """oslo.db connects MySQL in 3-byte utf8 when the URL names no charset:
    role_stash asks for utf8mb4 on a context manager of its own, and on
    the engines of its lone reads and, on MySQL and MariaDB, lone writes
    from a caller's. A 4-byte role name is then stored and read back,
    neither refused nor read as "?". The caller's own engine is the
    caller's: a write in the caller's transaction names the fix."""
    bare = bare_mariadb_url(migrated_url)
    assert "charset" not in bare
    name = "emoji \U0001f600"
    own = api.StashRepository.from_url(bare)
    callers_context_manager = enginefacade.transaction_context()
    callers_context_manager.configure(connection=bare)
    callers = api.StashRepository(callers_context_manager)
    try:
        stashed = own.stash_roles(INSTANCE, project_id="p", user_id="u",
                                  roles=[name, "member"])
        assert stashed.roles == (name, "member")
        assert own.get_stash(INSTANCE) == stashed
        assert callers.get_stash(INSTANCE) == stashed
        assert callers.get_stashes([INSTANCE]) == {INSTANCE: stashed}
        assert callers.list_stashes(role=name) == [stashed]
        alone = callers.stash_roles("0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c",
                                    project_id="p", user_id="u",
                                    roles=[name])
        assert own.get_stash(alone.instance_uuid) == alone
        context = CallersContext()
        with pytest.raises(exception.DatabaseError, match="charset=utf8mb4"):
            with callers_context_manager.writer.using(context):
                callers.stash_roles("1c8b4d3f-0e9a-4f7b-9c2d-3e4f5a6b7c8d",
                                    project_id="p", user_id="u",
                                    roles=[name], context=context)
    finally:
        own.close()
        callers.close()
        callers_context_manager.dispose_pool()


@enginefacade.transaction_context_provider
class CallersContext:
    """A caller's request context, as Nova's RequestContext is one."""


def session_settings(engine):
    with engine.connect() as connection:
        return tuple(connection.execute(sa.text(
            "SELECT @@character_set_connection, "
            "@@session.wait_timeout")).one())


# A setting the server shows back: whether role_stash kept the operator's
# [database] connection_parameters beside the charset it adds.
WAIT_TIMEOUT_PARAMETER = "init_command=SET%20SESSION%20wait_timeout%3D1234"


@pytest.mark.parametrize("server", ["mariadb"], indirect=True)
@pytest.mark.parametrize("parameters, connection_charset, wait_timeout", [
    (WAIT_TIMEOUT_PARAMETER, "utf8mb4", 1234),
    (WAIT_TIMEOUT_PARAMETER + "&charset=utf8", "utf8mb3", 1234),
    ("charset=utf8", "utf8mb3", None),
])
def test_connection_parameters_keep_their_charset_else_gain_utf8mb4(
        migrated_url, repository, parameters, connection_charset,
        wait_timeout):
    """[database] connection_parameters on a URL naming no charset: kept
    as given on both of the repository's engines, with charset=utf8mb4
    added unless they name a charset themselves; a 3-byte charset named
    there is the operator's, and a 4-byte role name then fails naming
    the fix."""
    own = api.StashRepository.from_url(bare_mariadb_url(migrated_url),
                                       connection_parameters=parameters)
    name = "emoji \U0001f600"
    try:
        for engine in (own.lone_engines.writer(), own.lone_engines.reader()):
            charset, timeout = session_settings(engine)
            assert charset == connection_charset
            if wait_timeout is not None:
                assert timeout == wait_timeout
        assert engines.chose_utf8mb4(own.context_manager) is (
            connection_charset == "utf8mb4")
        if connection_charset == "utf8mb4":
            stashed = own.stash_roles(INSTANCE, project_id="p", user_id="u",
                                      roles=[name])
            assert own.get_stash(INSTANCE) == stashed
            assert stashed.roles == (name,)
        else:
            with pytest.raises(exception.DatabaseError,
                               match="charset=utf8mb4"):
                own.stash_roles(INSTANCE, project_id="p", user_id="u",
                                roles=[name])
    finally:
        own.close()


@pytest.mark.parametrize("server", ["mariadb"], indirect=True)
def test_a_mariadb_url_naming_no_charset_is_utf8mb4_and_not_oslo_dbs_choice(
        migrated_url, repository):
    """oslo.db asks for 3-byte utf8 on mysql:// URLs alone: a mariadb://
    URL naming no charset leaves PyMySQL's utf8mb4, for Nova's engines
    too, so role_stash has overridden nothing (and the upgrade check has
    nothing to warn of); its own engines are utf8mb4 and keep 4-byte
    role names."""
    bare = bare_mariadb_url(migrated_url, "mariadb+pymysql")
    own = api.StashRepository.from_url(bare)
    callers_context_manager = enginefacade.transaction_context()
    callers_context_manager.configure(connection=bare)
    name = "emoji \U0001f600"
    try:
        assert not engines.chose_utf8mb4(own.context_manager)
        for engine in (own.lone_engines.writer(), own.lone_engines.reader(),
                       callers_context_manager.writer.get_engine()):
            assert session_settings(engine)[0] == "utf8mb4"
        stashed = own.stash_roles(INSTANCE, project_id="p", user_id="u",
                                  roles=[name, "member"])
        assert own.get_stash(INSTANCE) == stashed
        assert stashed.roles == (name, "member")
    finally:
        own.close()
        callers_context_manager.dispose_pool()


@pytest.mark.parametrize("server", ["mariadb"], indirect=True)
def test_a_mariadb_url_gets_oslo_dbs_mysql_error_filters(
        migrated_url, repository):
    """SQLAlchemy names the mariadb:// dialect "mariadb", under which
    oslo.db registers no error filter: a duplicate entry came out as a bare
    DBError, so a retried create of one instance failed, on role_stash's
    own engines and on a caller's (Nova's) alike. With the MySQL filters
    shared, both answer as on a mysql:// URL: the exact repeat returns the
    stash, another payload is StashConflict."""
    url = bare_mariadb_url(migrated_url, "mariadb+pymysql")
    callers_context_manager = enginefacade.transaction_context()
    callers_context_manager.configure(connection=url)
    own = api.StashRepository.from_url(url)
    callers = api.StashRepository(callers_context_manager)
    try:
        for index, stashes in enumerate((own, callers)):
            instance = f"6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8{index}"
            stashed = stashes.stash_roles(instance, project_id="p",
                                          user_id="u", roles=["member"])
            assert stashes.stash_roles(instance, project_id="p",
                                       user_id="u", roles=["member"]) == (
                stashed)
            with pytest.raises(exception.StashConflict):
                stashes.stash_roles(instance, project_id="p", user_id="u",
                                    roles=["reader"])
            assert stashes.get_stash(instance) == stashed
    finally:
        own.close()
        callers_context_manager.dispose_pool()
