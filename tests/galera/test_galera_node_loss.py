"""A Galera node killed in the middle of a write load through every node:
no acknowledged write is lost on the survivors, nor on the killed node
once it has rejoined (by IST, from a survivor's write-set cache); calls
through the killed node fail with DatabaseUnavailable while it is down,
and succeed again, on the same repository, once it is back."""

import threading
import time
import uuid

import pytest

from role_stash import exception

# A writer through a node that came back must succeed within this.
RECOVERY_SECONDS = 60


def test_a_killed_node_loses_no_acknowledged_write_and_rejoins_by_ist(
        galera, galera_run, node_repositories, ledger, own_writers,
        deadlocks_seen, galera_tools, galera_report):
    repositories = {node.name: node_repositories(node)
                    for node in galera.nodes}
    stop = threading.Event()
    writers = {node.name: own_writers(repositories[node.name], node, ledger,
                                      stop, galera_run.writers_per_node)
               for node in galera.nodes}
    began = time.monotonic()
    transfers = []
    refused = 0
    ist_write_sets = 0
    for number in galera_run.killed_nodes:
        killed = galera.nodes[number - 1]
        stop.wait(galera_run.before_kill_seconds)
        galera.kill(killed)
        # Through the dead node: the project's error, after its retries.
        for call in (
                lambda killed=killed: repositories[killed.name].get_stash(
                    str(uuid.uuid4())),
                lambda killed=killed: repositories[killed.name].stash_roles(
                    str(uuid.uuid4()), project_id="p", user_id="u",
                    roles=["member"])):
            with pytest.raises(exception.DatabaseUnavailable):
                call()
            refused += 1
        galera.wait_cluster_size(len(galera.nodes) - 1)
        transfers.append(galera.restart(killed))
        ist_write_sets += galera.ist_write_sets(killed)
        back = time.monotonic()
        for writer in writers[killed.name]:
            _wait_for_an_acknowledgement_after(writer, back)
        stop.wait(galera_run.after_rejoin_seconds)
    stop.set()
    for node_writers in writers.values():
        for writer in node_writers:
            writer.thread.join(timeout=120)
    seconds = time.monotonic() - began
    audit, divergent = ledger.audit(galera, "role_stash_galera")
    galera_report(
        "node killed mid-load", seconds=round(seconds, 1),
        writers=sum(len(node_writers) for node_writers in writers.values()),
        operations=sum(ledger.calls.values()),
        acknowledged=len(ledger.acknowledged),
        in_doubt=len(ledger.in_doubt),
        nodes_killed=len(galera_run.killed_nodes), rejoined_by=transfers,
        write_sets_by_ist=ist_write_sets,
        refused_through_the_dead_node=refused,
        deadlocks_seen=deadlocks_seen.deadlocks,
        retries=deadlocks_seen.retries,
        outcomes=dict(sorted(ledger.calls.items())),
        lost=sum(count["lost"] for count in audit.values()),
        phantom=sum(count["phantom"] for count in audit.values()))
    assert transfers == ["IST"] * len(galera_run.killed_nodes)
    raw = {outcome: count for outcome, count in ledger.calls.items()
           if outcome.startswith("raw")}
    assert raw == {}
    # While a node is down, the calls through it fail with the project's
    # DatabaseUnavailable; nothing else fails, through any node.
    assert {outcome.split()[1] for outcome in ledger.calls} <= {
        "ok", "DatabaseUnavailable"}, ledger.calls
    assert audit == {node.name: {"lost": 0, "phantom": 0}
                     for node in galera.nodes}
    assert divergent == []


def _wait_for_an_acknowledgement_after(writer, moment):
    """Return once the writer has been told a write succeeded after
    moment (its repository recovered on its own)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    while time.monotonic() < deadline:
        if writer.acknowledged_at and writer.acknowledged_at[-1] > moment:
            return
        time.sleep(0.05)
    raise AssertionError(
        f"{writer.thread.name} got no write through after its node came back")
