"""Orphaned stashes: a live stash whose instance Nova deleted, or has no
row of, is found and soft-deleted (role-stash-manage delete-orphans), with
Nova's tables in role_stash's database or in another; never a stash whose
instance is live, nor one whose instance is being created: a stash written
before its instance row commits waits out a grace period, and an instance
committed between the scan and the delete keeps its stash (raced with a
real open transaction, committed as the command sends its statement)."""

import datetime
import json
import re

from oslo_utils import timeutils
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.cmd import manage
from role_stash.conf import manage as conf_manage
from role_stash.db import api
from role_stash.db import models
from role_stash.db import nova_tables
from role_stash.nova import http_cache
from role_stash.nova import orphans

DAY = datetime.timedelta(days=1)
STASHES = models.Stash.__table__


@pytest.fixture
def nova(cell_database):
    return nova_tables.NovaDatabase(cell_database)


@pytest.fixture(params=["one database", "two databases"])
def stashes(request, cell_database):
    """The repository of the stashes: in the cell database beside Nova's
    tables, or in a database of role_stash's alone."""
    if request.param == "one database":
        repository = api.StashRepository(cell_database)
        yield repository
        repository.close()
    else:
        yield request.getfixturevalue("repository")


def stash(repository, instance_uuid, *, age=datetime.timedelta(0)):
    """Stash an instance's roles, its row then dated age back."""
    stashed = repository.stash_roles(instance_uuid, project_id="project-a",
                                     user_id="user-a", roles=["member"])
    if age:
        with repository.context_manager.writer.get_engine().begin() as (
                connection):
            # Wherever role_stash's tables are.
            connection.execution_options(schema_translate_map={
                None: repository.schema})
            connection.execute(
                STASHES.update()
                .where(STASHES.c.instance_uuid == instance_uuid)
                .values(created_at=stashed.created_at - age))
    return stashed


def is_live(repository, instance_uuid):
    try:
        repository.get_stash(instance_uuid)
    except exception.StashNotFound:
        return False
    return True


def test_stashes_of_deleted_and_gone_instances_are_soft_deleted(
        nova, stashes, add_instances, instance, new_uuid):
    live, deleted = add_instances(instance(), instance(deleted=True))
    gone, young = new_uuid(), new_uuid()
    for instance_uuid in (live, deleted, gone):
        stash(stashes, instance_uuid, age=2 * DAY)
    stash(stashes, young)
    stashes.store_reply(deleted, "target", "{}", http_cache.Freshness(
        fresh_until=timeutils.utcnow() + DAY, stale_until=None, etag=None,
        last_modified=None))
    summary = orphans.delete_orphans(nova, stashes)
    assert (summary.scanned, summary.found_deleted, summary.found_gone,
            summary.gone_within_grace, summary.kept_on_recheck,
            summary.soft_deleted) == (4, 1, 1, 1, 0, 2)
    assert sorted(summary.orphans) == sorted([
        orphans.Orphan(deleted, orphans.DELETED, True),
        orphans.Orphan(gone, orphans.GONE, True)])
    assert [is_live(stashes, uuid) for uuid in (live, deleted, gone, young)
            ] == [True, False, False, True]
    assert stashes.get_replies(deleted) == {}
    again = orphans.delete_orphans(nova, stashes)
    assert (again.scanned, again.soft_deleted) == (2, 0)


def test_dry_run_finds_orphans_and_deletes_none(nova, stashes, add_instances,
                                                instance, new_uuid):
    [deleted] = add_instances(instance(deleted=True))
    gone = new_uuid()
    stash(stashes, deleted)
    stash(stashes, gone, age=2 * DAY)
    summary = orphans.delete_orphans(nova, stashes, dry_run=True)
    assert (summary.found_deleted, summary.found_gone,
            summary.soft_deleted) == (1, 1, 0)
    assert is_live(stashes, deleted) and is_live(stashes, gone)


def test_a_stash_written_before_its_instance_commits_waits_out_the_grace(
        nova, stashes, creating_instances, instance, new_uuid):
    """A deployment stashes alone, then the server create's transaction
    INSERTs the instance and has not committed yet when the command runs."""
    instance_uuid = new_uuid()
    stash(stashes, instance_uuid)
    create = creating_instances(instance(instance_uuid))
    summary = orphans.delete_orphans(nova, stashes)
    assert (summary.found_gone, summary.gone_within_grace,
            summary.soft_deleted) == (0, 1, 0)
    create.commit()
    summary = orphans.delete_orphans(nova, stashes, grace_period=0)
    assert (summary.found_gone, summary.soft_deleted) == (0, 0)
    assert is_live(stashes, instance_uuid)


def test_an_instance_committed_after_the_scan_keeps_its_stash(
        nova, stashes, creating_instances, instance, new_uuid,
        cell_database):
    """The instance's row commits after the command found the stash
    orphaned, just before the command deletes it: the check made with
    the delete (one database: in the UPDATE itself; two: the re-read of
    Nova's rows just before) sees the instance and keeps the stash."""
    instance_uuid = new_uuid()
    stash(stashes, instance_uuid, age=2 * DAY)
    create = creating_instances(instance(instance_uuid))
    one_database = stashes.context_manager is cell_database
    # The statement before which the instance commits: the delete, or the
    # second read of Nova's instances (the first is the scan's).
    reads_of_instances = []

    def commit_before(conn, cursor, statement, parameters, context, many):
        if one_database:
            # In the schema of role_stash's own, where it has one.
            due = re.match(r"UPDATE \S*role_stashes\b", statement)
        else:
            if "FROM instances" in statement:
                reads_of_instances.append(statement)
            due = len(reads_of_instances) == 2
        if due and create.is_active:
            create.commit()

    sa.event.listen(sa.Engine, "before_cursor_execute", commit_before)
    try:
        summary = orphans.delete_orphans(nova, stashes)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", commit_before)
    assert not create.is_active, "the instance never committed"
    assert (summary.found_gone, summary.kept_on_recheck,
            summary.soft_deleted) == (1, 1, 0)
    assert is_live(stashes, instance_uuid)


def run_manage(capsys, *arguments):
    code = manage.main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_delete_orphans_command_reports_counts_as_text_and_json(
        nova_shared_url, cell_database, add_instances, instance, new_uuid,
        capsys):
    repository = api.StashRepository(cell_database)
    [deleted] = add_instances(instance(deleted=True))
    young = new_uuid()
    stash(repository, deleted)
    stash(repository, young)
    repository.close()
    code, out, _ = run_manage(capsys, "--database-url", nova_shared_url,
                              "delete-orphans", "--dry-run", "--json")
    assert code == manage.OK
    found = json.loads(out)
    assert (found["found_deleted"], found["found_gone"],
            found["gone_within_grace"], found["soft_deleted"],
            found["grace_period"], found["dry_run"]) == (
        1, 0, 1, 0, conf_manage.ORPHAN_GRACE_PERIOD, True)
    assert found["orphans"] == [{"instance_uuid": deleted,
                                 "instance": "deleted",
                                 "soft_deleted": False}]
    code, out, _ = run_manage(capsys, "delete-orphans", "--nova-database-url",
                              nova_shared_url, "--grace-period", "0")
    assert code == manage.OK
    assert "found deleted: 1 (Nova deleted the instance)" in out
    assert "soft-deleted: 2" in out
    code, _, err = run_manage(capsys, "--database-url", nova_shared_url,
                              "delete-orphans", "--grace-period", "-1")
    assert code == manage.BAD_INPUT and "grace_period" in err
