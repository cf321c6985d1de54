"""Defect 1: Nova's unit tests run on in-memory SQLite (`sqlite://`): a
repository on the caller's context manager there works, alone and inside
the caller's transaction, on the caller's one database."""

from nova import context as nova_context
from nova.db import migration as nova_migration
from nova.db.main import api as nova_db
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from role_stash.db import migration


@pytest.fixture
def in_memory_nova():
    """Nova's context manager on `sqlite://` with Nova's schema and
    role_stash's, as Nova's Database fixture sets one up (a new factory
    patched into Nova's global, Nova's own db_sync)."""
    replacement = nova_db.create_context_manager(connection="sqlite://")
    restore = nova_db.context_manager.patch_factory(replacement)
    try:
        nova_migration.db_sync(context=nova_context.get_admin_context())
        with nova_db.context_manager.writer.get_engine().begin() as connection:
            migration.upgrade(connection)
        yield nova_db.context_manager
    finally:
        restore()
        replacement.writer.get_engine().dispose()


def test_stash_alone_on_in_memory_sqlite(in_memory_nova, make_user_context,
                                         new_uuid):
    repository = api.StashRepository(in_memory_nova)
    instance_uuid = new_uuid()
    try:
        repository.stash_roles(instance_uuid, project_id="p", user_id="u",
                               roles=["member"])
        assert repository.get_stash(instance_uuid).roles == ("member",)
    finally:
        repository.close()


def test_stash_in_novas_transaction_on_in_memory_sqlite(
        in_memory_nova, make_user_context, new_uuid):
    repository = api.StashRepository(in_memory_nova)
    creator = make_user_context()
    instance_uuid = new_uuid()
    try:
        with in_memory_nova.writer.using(creator):
            nova_db.instance_create(creator, {
                "uuid": instance_uuid, "project_id": creator.project_id,
                "user_id": creator.user_id})
            repository.stash_from_context(creator, instance_uuid)
        assert repository.get_stash(instance_uuid).roles == (
            "member", "reader")
        # The stash is in the caller's one database, beside the instance.
        with in_memory_nova.reader.get_engine().connect() as connection:
            assert connection.execute(sa.text(
                "SELECT COUNT(*) FROM role_stashes")).scalar_one() == 1
    finally:
        repository.close()


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_repository_from_in_memory_url(url, new_uuid):
    """A repository of its own on an in-memory database: migrate it, then
    stash and read, on that one database."""
    repository = api.StashRepository.from_url(url)
    instance_uuid = new_uuid()
    try:
        with pytest.raises(exception.RoleStashError):
            # No schema yet: the project's error, not a raw TypeError.
            repository.get_stash(instance_uuid)
    finally:
        repository.close()
