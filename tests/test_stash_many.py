"""Stashes written by the batch (an import's): all in one transaction, a
multi-row INSERT of the stashes and one of their roles; an instance
stashed meanwhile by another writer is left as it is and reported, the
others then written one by one."""

import uuid

import pytest

from role_stash import exception
from role_stash.db import api


def new_stash(roles=("member", "reader")):
    return api.Stash(str(uuid.uuid4()), "project-a", "user-a", tuple(roles))


def writes(statements):
    return [statement for statement in statements
            if statement.lstrip().upper().startswith("INSERT")]


def test_a_batch_is_stashed_in_one_insert_of_stashes_and_one_of_roles(
        repository, count_statements, server):
    batch = [new_stash(), new_stash(["admin"]), new_stash(["ロール", " x"])]
    with count_statements() as statements:
        assert repository.stash_many(batch) == {}
    inserts = writes(statements)
    stash_rows = [sql for sql in inserts if "INTO role_stashes " in sql]
    role_rows = [sql for sql in inserts if "INTO role_stash_roles " in sql]
    # As the database sees them: SQLite does not promise RETURNING's order
    # for many rows, so SQLAlchemy sends it one row per INSERT there (in
    # process); psycopg 3 runs the roles' executemany as one statement per
    # row, pipelined in one round trip.
    assert len(stash_rows) == (len(batch) if server.name == "sqlite" else 1)
    assert len(role_rows) == (
        sum(len(stash.roles) for stash in batch)
        if server.param in ("sqlite", "postgresql-psycopg") else 1)
    found = repository.get_stashes([stash.instance_uuid for stash in batch])
    assert [found[stash.instance_uuid].roles for stash in batch] == [
        stash.roles for stash in batch]


def test_a_batch_is_stashed_row_by_row_where_no_ids_come_back_in_order(
        repository, count_statements, monkeypatch):
    """MySQL's INSERT returns no ids (MariaDB's and the others' do, in
    order): there, each stash is one INSERT, its id the one the driver
    reports, and the roles go to the stash they belong to. The writer's
    dialect is told so here, on every backend."""
    dialect = repository.lone_engines.writer().dialect
    monkeypatch.setattr(
        dialect, "insert_executemany_returning_sort_by_parameter_order",
        False)
    batch = [new_stash(["a", "b"]), new_stash(["c"]), new_stash(["d", "e"])]
    with count_statements() as statements:
        assert repository.stash_many(batch) == {}
    stash_rows = [sql for sql in writes(statements)
                  if "INTO role_stashes " in sql]
    assert len(stash_rows) == len(batch)
    found = repository.get_stashes([stash.instance_uuid for stash in batch])
    assert [found[stash.instance_uuid].roles for stash in batch] == [
        stash.roles for stash in batch]


def test_an_instance_stashed_meanwhile_is_kept_and_reported(repository):
    rival = repository.stash_roles(str(uuid.uuid4()), project_id="other",
                                   user_id="u", roles=["observer"])
    batch = [new_stash(), rival._replace(project_id="project-a",
                                         roles=("member",)), new_stash()]
    found = repository.stash_many(batch)
    assert found == {rival.instance_uuid: rival}
    assert repository.get_stash(rival.instance_uuid).roles == ("observer",)
    assert {uuid_ for uuid_ in repository.get_stashes(
        [stash.instance_uuid for stash in batch])} == {
            stash.instance_uuid for stash in batch}


def test_a_batch_is_validated_before_any_sql(repository, count_statements):
    good = new_stash()
    with count_statements() as statements:
        with pytest.raises(exception.InvalidArgument,
                           match=r"stashes\[1\]\.roles\[0\]"):
            repository.stash_many([good, new_stash([""])])
        with pytest.raises(exception.InvalidArgument, match="more than once"):
            repository.stash_many([good, good])
        with pytest.raises(exception.InvalidArgument, match="more than 1000"):
            repository.stash_many([new_stash()] * 1001)
    assert statements == []
