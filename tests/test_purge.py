"""Purge: what was deleted before a date removed for good, from the shadow
tables and from the live ones, batch by batch; `purge` asks for --before
or --all."""

import datetime
import json

import pytest

from role_stash.cmd import manage as role_stash_manage
from role_stash.nova import http_cache
from tests.helpers import deleted_on
from tests.helpers import uuid_of

ROLES = ["member", "reader", "admin"]
NOV = {day: datetime.datetime(2026, 11, day) for day in range(1, 31)}
LATER = datetime.datetime(2099, 1, 1)
LIVE_TABLES = ("role_stashes", "role_stash_roles", "role_stash_vendordata")
SHADOW_TABLES = tuple(f"{table}_shadow" for table in LIVE_TABLES)


def stash(repository, index):
    return repository.stash_roles(uuid_of(index), project_id="p",
                                  user_id="u", roles=ROLES)


def reply(repository, index, keep_until):
    """Cache a reply for an instance, of use until keep_until."""
    stored = keep_until - datetime.timedelta(minutes=1)
    repository.store_reply(
        uuid_of(index), "service", f'{{"n": {index}}}',
        http_cache.Freshness(keep_until, None, None, None), now=stored)


def instances(table_rows, table):
    return sorted(row[1] for row in table_rows(table))


def records(summary):
    """The stashes and replies a purge took (roles go along)."""
    return sum(count for table, count in summary.rows.items()
               if "roles" not in table)


def counts(summary):
    return [summary.rows[table] for table in (
        "role_stashes_shadow", "role_stash_roles_shadow",
        "role_stash_vendordata_shadow", "role_stashes", "role_stash_roles",
        "role_stash_vendordata")]


@pytest.fixture
def history(repository):
    """Stashes 0 and 1 deleted on 1 and 3 November and archived, with a
    reply each of use until then; stashes 2 and 3 deleted on 1 and 3
    November and still in the live table; stash 4 live, with a reply of
    use until 1 November, and a reply of use for years (instance 5)."""
    for index in range(5):
        stash(repository, index)
    for index, day in ((0, 1), (1, 3)):
        deleted_on(repository, index, NOV[day])
        reply(repository, index, NOV[day])
    repository.archive_deleted()
    for index, day in ((2, 1), (3, 3)):
        deleted_on(repository, index, NOV[day])
    reply(repository, 4, NOV[1])
    reply(repository, 5, LATER)
    return repository


def test_purge_removes_what_was_deleted_before_the_date_everywhere(
        history, table_rows):
    summary = history.purge_deleted(before=NOV[2])
    assert counts(summary) == [1, 3, 1, 1, 3, 1]
    assert summary.complete
    assert instances(table_rows, "role_stashes_shadow") == [uuid_of(1)]
    assert len(table_rows("role_stash_roles_shadow")) == 3
    assert instances(table_rows, "role_stash_vendordata_shadow") == [
        uuid_of(1)]
    assert instances(table_rows, "role_stashes") == [uuid_of(3), uuid_of(4)]
    assert instances(table_rows, "role_stash_vendordata") == [uuid_of(5)]
    assert history.get_stash(uuid_of(4)).roles == tuple(ROLES)


def test_purge_keeps_what_was_deleted_on_or_after_the_date(history,
                                                           table_rows):
    before = {table: table_rows(table)
              for table in LIVE_TABLES + SHADOW_TABLES}
    assert history.purge_deleted(before=NOV[1]).total == 0
    assert {table: table_rows(table) for table in before} == before


def test_purge_everything_leaves_live_stashes_and_replies_still_of_use(
        history, table_rows):
    summary = history.purge_deleted(everything=True)
    assert counts(summary) == [2, 6, 2, 2, 6, 1]
    for table in SHADOW_TABLES:
        assert table_rows(table) == []
    assert instances(table_rows, "role_stashes") == [uuid_of(4)]
    assert len(table_rows("role_stash_roles")) == 3
    assert instances(table_rows, "role_stash_vendordata") == [uuid_of(5)]


def test_each_purge_batch_is_one_transaction_of_at_most_batch_size_stashes(
        repository, transactions):
    for index in range(8):
        stash(repository, index)
    for index in range(7):
        deleted_on(repository, index, NOV[1])
    repository.archive_deleted(max_rows=4)
    with transactions() as committed:
        summary = repository.purge_deleted(before=NOV[2], batch_size=3)
    assert counts(summary)[:5] == [4, 12, 0, 3, 9]
    removed = []
    for transaction in committed:
        deletes = {statement.split()[2].strip('"`'): statement.rowcount
                   for statement in transaction
                   if statement.startswith("DELETE")}
        if deletes:
            assert set(deletes) in ({"role_stashes_shadow",
                                     "role_stash_roles_shadow"},
                                    {"role_stashes", "role_stash_roles"})
            stashes = deletes.get("role_stashes_shadow",
                                  deletes.get("role_stashes"))
            roles = deletes.get("role_stash_roles_shadow",
                                deletes.get("role_stash_roles"))
            assert 1 <= stashes <= 3 and roles == 3 * stashes
            removed.append(stashes)
    assert removed == [3, 1, 3]


def test_purge_max_rows_bounds_a_run_and_until_complete_goes_on(history):
    first = history.purge_deleted(everything=True, max_rows=3)
    assert counts(first) == [2, 6, 1, 0, 0, 0] and not first.complete
    rest = history.purge_deleted(everything=True, max_rows=1,
                                 until_complete=True)
    assert counts(rest) == [0, 0, 1, 2, 6, 1] and rest.complete
    # Batches of max_rows, as nova-manage's --until-complete.
    assert rest.batches >= records(rest)
    assert history.purge_deleted(everything=True).total == 0


def test_purge_dry_run_counts_what_it_would_remove_and_writes_nothing(
        history, table_rows, count_statements):
    before = {table: table_rows(table)
              for table in LIVE_TABLES + SHADOW_TABLES}
    with count_statements() as statements:
        dry = history.purge_deleted(before=NOV[2], dry_run=True)
        bounded = history.purge_deleted(before=NOV[2], max_rows=2,
                                        dry_run=True)
    assert not [s for s in statements if s.lstrip().upper().startswith(
        ("INSERT", "UPDATE", "DELETE"))]
    assert {table: table_rows(table) for table in before} == before
    assert counts(dry) == [1, 3, 1, 1, 3, 1] and dry.complete
    assert counts(bounded) == [1, 3, 1, 0, 0, 0] and not bounded.complete
    assert counts(history.purge_deleted(before=NOV[2])) == counts(dry)


def test_purge_keeps_what_was_deleted_at_the_cutoff_itself(repository,
                                                           table_rows):
    """before is strict: a stash deleted, or a reply of no more use,
    exactly then stays; a microsecond later both go."""
    moment = datetime.datetime(2026, 11, 27, 12, 0, 0)
    stash(repository, 0)
    deleted_on(repository, 0, moment)
    other = uuid_of(1)
    repository.store_reply(other, "t", "{}", http_cache.Freshness(
        moment, None, None, None), now=moment - datetime.timedelta(hours=1))
    assert repository.purge_deleted(before=moment).total == 0
    assert len(table_rows("role_stashes")) == 1
    assert list(repository.get_replies(other)) == ["t"]
    later = moment + datetime.timedelta(microseconds=1)
    assert repository.purge_deleted(before=later).rows[
        "role_stashes"] == 1
    assert table_rows("role_stashes") == []
    assert repository.get_replies(other) == {}


@pytest.fixture
def manage(migrated_url, repository, capsys):
    """manage(*arguments) -> (exit code, stdout, stderr) of
    role-stash-manage on the test's migrated database."""
    def run(*arguments):
        try:
            code = role_stash_manage.main(
                ["--database-url", migrated_url, *arguments])
        except SystemExit as usage_error:  # argparse's own refusal
            code = usage_error.code
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


def test_purge_without_before_or_all_is_a_usage_error(history, manage,
                                                       table_rows):
    shadow = table_rows("role_stashes_shadow")
    for arguments in ([], ["--max-rows", "10"], ["--before", "2026-11-02",
                                                  "--all"]):
        code, _, err = manage("purge", *arguments)
        assert code == role_stash_manage.BAD_INPUT
        assert "--before" in err and "--all" in err
    code, _, err = manage("purge", "--before", "the second of november")
    assert code == role_stash_manage.BAD_INPUT and "ISO 8601" in err
    assert table_rows("role_stashes_shadow") == shadow


def test_purge_before_an_iso_date_prints_rows_per_table_also_as_json(
        history, manage):
    code, out, err = manage("purge", "--before", "2026-11-02", "--json")
    assert code == role_stash_manage.OK, err
    summary = json.loads(out)
    assert summary["operation"] == "purge" and summary["complete"]
    assert summary["rows"] == {
        "role_stashes_shadow": 1, "role_stash_roles_shadow": 3,
        "role_stash_vendordata_shadow": 1, "role_stashes": 1,
        "role_stash_roles": 3, "role_stash_vendordata": 1}
    assert summary["total"] == 10
    # A time with its zone: 2 November 01:00 at +02:00 is 1 November,
    # 23:00 UTC, and nothing else was deleted before then.
    code, out, _ = manage("purge", "--before", "2026-11-02T01:00:00+02:00")
    assert code == role_stash_manage.OK and out.splitlines()[0].startswith(
        "purge: rows removed for good")
    code, out, _ = manage("purge", "--all", "--max-rows", "1", "--json")
    assert (code == role_stash_manage.ROWS_LEFT
            and json.loads(out)["total"] == 4)
    assert manage("purge", "--all",
                  "--until-complete")[0] == role_stash_manage.OK
