"""Bulk read of many instances, and listing by project and by role."""

import uuid

import pytest

from role_stash import exception
from role_stash.db import api


def new_uuid():
    return str(uuid.uuid4())


@pytest.fixture
def fleet(repository):
    """Six stashes: projects p-a and p-b, roles in several mixes, in order."""
    specs = [("p-a", ["member"]), ("p-b", ["admin", "member"]),
             ("p-a", ["reader"]), ("p-a", ["admin"]),
             ("p-b", ["member", "reader"]), ("p-a", ["member", "admin"])]
    return [repository.stash_roles(new_uuid(), project_id=project,
                                   user_id="u", roles=roles)
            for project, roles in specs]


def uuids(stashes):
    return [stash.instance_uuid for stash in stashes]


def test_bulk_read_returns_live_stashes_by_uuid(repository, fleet,
                                                count_statements):
    repository.delete_stash(fleet[1].instance_uuid)
    wanted = uuids(fleet) + [new_uuid()]
    repository.get_stashes(wanted)  # the pool's first connection set up
    with count_statements() as statements:
        found = repository.get_stashes(wanted)
    assert len(statements) == 1
    assert found == {stash.instance_uuid: stash
                     for stash in fleet if stash is not fleet[1]}


def test_bulk_read_of_a_hundred(repository):
    stashed = [repository.stash_roles(new_uuid(), project_id="p", user_id="u",
                                      roles=[f"r{index}", "member"])
               for index in range(100)]
    found = repository.get_stashes([s.instance_uuid.upper() for s in stashed])
    assert found == {stash.instance_uuid: stash for stash in stashed}


def test_bulk_read_of_a_thousand_with_repeats(repository, count_statements):
    stashed = [repository.stash_roles(new_uuid(), project_id="p", user_id="u",
                                      roles=["member"]) for _ in range(3)]
    wanted = [s.instance_uuid for s in stashed] * 2 + [
        new_uuid() for _ in range(994)]
    repository.get_stashes(wanted)  # the pool's first connection set up
    with count_statements() as statements:
        found = repository.get_stashes(wanted)
    assert len(statements) == 1
    assert found == {stash.instance_uuid: stash for stash in stashed}


def test_bulk_read_and_list_keep_a_stash_with_no_roles(repository):
    bare, other = [repository.stash_roles(new_uuid(), project_id="p-none",
                                          user_id="u", roles=roles)
                   for roles in ([], ["member"])]
    assert bare.roles == ()
    assert repository.get_stashes(uuids([bare, other])) == {
        bare.instance_uuid: bare, other.instance_uuid: other}
    assert repository.list_stashes(project_id="p-none") == [bare, other]


def test_bulk_read_of_nothing_is_empty(repository, count_statements):
    with count_statements() as statements:
        assert repository.get_stashes([]) == {}
    assert statements == []


def test_list_by_project_oldest_first(repository, fleet):
    assert repository.list_stashes(project_id="p-a") == [
        fleet[0], fleet[2], fleet[3], fleet[5]]
    assert repository.list_stashes(project_id="p-none") == []


def test_list_by_role(repository, fleet):
    assert repository.list_stashes(role="admin") == [
        fleet[1], fleet[3], fleet[5]]
    assert repository.list_stashes(role="Admin") == []


def test_list_by_project_and_role(repository, fleet):
    assert repository.list_stashes(project_id="p-a", role="admin") == [
        fleet[3], fleet[5]]


def test_list_leaves_out_deleted_stashes(repository, fleet):
    repository.delete_stash(fleet[3].instance_uuid)
    assert repository.list_stashes(role="admin") == [fleet[1], fleet[5]]


def test_pages_with_marker_and_limit_cover_all_once(repository, fleet):
    pages = []
    marker = None
    while True:
        page = repository.list_stashes(marker=marker, limit=4)
        if not page:
            break
        pages.append(page)
        marker = page[-1].instance_uuid
    assert [len(page) for page in pages] == [4, 2]
    assert [stash for page in pages for stash in page] == fleet


def test_paging_within_a_role(repository, fleet):
    first = repository.list_stashes(role="member", limit=2)
    rest = repository.list_stashes(role="member",
                                   marker=first[-1].instance_uuid)
    assert first + rest == [fleet[0], fleet[1], fleet[4], fleet[5]]


def test_unknown_marker_is_not_found(repository, fleet):
    marker = new_uuid()
    with pytest.raises(exception.MarkerNotFound, match=marker):
        repository.list_stashes(marker=marker)


def test_a_page_holds_at_most_a_thousand(repository):
    """1001 live stashes (written straight into the table: the set-up, not
    the subject): a page asked of 5000, or of no limit, holds the oldest
    1000, and the next page the last one."""
    engine = repository.context_manager.writer.get_engine()
    instances = [f"00000000-0000-4000-8000-{index:012d}"
                 for index in range(1001)]
    with engine.begin() as connection:
        connection.execute(api.STASHES.insert(), [
            {"instance_uuid": instance, "project_id": "p", "user_id": "u",
             "created_at": api.timeutils.utcnow(), "deleted": 0}
            for instance in instances])
    for limit in (5000, 1001, None):
        page = repository.list_stashes(limit=limit)
        assert uuids(page) == instances[:1000]
    assert uuids(repository.list_stashes(marker=instances[999])) == [
        instances[1000]]
    assert uuids(repository.list_stashes(limit=999)) == instances[:999]
