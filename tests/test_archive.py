"""Archive: soft-deleted stashes, with their roles, and the cached replies
of instances with no live stash, moved to the shadow tables batch by
batch; live stashes untouched; reads and writes going on meanwhile; a run
killed mid-way loses and doubles nothing."""

import contextlib
import datetime
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from role_stash.cmd import manage as role_stash_manage
from role_stash.db import archive
from role_stash.nova import http_cache
from tests.helpers import deleted_on
from tests.helpers import uuid_of

MANAGE = pathlib.Path(sys.executable).with_name("role-stash-manage")
ROLES = ["zeta", "alpha", "member"]
NOW = datetime.datetime(2026, 11, 30, 12, 0, 0)
FRESH = http_cache.Freshness(NOW + datetime.timedelta(minutes=1), None,
                             '"v1"', None)


def stash(repository, index, roles=ROLES):
    return repository.stash_roles(uuid_of(index), project_id=f"p-{index}",
                                  user_id="u", roles=list(roles))


def stashes_with_roles(table_rows, stashes, roles):
    """{stash row: [its roles' rows]} of a stash table and its roles'."""
    found = {row: [] for row in table_rows(stashes)}
    by_id = {row[0]: row for row in found}
    for role in table_rows(roles):
        found[by_id[role[0]]].append(role)
    return found


def test_archive_moves_deleted_stashes_with_their_roles_in_order(
        repository, table_rows):
    for index in range(4):
        stash(repository, index, roles=ROLES[index % 3:] + ["reader"])
    repository.delete_stash(uuid_of(0))
    repository.delete_stash(uuid_of(2))
    before = stashes_with_roles(table_rows, "role_stashes", "role_stash_roles")
    summary = repository.archive_deleted()
    assert dict(summary.rows) == {"role_stashes": 2, "role_stash_roles": 6,
                                  "role_stash_vendordata": 0}
    assert summary.complete and not summary.dry_run
    archived = stashes_with_roles(table_rows, "role_stashes_shadow",
                                  "role_stash_roles_shadow")
    live = stashes_with_roles(table_rows, "role_stashes", "role_stash_roles")
    # Every column, the id and the roles' positions and names as they were.
    assert archived == {row: roles for row, roles in before.items()
                        if row[9] != 0}
    assert live == {row: roles for row, roles in before.items()
                    if row[9] == 0}
    assert repository.get_stash(uuid_of(1)).roles == ("alpha", "member",
                                                      "reader")


def test_live_stashes_are_untouched(repository, table_rows):
    for index in range(3):
        stash(repository, index)
    repository.store_reply(uuid_of(1), "service", '{"a": 1}', FRESH, now=NOW)
    tables = ("role_stashes", "role_stash_roles", "role_stash_vendordata")
    before = [table_rows(table) for table in tables]
    assert repository.archive_deleted().total == 0
    assert [table_rows(table) for table in tables] == before
    assert table_rows("role_stashes_shadow") == []


def test_archive_moves_the_replies_of_instances_with_no_live_stash(
        repository, table_rows):
    stash(repository, 2)
    stash(repository, 1)
    repository.store_reply(uuid_of(1), "service", '{"live": 1}', FRESH,
                           now=NOW)
    repository.delete_stash(uuid_of(2))
    # A GET that stored its reply after the delete, and an instance that
    # never had a stash.
    repository.store_reply(uuid_of(2), "service", '{"late": 1}', FRESH,
                           now=NOW)
    repository.store_reply(uuid_of(3), "other", '{"none": 1}', FRESH,
                           now=NOW)
    unused = sorted(row[1:] for row in table_rows("role_stash_vendordata")
                    if row[1] != uuid_of(1))
    summary = repository.archive_deleted()
    assert dict(summary.rows) == {"role_stashes": 1, "role_stash_roles": 3,
                                  "role_stash_vendordata": 2}
    assert list(repository.get_replies(uuid_of(1))) == ["service"]
    assert repository.get_replies(uuid_of(2)) == {}
    # Every column as it was, but the id, which the shadow table gives.
    archived = sorted(row[1:] for row in table_rows(
        "role_stash_vendordata_shadow"))
    assert archived == unused
    assert [row[:3] for row in archived] == [
        (uuid_of(2), "service", '{"late": 1}'),
        (uuid_of(3), "other", '{"none": 1}')]


def test_archive_before_a_date_leaves_later_deletions(repository,
                                                      table_rows):
    for index in range(3):
        stash(repository, index)
    deleted_on(repository, 0, datetime.datetime(2026, 11, 1))
    deleted_on(repository, 1, datetime.datetime(2026, 11, 3))
    summary = repository.archive_deleted(
        before=datetime.datetime(2026, 11, 2, tzinfo=datetime.timezone.utc))
    assert summary.rows["role_stashes"] == 1
    assert [row[1] for row in table_rows("role_stashes_shadow")] == [
        uuid_of(0)]
    assert repository.archive_deleted().rows["role_stashes"] == 1


def test_a_stash_deleted_while_the_archive_runs_is_moved_whole(
        repository, table_rows):
    for index in range(6):
        stash(repository, index)
    for index in range(4):
        repository.delete_stash(uuid_of(index))
    deleted_meanwhile = []

    def delete_one_during_the_run(summary):
        if not deleted_meanwhile:
            repository.delete_stash(uuid_of(4))
            deleted_meanwhile.append(summary.rows["role_stashes"])

    summary = repository.archive_deleted(
        batch_size=1, until_complete=True,
        progress=delete_one_during_the_run)
    assert deleted_meanwhile == [1]
    assert summary.rows["role_stashes"] == 5
    archived = stashes_with_roles(table_rows, "role_stashes_shadow",
                                  "role_stash_roles_shadow")
    assert sorted(row[1] for row in archived) == [uuid_of(i)
                                                  for i in range(5)]
    assert all(len(roles) == 3 for roles in archived.values())
    assert [row[1] for row in table_rows("role_stashes")] == [uuid_of(5)]
    assert len(table_rows("role_stash_roles")) == 3


def test_each_batch_is_one_transaction_of_at_most_batch_size_stashes(
        repository, transactions):
    for index in range(8):
        stash(repository, index)
    for index in range(7):
        repository.delete_stash(uuid_of(index))
    with transactions() as committed:
        summary = repository.archive_deleted(batch_size=3)
    assert summary.rows["role_stashes"] == 7
    writes = [transaction for transaction in committed
              if any(s.startswith(("INSERT", "DELETE")) for s in transaction)]
    moved = []
    for transaction in writes:
        changed = {}
        for statement in transaction:
            if statement.startswith(("INSERT", "DELETE")):
                verb, _, table = statement.split()[:3]
                changed[verb, table.strip('"`')] = statement.rowcount
        # Copied and deleted in the same transaction, row for row.
        stashes = changed.get(("DELETE", "role_stashes"), 0)
        assert changed.get(("INSERT", "role_stashes_shadow"), 0) == stashes
        roles = changed.get(("DELETE", "role_stash_roles"), 0)
        assert changed.get(("INSERT", "role_stash_roles_shadow"), 0) == roles
        assert roles == 3 * stashes
        assert stashes <= 3
        moved.append(stashes)
    assert moved == [3, 3, 1]


def test_one_run_takes_stashes_deleted_in_any_order_in_full_batches(
        repository, table_rows):
    for index in range(7):
        stash(repository, index)
    for index in reversed(range(6)):
        repository.delete_stash(uuid_of(index))
    summary = repository.archive_deleted(batch_size=2)
    assert summary.rows["role_stashes"] == 6 and summary.complete
    # 3 full batches, one that finds no more stashes, one of replies.
    assert summary.batches == 5
    assert len(table_rows("role_stashes_shadow")) == 6


def test_max_rows_bounds_a_run_and_until_complete_goes_on(repository,
                                                           table_rows):
    for index in range(6):
        stash(repository, index)
    for index in range(5):
        repository.delete_stash(uuid_of(index))
    repository.store_reply(uuid_of(9), "service", "{}", FRESH, now=NOW)
    first = repository.archive_deleted(max_rows=2)
    assert (first.rows["role_stashes"], first.complete) == (2, False)
    # Stashes and replies count; roles go with their stash, uncounted.
    second = repository.archive_deleted(max_rows=4)
    assert (second.rows["role_stashes"], second.rows["role_stash_roles"],
            second.rows["role_stash_vendordata"], second.complete) == (
        3, 9, 1, True)
    for index in range(5, 10):
        stash(repository, index + 10)
        repository.delete_stash(uuid_of(index + 10))
    stash(repository, 99)
    rest = repository.archive_deleted(max_rows=2, until_complete=True)
    assert (rest.rows["role_stashes"], rest.complete) == (5, True)
    # max_rows bounds each batch of an until_complete run, as
    # nova-role_stash_manage.
    assert rest.batches >= 3
    assert len(table_rows("role_stashes_shadow")) == 10


def test_dry_run_counts_what_would_move_and_writes_nothing(
        repository, table_rows, count_statements):
    for index in range(6):
        stash(repository, index)
    for index in range(5):
        repository.delete_stash(uuid_of(index))
    repository.store_reply(uuid_of(9), "service", "{}", FRESH, now=NOW)
    tables = ("role_stashes", "role_stash_roles", "role_stash_vendordata")
    before = [table_rows(table) for table in tables]
    with count_statements() as statements:
        bounded = repository.archive_deleted(max_rows=3, dry_run=True)
        whole = repository.archive_deleted(dry_run=True)
    assert statements and not [s for s in statements if s.lstrip().upper(
    ).startswith(("INSERT", "UPDATE", "DELETE"))]
    assert [table_rows(table) for table in tables] == before
    assert bounded.dry_run and bounded.batches == 0
    assert dict(whole.rows) == {"role_stashes": 5, "role_stash_roles": 15,
                                "role_stash_vendordata": 1}
    assert whole.complete
    real = repository.archive_deleted(max_rows=3)
    assert dict(bounded.rows) == dict(real.rows)
    assert bounded.complete is real.complete is False


def test_an_archived_stash_id_is_never_given_again(repository, table_rows):
    """SQLite gives a new row the largest id plus one: the archive leaves
    the newest stash row in place, so no new stash takes the id of an
    archived one (whose roles name it)."""
    stash(repository, 0)
    stash(repository, 1)
    repository.delete_stash(uuid_of(1))
    repository.archive_deleted()
    stash(repository, 2)
    repository.delete_stash(uuid_of(2))
    stash(repository, 3)
    repository.archive_deleted()
    ids = [row[0] for row in table_rows("role_stashes_shadow")]
    live_ids = [row[0] for row in table_rows("role_stashes")]
    assert len(ids) == 2 and not set(ids) & set(live_ids)
    assert [row[1] for row in table_rows("role_stashes")] == [
        uuid_of(0), uuid_of(3)]
    # Nor after a purge of the live table while archived rows are kept.
    deleted_on(repository, 3, datetime.datetime(2026, 1, 1))
    repository.purge_deleted(before=datetime.datetime(2026, 6, 1))
    stash(repository, 4)
    repository.delete_stash(uuid_of(4))
    stash(repository, 5)
    repository.archive_deleted()
    ids = [row[0] for row in table_rows("role_stashes_shadow")]
    assert len(ids) == len(set(ids)) >= 2


def test_reads_and_writes_go_on_while_an_archive_runs(repository,
                                                      table_rows):
    """A reader and a writer thread work while the archive runs: after
    every batch, the archive waits until each has done one more call, so
    the calls fall between and during batches. Every read answers, and
    right; every write is kept."""
    for index in range(80):
        stash(repository, index, roles=[f"r-{index}", "member"])
    for index in range(60):
        repository.delete_stash(uuid_of(index))
    calls = {"read": 0, "write": 0}
    failures = []
    changed = threading.Condition()
    done = threading.Event()

    def reader():
        index = 60
        while not done.is_set():
            index = 60 + (index + 1) % 20
            try:
                found = repository.get_stash(uuid_of(index))
                if found.roles != (f"r-{index}", "member"):
                    failures.append(("read", index, found.roles))
            except Exception as error:
                failures.append(("read", index, error))
            with changed:
                calls["read"] += 1
                changed.notify_all()

    def writer():
        index = 1000
        while not done.is_set():
            index += 1
            try:
                stash(repository, index)
            except Exception as error:
                failures.append(("write", index, error))
            with changed:
                calls["write"] += 1
                changed.notify_all()

    def wait_for_both(summary):
        seen = dict(calls)
        with changed:
            assert changed.wait_for(lambda: all(
                calls[kind] > seen[kind] for kind in calls), timeout=30)

    threads = [threading.Thread(target=reader), threading.Thread(
        target=writer)]
    for thread in threads:
        thread.start()
    try:
        summary = repository.archive_deleted(batch_size=10,
                                             until_complete=True,
                                             progress=wait_for_both)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert summary.rows["role_stashes"] == 60 and summary.batches >= 6
    assert calls["read"] >= summary.batches
    written = calls["write"]
    live = table_rows("role_stashes")
    assert len(live) == 20 + written
    assert len(table_rows("role_stash_roles")) == 2 * 20 + 3 * written
    for index in range(1001, 1001 + written):
        assert repository.get_stash(uuid_of(index)).roles == tuple(ROLES)


def fill_deleted(repository, count):
    """Write count soft-deleted stashes of 3 roles each, and a cached
    reply of every tenth instance, in a few statements."""
    engine = repository.context_manager.writer.get_engine()
    deleted_at = datetime.datetime(2026, 11, 1)
    with engine.begin() as connection:
        connection.execute(sa.insert(archive.STASHES), [
            {"instance_uuid": uuid_of(index), "project_id": f"p-{index}",
             "user_id": "u", "created_at": deleted_at,
             "deleted_at": deleted_at, "deleted": index + 1}
            for index in range(count)])
        ids = connection.execute(sa.select(archive.STASHES.c.id)).scalars()
        connection.execute(sa.insert(archive.ROLES), [
            {"stash_id": stash_id, "position": position, "name": name}
            for stash_id in ids for position, name in enumerate(ROLES)])
        connection.execute(sa.insert(archive.REPLIES), [
            {"instance_uuid": uuid_of(index), "target": "service",
             "body": f'{{"n": {index}}}', "stored_at": deleted_at,
             "keep_until": deleted_at} for index in range(0, count, 10)])


def contents(table_rows):
    """Every stash, live or archived, with its roles, and every reply
    (without its id, which the shadow table gives anew)."""
    stashes = []
    for stashes_table, roles_table in (
            ("role_stashes", "role_stash_roles"),
            ("role_stashes_shadow", "role_stash_roles_shadow")):
        for row, roles in stashes_with_roles(table_rows, stashes_table,
                                             roles_table).items():
            stashes.append((row, tuple(roles)))
    replies = [row[1:] for table in ("role_stash_vendordata",
                                     "role_stash_vendordata_shadow")
               for row in table_rows(table)]
    return sorted(stashes), sorted(replies)


def test_an_archive_killed_mid_run_loses_and_doubles_nothing(
        repository, table_rows, migrated_url):
    """A real role-stash-manage process, archiving one stash a batch, is
    killed with SIGKILL while it runs: every stash is whole, with its
    roles, in one table or the other, none twice; a second run moves the
    rest, and the rows are exactly those there were."""
    fill_deleted(repository, 400)
    stash(repository, 999)  # the newest row: SQLite's stays in place
    before = contents(table_rows)
    process = subprocess.Popen(
        [str(MANAGE), "--database-url", migrated_url, "archive-deleted",
         "--until-complete", "--batch-size", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(table_rows("role_stashes_shadow")) < 20:
            assert time.monotonic() < deadline, "the archive did not start"
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.02)
                pytest.fail("the archive ended before it could be killed: "
                            + process.stderr.read().decode())
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    archived = len(table_rows("role_stashes_shadow"))
    assert 20 <= archived < 400
    stashes, replies = contents(table_rows)
    assert stashes == before[0] and replies == before[1]
    summary = repository.archive_deleted(until_complete=True)
    assert summary.rows["role_stashes"] == 400 - archived
    assert contents(table_rows) == before
    assert len(table_rows("role_stashes_shadow")) == 400
    assert len(table_rows("role_stash_vendordata_shadow")) == 40


@pytest.fixture
def manage(migrated_url, repository, capsys):
    """manage(*arguments) -> (exit code, stdout, stderr) of
    role-stash-manage on the test's migrated database."""
    def run(*arguments):
        code = role_stash_manage.main(
            ["--database-url", migrated_url, *arguments])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


def test_archive_deleted_prints_its_rows_per_table_also_as_json(
        repository, manage):
    for index in range(3):
        stash(repository, index)
    repository.delete_stash(uuid_of(0))
    code, out, err = manage("archive-deleted", "--dry-run")
    assert code == role_stash_manage.OK, err
    assert out.splitlines() == [
        "archive-deleted --dry-run: rows it would move to the shadow tables "
        "(nothing written)",
        "  role_stashes                    1",
        "  role_stash_roles                3",
        "  role_stash_vendordata           0"]
    code, out, err = manage("archive-deleted", "--json")
    assert code == role_stash_manage.OK, err
    summary = json.loads(out)
    assert summary.pop("seconds") >= 0
    assert summary == {
        "operation": "archive", "dry_run": False, "complete": True,
        "batches": 2, "total": 4,
        "rows": {"role_stashes": 1, "role_stash_roles": 3,
                 "role_stash_vendordata": 0}}


def test_archive_exits_5_while_rows_are_left_and_0_once_done(repository,
                                                             manage):
    for index in range(4):
        stash(repository, index)
    for index in range(3):
        repository.delete_stash(uuid_of(index))
    code, out, _ = manage("archive-deleted", "--max-rows", "2")
    assert code == role_stash_manage.ROWS_LEFT and "--until-complete" in out
    # "archive" is the same command.
    code, out, _ = manage("archive", "--max-rows", "2", "--json")
    assert (code == role_stash_manage.OK
            and json.loads(out)["rows"]["role_stashes"] == 1)
    assert manage("archive-deleted", "--json")[0] == role_stash_manage.OK
    for arguments in (["--max-rows", "0"], ["--batch-size", "x"],
                      ["--before", "yesterday"]):
        with pytest.raises(SystemExit) as refused:
            manage("archive-deleted", *arguments)
        assert refused.value.code == role_stash_manage.BAD_INPUT
    code, _, err = manage("archive-deleted", "--batch-size", "10001")
    assert code == role_stash_manage.BAD_INPUT and "batch_size" in err


@pytest.mark.parametrize("command", [["archive-deleted"], ["purge", "--all"]])
def test_a_progress_bar_is_drawn_on_a_terminal_and_not_when_piped(
        repository, manage, monkeypatch, terminal, command):
    for index in range(6):
        stash(repository, index)
    for index in range(5):
        repository.delete_stash(uuid_of(index))
    if command[0] == "purge":
        repository.archive_deleted(max_rows=3)
    with os.fdopen(os.dup(terminal.fd), "w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        code, out, _ = manage(*command, "--batch-size", "1")
        monkeypatch.undo()
    drawn = terminal.read()
    assert code == role_stash_manage.OK and "batches" in out.splitlines()[0]
    assert sum(int(line.split()[-1]) for line in out.splitlines()[1:]) == 20
    # tqdm's bar, redrawn in place up to its last state: 20 rows of 20.
    assert "\r" in drawn and "20/20" in drawn and "row/s" in drawn
    # Piped (pytest captures stderr): no bar.
    for index in range(6, 8):
        stash(repository, index)
        repository.delete_stash(uuid_of(index))
    stash(repository, 9)
    code, out, err = manage(*command, "--batch-size", "1")
    assert code == role_stash_manage.OK and "batches" in out.splitlines()[0]
    assert "\r" not in err and "row/s" not in err
