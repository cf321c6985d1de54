"""Server create: inside Nova's writer transaction, with a real
nova.context.RequestContext, Nova's instance row and the stash are written
together, and fail together."""

from nova import context as nova_context
from nova import exception as nova_exception
from nova import objects
from nova.db.main import api as nova_db
from oslo_db import exception as db_exc
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api


class Boom(Exception):
    """Raised by a test after both writes, inside Nova's transaction."""


def make_values(context, instance_uuid, **values):
    return {"uuid": instance_uuid, "project_id": context.project_id,
            "user_id": context.user_id, "hostname": "guest",
            "vm_state": "building", **values}


def fresh_copy(context):
    """The same user's context, with no transaction state (as Nova's
    target_cell copies one)."""
    return nova_context.RequestContext.from_dict(context.to_dict())


def assert_no_stash(repository, instance_uuid):
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(instance_uuid)


def test_instance_create_and_stash_commit_together(live_instances,
        nova_context_manager, nova_repository, nova_engine, user_context,
        new_uuid):
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(user_context):
        nova_db.instance_create(user_context,
                                make_values(user_context, instance_uuid))
        stashed = nova_repository.stash_from_context(user_context,
                                                     instance_uuid)
        # Nothing is visible outside Nova's transaction before it commits.
        assert live_instances(instance_uuid) == 0 or (
            nova_engine.dialect.name == "sqlite")
    assert live_instances(instance_uuid) == 1
    stash = nova_repository.get_stash(instance_uuid)
    assert stash == stashed
    assert stash.roles == ("member", "reader")
    assert (stash.project_id, stash.user_id) == (
        user_context.project_id, user_context.user_id)
    assert (stash.project_domain_id, stash.user_domain_id) == (
        "default", "default")


def test_instance_object_create_and_stash_commit_together(
        nova_context_manager, nova_repository, live_instances, user_context,
        new_uuid):
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(user_context):
        instance = objects.Instance(
            context=user_context, uuid=instance_uuid,
            project_id=user_context.project_id,
            user_id=user_context.user_id, hostname="guest",
            vm_state="building")
        instance.create()
        nova_repository.stash_from_context(user_context, instance.uuid)
    assert live_instances(instance_uuid) == 1
    assert nova_repository.get_stash(instance_uuid).roles == (
        "member", "reader")


def test_exception_after_both_writes_rolls_both_back(
        nova_context_manager, nova_repository, live_instances, user_context,
        new_uuid):
    instance_uuid = new_uuid()
    with pytest.raises(Boom):
        with nova_context_manager.writer.using(user_context):
            nova_db.instance_create(user_context,
                                    make_values(user_context, instance_uuid))
            nova_repository.stash_from_context(user_context, instance_uuid)
            raise Boom()
    assert live_instances(instance_uuid) == 0
    assert_no_stash(nova_repository, instance_uuid)


def test_failing_nova_insert_takes_the_stash_with_it(
        nova_context_manager, nova_repository, live_instances, user_context,
        new_uuid):
    """The instance row already exists (no stash): the stash is written
    first, then Nova's duplicate INSERT fails, and the stash goes too."""
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(user_context):
        nova_db.instance_create(user_context,
                                make_values(user_context, instance_uuid))
    retry = fresh_copy(user_context)
    with pytest.raises((db_exc.DBDuplicateEntry,
                        nova_exception.InstanceExists)):
        with nova_context_manager.writer.using(retry):
            nova_repository.stash_from_context(retry, instance_uuid)
            nova_db.instance_create(retry, make_values(retry, instance_uuid))
            retry.session.flush()
    assert live_instances(instance_uuid) == 1
    assert_no_stash(nova_repository, instance_uuid)


def test_stash_conflict_caught_inside_nova_transaction_leaves_it_usable(
        nova_context_manager, nova_repository, live_instances, user_context,
        make_user_context, new_uuid):
    """A live stash with another payload: the StashConflict is caught and
    Nova's transaction goes on and commits (PostgreSQL too, where a failed
    statement would abort the whole transaction)."""
    instance_uuid, other_uuid = new_uuid(), new_uuid()
    earlier = nova_repository.stash_roles(
        instance_uuid, project_id=user_context.project_id,
        user_id="someone-else", roles=["admin"])
    with nova_context_manager.writer.using(user_context):
        nova_db.instance_create(user_context,
                                make_values(user_context, instance_uuid))
        with pytest.raises(exception.StashConflict):
            nova_repository.stash_from_context(user_context, instance_uuid)
        nova_db.instance_create(user_context,
                                make_values(user_context, other_uuid))
        nova_repository.stash_from_context(user_context, other_uuid)
    assert live_instances(instance_uuid) == 1
    assert live_instances(other_uuid) == 1
    assert nova_repository.get_stash(instance_uuid) == earlier
    assert nova_repository.get_stash(other_uuid).roles == ("member", "reader")


def test_invalid_argument_caught_inside_nova_transaction_leaves_it_usable(
        nova_context_manager, nova_repository, live_instances,
        make_user_context, new_uuid):
    """A role name no backend can store (NUL) is refused before any SQL;
    Nova's transaction goes on and commits."""
    context = make_user_context(roles=["member", "bad\x00name"])
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(context):
        nova_db.instance_create(context, make_values(context, instance_uuid))
        with pytest.raises(exception.InvalidArgument):
            nova_repository.stash_from_context(context, instance_uuid)
        nova_repository.stash_roles(
            instance_uuid, project_id=context.project_id,
            user_id=context.user_id, roles=["member"], context=context)
    assert live_instances(instance_uuid) == 1
    assert nova_repository.get_stash(instance_uuid).roles == ("member",)


def test_exact_repeat_inside_nova_transaction_returns_the_stash(
        nova_context_manager, nova_repository, user_context, new_uuid):
    """A create retried after a lost answer: the same payload again is no
    conflict."""
    instance_uuid = new_uuid()
    first = nova_repository.stash_from_context(user_context, instance_uuid)
    retry = fresh_copy(user_context)
    with nova_context_manager.writer.using(retry):
        again = nova_repository.stash_from_context(retry, instance_uuid)
    assert again.roles == first.roles
    assert nova_repository.get_stash(instance_uuid).roles == first.roles


def test_transaction_of_another_context_manager_is_refused(
        nova_shared_url, nova_repository, user_context, new_uuid):
    """The stash could not commit with a transaction of another context
    manager (a cell's, say): refused with InvalidArgument, before any SQL."""
    other = nova_db.create_context_manager(connection=nova_shared_url)
    instance_uuid = new_uuid()
    try:
        with other.writer.using(user_context):
            with pytest.raises(exception.InvalidArgument):
                nova_repository.stash_from_context(user_context,
                                                   instance_uuid)
    finally:
        if other.is_started:
            other.writer.get_engine().dispose()
    with pytest.raises(exception.StashNotFound):
        nova_repository.get_stash(instance_uuid)


def test_stash_inside_nova_reader_transaction_raises_role_stash_error(
        nova_context_manager, nova_repository, user_context, new_uuid):
    """Defect 4: a stash inside the caller's READER transaction raises the
    project's own error, naming the problem, not enginefacade's TypeError."""
    instance_uuid = new_uuid()
    with nova_context_manager.reader.using(user_context):
        with pytest.raises(exception.RoleStashError) as raised:
            nova_repository.stash_from_context(user_context, instance_uuid)
    assert "reader" in str(raised.value).lower()
    with pytest.raises(exception.StashNotFound):
        nova_repository.get_stash(instance_uuid)


def test_close_leaves_novas_pool_alone(nova_context_manager, nova_engine,
                                       user_context, new_uuid):
    """Defect 3: closing a repository built on Nova's context manager keeps
    Nova's idle pooled connections (oslo.db gives SQLite files a NullPool:
    nothing idle there, Nova's engine must still serve)."""
    repository = api.StashRepository(nova_context_manager)
    repository.stash_from_context(user_context, new_uuid())
    with nova_context_manager.writer.using(user_context) as session:
        session.execute(sa.text("SELECT 1"))
    pooled = not isinstance(nova_engine.pool, sa.pool.NullPool)
    idle = nova_engine.pool.checkedin() if pooled else None
    assert idle is None or idle >= 1
    repository.close()
    if pooled:
        assert nova_engine.pool.checkedin() == idle
    with nova_context_manager.reader.using(
            fresh_copy(user_context)) as session:
        assert session.execute(sa.text("SELECT 1")).scalar_one() == 1
