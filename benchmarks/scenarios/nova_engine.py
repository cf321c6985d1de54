"""Nova's engine: the stash read, as Nova runs it, beside Nova's own path.

A database with Nova's main schema made by Nova's own migrations and
role_stash's beside it; instances written by Nova's objects (a flavor, an
info cache, twenty system_metadata keys, boot_roles among them), the rest
of a size copied row for row from them, and a stash for each. Every read
goes through `repository_for(context).get_stash(uuid)` on a context
manager made by Nova's create_context_manager (Nova's [database] defaults,
oslo.db's thread_checkin on), as a guest's metadata request has it. Nova
is imported here only when the scenario runs: it is a test dependency.
"""

import statistics
import uuid

import sqlalchemy as sa

from benchmarks import database as databases
from benchmarks import harness
from role_stash.db import api
from role_stash.db.values import Stash

# A guest's metadata request comes from this address (TEST-NET-1).
GUEST_ADDRESS = "192.0.2.10"
IMAGE_REF = "155d900f-4e14-4e4c-a73d-069cbf4541e6"
ROLE_SETS = (("member", "reader"),
             ("member", "reader", "load-balancer_member"),
             ("admin", "member", "reader"), ("reader",))
# What Nova keeps of a booted image and its owner, with boot_roles: twenty
# system_metadata keys per instance.
IMAGE_SYSTEM_METADATA = {
    "image_base_image_ref": IMAGE_REF, "image_container_format": "bare",
    "image_disk_format": "qcow2", "image_min_disk": "1",
    "image_min_ram": "0", "image_hw_disk_bus": "virtio",
    "image_hw_vif_model": "virtio", "image_hw_machine_type": "q35",
    "image_hw_rng_model": "virtio", "image_hw_qemu_guest_agent": "yes",
    "image_os_distro": "ubuntu", "image_os_type": "linux",
    "image_os_version": "24.04", "image_os_admin_user": "ubuntu",
    "image_owner_specified.openstack.md5": "",
    "image_owner_specified.openstack.object": "images/ubuntu-24.04",
    "image_owner_specified.openstack.sha256": "",
    "owner_project_name": "demo", "owner_user_name": "demo",
}
# The instances a size gets from Nova's objects; the rest are copies.
OBJECT_INSTANCES = 1000
CLONE_BATCH = 1000
ROLE_STASH_TABLES = ("role_stashes", "role_stash_roles")
STASH_BATCH = 1000
MISSING_NOVA = ("the nova extra is not installed "
                "(pip install -e '.[nova]'): the Nova scenario needs Nova's "
                "own migrations and objects")


class NovaMissing(RuntimeError):
    """Nova cannot be imported here."""


_prepared = False


def prepare_nova():
    """Import Nova, parse its configuration (no files: its defaults), and
    register its objects; once per process. NovaMissing without Nova.
    Metadata is served per cell, and Neutron's security groups, the one
    network call of InstanceMetadata, answer none."""
    global _prepared
    try:
        from nova import objects
        from nova.api.metadata import base as metadata_base
        import nova.conf
    except ImportError as error:
        raise NovaMissing(f"{MISSING_NOVA} ({error})") from None
    if not _prepared:
        nova.conf.CONF([], project="nova", default_config_files=[])
        objects.register_all()
        nova.conf.CONF.set_override("local_metadata_per_cell", True,
                                    group="api")
        metadata_base.security_group_api.get_instance_security_groups = (
            lambda context, instance: [])
        _prepared = True


def nova_context(url, context=None, context_manager=None):
    """Return context (default: the admin context a metadata request has,
    no user, no roles, no token) targeted at a cell database on url, as
    nova.context.target_cell sets it: at context_manager, else a new
    context manager of Nova's create_context_manager."""
    import nova.context
    from nova.db.main import api as nova_main_db
    prepare_nova()
    if context is None:
        context = nova.context.get_admin_context()
    context.db_connection = (
        context_manager or nova_main_db.create_context_manager(
            connection=url))
    return context


def user_context(url, index, context_manager=None):
    """A user's RequestContext, as nova-api has at server create, targeted
    as nova_context does."""
    import nova.context
    prepare_nova()
    return nova_context(url, nova.context.RequestContext(
        user_id=f"user-{index % 10_000}", project_id=f"project-{index % 1000}",
        roles=list(ROLE_SETS[index % len(ROLE_SETS)]),
        user_domain_id="default", project_domain_id="default",
        auth_token="a-token-role-stash-never-reads"), context_manager)


def server_version(url, version_sql):
    """The version the server at url gives of itself."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql(version_sql).scalar_one()
    finally:
        engine.dispose()


def role_stash_schema(url):
    """The schema role_stash's tables are in beside Nova's (None: the
    default one), as role_stash places them."""
    from role_stash.db import schemas
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return schemas.locate(connection)
    finally:
        engine.dispose()


def statements_of(engine):
    """role_stash's statements for engine, naming the schema its tables
    are in beside Nova's, as the repository's metadata reads name it."""
    from role_stash.db import dialects
    return dialects.for_dialect(engine.dialect.name, role_stash_schema(
        engine.url.render_as_string(hide_password=False)))


def raw_url(url):
    """url, for a raw client whose SQL names role_stash's tables
    unqualified: on PostgreSQL with role_stash's schema first on its
    search_path, on MySQL in role_stash's database."""
    url = sa.make_url(url)
    schema = role_stash_schema(url)
    if schema is None:
        return url
    if url.get_backend_name() == "postgresql":
        return url.update_query_dict(
            {"options": f"-csearch_path={schema},public"})
    return url.set(database=schema)


def make_schemas(url):
    """Nova's main schema by Nova's own db_sync, then role_stash's."""
    import nova.context
    from nova.db import migration as nova_migration

    from role_stash.db import migration
    admin = nova_context(url, nova.context.get_admin_context())
    try:
        nova_migration.db_sync(context=admin)
    finally:
        admin.db_connection.dispose_pool()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            migration.sync(connection)
    finally:
        engine.dispose()


def new_instance(context, instance_uuid):
    """Return an unsaved objects.Instance as Nova's conductor makes one,
    with a flavor, an empty network info cache and twenty system_metadata
    keys (boot_roles among them)."""
    from nova import objects
    from nova.network import model as network_model
    return objects.Instance(
        context=context, uuid=instance_uuid, project_id=context.project_id,
        user_id=context.user_id, hostname="guest", display_name="guest",
        vm_state="active", power_state=1, image_ref=IMAGE_REF,
        root_device_name="/dev/vda", availability_zone="nova",
        memory_mb=512, vcpus=1, root_gb=1, ephemeral_gb=0,
        metadata={}, system_metadata={
            **IMAGE_SYSTEM_METADATA, "boot_roles": ",".join(context.roles)},
        info_cache=objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo()),
        flavor=objects.Flavor(
            id=1, flavorid="1", name="m1.tiny", memory_mb=512, vcpus=1,
            root_gb=1, ephemeral_gb=0, swap=0, rxtx_factor=1.0,
            vcpu_weight=None, disabled=False, is_public=True,
            extra_specs={}, description=None))


def _instance_tables():
    """Nova's tables a new instance writes rows in, instances first."""
    from nova.db.main import models as nova_models
    return (nova_models.Instance.__table__,
            nova_models.InstanceExtra.__table__,
            nova_models.InstanceInfoCache.__table__,
            nova_models.InstanceSystemMetadata.__table__,
            nova_models.InstanceMetadata.__table__)


class Population:
    """The instances of one database, Nova's and their stashes, grown size
    by size: the first ones by Nova's objects, the rest copies of them."""

    def __init__(self, url, object_instances=OBJECT_INSTANCES):
        self.url = url
        self.object_instances = object_instances
        self.count = 0
        self.projects = {}  # instance UUID: (project, user, roles)

    def grow(self, size):
        """Give the database size instances, each with its stash."""
        made = min(size, self.object_instances)
        context_manager = None
        for index in range(self.count, made):
            context = user_context(self.url, index, context_manager)
            context_manager = context.db_connection
            instance = new_instance(context, databases.uuid_for(index))
            with context_manager.writer.using(context):
                instance.create()
        if context_manager is not None:
            context_manager.dispose_pool()
        if size > made:
            self._copy(max(self.count, made), size, made)
        self._stash(self.count, size)
        engine = sa.create_engine(self.url)
        try:
            analyze = ("ANALYZE TABLE" if engine.dialect.name == "mysql"
                       else "ANALYZE")
            with engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT") as connection:
                schema = role_stash_schema(self.url)
                prefix = "" if schema is None else f"{schema}."
                for table in (*_instance_tables(),
                              *(prefix + name for name in ROLE_STASH_TABLES)):
                    connection.execute(sa.text(f"{analyze} {table}"))
        finally:
            engine.dispose()
        self.count = size

    def _copy(self, low, high, templates):
        """Instances low to high, each a row-for-row copy of template
        number index % templates under its own UUID."""
        tables = _instance_tables()
        engine = sa.create_engine(self.url)
        try:
            with engine.begin() as connection:
                rows = {}  # table: {template UUID: [row]}
                for table in tables:
                    key = table.c.uuid if table.name == "instances" else (
                        table.c.instance_uuid)
                    found = rows[table] = {}
                    for row in connection.execute(sa.select(table).where(
                            key.in_([databases.uuid_for(index) for index in
                                     range(templates)]))).mappings():
                        found.setdefault(row[key.name], []).append(row)
            for start in range(low, high, CLONE_BATCH):
                with engine.begin() as connection:
                    for table in tables:
                        key = "uuid" if table.name == "instances" else (
                            "instance_uuid")
                        copies = [
                            {**{name: value for name, value in row.items()
                                if name != "id"},
                             key: databases.uuid_for(index)}
                            for index in range(start, min(high,
                                                          start + CLONE_BATCH))
                            for row in rows[table].get(databases.uuid_for(
                                index % templates), ())]
                        if copies:
                            connection.execute(table.insert(), copies)
        finally:
            engine.dispose()

    def _stash(self, low, high):
        """A stash per instance low to high, as the instance's creator."""
        repository = api.StashRepository.from_url(self.url)
        try:
            for start in range(low, high, STASH_BATCH):
                stashes = []
                for index in range(start, min(high, start + STASH_BATCH)):
                    template = index % self.object_instances
                    stashes.append(Stash(
                        databases.uuid_for(index),
                        f"project-{template % 1000}",
                        f"user-{template % 10_000}",
                        ROLE_SETS[template % len(ROLE_SETS)], "default",
                        "default"))
                repository.stash_many(stashes)
        finally:
            repository.close()


def block_medians(per_block):
    """Return the median of each block's samples."""
    return [statistics.median(samples) for samples in per_block]


def spread(values, digits=2):
    """Return (median, min, max) of values, rounded."""
    return (round(statistics.median(values), digits),
            round(min(values), digits), round(max(values), digits))


def new_uuids(count):
    """Return count fresh instance UUIDs (of instances a create makes)."""
    return [str(uuid.uuid4()) for _ in range(count)]


def progress(backend, message):
    harness.progress(f"{backend}: Nova's engine: {message}")
