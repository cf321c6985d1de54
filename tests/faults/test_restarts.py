"""The database restarts in the middle of a load of writers and readers
(threads sharing one repository, calls made alone): a restart shorter
than the retry window fails no call; an outage longer than the window
gives DatabaseUnavailable naming the cause once the window has passed;
the pool recovers on its own after; the audit finds nothing lost and no
phantom row, on PostgreSQL (psycopg2, psycopg 3) and MariaDB (PyMySQL).

ROLE_STASH_LOAD_SECONDS sets how long the load runs on each side of the
outage (the default run keeps it short)."""

import os
import random
import threading
import time
import uuid

import pytest

from role_stash import exception
from role_stash.db import api
from tests.helpers import wait_until

WRITERS = 4
READERS = 4
LOAD_SECONDS = float(os.environ.get("ROLE_STASH_LOAD_SECONDS", "0.5"))
DEADLINE = 60
# A window shorter than the default, so that the long outage stays short.
SHORT_WINDOW = {"db_max_retries": 3, "db_retry_interval": 0.05,
                "db_max_retry_interval": 0.2}


class Load:
    """Writers creating, replacing and deleting stashes of their own
    instances, readers reading them, until stopped; every call in the
    ledger."""

    def __init__(self, repository, ledger):
        self.repository = repository
        self.ledger = ledger
        self.run = uuid.uuid4().hex[:8]
        self.created = []
        self.halt = threading.Event()
        self.threads = [threading.Thread(target=self.write, args=(index,))
                        for index in range(WRITERS)]
        self.threads += [threading.Thread(target=self.read, args=(index,))
                         for index in range(READERS)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info):
        self.halt.set()
        for thread in self.threads:
            thread.join(DEADLINE)

    def write(self, index):
        rng = random.Random(index)
        sequence = 0
        while not self.halt.is_set():
            sequence += 1
            instance = f"{self.run}-0000-4000-8{index:03d}-{sequence:012d}"
            call = self.ledger.call(self.repository, instance, "create", (
                "project", f"creator-{index}-{sequence}", ("member",)))
            if call.outcome == "ok":
                self.created.append(instance)
            if sequence % 5 == 0 and self.created:
                earlier = rng.choice(self.created)
                self.ledger.call(self.repository, earlier, "replace", (
                    "project", f"rebuilder-{index}-{sequence}",
                    ("member", "reader")))
            if sequence % 7 == 0 and self.created:
                self.ledger.call(self.repository, rng.choice(self.created),
                                 "delete")

    def read(self, index):
        rng = random.Random(1000 + index)
        while not self.halt.is_set():
            if self.created:
                self.ledger.call(self.repository, rng.choice(self.created),
                                 "read")
            else:
                time.sleep(0.01)

    def acknowledged(self):
        return sum(call.outcome == "ok" for call in self.ledger.calls)

    def goes_on(self):
        """Wait until LOAD_SECONDS have passed and calls were answered."""
        start = self.acknowledged()
        started = time.monotonic()
        wait_until(lambda: self.acknowledged() > start + WRITERS and
                   time.monotonic() - started >= LOAD_SECONDS,
                   "the load going on", DEADLINE)


def failures(ledger):
    return [call for call in ledger.calls if call.outcome != "ok"]


def test_a_restart_within_the_retry_window_fails_no_call(
        server, migrated_database, ledger, audit, database_events):
    """Default retries: the server is stopped once the load runs, and
    started again once the load's calls have met the stopped server and
    retried; no call fails."""
    repository = api.StashRepository.from_url(migrated_database)
    try:
        with Load(repository, ledger) as load:
            load.goes_on()
            stopped = time.monotonic()
            server.stop()
            wait_until(lambda: database_events.retries >= WRITERS,
                       "the load retrying against the stopped server",
                       DEADLINE)
            server.start()
            outage = time.monotonic() - stopped
            load.goes_on()
    finally:
        repository.close()
    assert failures(ledger) == []
    audit(migrated_database, ledger.calls, workers=WRITERS + READERS,
          faults=f"1 restart ({outage:.1f} s down)",
          retries=database_events.retries)


def test_an_outage_past_the_retry_window_fails_clearly_then_recovers(
        server, migrated_database, ledger, audit, database_events):
    """With a short window: while the server stays down, a call fails
    with DatabaseUnavailable naming the refused connection, after exactly
    its retries; once the server is back the same repository's calls
    succeed again, its pool recovered on its own."""
    repository = api.StashRepository.from_url(migrated_database,
                                              **SHORT_WINDOW)
    try:
        with Load(repository, ledger) as load:
            load.goes_on()
            server.stop()
            wait_until(lambda: any(call.outcome == "DatabaseUnavailable"
                                   for call in ledger.calls),
                       "a call of the load failing", DEADLINE)
            before = database_events.retries_by_thread[threading.get_ident()]
            with pytest.raises(exception.DatabaseUnavailable,
                               match="Connection refused|Can't connect"):
                repository.get_stash(load.created[0])
            assert database_events.retries_by_thread[
                threading.get_ident()] - before == 3
            server.start()
            failed = len(failures(ledger))
            load.goes_on()
        assert len(failures(ledger)) - failed <= WRITERS + READERS, (
            "calls went on failing once the server was back")
        # Writes that failed are "in doubt" to the audit: one that
        # committed anyway would not count as a phantom.
        audit(migrated_database, ledger.calls, workers=WRITERS + READERS,
              faults="1 outage past the window",
              retries=database_events.retries)
        # Recovered: every kind of call works on the same repository.
        instance = f"{load.run}-0000-4000-8999-000000000001"
        assert repository.stash_roles(instance, project_id="p", user_id="u",
                                      roles=["member"]).user_id == "u"
        assert repository.get_stash(instance).roles == ("member",)
        assert repository.delete_stash(instance)
    finally:
        repository.close()
