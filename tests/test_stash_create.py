"""Server create: stashing the creating user's identity for an instance."""

import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from role_stash.db import models
from role_stash.db.values import Stash
from tests.helpers import INSTANCE

OTHER = "0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c"


def stash(repository, instance=INSTANCE, **overrides):
    payload = {"project_id": "p-1", "user_id": "u-1",
               "roles": ["member", "reader"], **overrides}
    return repository.stash_roles(instance, **payload)


def test_stash_returns_what_the_metadata_get_reads(repository):
    stashed = stash(repository, project_domain_id="default",
                    user_domain_id="users")
    assert repository.get_stash(INSTANCE) == stashed
    assert stashed.roles == ("member", "reader")
    assert (stashed.project_domain_id, stashed.user_domain_id) == (
        "default", "users")
    assert stashed.created_at is not None and stashed.updated_at is None


def test_uuid_is_stored_in_canonical_lower_case(repository):
    stashed = stash(repository, instance=INSTANCE.upper())
    assert stashed.instance_uuid == INSTANCE
    assert repository.get_stash(INSTANCE.upper()).instance_uuid == INSTANCE


def test_exact_repeat_of_a_create_returns_the_first_stash(repository):
    first = stash(repository)
    assert stash(repository) == first
    assert repository.list_stashes() == [first]


def test_different_payload_for_a_live_stash_conflicts(repository):
    first = stash(repository)
    for change in ({"roles": ["admin"]}, {"project_id": "p-2"},
                   {"user_id": "u-2"}, {"roles": ["reader", "member"]},
                   {"user_domain_id": "d"}):
        with pytest.raises(exception.StashConflict, match=INSTANCE):
            stash(repository, **change)
    assert repository.get_stash(INSTANCE) == first


def test_replace_overwrites_a_live_stash(repository):
    first = stash(repository)
    second = stash(repository, roles=["admin"], user_id="u-2", replace=True)
    assert second.roles == ("admin",) and second.user_id == "u-2"
    assert second.created_at == first.created_at
    assert second.updated_at is not None
    assert repository.get_stash(INSTANCE) == second


def test_replace_without_a_stash_creates_one(repository):
    stashed = stash(repository, replace=True)
    assert repository.get_stash(INSTANCE) == stashed


def test_duplicate_roles_collapse_keeping_first_order(repository):
    stashed = stash(repository, roles=["reader", "member", "reader", "admin",
                                       "member"])
    assert repository.get_stash(INSTANCE).roles == (
        "reader", "member", "admin") == stashed.roles


def test_role_names_keep_commas_case_and_any_unicode(repository):
    roles = ["a,b", "Admin", "admin", "rôle", "角色", "🔑 key", "x" * 255,
             "with space inside", "'; DROP TABLE role_stashes; --",
             '{"braces", NULL}', "NULL", "back\\slash"]
    stash(repository, roles=roles)
    assert repository.get_stash(INSTANCE).roles == tuple(roles)


def test_many_roles_have_no_length_cliff(repository):
    roles = [f"role-{index:04d}-" + "r" * 240 for index in range(300)]
    stash(repository, roles=roles)
    assert repository.get_stash(INSTANCE).roles == tuple(roles)


def test_a_new_stash_is_written_without_reading_first(repository,
                                                     count_statements):
    """PostgreSQL writes the stash and its roles in one statement, in
    autocommit: one round trip. The others INSERT the stash, then its
    roles (besides the pool's ping and the transaction's end), as the
    database receives them."""
    engine = repository.context_manager.writer.get_engine()
    roles = ("member", '{"braces", NULL}', "o'quote")
    # The pools' first connections set themselves up: not counted.
    stash(repository, "0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c")
    with count_statements() as statements:
        stash(repository, roles=list(roles))
    written = [sql.verb for sql in statements if not sql.is_bookkeeping]
    if engine.dialect.name == "postgresql":
        assert [sql.verb for sql in statements] == ["WITH"]
    elif engine.dialect.name == "sqlite":
        # In-process, SQLite's trace sees each row of the executemany.
        assert written == ["INSERT"] * (1 + len(roles))
    else:
        assert written == ["INSERT", "INSERT"]
    assert repository.get_stash(INSTANCE).roles == roles


def test_a_user_with_no_roles_is_stashed(repository):
    stash(repository, roles=[])
    assert repository.get_stash(INSTANCE).roles == ()


def test_ids_of_keystone_length_are_kept(repository):
    long_id = "i" * 255
    stash(repository, project_id=long_id, user_id=long_id,
          project_domain_id=long_id, user_domain_id=long_id)
    stashed = repository.get_stash(INSTANCE)
    assert stashed.project_id == stashed.user_id == long_id
    assert stashed.project_domain_id == stashed.user_domain_id == long_id


def test_a_callers_list_changed_afterwards_changes_no_stash(repository):
    roles = ["member"]
    stashed = stash(repository, roles=roles)
    roles.append("admin")
    assert stashed.roles == ("member",)
    assert repository.get_stash(INSTANCE).roles == ("member",)


def test_stash_from_a_request_context_reads_identity_only(repository,
                                                         count_statements):
    class RequestContext:
        project_id = "p-1"
        user_id = "u-1"
        roles = ["member"]
        project_domain_id = "default"
        user_domain_id = "default"
        auth_token = "gAAAAAB-secret-token"

    with count_statements() as statements:
        stashed = repository.stash_from_context(RequestContext(), INSTANCE)
    assert stashed == repository.get_stash(INSTANCE)
    assert (stashed.project_id, stashed.user_id, stashed.roles) == (
        "p-1", "u-1", ("member",))
    # The token reached no statement and no stored row.
    assert not any("secret-token" in repr(sent) for sent in statements)
    engine = repository.lone_engines.writer()
    with engine.connect() as connection:
        for table in (api.STASHES, api.ROLES):
            for row in connection.execute(sa.select(table)):
                assert "secret-token" not in repr(tuple(row))


@pytest.mark.parametrize("count", [1, 2, 31, 32, 33, 64])
def test_every_role_count_is_stashed_in_order(repository, count):
    roles = [f"role-{index}" for index in range(count)]
    stashed = stash(repository, roles=roles)
    assert stashed.roles == tuple(roles)
    assert repository.get_stash(INSTANCE) == stashed


# Keystone takes any role name of 1 to 255 characters with one that is not
# whitespace (tests/nova checks these against Keystone's own schema).
NAMES_KEYSTONE_ACCEPTS = [
    "power\u00a0user", " leading", "trailing ", "tab\there", "line\nbreak",
    "del\x7f", "c1\x85", "\u200b", "adm\u202ein", "line\u2028break",
    "\ufeffbom", "emoji \U0001f600", "r" * 255, "Admin", "admin",
    "caf\u00e9", "cafe\u0301",
]


def test_every_role_name_keystone_accepts_reads_back_exactly(repository):
    stash(repository, roles=NAMES_KEYSTONE_ACCEPTS)
    assert repository.get_stash(INSTANCE).roles == tuple(
        NAMES_KEYSTONE_ACCEPTS)
    assert repository.get_stashes([INSTANCE])[INSTANCE].roles == tuple(
        NAMES_KEYSTONE_ACCEPTS)
    for name in ("trailing ", "Admin", "cafe\u0301"):
        [listed] = repository.list_stashes(role=name)
        assert listed.instance_uuid == INSTANCE


@pytest.mark.parametrize("replace", [False, True])
def test_every_write_path_numbers_the_roles_from_zero(repository, replace):
    """A stash's roles are at positions 0 to n-1, whichever statement wrote
    them (PostgreSQL's one-statement create, a replace, a batch): archive
    and every reader see one numbering."""
    if replace:
        stash(repository, roles=["old"])
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["c", "a", "b"], replace=replace)
    repository.stash_many([Stash(OTHER, "p", "u", ("y", "x"))])
    roles = models.StashRole.__table__
    engine = repository.context_manager.writer.get_engine()
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(roles.c.stash_id, roles.c.position, roles.c.name)
            .order_by(roles.c.stash_id, roles.c.position)).all()
    positions = {}
    for stash_id, position, name in rows:
        positions.setdefault(stash_id, []).append((position, name))
    assert sorted(positions.values()) == [
        [(0, "c"), (1, "a"), (2, "b")], [(0, "y"), (1, "x")]]
