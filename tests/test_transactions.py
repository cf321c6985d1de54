"""Standalone use, and joining the caller's enginefacade transaction."""

import threading

from oslo_config import cfg
from oslo_db import options as db_options
from oslo_db.sqlalchemy import enginefacade
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from role_stash.db import engines
from tests.helpers import INSTANCE


@enginefacade.transaction_context_provider
class RequestContext:
    """What Nova's RequestContext carries that role_stash may read."""

    project_id = "p-1"
    user_id = "u-1"
    roles = ["member", "reader"]
    project_domain_id = "default"
    user_domain_id = "default"
    auth_token = "gAAAAAB-never-stored"


class Boom(Exception):
    pass


@pytest.fixture
def nova(repository, migrated_url):
    """The caller: its own context manager, and its own instances table."""
    context_manager = engines.context_manager_from_url(migrated_url)
    engine = context_manager.writer.get_engine()
    instances = sa.Table("test_instances", sa.MetaData(),
                         sa.Column("uuid", sa.String(36), primary_key=True))
    instances.create(engine)
    yield context_manager, instances, api.StashRepository(context_manager)
    instances.drop(engine)
    context_manager.dispose_pool()


def instance_rows(context_manager, instances):
    with context_manager.writer.get_engine().connect() as connection:
        return connection.execute(sa.select(instances.c.uuid)).scalars().all()


def test_stash_commits_with_the_server_create(repository, nova):
    context_manager, instances, nova_repository = nova
    context = RequestContext()
    with context_manager.writer.using(context) as session:
        session.execute(instances.insert().values(uuid=INSTANCE))
        stashed = nova_repository.stash_from_context(context, INSTANCE)
        # Visible inside the caller's transaction before it commits.
        assert nova_repository.get_stash(INSTANCE, context=context) == stashed
    assert instance_rows(context_manager, instances) == [INSTANCE]
    assert repository.get_stash(INSTANCE) == stashed


def test_stash_rolls_back_with_the_server_create(repository, nova):
    context_manager, instances, nova_repository = nova
    context = RequestContext()
    with pytest.raises(Boom):
        with context_manager.writer.using(context) as session:
            session.execute(instances.insert().values(uuid=INSTANCE))
            nova_repository.stash_from_context(context, INSTANCE)
            raise Boom()
    assert instance_rows(context_manager, instances) == []
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(INSTANCE)


def test_rebuild_replaces_the_stash_inside_the_callers_transaction(
        repository, nova):
    context_manager, _, nova_repository = nova
    context = RequestContext()
    with context_manager.writer.using(context):
        nova_repository.stash_from_context(context, INSTANCE)
    context.roles = ["admin"]
    with context_manager.writer.using(context):
        replaced = nova_repository.stash_from_context(context, INSTANCE,
                                                      replace=True)
    assert repository.get_stash(INSTANCE) == replaced
    assert replaced.roles == ("admin",)


def test_conflict_inside_the_callers_transaction(repository, nova):
    context_manager, _, nova_repository = nova
    context = RequestContext()
    with context_manager.writer.using(context):
        nova_repository.stash_from_context(context, INSTANCE)
        with pytest.raises(exception.StashConflict):
            nova_repository.stash_roles(
                INSTANCE, project_id="p-2", user_id="u-1", roles=[],
                context=context)
    assert repository.get_stash(INSTANCE).project_id == "p-1"


def test_the_token_is_never_stored(repository, nova):
    context_manager, _, nova_repository = nova
    context = RequestContext()
    with context_manager.writer.using(context):
        nova_repository.stash_from_context(context, INSTANCE)
    with context_manager.writer.get_engine().connect() as connection:
        dump = repr([connection.execute(sa.select(table)).all()
                     for table in (api.STASHES, api.ROLES)])
    assert "member" in dump and RequestContext.auth_token not in dump


def test_repository_from_oslo_config(repository, migrated_url):
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[])
    with pytest.raises(exception.InvalidArgument, match="connection"):
        api.StashRepository.from_config(conf)
    conf.set_override("connection", migrated_url, group="database")
    from_config = api.StashRepository.from_config(conf)
    try:
        stashed = from_config.stash_roles(
            INSTANCE, project_id="p", user_id="u", roles=["member"])
        assert repository.get_stash(INSTANCE) == stashed
    finally:
        from_config.close()


def test_concurrent_create_of_one_instance_keeps_one_stash(repository, nova):
    """A retried create racing the first: the loser waits on the unique key,
    then answers with the winner's stash; no write is lost."""
    context_manager, _, nova_repository = nova
    context = RequestContext()
    outcome = {}

    def racing_create():
        try:
            outcome["stash"] = repository.stash_from_context(
                RequestContext(), INSTANCE)
        except Exception as error:
            outcome["error"] = error

    with context_manager.writer.using(context):
        first = nova_repository.stash_from_context(context, INSTANCE)
        racer = threading.Thread(target=racing_create)
        racer.start()
        racer.join(0.5)
        # Still waiting on the uncommitted first stash, not done beside it.
        assert racer.is_alive() and not outcome
    racer.join(30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["stash"] == first == repository.get_stash(INSTANCE)


def test_a_transaction_of_another_context_manager_is_refused(repository,
                                                             nova):
    """Joining is only possible within one context manager: a repository
    built on its own would commit apart from the caller, so it refuses."""
    context_manager, _, _ = nova
    context = RequestContext()
    with pytest.raises(Boom):
        with context_manager.writer.using(context):
            with pytest.raises(exception.InvalidArgument, match="context"):
                repository.stash_from_context(context, INSTANCE)
            raise Boom()
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(INSTANCE)


def test_reads_join_a_callers_async_reader_and_writes_are_refused_there(
        repository, nova):
    """An async reader transaction (on [database] slave_connection when
    there is one) takes the stash reads, as oslo.db's reader.allow_async
    does; a stash write cannot join it."""
    context_manager, _, stashes = nova
    context = RequestContext()
    with context_manager.writer.using(context):
        stash = stashes.stash_from_context(context, INSTANCE)
    with context_manager.async_.using(context):
        assert stashes.get_stash(INSTANCE, context=context) == stash
        assert stashes.get_stashes([INSTANCE], context=context) == {
            INSTANCE: stash}
        with pytest.raises(exception.InvalidArgument, match="reader"):
            stashes.stash_from_context(context, INSTANCE, replace=True)


def test_a_repository_of_its_own_closes_its_connections(migrated_url,
                                                        repository):
    """Made from a URL or a [database] section of any group name, a
    repository owns its engines: close() leaves no pooled connection.
    (The shared repository fixture empties the tables afterwards: the
    soft-deleted rows left here would count in the next test.)"""
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[])
    conf.register_opts(db_options.database_opts, "cell1")
    conf.set_override("connection", migrated_url, group="cell1")
    for own in (api.StashRepository.from_url(migrated_url),
                api.StashRepository.from_config(conf, "cell1")):
        own.close()  # before any call: nothing to close, no error
        own.stash_roles(INSTANCE, project_id="p", user_id="u",
                        roles=["member"])
        assert own.get_stash(INSTANCE).roles == ("member",)
        pools = {id(engine.pool): engine.pool for engine in (
            own.lone_engines.writer(), own.lone_engines.reader())}
        own.delete_stash(INSTANCE)
        own.close()
        # (SQLite's writer pool keeps none: a NullPool.)
        assert [pool.checkedin() for pool in pools.values()
                if hasattr(pool, "checkedin")] == [0] * sum(
                    hasattr(pool, "checkedin") for pool in pools.values())


def test_every_read_and_the_delete_join_the_callers_transaction(
        repository, nova):
    """Inside the caller's writer transaction each read sees the stash
    not committed yet, and a delete rolls back with the caller; inside a
    reader transaction the reads work."""
    context_manager, _, nova_repository = nova
    context = RequestContext()
    with pytest.raises(Boom):
        with context_manager.writer.using(context):
            stashed = nova_repository.stash_from_context(context, INSTANCE)
            assert nova_repository.get_stashes(
                [INSTANCE], context=context) == {INSTANCE: stashed}
            assert nova_repository.get_stash_and_replies(
                INSTANCE, context=context) == (stashed, {})
            assert nova_repository.get_replies(INSTANCE,
                                               context=context) == {}
            assert nova_repository.list_stashes(context=context) == [stashed]
            raise Boom()
    assert repository.get_stashes([INSTANCE]) == {}
    stashed = repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                     roles=["member"])
    with pytest.raises(Boom):
        with context_manager.writer.using(context):
            assert nova_repository.delete_stash(INSTANCE, context=context)
            raise Boom()
    assert repository.get_stash(INSTANCE) == stashed
    with context_manager.reader.using(context):
        assert nova_repository.get_stash_and_replies(
            INSTANCE, context=context) == (stashed, {})
        assert nova_repository.get_replies(INSTANCE, context=context) == {}
        assert nova_repository.get_stashes(
            [INSTANCE], context=context) == {INSTANCE: stashed}


def test_reads_made_alone_before_still_join_the_callers_transaction(
        repository, nova):
    """Once lone reads of the same repository run bare on a kept
    Connection (calls.Database.bare_read), a read made inside the caller's
    transaction still joins it and sees its stash not committed yet."""
    context_manager, _, nova_repository = nova
    context = RequestContext()
    other = "0c9e1b7a-4f3d-4a2e-9b8c-7d6e5f4a3b2c"
    nova_repository.stash_roles(other, project_id="p", user_id="u",
                                roles=["member"])
    for _ in range(3):
        assert nova_repository.get_stash(other, context=context).roles == (
            "member",)
    with pytest.raises(Boom):
        with context_manager.writer.using(context):
            stashed = nova_repository.stash_from_context(context, INSTANCE)
            assert nova_repository.get_stash(INSTANCE,
                                             context=context) == stashed
            assert nova_repository.get_stashes(
                [INSTANCE, other], context=context)[INSTANCE] == stashed
            assert nova_repository.get_stash_and_replies(
                INSTANCE, context=context) == (stashed, {})
            raise Boom()
    with pytest.raises(exception.StashNotFound):
        nova_repository.get_stash(INSTANCE, context=context)


@pytest.mark.parametrize("server", ["postgresql", "postgresql-psycopg"],
                         indirect=True)
def test_a_serialization_failure_in_a_callers_transaction_is_a_deadlock(
        repository, nova):
    """A caller's REPEATABLE READ transaction that replaces a stash another
    client replaced after its snapshot: PostgreSQL refuses it (SQLSTATE
    40001, which oslo.db does not recognize), and the caller gets
    DatabaseDeadlock, to retry the transaction whole, as for a deadlock;
    the other client's stash stays."""
    context_manager, _, nova_repository = nova
    repository.stash_roles(INSTANCE, project_id="p", user_id="before",
                           roles=["member"])
    context = RequestContext()
    with pytest.raises(exception.DatabaseDeadlock) as raised:
        with context_manager.writer.using(context) as session:
            session.execute(sa.text(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
            assert nova_repository.get_stash(
                INSTANCE, context=context).user_id == "before"
            repository.stash_roles(INSTANCE, project_id="p", user_id="rival",
                                   roles=["member"], replace=True)
            nova_repository.stash_roles(INSTANCE, project_id="p",
                                        user_id="caller", roles=["reader"],
                                        replace=True, context=context)
    assert "serialization failure" in str(raised.value)
    assert repository.get_stash(INSTANCE).user_id == "rival"
