"""Writes through every node of a Galera cluster at once: a transaction
that fails certification (MySQL error 1213, oslo.db's DBDeadlock) is
retried and never reaches the caller as a raw error; racing creates of
one instance through different nodes end with one stash; and every node
ends holding exactly what the callers were told."""

import collections
import threading
import time
import uuid

import pytest

from role_stash import exception

ROLES = ["member", "reader"]


@pytest.mark.parametrize("rival_user", ["u", "another-user"],
                         ids=["same-payload", "other-payload"])
def test_a_create_that_fails_certification_is_retried_and_meets_the_rival(
        galera, node_repositories, deadlocks_seen, galera_tools, rival_user):
    """Node 2's create has written its rows when, just before its COMMIT,
    a rival create of the same instance commits through node 1: node 2's
    transaction fails certification (or is aborted by the rival's
    replicated rows), is retried alone, and finds the rival's stash."""
    first, second, third = galera.nodes
    instance = str(uuid.uuid4())
    rival = node_repositories(first)
    creator = node_repositories(second)
    conflicts_before = galera_tools.conflicts(galera)

    def rival_commits_first():
        rival.stash_roles(instance, project_id="p", user_id=rival_user,
                          roles=ROLES)

    with galera_tools.before_commit_on(second.port,
                                       rival_commits_first) as fired:
        if rival_user == "u":
            stash = creator.stash_roles(instance, project_id="p",
                                        user_id="u", roles=ROLES)
            assert galera_tools.payload(stash) == ("p", "u", tuple(ROLES))
        else:
            with pytest.raises(exception.StashConflict):
                creator.stash_roles(instance, project_id="p", user_id="u",
                                    roles=ROLES)
    assert fired.is_set()
    assert deadlocks_seen.deadlocks == 1
    assert deadlocks_seen.retries == 1
    # Node 2 counted it too (as a certification failure, a brute-force
    # abort, or both, as the rival's rows and the COMMIT met).
    assert galera_tools.conflicts(galera)[second.name] > conflicts_before[
        second.name]
    for node in galera.nodes:
        assert galera_tools.live_stashes(node, "role_stash_galera") == {
            instance: ("p", rival_user, tuple(ROLES))}, node.name


def test_writes_through_every_node_at_once_leave_every_node_as_told(
        galera, galera_run, node_repositories, deadlocks_seen, ledger,
        own_writers, galera_tools, galera_report):
    """Own writers on every node, and one racer per node creating the same
    new instance with its own payload, round after round."""
    repositories = [node_repositories(node) for node in galera.nodes]
    conflicts_before = galera_tools.conflicts(galera)
    stop = threading.Event()
    writers = []
    for node, repository in zip(galera.nodes, repositories):
        writers += own_writers(repository, node, ledger, stop,
                               galera_run.writers_per_node)
    races = Races(repositories, ledger, galera_run.all_nodes_seconds)
    began = time.monotonic()
    races.run()
    stop.set()
    for writer in writers:
        writer.thread.join(timeout=120)
    seconds = time.monotonic() - began
    conflicts = galera_tools.conflicts(galera)
    server_conflicts = sum(conflicts.values()) - sum(conflicts_before.values())
    audit, divergent = ledger.audit(galera, "role_stash_galera")
    calls = ledger.calls + races.outcomes
    galera_report(
        "writes through every node", seconds=round(seconds, 1),
        writers=len(writers) + len(repositories),
        operations=sum(calls.values()), race_rounds=races.rounds,
        deadlocks_seen=deadlocks_seen.deadlocks,
        retries=deadlocks_seen.retries,
        server_certification_conflicts=server_conflicts,
        outcomes=dict(sorted(calls.items())),
        lost=sum(count["lost"] for count in audit.values()),
        phantom=sum(count["phantom"] for count in audit.values()))
    raw = {outcome: count for outcome, count in calls.items()
           if outcome.startswith("raw")}
    assert raw == {}
    # Nothing failed but the losing racers, told of the winner.
    assert set(calls) <= {"create ok", "replace ok", "delete ok",
                          "race won", "race StashConflict"}, calls
    assert races.rounds > 0
    assert races.winners == collections.Counter({1: races.rounds})
    assert audit == {node.name: {"lost": 0, "phantom": 0}
                     for node in galera.nodes}
    assert divergent == []


class Races:
    """One thread per node; each round, all of them create the same new
    instance at once, each with its own user_id: exactly one may win."""

    def __init__(self, repositories, ledger, seconds):
        self.repositories = repositories
        self.ledger = ledger
        self.deadline = time.monotonic() + seconds
        self.rounds = 0
        self.instance = None
        self.stopping = False
        self.outcomes = collections.Counter()
        self.winners = collections.Counter()
        self._won = collections.Counter()
        self._lock = threading.Lock()
        self._start = threading.Barrier(len(repositories),
                                        action=self._next_round)
        self._end = threading.Barrier(len(repositories),
                                      action=self._end_round)

    def _next_round(self):
        self.stopping = time.monotonic() > self.deadline
        self.instance = str(uuid.uuid4())

    def _end_round(self):
        self.rounds += 1
        self.winners[self._won[self.instance]] += 1

    def run(self):
        threads = [threading.Thread(target=self._race, args=(index,),
                                    daemon=True)
                   for index in range(len(self.repositories))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)

    def _race(self, index):
        repository = self.repositories[index]
        payload = ("p", f"racer-{index}", tuple(ROLES))
        while True:
            self._start.wait(timeout=120)
            if self.stopping:
                return
            instance = self.instance
            try:
                stash = repository.stash_roles(
                    instance, project_id="p", user_id=payload[1], roles=ROLES)
            except exception.RoleStashError as error:
                outcome = f"race {type(error).__name__}"
            except Exception as error:  # noqa: BLE001 - counted, fails the test
                outcome = f"raw {type(error).__name__}: {error}"
            else:
                outcome = ("race won" if (stash.project_id, stash.user_id,
                                          stash.roles) == payload
                           else "raw another racer's stash")
                if outcome == "race won":
                    self.ledger.told(instance, payload)
            with self._lock:
                self.outcomes[outcome] += 1
                if outcome == "race won":
                    self._won[instance] += 1
            self._end.wait(timeout=120)
