"""The metadata GET: reading a stash back, and the vendordata fields."""

import pytest

from role_stash import exception
from role_stash.db import api
from tests.helpers import INSTANCE

OTHER = "0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c"


def test_metadata_get_after_create_returns_boot_roles(repository):
    repository.stash_roles(INSTANCE, project_id="p-1", user_id="u-1",
                           roles=["member", "reader"])
    assert repository.get_stash(INSTANCE).vendordata() == {
        "project-id": "p-1", "instance-id": INSTANCE,
        "boot-roles": "member,reader"}


def test_metadata_get_is_one_statement(repository, count_statements):
    repository.stash_roles(INSTANCE, project_id="p-1", user_id="u-1",
                           roles=["member", "reader"])
    repository.get_stash(INSTANCE)  # the pool's first connection set up
    with count_statements() as statements:
        repository.get_stash(INSTANCE)
    assert len(statements) == 1


def test_missing_stash_is_not_found(repository):
    with pytest.raises(exception.StashNotFound, match=INSTANCE):
        repository.get_stash(INSTANCE)


def test_deleted_stash_is_not_found(repository):
    repository.stash_roles(INSTANCE, project_id="p-1", user_id="u-1",
                           roles=["member"])
    repository.delete_stash(INSTANCE)
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(INSTANCE)


def test_stashes_of_other_instances_are_not_read(repository):
    repository.stash_roles(OTHER, project_id="p-2", user_id="u-2",
                           roles=["admin"])
    repository.stash_roles(INSTANCE, project_id="p-1", user_id="u-1",
                           roles=["member"])
    assert repository.get_stash(INSTANCE).roles == ("member",)
    assert repository.get_stash(OTHER).roles == ("admin",)


def test_role_with_a_comma_is_left_out_of_legacy_boot_roles():
    stash = api.Stash(instance_uuid=INSTANCE, project_id="p", user_id="u",
                      roles=("member", "reader,admin", "observer"))
    assert stash.vendordata()["boot-roles"] == "member,observer"
    assert "reader,admin" in stash.roles


def test_vendordata_of_no_roles_is_an_empty_string():
    stash = api.Stash(instance_uuid=INSTANCE, project_id="p", user_id="u",
                      roles=())
    assert stash.vendordata()["boot-roles"] == ""


@pytest.mark.parametrize("server", ["postgresql-psycopg"], indirect=True)
def test_psycopg_3_prepares_the_metadata_get_on_the_server(repository):
    """psycopg 3 prepares a statement on the server once it has run a few
    times on a connection: the read's planning cost goes away. Seen in
    the session's pg_prepared_statements."""
    repository.stash_roles(INSTANCE, project_id="p-1", user_id="u-1",
                           roles=["member", "reader"])
    for _ in range(10):
        repository.get_stash(INSTANCE)
    assert repository.lone_engines.reader().dialect.driver == "psycopg"
    # On the Connection the reads ran on: the one the lone reads keep.
    prepared = repository.lone_engines.run(False, lambda connection: (
        connection.exec_driver_sql(
            "SELECT statement FROM pg_prepared_statements").scalars().all()))
    assert any("role_stashes.instance_uuid = $1" in sql
               and "role_stash_roles" in sql for sql in prepared), prepared
