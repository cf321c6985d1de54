"""role-stash-manage upgrade check's orphan check, against Nova's real
schema: found in a cell database holding both schemas without being told,
or in Nova's database named apart; a warning naming the command while a
stash outlives its instance."""

import json

import pytest

from role_stash.cmd import manage
from role_stash.db import api

WARNING = 1


@pytest.fixture
def orphan_check(capsys):
    """orphan_check(*arguments) -> (exit code, result code, details)."""
    def run(*arguments):
        code = manage.main([*arguments[:2], "upgrade", "check", "--json",
                         *arguments[2:]])
        checks = {check["check"]: check for check in json.loads(
            capsys.readouterr().out)["checks"]}
        found = checks["Orphaned stashes"]
        return code, found["result"], found["details"]
    return run


def test_a_cell_database_is_checked_for_orphans_unasked(
        orphan_check, nova_shared_url, cell_database, add_instances,
        instance, server):
    [live] = add_instances(instance())
    repository = api.StashRepository(cell_database)
    repository.stash_roles(live, project_id="p", user_id="u", roles=["r"])
    repository.close()
    # On SQLite, with no database attached, role_stash's tables are in
    # Nova's: the check of where they are warns.
    assert orphan_check("--database-url", nova_shared_url) == (
        1 if server.name == "sqlite" else 0, 0,
        "No orphan among 1 live stashes.")


def test_orphans_warn_naming_the_command(
        orphan_check, nova_shared_url, cell_database, add_instances,
        instance, migrated_url, repository):
    """Nova's database named apart from role_stash's."""
    live, deleted = add_instances(instance(), instance(deleted=True))
    for instance_uuid in (live, deleted):
        repository.stash_roles(instance_uuid, project_id="p", user_id="u",
                               roles=["r"])
    code, result, details = orphan_check(
        "--database-url", migrated_url, "--nova-database-url",
        nova_shared_url)
    assert (code, result) == (WARNING, WARNING)
    assert details.startswith(
        "1 of 2 live stashes are orphans: 1 of instances Nova deleted, 0 of "
        "instances Nova has no row of")
    assert "`role-stash-manage delete-orphans --dry-run`" in details
