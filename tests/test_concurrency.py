"""Writers and readers racing, as threads of one process and as separate
processes (each with its repository, as forked API workers): racing
creates of one instance elect exactly one stash, writers of different
instances all succeed, readers never see a partial stash, a replace racing
deletes and reads ends in a serial outcome, and no create or replace fails
for a rival that no longer exists. After every run the audit compares what
the callers were told with what the database holds.

ROLE_STASH_LOAD_SECONDS sets how long the timed runs last (the default run
keeps them short); ROLE_STASH_LOAD_ROUNDS how many instances the racing
creates elect a stash for.
"""

import gc
import multiprocessing
import os
import random
import threading
import time
import uuid

import pytest

from role_stash.db import api

WORKERS = 16
SECONDS = float(os.environ.get("ROLE_STASH_LOAD_SECONDS", "1.0"))
ROUNDS = int(os.environ.get("ROLE_STASH_LOAD_ROUNDS", "3"))
INSTANCES_EACH = 4
BARRIER_TIMEOUT = 60
ROLES = ("member", "reader", "load-balancer_member")


def instance_uuids(count):
    """count instance UUIDs of one run, which share its first group."""
    run = uuid.uuid4().hex[:8]
    return [f"{run}-0000-4000-8000-{index:012d}" for index in range(count)]


def payload(name):
    """A payload of its own: its user id names it, and so do its roles."""
    return ("project", name, ROLES + (f"role-of-{name}",))


def run_workers(mode, url, work, ledger, events):
    """Run work(repository, index, barrier, ledger) in WORKERS threads
    sharing one repository, or in WORKERS forked processes with one each;
    gather their calls into ledger and, from processes, the retries each
    saw into events."""
    if mode == "threads":
        repository = api.StashRepository.from_url(url)
        barrier = threading.Barrier(WORKERS, timeout=BARRIER_TIMEOUT)
        errors = []

        def thread(index):
            try:
                work(repository, index, barrier, ledger)
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=thread, args=(index,))
                   for index in range(WORKERS)]
        for each in threads:
            each.start()
        for each in threads:
            each.join()
        repository.close()
        assert errors == []
        return
    # The engines earlier tests dropped hold their idle sessions until
    # Python's cycle collector frees them, and WORKERS children each open
    # their own beside them: the server's max_connections counts both.
    gc.collect()
    # fork: a spawned child could not import this test module (pytest
    # loads it by path).
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WORKERS, timeout=BARRIER_TIMEOUT)
    results = context.Queue()
    processes = [context.Process(target=_process, args=(
        url, work, index, barrier, ledger, events, results))
        for index in range(WORKERS)]
    for process in processes:
        process.start()
    for _ in processes:
        calls, retries, error = results.get(timeout=BARRIER_TIMEOUT * 2)
        assert error is None, error
        ledger.add(calls)
        events.retries += retries
    for process in processes:
        process.join(BARRIER_TIMEOUT)
        assert process.exitcode == 0


def _process(url, work, index, barrier, ledger, events, results):
    # The child's copies of the ledger and of the events counter start
    # with the parent's: hand back only the child's own.
    before = len(ledger.calls)
    events.retries = 0
    error = None
    repository = api.StashRepository.from_url(url)
    try:
        work(repository, index, barrier, ledger)
    except BaseException as failure:
        error = repr(failure)
    finally:
        repository.close()
    results.put((ledger.exported()[before:], events.retries, error))


@pytest.fixture(params=("threads", "processes"))
def mode(request):
    return request.param


def figures(mode, events):
    """What the run's summary line says besides the audit's counts."""
    return {"mode": mode, "workers": WORKERS, "retries": events.retries}


def test_racing_creates_of_one_instance_elect_exactly_one_stash(
        migrated_url, repository, mode, ledger, audit, database_events):
    """Every round, 16 writers create the same new instance at once: half
    with one payload, half with one each. One stash wins; each other
    caller gets it back (same payload) or StashConflict (another), never a
    raw error nor a second live row."""
    instances = instance_uuids(ROUNDS)
    shared = payload("shared")

    def work(repository, index, barrier, ledger):
        for instance in instances:
            barrier.wait()
            ledger.call(repository, instance, "create",
                        shared if index % 2 else payload(f"writer-{index}"))

    run_workers(mode, migrated_url, work, ledger, database_events)
    for instance in instances:
        calls = [call for call in ledger.calls if call.instance == instance]
        winners = {call.result for call in calls if call.outcome == "ok"}
        assert len(winners) == 1, calls
        [winner] = winners
        for call in calls:
            if call.outcome == "ok":
                assert call.payload == winner
            else:
                assert call.outcome == "StashConflict", call
                assert call.payload != winner
        assert repository.get_stash(instance).user_id == winner[1]
    audit(migrated_url, ledger.calls, **figures(mode, database_events))


def test_writers_of_different_instances_all_succeed(
        migrated_url, repository, mode, ledger, audit, database_events):
    instances = instance_uuids(WORKERS * INSTANCES_EACH)

    def work(repository, index, barrier, ledger):
        barrier.wait()
        for instance in instances[index::WORKERS]:
            ledger.call(repository, instance, "create",
                        payload(f"{instance}-creator"))
            ledger.call(repository, instance, "read")

    run_workers(mode, migrated_url, work, ledger, database_events)
    assert ledger.outcomes() == {("create", "ok"): len(instances),
                                 ("read", "ok"): len(instances)}
    assert all(call.result == payload(f"{call.instance}-creator")
               for call in ledger.calls)
    audit(migrated_url, ledger.calls, **figures(mode, database_events))


def test_replaces_racing_deletes_and_reads_end_in_a_serial_outcome(
        migrated_url, repository, mode, ledger, audit, database_events):
    """For SECONDS, writers create, replace (rebuild) and delete a few
    instances while readers read them. Half the instances only ever see
    one payload, so any conflict there is false; on the others every
    write sends a payload of its own. Readers see no stash or a whole one;
    the audit checks the final state against the calls that could have
    come last, and counts false conflicts (a replace never conflicts)."""
    instances = instance_uuids(8)
    one_payload = set(instances[::2])
    shared = payload("shared")

    def work(repository, index, barrier, ledger):
        rng = random.Random(index)
        barrier.wait()
        deadline = time.monotonic() + SECONDS
        sequence = 0
        while time.monotonic() < deadline:
            instance = rng.choice(instances)
            if index % 4 == 3:
                ledger.call(repository, instance, "read")
                continue
            action = rng.choice(("create", "replace", "replace", "delete"))
            sequence += 1
            ledger.call(repository, instance, action, None
                        if action == "delete" else shared
                        if instance in one_payload
                        else payload(f"writer-{index}-{sequence}"))

    run_workers(mode, migrated_url, work, ledger, database_events)
    outcomes = ledger.outcomes()
    assert outcomes[("replace", "ok")] and outcomes[("delete", "ok")]
    assert outcomes[("read", "ok")]
    allowed = {("create", "StashConflict")}
    unexpected = {key: count for key, count in outcomes.items()
                  if key[1] != "ok" and key not in allowed}
    assert unexpected == {}
    assert not any(call.outcome != "ok" and call.instance in one_payload
                   for call in ledger.calls)
    audit(migrated_url, ledger.calls, **figures(mode, database_events))
