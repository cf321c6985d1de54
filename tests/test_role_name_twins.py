"""Role names that differ only in case, unicode form or blanks are
different names, kept exactly on every backend and through every read
(get_stash, get_stashes, list_stashes by role, get_stash_and_replies);
on MariaDB, the connection's character set and the columns' collation
that make it so."""

import uuid

import pytest
import sqlalchemy as sa

from role_stash.db import api

# Each group: names a case-folding, normalizing or blank-trimming
# comparison would take for one.
TWINS = {
    "case": ["Admin", "admin", "ADMIN"],
    "composed and decomposed e-acute": ["caf\u00e9", "cafe\u0301"],
    "blanks at either end": ["member", "member ", " member", "member\t"],
    "full-width letters": ["member", "\uff4d\uff45\uff4d\uff42\uff45\uff52"],
    "Turkish dotted and dotless i": ["i", "\u0131", "I", "\u0130",
                                     "i\u0307"],
    "sharp s": ["stra\u00dfe", "strasse", "STRASSE", "stra\u1e9ee"],
    "Kelvin and Angstrom signs": ["K", "\u212a", "\u00c5", "\u212b",
                                  "A\u030a"],
    "no-break space": ["power user", "power\u00a0user"],
    "ligature": ["\ufb01le", "file"],
    "4-byte letters": ["\U0001d400dmin", "Admin"],
}


def new_uuid():
    return str(uuid.uuid4())


@pytest.mark.parametrize("label", sorted(TWINS))
def test_near_twin_role_names_stay_distinct_through_every_read(
        repository, label):
    names = TWINS[label]
    alone = {name: repository.stash_roles(new_uuid(), project_id="p",
                                          user_id="u", roles=[name])
             for name in names}
    together = repository.stash_roles(new_uuid(), project_id="p",
                                      user_id="u", roles=names)
    assert together.roles == tuple(names)
    every = [*alone.values(), together]
    for stash in every:
        assert repository.get_stash(stash.instance_uuid) == stash
        assert repository.get_stash_and_replies(stash.instance_uuid) == (
            stash, {})
    assert repository.get_stashes(
        [stash.instance_uuid for stash in every]) == {
            stash.instance_uuid: stash for stash in every}
    for name, stash in alone.items():
        assert repository.list_stashes(role=name) == [stash, together], name
    # A name of the group's that nobody holds finds nobody.
    assert repository.list_stashes(role=names[0] + "\u200d") == []


@pytest.mark.parametrize("server", ["mariadb"], indirect=True)
def test_mariadb_connections_are_utf8mb4_and_names_compare_binary(
        repository, migrated_url):
    """Every string column of role_stash's tables compares in
    utf8mb4_nopad_bin (no case folding, no pad: 'member ' is not
    'member'), and both engines of the repository talk utf8mb4."""
    writer = repository.lone_engines.writer()
    reader = repository.lone_engines.reader()
    with writer.connect() as connection:
        collations = set(connection.execute(sa.text(
            "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME "
            "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_NAME LIKE 'role_stash%' "
            "AND TABLE_NAME != 'role_stash_alembic_version' "
            "AND COLLATION_NAME IS NOT NULL")).all())
    assert ("role_stash_roles", "name", "utf8mb4_nopad_bin") in collations
    assert {collation for _, _, collation in collations} == {
        "utf8mb4_nopad_bin"}
    for engine in (writer, reader):
        with engine.connect() as connection:
            assert connection.scalar(sa.text(
                "SELECT @@character_set_connection")) == "utf8mb4"
            # The role filter compares the column with a parameter: the
            # column's collation decides, whatever the connection's.
            assert connection.scalar(sa.select(sa.func.count()).where(
                api.ROLES.c.name == "x").select_from(api.ROLES)) == 0
            assert connection.scalar(sa.text(
                "SELECT COLLATION(name) FROM role_stash_roles "
                "UNION ALL SELECT 'utf8mb4_nopad_bin' LIMIT 1")) == (
                "utf8mb4_nopad_bin")
