"""Import from Nova: each live instance's boot_roles, in Nova's real
instances and instance_system_metadata tables (made by Nova's migrations;
rows by Nova's objects and by INSERTs into its tables), stashed with its
project and user; unfit rows refused and reported, deleted instances
skipped, a second run a no-op; through the repository and through
role-stash-manage import-nova, with Nova's tables in role_stash's database
and in another."""

import json
import subprocess
import sys

from nova import objects
import pytest
import sqlalchemy as sa

from role_stash.cmd import manage
from role_stash.db import api
from role_stash.db import models
from role_stash.db import nova_tables
from role_stash.db import schemas as stash_schemas
from role_stash.nova import boot_roles as nova_import

# 255 characters of role names, as Nova's column cuts a longer value.
CUT_SHORT = ",".join(f"project-role-{number:02d}"
                     for number in range(20))[:255]
assert len(CUT_SHORT) == 255

# Nova's row -> the reason it is refused.
UNFIT = {
    "truncated": {"boot_roles": CUT_SHORT},
    "empty": {"boot_roles": ""},
    "invalid_name": {"boot_roles": "member,   ,reader"},
    "duplicate_name": {"boot_roles": "member,reader,member"},
    "no_project_or_user": {"project_id": None},
    "invalid_project_or_user": {"user_id": " user-with-blanks "},
    "no_boot_roles": {"boot_roles": None},
    "several_values": {"boot_roles": ["member", "reader"]},
}


@pytest.fixture
def nova(cell_database):
    """Nova's database, read by role_stash: the repository's database."""
    return nova_tables.NovaDatabase(cell_database)


@pytest.fixture
def cell_repository(cell_database):
    """The StashRepository of the cell database."""
    repository = api.StashRepository(cell_database)
    yield repository
    repository.close()


@pytest.fixture
def cell_engine(cell_database):
    return cell_database.writer.get_engine()


@pytest.fixture
def mixed(add_instances, instance):
    """A mix of Nova's rows: {kind: [UUIDs]}: taken (names kept exactly:
    unicode, a leading blank), deleted, and one per reason of UNFIT, an
    instance with no valid UUID among them."""
    taken = [instance(boot_roles="member,reader"),
             instance(project_id="project-b", boot_roles="ロール, reader"),
             instance(boot_roles="admin")]
    deleted = [instance(deleted=True), instance(deleted=True,
                                                boot_roles=CUT_SHORT)]
    unfit = {reason: instance(**row) for reason, row in UNFIT.items()}
    unfit["invalid_uuid"] = instance("not-a-uuid-but-fits-nova-s-column")
    add_instances(*taken, *deleted, *unfit.values())
    return {"taken": [row["uuid"] for row in taken],
            "deleted": [row["uuid"] for row in deleted],
            **{reason: [row["uuid"]] for reason, row in unfit.items()}}


def stash_rows(engine):
    """Every role_stashes row and its roles, to compare whole states."""
    stashes = models.Stash.__table__
    roles = models.StashRole.__table__
    with engine.connect() as connection:
        # Wherever role_stash's tables are.
        connection.execution_options(schema_translate_map={
            None: stash_schemas.locate(connection)})
        return (connection.execute(sa.select(stashes).order_by(
                    stashes.c.id)).all(),
                connection.execute(sa.select(roles).order_by(
                    roles.c.stash_id, roles.c.position)).all())


def test_import_stashes_live_instances_boot_roles_with_project_and_user(
        nova, cell_repository, mixed):
    summary = nova_import.import_from_nova(nova, cell_repository)
    assert (summary.taken, summary.already_stashed,
            summary.skipped_deleted) == (3, 0, 2)
    stashes = cell_repository.get_stashes(mixed["taken"])
    assert [stashes[uuid].roles for uuid in mixed["taken"]] == [
        ("member", "reader"), ("ロール", " reader"), ("admin",)]
    first = stashes[mixed["taken"][0]]
    assert (first.project_id, first.user_id, first.project_domain_id,
            first.user_domain_id) == ("project-a", "user-a", None, None)
    assert stashes[mixed["taken"][1]].project_id == "project-b"
    assert cell_repository.get_stashes(mixed["deleted"]) == {}


def test_import_refuses_each_unfit_row_naming_instance_and_reason(
        nova, cell_repository, mixed):
    summary = nova_import.import_from_nova(nova, cell_repository)
    expected = {reason: 1 for reason in [*UNFIT, "invalid_uuid"]}
    assert dict(summary.refused) == expected
    assert {refusal.instance_uuid: refusal.reason
            for refusal in summary.refusals} == {
        mixed[reason][0]: reason for reason in expected}
    details = {refusal.reason: refusal.detail for refusal in summary.refusals}
    assert "probably cut short" in details["truncated"]
    assert details["invalid_name"] == (
        "role [1] of boot_roles: holds only whitespace")
    assert details["duplicate_name"] == (
        "roles [0] and [2] of boot_roles are the same name")
    assert details["no_project_or_user"] == (
        "the instance's project_id is empty")
    refused = [mixed[reason][0] for reason in UNFIT]
    assert cell_repository.get_stashes(refused) == {}


def test_a_second_import_changes_nothing(nova, cell_repository, cell_engine,
                                         mixed):
    first = nova_import.import_from_nova(nova, cell_repository)
    before = stash_rows(cell_engine)
    second = nova_import.import_from_nova(nova, cell_repository)
    assert stash_rows(cell_engine) == before
    assert (second.taken, second.already_stashed, second.skipped_deleted) == (
        0, first.taken, first.skipped_deleted)
    assert second.refused == first.refused


def test_dry_run_counts_what_it_would_take_and_writes_nothing(
        nova, cell_repository, cell_engine, mixed):
    dry = nova_import.import_from_nova(nova, cell_repository, dry_run=True)
    assert stash_rows(cell_engine) == ([], [])
    done = nova_import.import_from_nova(nova, cell_repository)
    assert dry.as_dict() == {**done.as_dict(), "dry_run": True}


def test_existing_stashes_are_kept_the_different_one_reported(
        nova, cell_repository, mixed):
    same, other, _ = mixed["taken"]
    cell_repository.stash_roles(same, project_id="project-a",
                                user_id="user-a", roles=["member", "reader"],
                                project_domain_id="default")
    cell_repository.stash_roles(other, project_id="project-b",
                                user_id="user-a", roles=["observer"])
    # A stash covers an instance whose Nova row is unfit.
    cut_short = mixed["truncated"][0]
    cell_repository.stash_roles(cut_short, project_id="project-a",
                                user_id="user-a", roles=["member"])
    summary = nova_import.import_from_nova(nova, cell_repository)
    assert (summary.taken, summary.already_stashed) == (1, 2)
    assert summary.refused["different_stash"] == 1
    assert "truncated" not in summary.refused
    assert [refusal for refusal in summary.refusals
            if refusal.reason == "different_stash"][0].instance_uuid == other
    assert cell_repository.get_stash(other).roles == ("observer",)
    assert cell_repository.get_stash(same).project_domain_id == "default"


def test_batches_of_any_size_read_every_instance_once(
        nova, cell_repository, add_instances, instance, count_statements):
    uuids = add_instances(*(instance() for _ in range(7)))
    read = []
    with count_statements() as statements:
        summary = nova_import.import_from_nova(
            nova, cell_repository, batch_size=3, progress=read.append)
    assert read == [3, 3, 1]
    assert summary.taken == 7
    assert set(cell_repository.get_stashes(uuids)) == set(uuids)
    nova_reads = [statement for statement in statements
                  if "instance_system_metadata" in statement]
    assert len(nova_reads) == 3
    with pytest.raises(api.exception.InvalidArgument, match="batch_size"):
        nova_import.import_from_nova(nova, cell_repository, batch_size=1001)


def test_instances_made_by_novas_objects_are_imported(
        nova_context_manager, nova_repository, user_context, new_uuid):
    instance_uuid = new_uuid()
    with nova_context_manager.writer.using(user_context):
        objects.Instance(
            context=user_context, uuid=instance_uuid,
            project_id=user_context.project_id, user_id=user_context.user_id,
            hostname="guest", vm_state="active",
            system_metadata={"boot_roles": ",".join(user_context.roles)}
        ).create()
    nova = nova_tables.NovaDatabase(nova_context_manager)
    assert nova_import.import_from_nova(nova, nova_repository).taken == 1
    stash = nova_repository.get_stash(instance_uuid)
    assert (stash.project_id, stash.roles) == (user_context.project_id,
                                               tuple(user_context.roles))


def run_manage(capsys, *arguments):
    code = manage.main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_import_nova_command_on_nova_s_database_prints_a_json_summary(
        nova_shared_url, mixed, capsys):
    """One database, named once: role_stash's tables beside Nova's."""
    code, out, _ = run_manage(capsys, "--database-url", nova_shared_url,
                              "import-nova", "--json", "--max-listed", "3")
    assert code == manage.OK
    summary = json.loads(out)
    assert (summary["taken"], summary["already_stashed"],
            summary["skipped_deleted"], summary["refused_total"],
            summary["refusals_listed"]) == (3, 0, 2, 9, 3)
    assert summary["refused"]["truncated"] == 1
    code, out, _ = run_manage(capsys, "import-nova", "--nova-database-url",
                              nova_shared_url)
    assert code == manage.OK
    assert "taken: 0\nalready stashed: 3\nrefused: 9\n" in out


def test_import_nova_command_into_another_database(
        nova_shared_url, mixed, migrated_url, repository,
        tmp_path, capsys):
    """Nova's database by nova.conf, role_stash's by its URL."""
    nova_conf = tmp_path / "nova.conf"
    nova_conf.write_text(f"[database]\nconnection = {nova_shared_url}\n")
    code, out, _ = run_manage(capsys, "--database-url", migrated_url,
                              "import-nova", "--nova-config-file",
                              str(nova_conf), "--dry-run", "--json")
    assert code == manage.OK and json.loads(out)["taken"] == 3
    assert repository.get_stashes(mixed["taken"]) == {}
    code, out, _ = run_manage(capsys, "--database-url", migrated_url,
                              "import-nova", "--nova-config-file",
                              str(nova_conf), "--json")
    assert code == manage.OK and json.loads(out)["taken"] == 3
    assert set(repository.get_stashes(mixed["taken"])) == set(mixed["taken"])
    code, _, err = run_manage(capsys, "--database-url", migrated_url,
                              "import-nova")
    assert code == manage.BAD_INPUT and "no Nova instances" in err


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_a_progress_bar_is_drawn_on_a_terminal_only(nova_shared_url, mixed,
                                                    tmp_path, terminal):
    """role-stash-manage's own process, its standard error a terminal (a
    pseudo-terminal), then a pipe."""
    command = [sys.executable, "-m", "role_stash.cmd.manage", "--database-url",
               nova_shared_url, "import-nova", "--dry-run"]
    on_terminal = subprocess.run(command, stderr=terminal.fd,
                                 stdout=subprocess.PIPE, cwd=tmp_path,
                                 timeout=120)
    drawn = terminal.read().encode()
    assert on_terminal.returncode == manage.OK
    assert b"instance/s" in drawn and b"14/14" in drawn
    piped = subprocess.run(command, capture_output=True, cwd=tmp_path,
                           timeout=120)
    assert piped.returncode == manage.OK
    assert b"instance/s" not in piped.stderr
    assert b"would take: 3" in piped.stdout
