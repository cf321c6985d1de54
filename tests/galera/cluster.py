"""A MariaDB Galera cluster of three nodes on this machine: Debian's
galera-4 provider under the installed mariadbd, each node with its own
data folder and loopback ports (client, gcomm, IST, SST), joined by rsync
SST, and every server process running as the mysql user (rsync SST fails
as root, and CI runs as root); the load of a run, short or full."""

import collections
import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pymysql

from tests import helpers

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
FULL = os.environ.get("ROLE_STASH_GALERA") == "full"
# ROLE_STASH_GALERA_KEEP=1 keeps the nodes' folders (logs, data) after the
# run, for a post-mortem; the processes are stopped all the same.
KEEP_FOLDER = bool(os.environ.get("ROLE_STASH_GALERA_KEEP"))
NODES = 3
DATABASE = "role_stash_galera"
# A node must be Synced within this, SST or IST included, on a busy machine.
NODE_START_SECONDS = 180
# How long a node's clean shutdown may take before it is killed.
NODE_STOP_SECONDS = 60
# MySQL's "Deadlock found": what Galera answers a transaction that failed
# certification or was aborted by a replicated one (a "brute force" abort).
DEADLOCK = 1213


class GaleraRun:
    """The load of one run: the short form by default, the long one with
    ROLE_STASH_GALERA=full."""

    full = FULL
    # Writer threads per node.
    writers_per_node = 4 if FULL else 2
    # Seconds of writes through every node at once.
    all_nodes_seconds = 60.0 if FULL else 4.0
    # Seconds of load before a kill, and after a killed node is back.
    before_kill_seconds = 20.0 if FULL else 1.5
    after_rejoin_seconds = 20.0 if FULL else 1.0
    # The nodes killed in turn (numbers from 1), each rejoining before the
    # next is killed: node 1 bootstrapped the cluster.
    killed_nodes = (3, 1, 2) if FULL else (3,)


def _as_mysql():
    """The command prefix that runs a server program as the mysql user
    (when root), dying with the test process should it die first."""
    prefix = ["setpriv", "--pdeathsig=KILL"]
    if os.geteuid() == 0:
        prefix += ["--reuid=mysql", "--regid=mysql", "--init-groups"]
    return prefix + ["--"]


class GaleraUnavailable(Exception):
    """What a cluster needs is missing, or it would not start."""


class Node:
    """One mariadbd of the cluster: its folder, its ports, its process."""

    def __init__(self, number, folder):
        self.number = number
        self.name = f"node{number}"
        self.folder = folder
        self.port = helpers.free_port()
        self.gcomm_port = helpers.free_port()
        self.ist_port = helpers.free_port()
        self.sst_port = helpers.free_port()
        self.process = None
        self.boots = 0

    @property
    def config(self):
        return self.folder / "my.cnf"

    @property
    def boot_log(self):
        """The error log of the node's latest boot."""
        return self.folder / f"boot-{self.boots}.log"

    def url(self, **query):
        """The SQLAlchemy URL of the test database through this node."""
        parameters = "&".join(f"{key}={value}" for key, value in
                              {"charset": "utf8mb4", **query}.items())
        return (f"mysql+pymysql://root@127.0.0.1:{self.port}/{DATABASE}"
                f"?{parameters}")

    def connect(self, database=None, sync_wait=None):
        """A raw PyMySQL connection in autocommit; with sync_wait, its
        reads wait until the node has applied every write the cluster
        committed before them (wsrep_sync_wait)."""
        return pymysql.connect(
            host="127.0.0.1", port=self.port, user="root",
            database=database, autocommit=True, connect_timeout=5,
            charset="utf8mb4",
            init_command=(None if sync_wait is None else
                          f"SET SESSION wsrep_sync_wait = {int(sync_wait)}"))

    def status(self, *names):
        """{name: value} of the node's wsrep status variables."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep%%'")
                values = dict(cursor.fetchall())
        finally:
            connection.close()
        return {name: values.get(name) for name in names}

    def alive(self):
        return self.process is not None and self.process.poll() is None


class GaleraCluster:
    """Three nodes on loopback, in a folder of their own; stop() ends every
    process it started and removes the folder."""

    def __init__(self):
        for program in ("mariadbd", "mariadb-install-db", "rsync",
                        "wsrep_sst_rsync", "setpriv"):
            if shutil.which(program) is None and not os.path.exists(
                    f"/usr/sbin/{program}"):
                raise GaleraUnavailable(f"{program} is not installed")
        if not os.path.exists(PROVIDER):
            raise GaleraUnavailable(f"no Galera provider at {PROVIDER} "
                                    f"(Debian's galera-4)")
        if os.geteuid() == 0:
            pwd.getpwnam("mysql")
        self.folder = pathlib.Path(
            tempfile.mkdtemp(prefix="role_stash_galera_"))
        self.nodes = [Node(number, self.folder / f"node{number}")
                      for number in range(1, NODES + 1)]
        self.started_seconds = None
        self.state_transfers = collections.Counter()

    def _write_configs(self):
        peers = ",".join(f"127.0.0.1:{node.gcomm_port}" for node in self.nodes)
        for node in self.nodes:
            (node.folder / "data").mkdir(parents=True)
            provider_options = ";".join((
                "base_host=127.0.0.1", f"base_port={node.gcomm_port}",
                f"gmcast.listen_addr=tcp://127.0.0.1:{node.gcomm_port}",
                f"ist.recv_addr=127.0.0.1:{node.ist_port}",
                "gcache.size=64M",
                # A killed node is dropped sooner than the default 5 s:
                # the writes of the survivors stall until it is.
                "evs.suspect_timeout=PT3S"))
            node.config.write_text(f"""[mysqld]
datadir={node.folder}/data
socket={node.folder}/mysqld.sock
pid-file={node.folder}/mysqld.pid
port={node.port}
bind-address=127.0.0.1
skip-name-resolve
character-set-server=utf8mb4
performance_schema=OFF
innodb_buffer_pool_size=32M
innodb_log_file_size=16M
# A killed process loses nothing the kernel has: the OS keeps the log.
innodb_flush_log_at_trx_commit=2
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
# Galera replicates InnoDB tables with primary keys only: refuse the rest.
wsrep_mode=REQUIRED_PRIMARY_KEY,STRICT_REPLICATION
wsrep_on=ON
wsrep_provider={PROVIDER}
wsrep_cluster_name=role_stash_test
wsrep_cluster_address=gcomm://{peers}
wsrep_node_name={node.name}
wsrep_node_address=127.0.0.1:{node.gcomm_port}
wsrep_sst_receive_address=127.0.0.1:{node.sst_port}
wsrep_sst_method=rsync
wsrep_provider_options="{provider_options}"
""")
        if os.geteuid() == 0:
            subprocess.run(["chown", "-R", "mysql:mysql", str(self.folder)],
                           check=True)

    def start(self):
        """Make node 1's system tables, bootstrap the cluster on it, and
        join the others one by one (rsync SST from a synced node)."""
        began = time.monotonic()
        self._write_configs()
        first = self.nodes[0]
        installed = subprocess.run(
            _as_mysql() + ["mariadb-install-db",
                           f"--defaults-file={first.config}",
                           "--auth-root-authentication-method=normal",
                           "--skip-test-db", "--wsrep-on=OFF"],
            capture_output=True, text=True, timeout=NODE_START_SECONDS)
        if installed.returncode:
            raise GaleraUnavailable(
                f"mariadb-install-db failed: {installed.stderr[-2000:]}")
        self._spawn(first, "--wsrep-new-cluster")
        self.wait_synced(first, cluster_size=1)
        for size, node in enumerate(self.nodes[1:], start=2):
            self._spawn(node)
            self.wait_synced(node, cluster_size=size)
            self.state_transfers[self.state_transfer(node)] += 1
        self.started_seconds = time.monotonic() - began

    def _spawn(self, node, *options):
        node.boots += 1
        node.process = subprocess.Popen(
            _as_mysql() + ["mariadbd", f"--defaults-file={node.config}",
                           f"--log-error={node.boot_log}", *options],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)

    def wait_synced(self, node, cluster_size=NODES):
        """Return once node is Synced in a primary component of
        cluster_size nodes; raise if it exits or runs out of time."""
        deadline = time.monotonic() + NODE_START_SECONDS
        while time.monotonic() < deadline:
            if not node.alive():
                raise GaleraUnavailable(
                    f"{node.name} exited: {self._log_tail(node)}")
            try:
                status = node.status("wsrep_local_state_comment",
                                     "wsrep_cluster_size", "wsrep_ready")
            except pymysql.err.MySQLError:
                status = {}
            if (status.get("wsrep_local_state_comment") == "Synced"
                    and status.get("wsrep_ready") == "ON"
                    and status.get("wsrep_cluster_size") == str(cluster_size)):
                return
            time.sleep(0.1)
        raise GaleraUnavailable(
            f"{node.name} not Synced in a cluster of {cluster_size} within "
            f"{NODE_START_SECONDS} s: {self._log_tail(node)}")

    def wait_cluster_size(self, size):
        """Return once every live node sees a primary component of size."""
        deadline = time.monotonic() + NODE_START_SECONDS
        for node in self.nodes:
            while node.alive():
                try:
                    status = node.status("wsrep_cluster_size",
                                         "wsrep_cluster_status")
                except pymysql.err.MySQLError:
                    status = {}
                if status == {"wsrep_cluster_size": str(size),
                              "wsrep_cluster_status": "Primary"}:
                    break
                if time.monotonic() > deadline:
                    raise GaleraUnavailable(
                        f"{node.name} does not see {size} nodes: {status}")
                time.sleep(0.1)

    @staticmethod
    def _log_tail(node):
        try:
            return node.boot_log.read_text(errors="replace")[-3000:]
        except OSError as error:
            return f"(no log: {error})"

    def kill(self, node):
        """SIGKILL a node's mariadbd, as a crash would end it."""
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(timeout=NODE_STOP_SECONDS)

    def restart(self, node):
        """Start a killed node again, as Debian's galera_recovery does:
        recover its last committed position from InnoDB, and start from it,
        so it rejoins by IST from a donor's cache instead of a whole SST.
        Return how it caught up: "IST" or "SST"."""
        recover_log = node.folder / f"recover-{node.boots}.log"
        recovered = subprocess.run(
            _as_mysql() + ["mariadbd", f"--defaults-file={node.config}",
                           "--wsrep-recover", f"--log-error={recover_log}"],
            capture_output=True, text=True, timeout=NODE_START_SECONDS)
        positions = re.findall(r"WSREP: Recovered position: (\S+)",
                               recover_log.read_text(errors="replace"))
        if recovered.returncode or not positions:
            raise GaleraUnavailable(
                f"{node.name} recovery failed: "
                f"{recover_log.read_text(errors='replace')[-2000:]}")
        self._spawn(node, f"--wsrep-start-position={positions[-1]}")
        self.wait_synced(node)
        transfer = self.state_transfer(node)
        self.state_transfers[transfer] += 1
        return transfer

    @staticmethod
    def state_transfer(node):
        """How the node's latest boot caught up: "SST" when the rsync
        script copied the data folder, "IST" when the write sets it lacked
        came from a donor's cache (the script runs for both)."""
        log = node.boot_log.read_text(errors="replace")
        return "SST" if "rsync SST completed on joiner" in log else "IST"

    @staticmethod
    def ist_write_sets(node):
        """How many write sets the node's latest boot received by IST."""
        return sum(int(count) for count in re.findall(
            r"Receiving IST: (\d+) writesets",
            node.boot_log.read_text(errors="replace")))

    def stop(self):
        """Shut every node down (killed if it will not), remove the folder."""
        for node in reversed(self.nodes):
            if node.alive():
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(timeout=NODE_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=NODE_STOP_SECONDS)
        if KEEP_FOLDER:
            print(f"Galera nodes' folders kept in {self.folder}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)

