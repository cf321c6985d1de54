"""Metadata reads from a PostgreSQL streaming replica ([database]
slave_connection), writes to the primary: a stash the replica has not
replayed yet is read from the primary, never answered "no stash"; a
replica that is down leaves the reads to the primary, with one log line,
and serves again once it is back. Each server's own statement log says
which one answered."""

import datetime
import logging
import uuid

from oslo_config import cfg
from oslo_db.sqlalchemy import enginefacade
from oslo_utils import timeutils
import pytest

from role_stash import exception
from role_stash.db import api
from role_stash.db import engines
from role_stash.nova import http_cache

ROLES = ["member", "reader"]
FRESH = http_cache.Freshness(
    datetime.datetime(2099, 1, 1), datetime.datetime(2099, 1, 2), '"v1"', None)


@enginefacade.transaction_context_provider
class Context:
    """A caller's request context, as Nova's RequestContext is one."""


class Served:
    """How many stash reads each server has answered to one repository's
    sessions, as each server's statement log says."""

    def __init__(self, replication, application_name):
        self._replication = replication
        self._name = application_name

    def reads(self, server):
        return self._replication.stash_reads(server, self._name)

    def __call__(self):
        return {server: len(self.reads(server))
                for server in ("primary", "replica")}

    def writes_on_replica(self):
        return [statement for statement in
                self._replication.statements("replica", self._name)
                if statement.lstrip().upper().startswith(
                    ("INSERT", "UPDATE", "DELETE", "WITH"))]


@pytest.fixture
def served(replication, application_name):
    return Served(replication, application_name)


@pytest.fixture
def repository(replica_urls):
    """A repository on the primary with the replica as slave_connection."""
    primary, replica = replica_urls
    repository = api.StashRepository.from_url(primary,
                                              slave_connection=replica)
    yield repository
    repository.close()


def new_stash(repository):
    return repository.stash_roles(str(uuid.uuid4()), project_id="p",
                                  user_id="u", roles=ROLES)


def test_the_metadata_reads_are_answered_by_the_replica(
        replication, repository, served):
    stash = new_stash(repository)
    repository.store_reply(stash.instance_uuid, "target", '{"a": 1}', FRESH)
    replication.wait_replayed()
    assert repository.get_stash(stash.instance_uuid) == stash
    assert repository.get_stashes([stash.instance_uuid]) == {
        stash.instance_uuid: stash}
    found, replies = repository.get_stash_and_replies(stash.instance_uuid)
    assert found == stash and replies["target"].body == '{"a": 1}'
    assert served() == {"primary": 0, "replica": 3}
    assert served.writes_on_replica() == []


def test_no_stash_is_no_stash_on_both_servers(replication, repository,
                                              served):
    """A stash the replica lacks might be one it has not replayed yet:
    the primary is asked before the answer is "no stash"."""
    with pytest.raises(exception.StashNotFound):
        repository.get_stash(str(uuid.uuid4()))
    assert served() == {"primary": 1, "replica": 1}


def test_a_stash_the_replica_has_not_replayed_is_read_from_the_primary(
        replication, repository, served):
    replayed = new_stash(repository)
    replication.wait_replayed()
    replication.pause_replay()
    fresh = new_stash(repository)
    # The replica really lacks it.
    assert replication.query(
        "replica", "SELECT COUNT(*) FROM role_stashes WHERE instance_uuid "
        "= %s", (fresh.instance_uuid,)) == [(0,)]

    assert repository.get_stash(fresh.instance_uuid) == fresh
    assert served() == {"primary": 1, "replica": 1}
    assert repository.get_stash_and_replies(fresh.instance_uuid) == (fresh, {})
    assert served() == {"primary": 2, "replica": 2}
    # A bulk read asks the primary for the missing ones only.
    assert repository.get_stashes(
        [replayed.instance_uuid, fresh.instance_uuid]) == {
            replayed.instance_uuid: replayed, fresh.instance_uuid: fresh}
    assert served() == {"primary": 3, "replica": 3}
    asked = served.reads("primary")[-1]
    assert fresh.instance_uuid in asked
    assert replayed.instance_uuid not in asked

    replication.resume_replay()
    replication.wait_replayed()
    assert repository.get_stash(fresh.instance_uuid) == fresh
    assert served() == {"primary": 3, "replica": 4}


def test_a_replica_that_is_down_leaves_the_reads_to_the_primary(
        replication, repository, served, caplog, monkeypatch):
    stash = new_stash(repository)
    replication.wait_replayed()
    assert repository.get_stash(stash.instance_uuid) == stash
    assert served() == {"primary": 0, "replica": 1}
    now = timeutils.utcnow()
    monkeypatch.setattr(timeutils, "utcnow", lambda *args, **kwargs: now)
    caplog.set_level(logging.WARNING, logger="role_stash.db.engines")
    replication.stop_replica()
    try:
        assert repository.get_stash(stash.instance_uuid) == stash
        assert repository.get_stashes([stash.instance_uuid]) == {
            stash.instance_uuid: stash}
        assert served()["primary"] == 2
        # One line for the failure; the second read did not try the
        # replica, set aside for the interval.
        [warning] = [record for record in caplog.records
                     if record.name == "role_stash.db.engines"]
        assert "read replica" in warning.getMessage()
        assert f":{replication.replica_port}/" in warning.getMessage()
    finally:
        replication.start_replica()
    assert repository.get_stash(stash.instance_uuid) == stash
    assert served() == {"primary": 3, "replica": 1}
    now += engines.REPLICA_RETRY_INTERVAL
    assert repository.get_stash(stash.instance_uuid) == stash
    assert served() == {"primary": 3, "replica": 2}


def test_writes_and_reads_in_a_callers_transaction_stay_on_the_primary(
        replication, replica_urls, served):
    """A caller's context manager configured with slave_connection: its
    transactions, and the stash calls that join them, are the primary's;
    the lone reads go to the replica."""
    primary, replica = replica_urls
    context_manager = enginefacade.transaction_context()
    context_manager.configure(connection=primary, slave_connection=replica,
                              max_retries=0)
    repository = api.StashRepository(context_manager)
    context = Context()
    try:
        with context_manager.writer.using(context):
            stash = repository.stash_roles(
                str(uuid.uuid4()), project_id="p", user_id="u", roles=ROLES,
                context=context)
        with context_manager.reader.using(context):
            assert repository.get_stash(stash.instance_uuid,
                                        context=context) == stash
            assert repository.get_stashes([stash.instance_uuid],
                                          context=context) == {
                stash.instance_uuid: stash}
        assert served() == {"primary": 2, "replica": 0}
        replication.wait_replayed()
        assert repository.get_stash(stash.instance_uuid) == stash
        assert served() == {"primary": 2, "replica": 1}
        assert served.writes_on_replica() == []
    finally:
        repository.close()
        context_manager.dispose_pool()


def test_from_config_reads_from_the_configured_slave_connection(
        replication, replica_urls, served, tmp_path):
    primary, replica = replica_urls
    path = tmp_path / "role_stash.conf"
    path.write_text(f"[database]\nconnection = {primary}\n"
                    f"slave_connection = {replica}\n")
    conf = cfg.ConfigOpts()
    conf(args=[], default_config_files=[str(path)])
    repository = api.StashRepository.from_config(conf)
    try:
        stash = new_stash(repository)
        replication.wait_replayed()
        assert repository.get_stash(stash.instance_uuid) == stash
        assert served() == {"primary": 0, "replica": 1}
    finally:
        repository.close()
