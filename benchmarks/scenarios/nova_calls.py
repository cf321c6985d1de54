"""Single calls on Nova's engine, one process: the stash read against each raw
driver and beside Nova's own boot_roles path and InstanceMetadata build;
Nova's create with and without its stash; a lone write's round trips as
the server counts them; where a read's client CPU goes, layer by layer.

Every comparison is interleaved call by call and cut into blocks: a
figure is the median of the blocks' medians, with the blocks' [min-max].
"""

import contextlib
import dataclasses
import functools
import time

from benchmarks import harness
from benchmarks import raw
from benchmarks.scenarios import nova_engine
from benchmarks.scenarios import read_cost
from role_stash.nova import repositories

# Nova's own paths are 10 to 50 times slower than the read: they run every
# NOVA_EVERY rounds of the interleaving, so each block still holds enough.
NOVA_EVERY = 4
ROUND_TRIP_CALLS = 50
# MariaDB's per-session counters of what a client sent: statements, and
# the admin commands (a ping among them).
_SESSION_COUNTERS = ("SHOW SESSION STATUS WHERE Variable_name IN "
                     "('Questions', 'Com_admin_commands')")


@dataclasses.dataclass
class Side(harness.Side):
    """A contender called every `every` rounds, its times kept per block."""

    every: int = 1
    blocks: list = dataclasses.field(default_factory=list)


def interleave_in_blocks(sides, rounds, blocks, warmup):
    """Call the sides in turn, one call at a time (each every side.every
    rounds), blocks x rounds rounds after warmup untimed calls each; fill
    in each side's times_ns and blocks (a list of times per block)."""
    for side in sides:
        for arg in side.args[:warmup]:
            side.call(arg)
    order = list(sides)
    for block in range(blocks):
        for side in sides:
            side.blocks.append([])
        for number in range(rounds):
            index = warmup + block * rounds + number
            for side in order:
                if number % side.every:
                    continue
                arg = side.args[index % len(side.args)]
                began = time.perf_counter_ns()
                side.call(arg)
                elapsed = time.perf_counter_ns() - began
                side.times_ns.append(elapsed)
                side.blocks[-1].append(elapsed)
            order.append(order.pop(0))


def _p50s_us(side):
    return [value / 1000 for value in nova_engine.block_medians(side.blocks)]


def _ratios(ours, theirs):
    return [a / b for a, b in zip(_p50s_us(ours), _p50s_us(theirs),
                                   strict=True)]


def _compared(ours, theirs):
    """The timing fields of ours against theirs: p50 the median of block
    medians, ratio_p50 the median of the blocks' ratios, with their range."""
    fields = harness.comparison(ours.times_ns, theirs.times_ns)
    ratio, low, high = nova_engine.spread(_ratios(ours, theirs))
    fields.update(p50_us=round(nova_engine.spread(_p50s_us(ours))[0], 1),
                  raw_p50_us=round(nova_engine.spread(_p50s_us(theirs))[0], 1),
                  ratio_p50=ratio, ratio_p50_min=low, ratio_p50_max=high,
                  blocks=len(ours.blocks))
    return fields


def _floor_fields(prefix, floor, theirs):
    """The fields of a floor side against theirs, named prefix_*: its p50
    and the median of the blocks' ratios, with their range."""
    fields = _compared(floor, theirs)
    return {f"{prefix}_{key}": fields[key] for key in (
        "p50_us", "ratio_p50", "ratio_p50_min", "ratio_p50_max")}


def get_stash_of(context):
    """The metadata GET's read as Nova's process makes it."""
    return lambda instance_uuid: repositories.repository_for(
        context).get_stash(instance_uuid)


def boot_roles_of(context):
    """Nova's own path to an instance's boot roles."""
    from nova import objects
    return lambda instance_uuid: objects.Instance.get_by_uuid(
        context, instance_uuid,
        expected_attrs=["system_metadata"]).system_metadata["boot_roles"]


def instance_metadata_of(context):
    """Nova's metadata request up to vendordata: the instance with every
    attribute the handler asks for, and InstanceMetadata built of it."""
    from nova.api.metadata import base as metadata_base
    return lambda instance_uuid: metadata_base.get_metadata_by_instance_id(
        instance_uuid, nova_engine.GUEST_ADDRESS, context)


class NovaClients:
    """Per driver: a guest's context on a Nova context manager, and a raw
    client with its held connection."""

    def __init__(self, database):
        self.database = database
        self.contexts, self.raws = {}, {}
        with contextlib.ExitStack() as stack:
            for driver in database.drivers:
                url = database.url_for(driver).render_as_string(
                    hide_password=False)
                context = self.contexts[driver.name] = (
                    nova_engine.nova_context(url))
                stack.callback(context.db_connection.dispose_pool)
                client = self.raws[driver.name] = raw.RawClient(
                    driver, nova_engine.raw_url(database.url_for(driver)),
                    database.backend.arrays, writes=False)
                stack.callback(client.close)
            self.close = stack.pop_all().close

    def check_same_answers(self, uuids):
        """Fail unless the repository, Nova's boot_roles and each raw
        driver give every instance the same roles."""
        for name, context in self.contexts.items():
            for instance_uuid in uuids:
                stashed = get_stash_of(context)(instance_uuid).roles
                nova = tuple(boot_roles_of(context)(instance_uuid).split(","))
                found = {
                    raw_name: client.statements.roles_by_uuid(
                        client.get_stash(instance_uuid))[instance_uuid]
                    for raw_name, client in self.raws.items()}
                if {stashed, nova, *found.values()} != {stashed}:
                    raise RuntimeError(
                        f"{instance_uuid}: {name} stash {stashed}, Nova "
                        f"{nova}, raw {found}")


def time_reads(clients, rows, settings):
    """Return the read records of one size: each repository driver against
    each raw driver, with Nova's peers on the repository's driver."""
    backend = clients.database.backend.name
    uuids = clients.database.random_uuids(
        settings.warmup + settings.rounds * settings.blocks)
    clients.check_same_answers(uuids[:5])
    sides = {}
    for name, client in clients.raws.items():
        sides["raw", name] = Side(f"raw {name}", client.get_stash, uuids)
    with contextlib.ExitStack() as stack:
        for name, context in clients.contexts.items():
            sides["repository", name] = Side(f"repository {name}",
                                             get_stash_of(context), uuids)
            lone = repositories.repository_for(context).lone_engines
            sides["core", name] = Side(f"core {name}", read_cost.floor_read(
                lone, nova_engine.statements_of(lone.reader()), stack),
                uuids)
            sides["boot_roles", name] = Side(f"boot_roles {name}",
                                             boot_roles_of(context), uuids,
                                             every=NOVA_EVERY)
            sides["metadata", name] = Side(
                f"metadata {name}", instance_metadata_of(context), uuids,
                every=NOVA_EVERY)
        nova_engine.progress(backend, f"reads at {rows}: {settings.blocks} "
                             f"blocks of {settings.rounds} rounds")
        interleave_in_blocks(list(sides.values()), settings.rounds,
                             settings.blocks, settings.warmup)
    records = []
    for name in clients.contexts:
        ours = sides["repository", name]
        share = nova_engine.spread(
            [100 * ratio for ratio in _ratios(ours, sides["metadata", name])])
        boot_roles = sides["boot_roles", name]
        metadata = sides["metadata", name]
        for raw_name in clients.raws:
            records.append({
                "backend": backend, "engine": "nova", "driver": name,
                "raw_driver": raw_name, "operation": "read", "rows": rows,
                **_compared(ours, sides["raw", raw_name]),
                **_floor_fields("core", sides["core", name],
                                sides["raw", raw_name]),
                "boot_roles_p50_us": round(nova_engine.spread(
                    _p50s_us(boot_roles))[0], 1),
                "instance_metadata_p50_us": round(nova_engine.spread(
                    _p50s_us(metadata))[0], 1),
                "boot_roles_ratio_p50": nova_engine.spread(
                    _ratios(boot_roles, ours))[0],
                "share_of_metadata_pct": share[0],
                "share_of_metadata_pct_min": share[1],
                "share_of_metadata_pct_max": share[2]})
    samples = [{"backend": backend, "operation": "read", "rows": rows,
                "label": side.label, "times_ns": side.times_ns}
               for (kind, _), side in sides.items()
               if kind in ("raw", "repository")]
    return records, samples


def time_creates(clients, settings):
    """Return per driver the create record: Nova's instance.create() in
    its writer transaction with the stash (stash_from_context) against
    the same without; and beside them, as the floor of any stash written
    in Nova's transaction, the same create with the raw driver writing a
    stash's rows on Nova's connection (raw_stash_*)."""
    backend = clients.database.backend.name
    records = []
    calls = settings.warmup + settings.create_rounds * settings.blocks
    for driver in clients.database.drivers:
        name = driver.name
        url = clients.database.url_for(driver).render_as_string(
            hide_password=False)
        creator = nova_engine.user_context(url, 0)
        statements = raw.Statements(
            clients.database.backend.arrays, driver.placeholder,
            nova_engine.role_stash_schema(url))

        def create(instance_uuid, stash, creator=creator,
                   statements=statements):
            with creator.db_connection.writer.using(creator) as session:
                nova_engine.new_instance(creator, instance_uuid).create()
                if stash == "repository":
                    repositories.repository_for(creator).stash_from_context(
                        creator, instance_uuid)
                elif stash == "raw":
                    statements.write(
                        session.connection().connection.dbapi_connection,
                        instance_uuid)

        with_stash, alone, with_raw_stash = (
            Side(title, functools.partial(create, stash=stash),
                 nova_engine.new_uuids(calls))
            for title, stash in (("create with stash", "repository"),
                                 ("create", None),
                                 ("create with a raw stash", "raw")))
        nova_engine.progress(backend, f"creates on {name}: {calls} each")
        try:
            interleave_in_blocks([with_stash, alone, with_raw_stash],
                                 settings.create_rounds, settings.blocks,
                                 settings.warmup)
        finally:
            creator.db_connection.dispose_pool()
        records.append({
            "backend": backend, "engine": "nova", "driver": name,
            "raw_driver": name, "operation": "create",
            "rows": clients.database.populated,
            "baseline": "Nova's create without a stash",
            **_compared(with_stash, alone),
            **_floor_fields("raw_stash", with_raw_stash, alone)})
    return records


def _session_counters(connection):
    cursor = connection.cursor()
    cursor.execute(_SESSION_COUNTERS)
    total = sum(int(value) for _, value in cursor.fetchall())
    cursor.close()
    return total


def mariadb_write_round_trips(clients, calls=ROUND_TRIP_CALLS):
    """Return (repository, raw) requests per lone write of a new stash on
    PyMySQL, as the server counts them (its session's Questions and admin
    commands, a ping among them): the repository on a Nova context
    manager whose pools hold one connection, so that the counters read
    between the writes, on the engine of its lone writes, are that
    connection's."""
    from nova import conf as nova_conf
    driver = raw.DRIVERS["pymysql"]
    url = clients.database.url_for(driver)
    conf = nova_conf.CONF
    conf.set_override("max_pool_size", 1, group="database")
    conf.set_override("max_overflow", 0, group="database")
    try:
        context = nova_engine.nova_context(
            url.render_as_string(hide_password=False))
    finally:
        conf.clear_override("max_pool_size", group="database")
        conf.clear_override("max_overflow", group="database")
    repository = repositories.repository_for(context)
    engine = repository.lone_engines.writer()

    def counted(count):
        with engine.connect() as connection:
            before = _session_counters(connection.connection.dbapi_connection)
        for instance_uuid in nova_engine.new_uuids(count):
            repository.stash_roles(instance_uuid, project_id="project-w",
                                   user_id="user-w", roles=list(raw.ROLES))
        with engine.connect() as connection:
            return _session_counters(
                connection.connection.dbapi_connection) - before

    client = raw.RawClient(driver, nova_engine.raw_url(url), arrays=False)
    try:
        counted(1)  # the pool's one connection, opened
        ours = (counted(calls) - counted(0)) / calls
        before = _session_counters(client.writer)
        for instance_uuid in nova_engine.new_uuids(calls):
            client.stash_roles(instance_uuid)
        theirs = (_session_counters(client.writer) - before - 1) / calls
    finally:
        client.close()
        context.db_connection.dispose_pool()
    return ours, theirs


# {layer: the layer it adds to (None: none)}. The repository reads on a
# Connection it keeps (kept_connections), so it adds to core_held; core
# (a Connection per read, checked out of the pool and in) shows what that
# saves. sleep0 is thread_checkin's time.sleep(0) alone, for comparison.
CPU_LAYERS = {"raw": None, "pool": "raw", "core_held": "raw",
              "core": "core_held", "repository": "core_held", "sleep0": None}


def _layer_reads(clients, name, stack):
    """Return {layer: read(instance_uuid)} of one driver under Nova's
    settings: the layers below the repository on the engine its lone
    reads use, made of the Nova context manager's settings."""
    context = clients.contexts[name]
    repository = repositories.repository_for(context)
    engine = repository.lone_engines.reader()
    statements = nova_engine.statements_of(engine)
    # role_stash's tables beside Nova's are in a schema of their own: the
    # pool layer's SQL names it as the repository's reads do.
    sql = raw.Statements(clients.database.backend.arrays,
                         clients.raws[name].driver.placeholder,
                         statements.schema).read

    return {"raw": clients.raws[name].get_stash,
            "pool": read_cost.pooled_read(engine, sql),
            "core_held": read_cost.held_read(
                stack.enter_context(engine.connect()), statements),
            "core": read_cost.per_connection_read(engine, statements),
            "repository": get_stash_of(context),
            "sleep0": lambda instance_uuid: time.sleep(0)}


def cpu_by_layer(clients, rows, settings):
    """Return read_cpu records: each layer's client CPU time per read (the
    thread's user and system time, system calls included), layers taking
    turns block by block."""
    backend = clients.database.backend.name
    records = []
    uuids = clients.database.random_uuids(settings.cpu_reads)
    for name in clients.contexts:
        with contextlib.ExitStack() as stack:
            reads = _layer_reads(clients, name, stack)
            per_block = {layer: [] for layer in CPU_LAYERS}
            for read in reads.values():
                for instance_uuid in uuids[:50]:
                    read(instance_uuid)
            nova_engine.progress(backend, f"CPU per read by layer, {name}")
            for _ in range(settings.blocks):
                for layer in CPU_LAYERS:
                    read = reads[layer]
                    began = time.thread_time_ns()
                    for instance_uuid in uuids:
                        read(instance_uuid)
                    per_block[layer].append(
                        (time.thread_time_ns() - began) / len(uuids) / 1000)
        medians = {layer: nova_engine.spread(per_block[layer], 1)
                   for layer in CPU_LAYERS}
        for layer, base in CPU_LAYERS.items():
            median, low, high = medians[layer]
            records.append({
                "backend": backend, "engine": "nova", "driver": name,
                "operation": "read_cpu", "layer": layer, "rows": rows,
                "reads": len(uuids), "cpu_per_read_us": median,
                "cpu_per_read_us_min": low, "cpu_per_read_us_max": high,
                "added_to": base,
                "added": (None if base is None
                          else round(median - medians[base][0], 1))})
    return records
