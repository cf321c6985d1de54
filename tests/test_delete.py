"""Instance delete: soft-deleted stashes (their purge: test_purge.py)."""

import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.db import api
from tests.helpers import INSTANCE
from tests.helpers import stash


def row_counts(repository):
    engine = repository.context_manager.writer.get_engine()
    with engine.connect() as connection:
        return tuple(connection.scalar(
            sa.select(sa.func.count()).select_from(table))
            for table in (api.STASHES, api.ROLES))


def test_deleted_stash_stays_until_purged(repository):
    stash(repository, roles=["member", "reader"])
    repository.delete_stash(INSTANCE)
    assert repository.list_stashes() == []
    assert row_counts(repository) == (1, 2)


def test_deleting_twice_is_not_found(repository):
    stash(repository)
    repository.delete_stash(INSTANCE)
    with pytest.raises(exception.StashNotFound, match=INSTANCE):
        repository.delete_stash(INSTANCE)


def test_deleting_a_missing_stash_is_not_found(repository):
    with pytest.raises(exception.StashNotFound):
        repository.delete_stash(INSTANCE)


def test_instance_can_be_stashed_again_after_delete(repository):
    stash(repository, roles=["member"])
    repository.delete_stash(INSTANCE)
    stash(repository, roles=["admin"])
    repository.delete_stash(INSTANCE)
    again = stash(repository, roles=["reader"])
    assert repository.get_stash(INSTANCE) == again
    assert row_counts(repository) == (3, 3)


def test_a_missing_stash_is_fine_for_an_instance_delete(repository):
    """An instance created before role_stash was deployed has no stash:
    Nova's delete path passes missing_ok."""
    assert repository.delete_stash(INSTANCE, missing_ok=True) is False
    stash(repository)
    assert repository.delete_stash(INSTANCE, missing_ok=True) is True
    with pytest.raises(exception.InvalidArgument, match="missing_ok"):
        repository.delete_stash(INSTANCE, missing_ok="yes")


def test_a_delete_retried_after_its_commit_answer_was_lost_succeeds(
        repository, monkeypatch):
    """The COMMIT reaches the server, its answer does not: the call is
    retried, finds the stash deleted at its own timestamp, and reports
    the delete done rather than StashNotFound."""
    stash(repository)
    dialect = repository.lone_engines.writer().dialect
    real_commit = dialect.do_commit
    lost = []

    def commit_and_lose_the_answer(dbapi_connection):
        real_commit(dbapi_connection)
        if not lost:
            lost.append(True)
            raise dialect.loaded_dbapi.OperationalError(
                "the answer to COMMIT was lost")

    monkeypatch.setattr(dialect, "do_commit", commit_and_lose_the_answer)
    assert repository.delete_stash(INSTANCE) is True
    assert lost
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(INSTANCE)
    assert row_counts(repository) == (1, 1)


def test_a_delete_of_no_stash_asks_the_database_once(repository,
                                                     count_statements):
    repository.delete_stash(INSTANCE, missing_ok=True)  # pools set up
    with count_statements() as statements:
        assert repository.delete_stash(INSTANCE, missing_ok=True) is False
    assert [sql.verb for sql in statements
            if not sql.is_bookkeeping] == ["UPDATE"]
