"""Cached vendordata replies: stored, read with the stash in one
statement, replaced, forgotten, gone with the stash, purged when of no
more use."""

import datetime
import threading
import time

import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import models
from role_stash.nova import http_cache
from tests.helpers import INSTANCE
from tests.helpers import stash

NOW = datetime.datetime(2026, 11, 27, 12, 0, 0)


def later(seconds):
    return NOW + datetime.timedelta(seconds=seconds)


FRESH = http_cache.Freshness(later(60), later(90), '"v1"', None)


def test_the_metadata_get_reads_stash_and_replies_in_one_statement(
        repository, count_statements):
    stashed = stash(repository)
    assert repository.store_reply(INSTANCE, "b", '{"b": 2}', FRESH, now=NOW)
    assert repository.store_reply(INSTANCE, "a", '{"a": 1}', FRESH, now=NOW)
    repository.get_stash_and_replies(INSTANCE)  # a first connection set up
    with count_statements() as statements:
        found, replies = repository.get_stash_and_replies(INSTANCE)
    assert len(statements) == 1
    assert found == stashed
    assert list(replies) == ["a", "b"]
    assert replies["a"].body == '{"a": 1}'
    assert (replies["a"].fresh_until, replies["a"].stale_until,
            replies["a"].etag) == (later(60), later(90), '"v1"')


def test_many_roles_and_replies_fold_back_exactly(repository):
    roles = [f"role-{index}" for index in range(5)]
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=roles)
    for target in ("x", "y", "z"):
        repository.store_reply(INSTANCE, target, "{}", FRESH, now=NOW)
    found, replies = repository.get_stash_and_replies(INSTANCE)
    assert found.roles == tuple(roles)
    assert sorted(replies) == ["x", "y", "z"]


def test_a_stash_without_replies_reads_back_alone(repository):
    stashed = stash(repository)
    assert repository.get_stash_and_replies(INSTANCE) == (stashed, {})
    with pytest.raises(exception.StashNotFound):
        repository.get_stash_and_replies(
            "0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c")


def test_a_new_reply_replaces_the_old_and_no_store_forgets_it(repository):
    stash(repository)
    repository.store_reply(INSTANCE, "a", '{"old": 1}', FRESH, now=NOW)
    repository.store_reply(INSTANCE, "a", '{"new": 1}', FRESH, now=NOW)
    assert repository.get_replies(INSTANCE)["a"].body == '{"new": 1}'
    assert repository.store_reply(INSTANCE, "a", '{"secret": 1}', None,
                                  now=NOW) is False
    assert repository.get_replies(INSTANCE) == {}


def test_replies_go_with_the_stash_and_are_purged_when_of_no_use(repository):
    stash(repository)
    repository.store_reply(INSTANCE, "a", "{}", FRESH, now=NOW)
    repository.delete_stash(INSTANCE)
    assert repository.get_replies(INSTANCE) == {}
    stash(repository)
    short = http_cache.Freshness(later(60), None, None, None)
    repository.store_reply(INSTANCE, "short", "{}", short, now=NOW)
    repository.store_reply(INSTANCE, "revalidated", "{}",
                           http_cache.Freshness(None, None, '"e"', None),
                           now=NOW)
    repository.purge_deleted(before=later(61))
    assert list(repository.get_replies(INSTANCE)) == ["revalidated"]
    repository.purge_deleted(before=later(2 * 86400))
    assert repository.get_replies(INSTANCE) == {}


def test_a_bad_reply_is_refused_before_any_sql(repository, count_statements):
    with count_statements() as statements:
        with pytest.raises(exception.InvalidArgument, match="body"):
            repository.store_reply(INSTANCE, "a", {"not": "text"}, FRESH)
        with pytest.raises(exception.InvalidArgument, match="target"):
            repository.store_reply(INSTANCE, "", "{}", FRESH)
    assert statements == []


# Each of these reached the database before: the same reply was stored on
# one backend and failed on another (NUL, a 300-character ETag), or the
# call failed with Python's own AttributeError or TypeError.
UNKEEPABLE_REPLIES = {
    "body with NUL": ({"body": '{"a": "\x00"}'}, "body"),
    "body with a lone surrogate": ({"body": '"\udc80"'}, "body"),
    "body over a MiB": ({"body": "x" * (1024 * 1024 + 1)}, "body"),
    "freshness not a Freshness": ({"freshness": "max-age=60"}, "freshness"),
    "neither lifetime nor validator": (
        {"freshness": http_cache.Freshness(None, None, None, None)},
        "freshness"),
    "stale_until not a time": (
        {"freshness": http_cache.Freshness(None, 60, '"e"', None)},
        "freshness.stale_until"),
    "fresh_until not a time": (
        {"freshness": http_cache.Freshness("soon", None, None, None)},
        "freshness.fresh_until"),
    "etag over 255": ({"freshness": http_cache.Freshness(
        None, None, '"' + "e" * 300 + '"', None)}, "freshness.etag"),
    "last_modified over 64": ({"freshness": http_cache.Freshness(
        None, None, None, "Fri, 27 Nov 2026 12:00:00 GMT" * 3)},
        "freshness.last_modified"),
    "now not a time": ({"now": "2026-11-27"}, "now"),
}


@pytest.mark.parametrize("label", sorted(UNKEEPABLE_REPLIES))
def test_a_reply_no_backend_keeps_exactly_is_refused_before_any_sql(
        repository, count_statements, label):
    change, field = UNKEEPABLE_REPLIES[label]
    arguments = {"body": "{}", "freshness": FRESH, "now": NOW, **change}
    repository.store_reply(INSTANCE, "a", '{"kept": 1}', FRESH, now=NOW)
    with count_statements() as statements:
        with pytest.raises(exception.InvalidArgument) as refused:
            repository.store_reply(INSTANCE, "a", arguments.pop("body"),
                                   **{"freshness": arguments["freshness"],
                                      "now": arguments["now"]})
    assert refused.value.field == field
    assert statements == []
    assert repository.get_replies(INSTANCE)["a"].body == '{"kept": 1}'


def test_an_aware_now_is_stored_as_utc(repository):
    aware = NOW.replace(tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
    repository.store_reply(INSTANCE, "a", "{}", FRESH, now=aware)
    assert repository.get_replies(INSTANCE)["a"].stored_at == (
        NOW - datetime.timedelta(hours=2))


def test_a_reply_of_exactly_a_mib_and_its_validators_are_kept(repository):
    body = '"' + "x" * (1024 * 1024 - 2) + '"'
    freshness = http_cache.Freshness(later(60), later(90), '"v1"',
                                     "Fri, 27 Nov 2026 12:00:00 GMT")
    assert repository.store_reply(INSTANCE, "a", body, freshness, now=NOW)
    reply = repository.get_replies(INSTANCE)["a"]
    assert (len(reply.body.encode()), reply.etag, reply.last_modified) == (
        1024 * 1024, '"v1"', "Fri, 27 Nov 2026 12:00:00 GMT")


# How a third connection sees that a statement waits for a row lock.
_LOCK_WAITS = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity"
                  " WHERE wait_event_type = 'Lock'",
    "mariadb": "SELECT count(*) FROM information_schema.innodb_trx"
               " WHERE trx_state = 'LOCK WAIT'",
}


def _wait_for_a_lock_wait(engine, backend, writer):
    """Return once the writer thread's statement waits for a row lock (on
    SQLite, whose lock wait nothing shows, after a moment)."""
    query = _LOCK_WAITS.get(backend.removesuffix("-psycopg"))
    deadline = time.monotonic() + 10
    while writer.is_alive() and time.monotonic() < deadline:
        if query is None:
            time.sleep(0.3)
            return
        with engine.connect() as connection:
            if connection.scalar(sa.text(query)):
                return
        # InnoDB refreshes its information_schema tables only when they
        # have not been read for 0.1 s.
        time.sleep(0.2)
    pytest.fail("the writer never waited for the rival's row")


def test_a_rival_storing_the_same_reply_at_once_wins_quietly(
        repository, server, table_rows):
    """Two workers store the reply of one instance and target at once. The
    rival's row is inserted, not yet committed, when ours arrives: on
    PostgreSQL our INSERT then meets the rival's committed key (the race
    store_reply gives up on: False, the rival's body kept); on MariaDB and
    SQLite our DELETE waits for the rival and ours replaces it (True).
    Either way no error, one row, and the answer says whose it is."""
    stash(repository)
    engine = repository.context_manager.writer.get_engine()
    rival = engine.connect()
    rival_transaction = rival.begin()
    rival.execute(sa.insert(models.VendordataReply.__table__), {
        "instance_uuid": INSTANCE, "target": "a", "body": '{"rival": 1}',
        "stored_at": NOW, "fresh_until": later(60),
        "keep_until": later(90)})
    answers = []
    writer = threading.Thread(target=lambda: answers.append(
        repository.store_reply(INSTANCE, "a", '{"ours": 1}', FRESH,
                               now=NOW)))
    try:
        writer.start()
        _wait_for_a_lock_wait(engine, server.param, writer)
        rival_transaction.commit()
    finally:
        rival.close()
        writer.join(timeout=30)
    assert answers == [not server.param.startswith("postgresql")]
    replies = repository.get_replies(INSTANCE)
    assert list(replies) == ["a"]
    assert replies["a"].body == ('{"ours": 1}' if answers[0]
                                 else '{"rival": 1}')
    assert len(table_rows("role_stash_vendordata")) == 1


def test_the_stash_read_with_its_replies_is_the_stash_read_alone(repository):
    """Every field of the stash that comes with the replies is the one
    get_stash reads: both domain ids, and the time of a replace."""
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["member"], project_domain_id="pd",
                           user_domain_id="ud")
    replaced = repository.stash_roles(
        INSTANCE, project_id="p", user_id="u", roles=["reader", "member"],
        project_domain_id="pd", user_domain_id="ud", replace=True)
    assert repository.store_reply(INSTANCE, "a", '{"a": 1}', FRESH, now=NOW)
    found, replies = repository.get_stash_and_replies(INSTANCE)
    assert found == repository.get_stash(INSTANCE) == replaced
    assert (found.project_domain_id, found.user_domain_id) == ("pd", "ud")
    assert list(replies) == ["a"]
    assert found.updated_at is not None


def test_the_read_of_stash_and_replies_never_multiplies_bodies_by_roles(
        repository):
    """A row per role and a row per reply at most, on every backend: with
    a hundred roles and four replies of 60 KB, each body comes back once.
    Before, SQLite and MariaDB returned a row per role and reply, each
    with a whole body (four hundred rows, 23 MiB)."""
    roles = [f"role-{index:03d}" for index in range(100)]
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=roles)
    body = '"' + "x" * 60000 + '"'
    for target in ("a", "b", "c", "d"):
        repository.store_reply(INSTANCE, target, body, FRESH, now=NOW)
    statements = repository._statements()
    with repository.lone_engines.writer().connect() as connection:
        rows = connection.execute(statements.read_one_with_replies,
                                  {"instance_uuid": INSTANCE}).all()
    bodies = [row[10] for row in rows if row[10] is not None]
    assert bodies == [body] * 4
    assert len(rows) <= len(roles) + 4
    found, replies = repository.get_stash_and_replies(INSTANCE)
    assert found.roles == tuple(roles)
    assert sorted(replies) == ["a", "b", "c", "d"]


def test_more_roles_than_keystone_lists_are_refused_before_any_sql(
        repository, count_statements):
    """A stash holds at most validation.MAX_ROLES roles (Keystone's cap on
    a listing); more are refused, naming the count."""
    from role_stash.db import validation
    most = [f"r{index}" for index in range(validation.MAX_ROLES)]
    assert repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                  roles=most).roles == tuple(most)
    with count_statements() as statements:
        with pytest.raises(exception.InvalidArgument,
                           match=f"more than {validation.MAX_ROLES} roles"):
            repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                                   roles=[*most, "one-more"], replace=True)
    assert statements == []


def test_a_replace_of_the_stash_forgets_its_instances_replies(repository):
    stash(repository)
    repository.store_reply(INSTANCE, "a", "{}", FRESH, now=NOW)
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["member"], replace=True)  # a repeat
    assert list(repository.get_replies(INSTANCE)) == ["a"]
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["admin"], replace=True)
    assert repository.get_replies(INSTANCE) == {}


def test_a_reply_keeps_the_digest_of_the_request_it_answers(repository):
    stash(repository)
    digest = "0123456789abcdef" * 4
    repository.store_reply(INSTANCE, "a", "{}", FRESH, now=NOW,
                           request_digest=digest)
    repository.store_reply(INSTANCE, "b", "{}", FRESH, now=NOW)
    replies = repository.get_stash_and_replies(INSTANCE)[1]
    assert replies == repository.get_replies(INSTANCE)
    assert (replies["a"].request_digest, replies["b"].request_digest) == (
        digest, None)
    with pytest.raises(exception.InvalidArgument, match="request_digest"):
        repository.store_reply(INSTANCE, "a", "{}", FRESH,
                               request_digest=digest.upper())


def test_the_stash_of_another_project_is_not_found_with_its_replies(
        repository):
    stash(repository)
    repository.store_reply(INSTANCE, "a", "{}", FRESH, now=NOW)
    assert repository.get_stash_and_replies(
        INSTANCE, expected_project_id="p")[0].project_id == "p"
    with pytest.raises(exception.StashNotFound):
        repository.get_stash_and_replies(INSTANCE,
                                         expected_project_id="other")
