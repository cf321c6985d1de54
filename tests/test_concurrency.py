"""Writers racing in separate processes: a create or replace that races a
delete never fails for a rival that no longer exists, and the database
ends holding whole stashes only."""

import collections
import multiprocessing
import random
import time

import sqlalchemy as sa

from role_stash import api
from role_stash import exception

PROCESSES = 8
SECONDS = 3.0
INSTANCES = [f"00000000-0000-4000-8000-{index:012d}" for index in range(12)]
ROLES = ["member", "reader", "load-balancer_member"]


def race(url, seed, start, results):
    """Create, replace and delete the same few stashes, always with one
    payload, until the time is up; put the outcomes' counts on results."""
    repository = api.StashRepository.from_url(url)
    rng = random.Random(seed)
    outcomes = collections.Counter()
    start.wait()
    deadline = time.monotonic() + SECONDS
    try:
        while time.monotonic() < deadline:
            instance = rng.choice(INSTANCES)
            action = rng.choice(("create", "replace", "delete"))
            try:
                if action == "delete":
                    repository.delete_stash(instance, missing_ok=True)
                else:
                    stash = repository.stash_roles(
                        instance, project_id="p", user_id="u", roles=ROLES,
                        replace=action == "replace")
                    assert stash.roles == tuple(ROLES)
                outcomes[f"{action} ok"] += 1
            except exception.RoleStashError as error:
                outcomes[f"{action} {type(error).__name__}"] += 1
    except BaseException as error:
        outcomes[f"raw {type(error).__name__}: {error}"] += 1
    finally:
        repository.close()
        results.put(dict(outcomes))


def test_racing_creates_replaces_and_deletes_never_conflict(migrated_url,
                                                          repository):
    # fork: a spawned child could not import this test module (pytest
    # loads it by path); each child builds its own repository.
    context = multiprocessing.get_context("fork")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    workers = [context.Process(target=race,
                               args=(migrated_url, seed, start, results))
               for seed in range(PROCESSES)]
    for worker in workers:
        worker.start()
    totals = collections.Counter()
    for _ in workers:
        totals.update(results.get(timeout=60))
    for worker in workers:
        worker.join(30)
    done = sum(count for outcome, count in totals.items()
               if outcome.endswith(" ok"))
    failed = {outcome: count for outcome, count in totals.items()
              if not outcome.endswith(" ok")}
    # No other payload is ever live: a conflict would be a lie, and
    # nothing else may fail either.
    assert failed == {}, totals
    assert done > PROCESSES
    engine = repository._lone.writer()
    with engine.connect() as connection:
        live = connection.execute(sa.text(
            "SELECT instance_uuid, COUNT(*) FROM role_stashes "
            "WHERE deleted = 0 GROUP BY instance_uuid")).all()
        roles = connection.execute(sa.text(
            "SELECT s.id, COUNT(r.name) FROM role_stashes s LEFT JOIN "
            "role_stash_roles r ON r.stash_id = s.id GROUP BY s.id")).all()
    assert all(count == 1 for _, count in live)
    # Every stash, live or deleted, is whole: never a partial role set.
    assert {count for _, count in roles} <= {len(ROLES)}
