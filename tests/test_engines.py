"""The engines a repository runs on: the caller's settings followed, its
pool left alone, nothing leaked, bounded failures, hidden values, and the
enginefacade internals role_stash reads (a change in oslo.db fails here)."""

import gc
import inspect
import logging
import os
import threading

from oslo_config import cfg
from oslo_db import api as oslo_db_api
from oslo_db import exception as db_exc
from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import engines as oslo_engines
from oslo_utils import timeutils
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from role_stash.db import engines
from role_stash.db import migration
from role_stash.db import oslo_internals
from role_stash.db import urls
from tests.helpers import INSTANCE

ROLES = ["member", "secret-project-role"]


@enginefacade.transaction_context_provider
class Context:
    """A caller's request context, as Nova's RequestContext is one."""

    project_id = "p"
    user_id = "u"
    roles = ROLES


def callers_context_manager(url, **settings):
    """A context manager as a caller (Nova) makes it: enginefacade's own,
    none of role_stash's hooks."""
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=url, **settings)
    return context_manager


def test_oslo_db_internals_role_stash_reads_are_there():
    """engines.py reads these; if oslo.db renames them, this fails first,
    naming what moved."""
    context_manager = callers_context_manager("sqlite://")
    factory = oslo_internals.factory_of(context_manager)
    for name in ("_url_cfg", "_engine_cfg", "_ignored_cfg",
                 "_url_args_for_conf", "_engine_args_for_conf"):
        assert hasattr(factory, name), f"oslo.db's factory lost {name}"
    assert "_engine_target" in inspect.signature(
        oslo_engines.create_engine).parameters
    context = Context()
    with context_manager.reader.using(context):
        transaction = oslo_internals.open_transaction(context)
        assert oslo_internals.transaction_is_reader(transaction)
        assert oslo_internals.same_factory(transaction, context_manager)
    with context_manager.writer.using(context):
        assert not oslo_internals.transaction_is_reader(
            oslo_internals.open_transaction(context))
    with context_manager.async_.using(context):
        assert oslo_internals.transaction_is_reader(
            oslo_internals.open_transaction(context))
    assert oslo_internals.open_transaction(context) is None
    url, engine_args, retries = oslo_internals.configured(context_manager)
    assert url == "sqlite://"
    assert engine_args["max_retries"] == 10
    hook = object()
    context_manager.append_on_engine_create(hook)
    assert oslo_internals.on_engine_create_hooks(context_manager) == [hook]
    # oslo.db's MySQL error filters, registered by dialect name, shared
    # with SQLAlchemy's mariadb dialect.
    assert oslo_internals.share_mysql_error_filters_with_mariadb()
    # oslo.db's error filters: the savepoint-cause listeners role_stash
    # drops from its own engine, found by their names, and handle_error.
    for url in ("mysql+pymysql://root@127.0.0.1:1/test", "sqlite://"):
        engine = oslo_engines.create_engine(url, max_retries=0)
        assert oslo_internals.drop_savepoint_cause_listeners(engine) == [
            "rollback_savepoint", "commit", "rollback", "checkin"]
        assert list(engine.dialect.dispatch.handle_error)
        # SQLite keeps one Connection event listener of oslo.db's (its
        # BEGIN), and so the engine's own flag; nothing is left on MySQL
        # (a listener on the Engine class, which other tests add, would
        # still count through the class's flag).
        assert engine.__dict__.get("_has_events", False) == (
            engine.dialect.name == "sqlite")
        engine.dispose()
    assert oslo_internals.configured_replica(context_manager) is None
    assert oslo_internals.configured_replica(callers_context_manager(
        "sqlite://", slave_connection="sqlite:///replica.sqlite")) == (
            "sqlite:///replica.sqlite")


def test_the_read_engine_follows_the_callers_database_settings(migrated_url):
    context_manager = callers_context_manager(
        migrated_url, max_pool_size=2, max_overflow=1, pool_timeout=7,
        connection_recycle_time=123, mysql_sql_mode="ANSI",
        db_max_retries=2, db_retry_interval=0)
    repository = api.StashRepository(context_manager)
    try:
        with pytest.raises(exception.StashNotFound):
            repository.get_stash(INSTANCE)
        reader = repository.lone_engines.reader()
        if reader.dialect.name == "sqlite":
            # SQLite reads share nothing with a pool size: in-process.
            assert isinstance(reader.pool, sa.pool.QueuePool)
            return
        assert reader.pool.size() == 2
        assert reader.pool._max_overflow == 1
        assert reader.pool.timeout() == 7
        assert reader.pool._recycle == 123
        with reader.connect() as connection:
            if reader.dialect.name != "postgresql":
                assert "ANSI" in connection.scalar(
                    sa.text("SELECT @@sql_mode"))
    finally:
        repository.close()


def test_the_replica_engine_follows_the_callers_database_settings(
        migrated_url, repository):
    """slave_connection naming the same database: the engine of lone reads
    on it is built from the same settings as the one on the primary."""
    sqlite = sa.make_url(migrated_url).get_backend_name() == "sqlite"
    # SQLite's own engines (NullPool) take no pool settings.
    pool = {} if sqlite else {"max_pool_size": 2, "max_overflow": 1,
                              "pool_timeout": 7}
    context_manager = callers_context_manager(
        migrated_url, slave_connection=migrated_url,
        connection_recycle_time=123, **pool)
    replicated = api.StashRepository(context_manager)
    try:
        stash = replicated.stash_roles(INSTANCE, project_id="p",
                                       user_id="u", roles=ROLES)
        assert replicated.get_stash(INSTANCE) == stash
        replica = replicated.lone_engines.replica()
        reader = replicated.lone_engines.reader()
        assert replica is not reader
        assert type(replica.pool) is type(reader.pool)
        assert replica.pool._recycle == reader.pool._recycle == 123
        if not sqlite:
            assert replica.pool.size() == reader.pool.size() == 2
            assert replica.pool._max_overflow == 1
            assert replica.pool.timeout() == 7
            assert replica.get_execution_options() == (
                reader.get_execution_options())
            assert replica.dialect.isolation_level == (
                reader.dialect.isolation_level)
    finally:
        replicated.close()
        context_manager.dispose_pool()


def test_retries_follow_db_max_retries(unreachable_url, caplog):
    caplog.set_level(logging.DEBUG, logger="oslo_db.api")
    context_manager = callers_context_manager(
        unreachable_url, db_max_retries=2, db_retry_interval=0,
        db_inc_retry_interval=False)
    repository = api.StashRepository(context_manager)
    try:
        with pytest.raises(exception.DatabaseUnavailable):
            repository.get_stash(INSTANCE)
    finally:
        repository.close()
    retries = [record for record in caplog.records
               if record.getMessage().startswith("Performing DB retry")]
    # A SQLite file that cannot be opened is never retried.
    sqlite = sa.make_url(unreachable_url).get_backend_name() == "sqlite"
    assert len(retries) == (0 if sqlite else 2)


def test_close_leaves_the_callers_pool_alone(migrated_url):
    """On SQLite the caller's database is in memory, in its pool's one
    connection: disposing of that pool would lose the database."""
    in_memory = sa.make_url(migrated_url).get_backend_name() == "sqlite"
    context_manager = callers_context_manager(
        "sqlite://" if in_memory else migrated_url)
    engine = context_manager.writer.get_engine()
    with engine.begin() as connection:
        if in_memory:
            migration.upgrade(connection)
    idle = None if in_memory else engine.pool.checkedin()
    repository = api.StashRepository(context_manager)
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=ROLES)
    repository.get_stash(INSTANCE)
    repository.close()
    if not in_memory:
        assert engine.pool.checkedin() >= idle >= 1
    with engine.begin() as connection:
        assert connection.scalar(sa.text(
            "SELECT COUNT(*) FROM role_stashes")) == 1
        connection.execute(api.ROLES.delete())
        connection.execute(api.STASHES.delete())
    engine.dispose()


def open_files():
    return len(os.listdir("/proc/self/fd"))


def live_engines():
    gc.collect()
    return sum(isinstance(item, sa.Engine) for item in gc.get_objects())


def test_building_and_closing_repositories_leaks_nothing(migrated_url):
    def cycle():
        repository = api.StashRepository.from_url(migrated_url)
        with pytest.raises(exception.StashNotFound):
            repository.get_stash(INSTANCE)
        repository.close()

    cycle()
    files, engines_alive = open_files(), live_engines()
    for _ in range(30):
        cycle()
    assert open_files() <= files
    assert live_engines() <= engines_alive


class SleepLog:
    """Stands in for oslo.db's time module: records the sleeps between
    retries instead of sleeping them."""

    def __init__(self):
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)


def test_an_unreachable_database_fails_after_the_retry_window(
        unreachable_url, monkeypatch):
    """With default settings a call on a database that refuses it is tried
    11 times, 0.05 s first, the pause doubling up to 1 s: 6.55 s of
    waiting in all (the documented window), then DatabaseUnavailable naming
    the cause. A SQLite file that cannot be opened is not retried: no
    retry opens it."""
    log = SleepLog()
    monkeypatch.setattr(oslo_db_api, "time", log)
    repository = api.StashRepository.from_url(unreachable_url)
    try:
        with pytest.raises(exception.DatabaseUnavailable) as raised:
            repository.get_stash(INSTANCE)
    finally:
        repository.close()
    if sa.make_url(unreachable_url).get_backend_name() == "sqlite":
        assert log.sleeps == []
        assert "unable to open database file" in str(raised.value)
        return
    assert log.sleeps == [0.05, 0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1, 1]
    assert sum(log.sleeps) == pytest.approx(6.55)
    assert "Connection refused" in str(raised.value)


def test_role_names_are_hidden_from_errors_on_a_callers_engine(database_url):
    """The caller's engine renders bound values into its errors; the error
    role_stash raises, and everything it chains, carries none."""
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        migration.upgrade(connection)
        connection.execute(sa.text("DROP TABLE role_stash_roles"))
    engine.dispose()
    context_manager = callers_context_manager(database_url)
    repository = api.StashRepository(context_manager)
    context = Context()
    try:
        with pytest.raises(exception.DatabaseError) as raised:
            with context_manager.writer.using(context):
                repository.stash_from_context(context, INSTANCE)
    finally:
        repository.close()
        context_manager.dispose_pool()
    chain, error = [], raised.value
    while error is not None:
        chain.append(repr(error) + str(error) + repr(
            getattr(error, "params", None)))
        error = error.__cause__ or error.__context__
    text = "\n".join(chain)
    assert "role_stash_roles" in text
    assert "secret-project-role" not in text


def test_a_stash_inside_a_reader_transaction_names_the_fault(migrated_url):
    context_manager = callers_context_manager(migrated_url)
    repository = api.StashRepository(context_manager)
    context = Context()
    try:
        with context_manager.reader.using(context):
            with pytest.raises(exception.InvalidArgument,
                               match="reader.*writer"):
                repository.stash_from_context(context, INSTANCE)
            with pytest.raises(exception.StashNotFound):
                repository.get_stash(INSTANCE, context=context)
    finally:
        repository.close()
        context_manager.dispose_pool()


def test_from_config_follows_only_what_the_operator_set(tmp_path):
    conf = cfg.ConfigOpts()
    path = tmp_path / "role_stash.conf"
    path.write_text("[database]\nconnection = sqlite://\n"
                    "db_max_retries = 3\n")
    conf(args=[], default_config_files=[str(path)])
    context_manager = engines.context_manager_from_config(conf)
    _, engine_args, retries = oslo_internals.configured(context_manager)
    assert retries == {"db_max_retries": 3}
    # No start-up connection test retried 10 times 10 s apart.
    assert engine_args["max_retries"] == 0


def test_from_config_without_a_connection_names_the_option(tmp_path):
    conf = cfg.ConfigOpts()
    path = tmp_path / "role_stash.conf"
    path.write_text("[cell1]\nmax_pool_size = 3\n")
    conf(args=[], default_config_files=[str(path)])
    with pytest.raises(exception.InvalidArgument) as raised:
        engines.context_manager_from_config(conf, "cell1")
    assert str(raised.value) == (
        "invalid [cell1] connection: not set in the configuration")


def test_a_replica_that_cannot_be_reached_leaves_the_reads_to_the_primary(
        migrated_url, repository, unreachable_url, caplog, monkeypatch):
    """[database] slave_connection on a server that refuses connections:
    each lone read is answered by the primary; one warning names the
    replica and the interval it is set aside for, during which it is not
    tried; once the interval has passed it is tried again, and warned of
    again."""
    now = timeutils.utcnow()
    monkeypatch.setattr(timeutils, "utcnow", lambda *args, **kwargs: now)
    caplog.set_level(logging.WARNING, logger="role_stash.db.engines")
    replicated = api.StashRepository.from_url(
        migrated_url, slave_connection=unreachable_url)

    def warnings():
        return [record.getMessage() for record in caplog.records
                if record.name == "role_stash.db.engines"]

    try:
        stash = replicated.stash_roles(INSTANCE, project_id="p",
                                       user_id="u", roles=ROLES)
        assert replicated.lone_engines.replica() is not None
        assert replicated.get_stash(INSTANCE) == stash
        [warning] = warnings()
        replica = sa.make_url(unreachable_url).render_as_string()
        assert warning.startswith(f"The read replica {replica} failed (")
        # The cause, as DatabaseUnavailable or DatabaseError words it.
        assert warning.split(" failed (", 1)[1].startswith("the database ")
        assert warning.endswith(": lone reads go to the primary for 10 s")
        assert replicated.lone_engines.replica() is None
        assert replicated.get_stashes([INSTANCE]) == {INSTANCE: stash}
        assert len(warnings()) == 1
        now += engines.REPLICA_RETRY_INTERVAL
        assert replicated.lone_engines.replica() is not None
        assert replicated.get_stash(INSTANCE) == stash
        assert len(warnings()) == 2
        assert replicated.lone_engines.replica() is None
    finally:
        replicated.close()


def test_a_url_comes_from_the_caller_else_the_environment_else_sqlite(
        monkeypatch):
    monkeypatch.delenv(urls.URL_ENVIRONMENT_VARIABLE, raising=False)
    assert urls.resolve_url() == urls.DEFAULT_URL == (
        "sqlite:///role_stash.sqlite")
    monkeypatch.setenv(urls.URL_ENVIRONMENT_VARIABLE,
                       "postgresql+psycopg2://db/from_environment")
    assert urls.resolve_url() == (
        "postgresql+psycopg2://db/from_environment")
    assert urls.resolve_url("sqlite://") == "sqlite://"


def test_every_engine_of_a_repository_refuses_a_role_of_no_stash(
        migrated_url):
    """The roles' foreign key holds on each engine, SQLite's included
    (enginefacade's sqlite_fk: SQLite enforces none unless asked on each
    connection). A repository of the test's own: the shared one is built
    once per run, by whichever test comes first."""
    own = api.StashRepository.from_url(migrated_url)
    try:
        for engine in (own.lone_engines.writer(), own.lone_engines.reader()):
            with pytest.raises(db_exc.DBReferenceError):
                with engine.connect() as connection:
                    connection.execute(api.ROLES.insert().values(
                        stash_id=123456, position=0, name="member"))
                    connection.commit()
    finally:
        own.close()


def test_a_repository_of_its_own_takes_no_replica_from_the_global_config(
        migrated_url, unreachable_url, caplog):
    """A repository made from a URL has a replica only if given one: a
    slave_connection in the process's global [database] section (Nova's)
    is not its, and no read tries it."""
    caplog.set_level(logging.WARNING, logger="role_stash.db.engines")
    cfg.CONF.register_opts(db_options.database_opts, "database")
    cfg.CONF.set_override("slave_connection", unreachable_url, "database")
    try:
        own = api.StashRepository.from_url(migrated_url)
        try:
            with pytest.raises(exception.StashNotFound):
                own.get_stash(INSTANCE)
            assert own.get_stashes([INSTANCE]) == {}
            assert own.lone_engines.replica() is None
        finally:
            own.close()
    finally:
        cfg.CONF.clear_override("slave_connection", "database")
    assert [record.getMessage() for record in caplog.records
            if record.name == "role_stash.db.engines"] == []


def test_threads_making_their_first_calls_at_once_share_one_read_engine(
        migrated_url):
    """A worker's threads start reading together (a boot storm at service
    start): one engine of lone reads serves them all, so the process holds
    no connections beyond the threads'. Several rounds: the race is
    narrow."""
    threads, rounds = 8, 5
    served_by = set()

    def record(conn, cursor, statement, parameters, context, many):
        served_by.add(id(conn.engine))

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        for _ in range(rounds):
            served_by.clear()
            repository = api.StashRepository.from_url(migrated_url)
            start = threading.Barrier(threads)
            outcomes = []

            def first_read(start=start, repository=repository,
                           outcomes=outcomes):
                start.wait(timeout=30)
                try:
                    repository.get_stash(INSTANCE)
                except exception.StashNotFound as error:
                    outcomes.append(error)

            workers = [threading.Thread(target=first_read)
                       for _ in range(threads)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(timeout=60)
            try:
                assert len(outcomes) == threads
                assert served_by == {id(repository.lone_engines.reader())}
            finally:
                repository.close()
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)


def test_a_hook_on_the_callers_context_manager_sees_lone_reads(
        migrated_url):
    """Nova attaches osprofiler's tracing to each engine of its context
    managers with append_on_engine_create: role_stash's engine of lone
    reads gets the same hooks, so the trace sees the metadata GET."""
    traced = []

    def trace(engine):
        sa.event.listen(engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *args: traced.append(
                            statement))

    context_manager = callers_context_manager(migrated_url)
    context_manager.append_on_engine_create(trace)
    repository = api.StashRepository(context_manager)
    try:
        repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                               roles=ROLES)
        traced.clear()
        assert repository.get_stash(INSTANCE).roles == tuple(ROLES)
        assert any("role_stashes" in statement for statement in traced)
    finally:
        repository.delete_stash(INSTANCE)
        repository.close()
        context_manager.dispose_pool()


def test_connection_trace_comments_the_lone_reads(migrated_url):
    """[database] connection_trace: oslo.db's listener appends the calling
    code to each statement, lone reads included."""
    executed = []

    def record(conn, cursor, statement, *args):
        executed.append(statement)

    repository = api.StashRepository.from_url(migrated_url,
                                              connection_trace=True)
    sa.event.listen(sa.Engine, "after_cursor_execute", record)
    try:
        with pytest.raises(exception.StashNotFound):
            repository.get_stash(INSTANCE)
    finally:
        sa.event.remove(sa.Engine, "after_cursor_execute", record)
        repository.close()
    [select] = [statement for statement in executed
                if "role_stashes" in statement]
    assert "-- File: " in select, select
    # Under mutation testing, the frames oslo.db names are mutmut's
    # trampolines around the call.
    if "mutmut" not in select:
        assert "get_stash" in select, select


# The read engine's pool check-in listeners, by name, and what a read does
# with them, printed by a process of its own (run with and without
# eventlet's monkey patching).
_CHECK_IN_PROBE = """
import sys
if sys.argv[2] == "eventlet":
    import eventlet
    eventlet.monkey_patch()
from oslo_db.sqlalchemy import enginefacade
from role_stash.db import api
from role_stash import exception
context_manager = enginefacade.transaction_context()
context_manager.configure(connection=sys.argv[1])
repository = api.StashRepository(context_manager)
try:
    repository.get_stash("6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8c")
except exception.StashNotFound:
    pass
for engine in (repository.lone_engines.reader(),
               context_manager.writer.get_engine()):
    print(",".join(sorted(listener.__name__
                          for listener in engine.pool.dispatch.checkin)))
repository.close()
context_manager.dispose_pool()
"""


def _check_in_listeners(url, threads):
    """Return (the read engine's, the caller's writer engine's) pool
    check-in listener names after a lone read, in a process on threads
    ("native" or "eventlet")."""
    import subprocess
    import sys
    result = subprocess.run(
        [sys.executable, "-c", _CHECK_IN_PROBE, url, threads],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    reader, writer = result.stdout.splitlines()[-2:]
    return reader, writer


def test_the_read_engine_skips_the_check_in_yield_on_native_threads(
        migrated_url):
    """A caller's engines yield at each pool check-in (oslo.db's
    thread_checkin, on by default, as Nova has it): on native threads
    role_stash's read engine does not, and leaves out the savepoint cause
    check-in listener it has no use for; the caller's engine keeps both."""
    reader, writer = _check_in_listeners(migrated_url, "native")
    assert reader == "", reader
    assert writer == "_thread_yield,pop_exc_checkin", writer


def test_the_read_engine_yields_at_check_in_under_eventlet(migrated_url):
    """Under eventlet (time monkey-patched), the caller's thread_checkin
    holds on role_stash's read engine too: sleep(0) is then eventlet's
    yield to the other green threads."""
    pytest.importorskip("eventlet")
    reader, writer = _check_in_listeners(migrated_url, "eventlet")
    assert reader == "_thread_yield", reader
    assert writer == "_thread_yield,pop_exc_checkin", writer


@pytest.mark.parametrize("server", ["mariadb"], indirect=True)
def test_a_lone_mariadb_write_sends_its_statements_and_commit_only(
        migrated_url, count_statements):
    """On a caller's context manager (pre-ping and a ROLLBACK at each
    check-in, as oslo.db and Nova have them), a lone stash write still
    sends the server what a raw PyMySQL client would: its two INSERTs and
    the COMMIT, no ping before, no ROLLBACK after."""
    context_manager = callers_context_manager(migrated_url)
    repository = api.StashRepository(context_manager)
    try:
        repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                               roles=ROLES)
        with count_statements() as statements:
            repository.stash_roles("0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c",
                                   project_id="p", user_id="u", roles=ROLES)
        assert [statement.verb for statement in statements] == [
            "INSERT", "INSERT", "COMMIT"], statements
        # A write that finds the same stash live reads it, and still ends
        # with the COMMIT alone.
        with count_statements() as statements:
            repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                   roles=ROLES)
        assert [statement.verb for statement in statements] == [
            "INSERT", "SELECT", "COMMIT"], statements
    finally:
        repository.close()
        context_manager.dispose_pool()


@pytest.mark.parametrize("server", ["mariadb"], indirect=True)
def test_the_mariadb_write_engine_follows_the_callers_database_settings(
        migrated_url):
    """Lone writes on MariaDB run on an engine of role_stash's own: its
    pool as the caller's settings say, its session as theirs (sql_mode),
    its connections opened only by a lone write, and closed with the
    repository; the caller's engine is left alone."""
    context_manager = callers_context_manager(
        migrated_url, max_pool_size=2, max_overflow=1, pool_timeout=7,
        connection_recycle_time=123, mysql_sql_mode="ANSI")
    repository = api.StashRepository(context_manager)
    try:
        with pytest.raises(exception.StashNotFound):
            repository.get_stash(INSTANCE)
        writer = repository.lone_engines.writer()
        assert writer is not context_manager.writer.get_engine()
        assert writer.pool.checkedin() == 0
        repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                               roles=ROLES)
        assert writer.pool.checkedin() == 1
        assert (writer.pool.size(), writer.pool._max_overflow,
                writer.pool._timeout, writer.pool._recycle) == (2, 1, 7, 123)
        with writer.connect() as connection:
            assert "ANSI" in connection.scalar(sa.text("SELECT @@sql_mode"))
    finally:
        repository.close()
    assert writer.pool.checkedin() == 0
    context_manager.dispose_pool()
