"""Nova's own code drives role_stash: Nova 34's schema, made by Nova's own
migrations, Nova's enginefacade context manager and RequestContext, and
Nova's DynamicVendorData POSTing to a local HTTP server; Keystone's
role-name schema is the oracle of what a role name may be.

Needs the `nova` extra (pip install -e '.[test,nova]'); without it these
tests skip. Every fixture that takes a database runs on each backend of the
root conftest (the `server` parameter, through `database_url`).
"""

import collections
import http.server
import json
import os
import queue
import threading
import time
import uuid

from alembic import config as alembic_config
from alembic import script as alembic_script
import pytest
import sqlalchemy as sa

nova_conf = pytest.importorskip("nova.conf",
                                reason="the nova extra is not installed")

from keystone import exception as keystone_exception  # noqa: E402
from keystone.assignment import schema as keystone_role_schema  # noqa: E402
from keystone.common import validation as keystone_validation  # noqa: E402
from keystoneauth1 import loading as ks_loading  # noqa: E402
from nova import objects as nova_objects  # noqa: E402
import nova.context  # noqa: E402
from nova.db import migration as nova_migration  # noqa: E402
from nova.db.main import api as nova_main_db  # noqa: E402
from nova.db.main import models as nova_models  # noqa: E402
from nova.network import model as network_model  # noqa: E402

from role_stash.conf import vendordata as conf_vendordata  # noqa: E402
from role_stash.db import api  # noqa: E402
from role_stash.db import engines  # noqa: E402
from role_stash.db import migration  # noqa: E402
from role_stash.db import models  # noqa: E402
from role_stash.db import oslo_internals  # noqa: E402
from role_stash.db import schemas as stash_schemas  # noqa: E402
from role_stash.nova import vendordata  # noqa: E402
from tests import helpers  # noqa: E402

CONF = nova_conf.CONF

# Nova's main schema at its head (nova/db/main/migrations/versions).
NOVA_VERSION_TABLE = "alembic_version"

# A server must answer the vendordata POSTs of one test well within this.
VENDORDATA_SERVER_LIFETIME = 60.0

_nova_schema_seconds = collections.defaultdict(list)


@pytest.fixture(scope="session", autouse=True)
def _nova_configured():
    """Nova's configuration parsed once, with no files (policy, contexts and
    objects need it), and Nova's versioned objects registered."""
    CONF([], project="nova", default_config_files=[])
    nova_objects.register_all()
    yield CONF
    CONF.reset()


# --- Databases ------------------------------------------------------------

def migrate_nova(url):
    """Create Nova's main schema at its head on url with Nova's own
    db_sync, on a context manager of its own (as a cell's would be)."""
    context_manager = nova_main_db.create_context_manager(connection=url)
    admin = nova.context.get_admin_context()
    admin.db_connection = context_manager
    try:
        nova_migration.db_sync(context=admin)
    finally:
        context_manager.writer.get_engine().dispose()


def migrate_role_stash(url, target="head", schema=stash_schemas.AUTOMATIC):
    """Upgrade role_stash's schema on url through its public migration API
    (schema: where its tables go, by default where it places them)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            migration.upgrade(connection, target, schema)
    finally:
        engine.dispose()


def role_stash_schema(url):
    """The schema role_stash's tables are in on url, None for the default
    one (role_stash.db.schemas.locate)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return stash_schemas.locate(connection)
    finally:
        engine.dispose()


def role_stash_tables(schema):
    """role_stash's tables in schema, children first."""
    return list(reversed(models.metadata_in(schema).sorted_tables))


def _table_shapes(inspector, schema):
    return {name: (tuple(sorted(column["name"] for column in
                                inspector.get_columns(name, schema))),
                   tuple(sorted(str(index["name"]) for index in
                                inspector.get_indexes(name, schema))))
            for name in inspector.get_table_names(schema)}


def schema_state(url):
    """{table: (column names, index names)} of the default schema, the
    same of role_stash's schema when it has one of its own, and the two
    version tables' revisions of the database at url."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            own = stash_schemas.locate(connection)
            tables = _table_shapes(inspector, None)
            own_tables = {} if own is None else _table_shapes(inspector, own)
            versions = {}
            for table, schema, names in (
                    (NOVA_VERSION_TABLE, None, tables),
                    (migration.VERSION_TABLE, own, {**tables, **own_tables})):
                if table in names:
                    versions[table] = connection.execute(sa.select(
                        sa.table(table, sa.column("version_num"),
                                 schema=schema))).scalars().all()
            return {**tables, **own_tables}, versions
    finally:
        engine.dispose()


def nova_head_revision():
    """The head of Nova's main schema, read from Nova's own scripts."""
    ini = os.path.join(os.path.dirname(nova_main_db.__file__), "alembic.ini")
    return alembic_script.ScriptDirectory.from_config(
        alembic_config.Config(ini)).get_current_head()


def role_stash_head_revision():
    """The head of role_stash's schema."""
    return migration.revisions()[-1].revision


@pytest.fixture
def schemas():
    """The schema tools as one namespace, for tests (a conftest cannot be
    imported under --import-mode=importlib)."""
    class Schemas:
        install_nova = staticmethod(migrate_nova)
        install_role_stash = staticmethod(migrate_role_stash)
        state = staticmethod(schema_state)
        role_stash_schema = staticmethod(role_stash_schema)
        role_stash_tables = staticmethod(role_stash_tables)
        nova_head = staticmethod(nova_head_revision)
        role_stash_head = staticmethod(role_stash_head_revision)
    return Schemas


def timed_migrate_nova(url, backend):
    """migrate_nova, its time kept for the run's summary."""
    started = time.perf_counter()
    migrate_nova(url)
    _nova_schema_seconds[backend].append(time.perf_counter() - started)


@pytest.fixture
def nova_database_url(database_url, server):
    """A throw-away database holding Nova's main schema, made by Nova's own
    migrations (nova.db.migration.db_sync)."""
    timed_migrate_nova(database_url, server.name)
    return database_url


@pytest.fixture
def shared_database_url(nova_database_url):
    """One database holding Nova's main schema and role_stash's, each at
    its head in its own version table (Nova's first)."""
    helpers.upgrade(nova_database_url)
    return nova_database_url


@pytest.fixture(scope="session")
def nova_shared_url(server):
    """A database of this run holding both schemas at their heads, shared
    by the tests of one backend (see nova_context_manager: emptied after
    each test). Nova's migrations take about a second per database on
    MariaDB, which every test would pay otherwise."""
    url = server.new_database()
    timed_migrate_nova(url, server.name)
    helpers.upgrade(url)
    yield url
    server.drop_database(url)


_VERSION_TABLES = (NOVA_VERSION_TABLE, migration.VERSION_TABLE)
_tables_of = {}


def empty_tables(engine):
    """Delete every row of every table but the two version tables,
    children before parents, role_stash's wherever they are."""
    key = engine.url.render_as_string(hide_password=False)
    tables = _tables_of.get(key)
    if tables is None:
        metadata = sa.MetaData()
        metadata.reflect(bind=engine)
        tables = [table for table in reversed(metadata.sorted_tables)
                  if table.name not in _VERSION_TABLES]
        own = role_stash_schema(key)
        if own is not None:
            tables = role_stash_tables(own) + tables
        _tables_of[key] = tables
    with engine.begin() as connection:
        for table in tables:
            connection.execute(table.delete())


@pytest.fixture
def nova_context_manager(nova_shared_url):
    """nova.db.main.api.context_manager, Nova's global, on the shared
    database for this test: a factory patched in as Nova's Database test
    fixture does (oslo.db's ReplaceEngineFacadeFixture, patch_factory),
    and Nova's own factory put back after, the rows deleted."""
    replacement = nova_main_db.create_context_manager(
        connection=nova_shared_url)
    restore = nova_main_db.context_manager.patch_factory(replacement)
    try:
        yield nova_main_db.context_manager
    finally:
        restore()
        engine = replacement.writer.get_engine()
        try:
            empty_tables(engine)
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def stash_table_name(nova_shared_url):
    """stash_table_name(table): role_stash's table as SQL names it on the
    shared database, in the schema role_stash's tables are in."""
    schema = role_stash_schema(nova_shared_url)
    preparer = sa.create_engine(nova_shared_url).dialect.identifier_preparer
    return lambda name: preparer.format_table(sa.table(name, schema=schema))


@pytest.fixture
def nova_engine(nova_context_manager):
    """The engine under Nova's context manager, to look at Nova's rows."""
    return nova_context_manager.writer.get_engine()


@pytest.fixture
def live_instances(nova_engine):
    """live_instances(uuid): how many live rows Nova's instances table has
    for uuid, seen from outside any transaction."""

    def count(instance_uuid):
        with nova_engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT COUNT(*) FROM instances WHERE uuid = :uuid "
                "AND deleted = 0"), {"uuid": instance_uuid}).scalar_one()

    return count


NOVA_INSTANCES = nova_models.Instance.__table__
NOVA_SYSTEM_METADATA = nova_models.InstanceSystemMetadata.__table__


def nova_instance(instance_uuid=None, *, project_id="project-a",
                  user_id="user-a", boot_roles="member,reader",
                  deleted=False):
    """One instance for add_instances: boot_roles is Nova's value, None for
    no boot_roles row, or a list of values for several rows."""
    return {"uuid": instance_uuid or str(uuid.uuid4()),
            "project_id": project_id, "user_id": user_id,
            "boot_roles": boot_roles, "deleted": deleted}


def insert_nova_instances(connection, instances):
    """INSERT instances (nova_instance() dicts) into Nova's real instances
    and instance_system_metadata tables, by Nova's own table definitions,
    on a connection in a transaction; a deleted one gets deleted = its id,
    as Nova's soft delete sets it. Return their UUIDs."""
    metadata = []
    for instance in instances:
        values = instance["boot_roles"]
        if values is not None:
            for value in values if isinstance(values, list) else [values]:
                metadata.append({"instance_uuid": instance["uuid"],
                                 "key": "boot_roles", "value": value})
    connection.execute(NOVA_INSTANCES.insert(), [
        {"uuid": instance["uuid"], "project_id": instance["project_id"],
         "user_id": instance["user_id"], "vm_state": "active"}
        for instance in instances])
    if metadata:
        connection.execute(NOVA_SYSTEM_METADATA.insert(), metadata)
    deleted = [instance["uuid"] for instance in instances
               if instance["deleted"]]
    if deleted:
        connection.execute(
            NOVA_INSTANCES.update()
            .where(NOVA_INSTANCES.c.uuid.in_(deleted))
            .values(deleted=NOVA_INSTANCES.c.id, deleted_at=sa.func.now()))
    return [instance["uuid"] for instance in instances]


@pytest.fixture(scope="session")
def _cell_context_manager(nova_shared_url):
    context_manager = engines.context_manager_from_url(nova_shared_url)
    yield context_manager
    context_manager.dispose_pool()


@pytest.fixture
def cell_database(_cell_context_manager):
    """The shared database of both schemas as role-stash-manage sees a
    cell's database: an enginefacade context manager of role_stash's on
    it. After the test the rows of the tables role_stash reads or writes
    (instances, instance_system_metadata, its own) are deleted; a test
    that lets Nova's objects write more takes nova_context_manager."""
    yield _cell_context_manager
    tables = [*role_stash_tables(role_stash_schema(
                  oslo_internals.configured_url(_cell_context_manager))),
              NOVA_SYSTEM_METADATA, NOVA_INSTANCES]
    with _cell_context_manager.writer.get_engine().begin() as connection:
        for table in tables:
            connection.execute(table.delete())


@pytest.fixture
def add_instances(cell_database):
    """add_instances(*instances): the instances (nova_instance() dicts)
    INSERTed into Nova's real tables of the cell database, committed;
    returns their UUIDs."""
    def add(*instances):
        with cell_database.writer.get_engine().begin() as connection:
            return insert_nova_instances(connection, instances)
    return add


@pytest.fixture
def creating_instances(cell_database):
    """creating_instances(*instances): a transaction, left open, of a
    connection of its own that INSERTed the instances into Nova's tables,
    as a server create's is before its COMMIT: the test commits it, or it
    is rolled back after the test."""
    opened = []

    def create(*instances):
        connection = cell_database.writer.get_engine().connect()
        transaction = connection.begin()
        opened.append(connection)
        insert_nova_instances(connection, instances)
        return transaction

    yield create
    for connection in opened:
        connection.close()


@pytest.fixture
def instance():
    """instance(...): one instance for add_instances (see nova_instance)."""
    return nova_instance


@pytest.fixture
def nova_repository(nova_context_manager):
    """A StashRepository on Nova's own context manager, as an integrator
    builds it; closed after the test."""
    repository = api.StashRepository(nova_context_manager)
    yield repository
    repository.close()


@pytest.fixture
def cell(nova_shared_url, new_uuid):
    """A cell mapping whose database is the shared test database, as
    conductor targets it; its context manager dropped after."""
    mapping = nova_objects.CellMapping(
        uuid=new_uuid(), name="cell1", transport_url="none:///",
        database_connection=nova_shared_url)
    yield mapping
    cached = nova.context.CELL_CACHE.pop(mapping.uuid, None)
    if cached is not None:
        cached[0].dispose_pool()


@pytest.fixture
def network_and_flavor():
    """What Nova's metadata handler reads of an instance beyond its row:
    an empty network info cache and a flavor, for objects.Instance(...)."""
    return {
        "info_cache": nova_objects.InstanceInfoCache(
            network_info=network_model.NetworkInfo()),
        "flavor": nova_objects.Flavor(
            id=1, flavorid="1", name="m1.tiny", memory_mb=512, vcpus=1,
            root_gb=1, ephemeral_gb=0, swap=0, rxtx_factor=1.0,
            vcpu_weight=None, disabled=False, is_public=True,
            extra_specs={}, description=None)}


@pytest.fixture
def service_account():
    """service_account(endpoint, token): configure [vendordata_dynamic_auth]
    with keystoneauth1's admin_token plugin (standing in for a Keystone
    account), every call then carrying token; undone after the test."""
    group = conf_vendordata.AUTH_GROUP
    conf_vendordata.register_options(CONF)
    CONF.register_opts(
        ks_loading.get_auth_plugin_conf_options("admin_token"), group)
    names = ("auth_type", "token", "endpoint")

    def configure(endpoint, token):
        for name, value in zip(names, ("admin_token", token, endpoint)):
            CONF.set_override(name, value, group=group)
        vendordata.forget_sessions()  # the account was just configured

    yield configure
    for name in names:
        CONF.clear_override(name, group=group)
    vendordata.forget_sessions()


# --- Nova contexts and instances -------------------------------------------

@pytest.fixture
def new_uuid():
    """new_uuid(): a random instance UUID, in Nova's lower-case form."""
    return lambda: str(uuid.uuid4())


@pytest.fixture
def make_user_context():
    """make_user_context(roles=...): a real nova.context.RequestContext of
    a user with a token, as nova-api has at server create."""

    def make(roles=("member", "reader"), project_id=None, user_id=None):
        return nova.context.RequestContext(
            user_id=user_id or uuid.uuid4().hex,
            project_id=project_id or uuid.uuid4().hex,
            roles=list(roles),
            user_domain_id="default", project_domain_id="default",
            auth_token="a-token-role-stash-never-reads")

    return make


@pytest.fixture
def user_context(make_user_context):
    return make_user_context()


# --- Keystone's role-name schema: the oracle ---------------------------------

def keystone_accepts_role_name(name):
    """Whether Keystone's own role-create schema accepts name, validated by
    Keystone's own validator."""
    try:
        keystone_validation.lazy_validate(
            keystone_role_schema.role_create_request_body,
            {"role": {"name": name}})
    except keystone_exception.SchemaValidationError:
        return False
    return True


@pytest.fixture
def keystone_role_name_oracle():
    return keystone_accepts_role_name


# --- A local HTTP server for Nova's dynamic vendordata ---------------------

class VendordataServer:
    """A JSON endpoint on 127.0.0.1 at a random port, in a thread, that
    records every body POSTed to it and answers {}; it stops at close(),
    or by itself after `lifetime` seconds."""

    def __init__(self, lifetime=VENDORDATA_SERVER_LIFETIME):
        self.bodies = queue.Queue()
        self.headers = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                recorder.headers.append(dict(self.headers))
                recorder.bodies.put(json.loads(self.rfile.read(length)))
                answer = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="vendordata-server", daemon=True)
        self._deadline = threading.Timer(lifetime, self._server.shutdown)
        self._deadline.daemon = True
        self._thread.start()
        self._deadline.start()

    def next_body(self, timeout=10):
        """The next body POSTed (they are all in by the time Nova's
        synchronous POST returns)."""
        return self.bodies.get(timeout=timeout)

    def close(self):
        self._deadline.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def vendordata_server(monkeypatch):
    """A recording vendordata endpoint, configured as Nova's one dynamic
    vendordata target (`[api] vendordata_dynamic_targets`), its
    `DynamicJSON` provider enabled."""
    server = VendordataServer()
    # The endpoint is local: no proxy from the environment may take the POST.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    CONF.set_override("vendordata_dynamic_targets",
                      [f"role_stash_test@{server.url}"], group="api")
    CONF.set_override("vendordata_providers", ["StaticJSON", "DynamicJSON"],
                      group="api")
    try:
        yield server
    finally:
        CONF.clear_override("vendordata_dynamic_targets", group="api")
        CONF.clear_override("vendordata_providers", group="api")
        server.close()


def pytest_terminal_summary(terminalreporter):
    for name, seconds in sorted(_nova_schema_seconds.items()):
        terminalreporter.write_line(
            f"nova main schema (db_sync) on {name}: {len(seconds)} made, "
            f"mean {sum(seconds) / len(seconds):.2f} s, "
            f"max {max(seconds):.2f} s")
