"""The load of the Galera tests: writer threads through each node, and the
ledger of what their callers were told, audited against what each node
holds."""

import collections
import threading
import time
import uuid

from role_stash import exception
from tests import helpers


class Ledger:
    """What callers were told, per instance: the state its last answered
    call left (a payload, or None when deleted), and, when a later call
    failed without telling whether it committed, the state it would have
    left too. Thread-safe; each instance is written by one thread at a
    time, except racing creates, which record only their winner."""

    def __init__(self):
        self._lock = threading.Lock()
        self.acknowledged = {}
        self.in_doubt = collections.defaultdict(set)
        self.calls = collections.Counter()

    def told(self, instance_uuid, state):
        """A call succeeded, leaving state (a payload, or None)."""
        with self._lock:
            self.acknowledged[instance_uuid] = state
            self.in_doubt.pop(instance_uuid, None)

    def doubt(self, instance_uuid, state):
        """A call failed after it may have reached the database: its
        state, or the one before, may be what committed."""
        with self._lock:
            self.in_doubt[instance_uuid].add(state)

    def count(self, outcome):
        with self._lock:
            self.calls[outcome] += 1

    def allowed(self, instance_uuid):
        """The states the database may hold for an instance."""
        states = {self.acknowledged.get(instance_uuid)}
        return states | self.in_doubt.get(instance_uuid, set())

    def audit(self, cluster, database):
        """{node name: {"lost": n, "phantom": n}} and the instances in
        doubt that the nodes hold differently (must be none): lost, a
        stash a caller was told is live with that payload that the node
        lacks or holds otherwise; phantom, a live stash on the node that
        no caller was told of (never written, or deleted)."""
        holdings = {node.name: live_stashes(node, database)
                    for node in cluster.nodes}
        counts = {}
        for name, held in holdings.items():
            lost = phantom = 0
            for instance_uuid in set(held) | set(self.acknowledged):
                state = held.get(instance_uuid)
                if state in self.allowed(instance_uuid):
                    continue
                if self.acknowledged.get(instance_uuid) is not None:
                    lost += 1
                else:
                    phantom += 1
            counts[name] = {"lost": lost, "phantom": phantom}
        divergent = sorted(
            instance_uuid for instance_uuid in self.in_doubt
            if len({held.get(instance_uuid)
                    for held in holdings.values()}) > 1)
        return counts, divergent


def live_stashes(node, database):
    """{instance uuid: payload} of every live stash on a node, read with
    raw SQL after the node applied every committed write (wsrep_sync_wait)."""
    connection = node.connect(database, sync_wait=1)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT s.instance_uuid, s.project_id, s.user_id, r.name "
                "FROM role_stashes s LEFT JOIN role_stash_roles r "
                "ON r.stash_id = s.id WHERE s.deleted = 0 "
                "ORDER BY s.id, r.position")
            rows = cursor.fetchall()
    finally:
        connection.close()
    held = {}
    for instance_uuid, project_id, user_id, name in rows:
        project, user, roles = held.get(instance_uuid,
                                        (project_id, user_id, ()))
        held[instance_uuid] = (project, user,
                               roles + ((name,) if name is not None else ()))
    return held


class OwnWrites:
    """A writer thread through one node's repository: creates stashes of
    its own instances, replaces and deletes some, until told to stop;
    every answer goes to the ledger. The project's errors are counted by
    name; any other error is counted as raw (a failure of the test)."""

    def __init__(self, repository, node, ledger, stop, seed):
        self.repository = repository
        self.node = node
        self.ledger = ledger
        self.stop = stop
        self.serial = 0
        self.seed = seed
        self.live = []
        self.acknowledged_at = []
        self.thread = threading.Thread(
            target=self._run, name=f"writer-{node.name}-{seed}", daemon=True)

    def _run(self):
        while not self.stop.is_set():
            self.serial += 1
            choice = self.serial % 7
            if choice == 3 and self.live:
                self._call("replace", self.live[0], [
                    "member", f"rebuilt-{self.serial}"])
            elif choice == 5 and self.live:
                self._call("delete", self.live.pop(), None)
            else:
                self._call("create", str(uuid.uuid4()),
                           ["member", "reader", f"role-{self.serial}"])

    def _call(self, action, instance_uuid, roles):
        state = None if roles is None else (
            f"project-{self.node.name}", f"user-{self.seed}", tuple(roles))
        try:
            if action == "delete":
                self.repository.delete_stash(instance_uuid)
            else:
                stash = self.repository.stash_roles(
                    instance_uuid, project_id=state[0], user_id=state[1],
                    roles=list(roles), replace=action == "replace")
                assert helpers.payload_of(stash) == state
        except exception.RoleStashError as error:
            self.ledger.count(f"{action} {type(error).__name__}")
            if isinstance(error, exception.DatabaseUnavailable):
                # Perhaps committed, perhaps not: never touched again.
                self.ledger.doubt(instance_uuid, state)
                if instance_uuid in self.live:
                    self.live.remove(instance_uuid)
            return
        except Exception as error:  # noqa: BLE001 - counted, fails the test
            self.ledger.count(f"raw {type(error).__name__}: {error}")
            return
        self.ledger.count(f"{action} ok")
        self.ledger.told(instance_uuid, state)
        self.acknowledged_at.append(time.monotonic())
        if action == "create":
            self.live.append(instance_uuid)


