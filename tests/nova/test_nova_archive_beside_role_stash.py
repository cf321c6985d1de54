"""Nova's own database commands beside role_stash's tables: nova-manage
db archive_deleted_rows --purge, db purge, db online_data_migrations and
db sync, called in-process (nova.cmd.manage.DbCommands) on a cell database
and an API database made by Nova's own migrations, with role_stash's
tables where role_stash places them beside Nova's: a schema of their own
(PostgreSQL), a database of their own (MariaDB), an attached database
(SQLite)."""

import contextlib
import datetime
import json
from unittest import mock

from nova import context as nova_context
from nova import monkey_patch as nova_monkey_patch
from nova.db import migration as nova_migration
from nova.db.api import api as nova_api_db
from nova.db.api import models as nova_api_models
from nova.db.main import api as nova_db
from oslo_db.sqlalchemy import enginefacade
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash.cmd import manage
from role_stash.db import api
from role_stash.db import migration
from role_stash.db import schemas as stash_schemas

# nova-manage's module patches the whole process with eventlet when
# imported, as a nova-manage process wants; this one runs other tests'
# threads and HTTP servers, so the import leaves it as it is.
with mock.patch.object(nova_monkey_patch, "patch"):
    from nova.cmd import manage as nova_manage

LIVE_INSTANCES = 3
DELETED_INSTANCES = 5
INSTANCE_MAPPINGS = nova_api_models.InstanceMapping.__table__
REQUEST_SPECS = nova_api_models.RequestSpec.__table__

# Nova's own PostgreSQL defect, with or without role_stash: its shadow
# table's enum column has a type of its own, and archiving an instance
# fails with DatatypeMismatch. What an operator runs to mend it.
NOVA_LOCKED_BY_FIX = (
    "ALTER TABLE shadow_instances ALTER COLUMN locked_by "
    "TYPE instances0locked_by USING locked_by::text::instances0locked_by")


class NovaCell:
    """A cell database and an API database of Nova's, Nova's global
    context managers on them, and role_stash's repository on the cell's."""

    def __init__(self, cell_url, api_url, context_manager):
        self.cell_url = cell_url
        self.api_url = api_url
        self.context_manager = context_manager
        self.engine = context_manager.writer.get_engine()
        self.api_engine = nova_api_db.context_manager.writer.get_engine()
        self.repository = None

    def install_role_stash(self):
        with self.engine.begin() as connection:
            migration.upgrade(connection)
        self.repository = api.StashRepository(self.context_manager)

    def count(self, table, engine=None, **where):
        statement = sa.select(sa.func.count()).select_from(table)
        for column, value in where.items():
            statement = statement.where(table.c[column] == value)
        with (engine or self.engine).connect() as connection:
            return connection.execute(statement).scalar_one()

    def nova_table(self, name):
        return sa.Table(name, sa.MetaData(), autoload_with=self.engine)

    def create_instances(self, user_context, live, deleted):
        """Instances by Nova's DB API, each with its stash in the same
        transaction when role_stash is installed, and its API mapping and
        request spec; the deleted ones destroyed with their stash."""
        uuids = [f"00000000-0000-4000-8000-{index:012d}"
                 for index in range(live + deleted)]
        for instance_uuid in uuids:
            context = fresh_copy(user_context)
            with self.context_manager.writer.using(context):
                nova_db.instance_create(context, {
                    "uuid": instance_uuid, "project_id": context.project_id,
                    "user_id": context.user_id, "vm_state": "active"})
                if self.repository is not None:
                    self.repository.stash_from_context(context, instance_uuid)
        with self.api_engine.begin() as connection:
            connection.execute(INSTANCE_MAPPINGS.insert(), [
                {"instance_uuid": instance_uuid,
                 "project_id": user_context.project_id}
                for instance_uuid in uuids])
            connection.execute(REQUEST_SPECS.insert(), [
                {"instance_uuid": instance_uuid, "spec": "{}"}
                for instance_uuid in uuids])
        for instance_uuid in uuids[live:]:
            context = fresh_copy(user_context)
            with self.context_manager.writer.using(context):
                nova_db.instance_destroy(context, instance_uuid)
                if self.repository is not None:
                    self.repository.delete_stash(instance_uuid,
                                                 context=context)
        return uuids

    def api_rows(self):
        return (self.count(INSTANCE_MAPPINGS, self.api_engine),
                self.count(REQUEST_SPECS, self.api_engine))


def fresh_copy(context):
    return nova_context.RequestContext.from_dict(context.to_dict())


def attached_path(url):
    """The SQLite file holding role_stash's tables beside url's."""
    return f"{make_url(url).database}-role_stash"


@contextlib.contextmanager
def nova_databases(server, cell_url):
    """A NovaCell on cell_url (Nova's schema made by Nova's db sync) and
    a new API database made by Nova's api_db sync; Nova's two global
    context managers patched onto them, as Nova's test fixtures do."""
    api_url = server.new_database()
    cell = nova_db.create_context_manager(connection=cell_url)
    if server.name == "sqlite":
        # SQLite's schema of role_stash's own: a database attached to each
        # connection, which Nova's reflection of main never sees.
        stash_schemas.attach_sqlite_database(cell, attached_path(cell_url))
    api_database = enginefacade.transaction_context()
    api_database.configure(connection=api_url)
    restore_cell = nova_db.context_manager.patch_factory(cell)
    restore_api = nova_api_db.context_manager.patch_factory(api_database)
    try:
        nova_migration.db_sync(database="api")
        yield NovaCell(cell_url, api_url, nova_db.context_manager)
    finally:
        restore_api()
        restore_cell()
        cell.writer.get_engine().dispose()
        api_database.writer.get_engine().dispose()
        server.drop_database(api_url)


def archive(capsys):
    """nova-manage db archive_deleted_rows --verbose --max_rows 1000
    --purge: (exit code, its output)."""
    code = nova_manage.DbCommands().archive_deleted_rows(
        max_rows=1000, verbose=True, purge=True)
    return code, capsys.readouterr().out


def archived_rows(output, table):
    """The count nova-manage's table printed for table."""
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == 2 and cells[0] == table:
            return int(cells[1])
    return 0


def mend_novas_postgresql_shadow_type(cell, server):
    if server.name == "postgresql":
        with cell.engine.begin() as connection:
            connection.exec_driver_sql(NOVA_LOCKED_BY_FIX)


def test_nova_archive_and_purge_complete_beside_role_stash_tables(
        server, nova_database_url, user_context, capsys):
    """With role_stash's tables (stashes of live and deleted instances)
    beside Nova's: Nova's archive completes, archives the deleted
    instances, removes their API mappings and request specs and purges
    its shadow tables; role_stash's tables are left alone, and
    role-stash-manage archive-deleted then archives the stashes."""
    with nova_databases(server, nova_database_url) as cell:
        cell.install_role_stash()
        mend_novas_postgresql_shadow_type(cell, server)
        cell.create_instances(user_context, LIVE_INSTANCES,
                              DELETED_INSTANCES)
        assert cell.repository.schema == (
            f"{make_url(nova_database_url).database}_role_stash"
            if server.name == "mysql" else "role_stash")
        assert cell.api_rows() == (8, 8)

        code, output = archive(capsys)

        assert code == 1, output
        assert archived_rows(output, "instances") == DELETED_INSTANCES
        assert archived_rows(output, "API_DB.instance_mappings") == (
            DELETED_INSTANCES)
        assert archived_rows(output, "API_DB.request_specs") == (
            DELETED_INSTANCES)
        assert "role_stash" not in output
        assert cell.api_rows() == (LIVE_INSTANCES, LIVE_INSTANCES)
        assert cell.count(cell.nova_table("instances")) == LIVE_INSTANCES
        assert cell.count(cell.nova_table("shadow_instances")) == 0
        # role_stash's rows are where they were.
        stashes = cell.repository.count_deleted(
            before=datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            + datetime.timedelta(minutes=1))
        assert stashes[0] == DELETED_INSTANCES
        assert len(cell.repository.list_stashes()) == LIVE_INSTANCES

        # SQLite keeps the newest stash row in role_stashes, deleted or
        # not: it would give its id again (see dialects.SQLite).
        kept = 1 if server.name == "sqlite" else 0
        summary = archive_stashes(server, cell, capsys)
        assert summary["role_stashes"] == DELETED_INSTANCES - kept
        assert cell.repository.count_deleted(
            before=datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            + datetime.timedelta(minutes=1))[0] == kept

        # Nova's other database commands still run (online data
        # migrations: see the next test).
        assert nova_manage.DbCommands().purge(purge_all=True) == 3
        assert not nova_manage.DbCommands().sync(local_cell=True)
        assert len(cell.repository.list_stashes()) == LIVE_INSTANCES
        cell.repository.close()


def archive_stashes(server, cell, capsys):
    """role-stash-manage archive-deleted on the cell database: {table:
    rows archived}. On SQLite, whose attached database a command line
    cannot name, the repository's archive_deleted, which it runs."""
    if server.name == "sqlite":
        return dict(cell.repository.archive_deleted().rows)
    code = manage.main(["--database-url", cell.cell_url, "archive-deleted",
                        "--json"])
    output = capsys.readouterr().out
    assert code == manage.OK, output
    return json.loads(output)["rows"]


def outcome(command):
    """command()'s exit code, or the class and first line of its error."""
    try:
        return command()
    except Exception as error:  # noqa: B902 - the outcome is compared
        return type(error).__name__, str(error).split("\n")[0]


def nova_outcome(cell, capsys):
    """What Nova's database commands do: the archive's exit code (or
    error), the instances and API rows it leaves, then the exit codes of
    db purge --all, db online_data_migrations and db sync."""
    archived = outcome(lambda: archive(capsys)[0])
    commands = nova_manage.DbCommands()
    return (archived, cell.count(cell.nova_table("instances")),
            cell.api_rows(), outcome(lambda: commands.purge(purge_all=True)),
            outcome(commands.online_data_migrations),
            outcome(lambda: commands.sync(local_cell=True)))


def test_novas_archive_does_beside_role_stash_what_it_does_alone(
        server, nova_database_url, schemas, user_context, capsys):
    """Nova alone and Nova beside role_stash's tables come out of Nova's
    database commands alike: on PostgreSQL the archive fails on Nova's own
    shadow column type (locked_by) before anything is archived, alone or
    not; elsewhere both archive the deleted instances and remove their API
    rows. (On psycopg 3 Nova's online data migration migrate_empty_ratio
    fails alone as beside role_stash.)"""
    alone_url = server.new_database()
    try:
        schemas.install_nova(alone_url)
        with nova_databases(server, alone_url) as alone:
            alone.create_instances(user_context, LIVE_INSTANCES,
                                   DELETED_INSTANCES)
            without = nova_outcome(alone, capsys)
    finally:
        server.drop_database(alone_url)
    with nova_databases(server, nova_database_url) as cell:
        cell.install_role_stash()
        cell.create_instances(user_context, LIVE_INSTANCES,
                              DELETED_INSTANCES)
        beside = nova_outcome(cell, capsys)
        cell.repository.close()
    assert beside == without
    if server.name == "postgresql":
        assert "locked_by" in beside[0][1]
        assert beside[1:3] == (LIVE_INSTANCES + DELETED_INSTANCES, (8, 8))
    else:
        assert beside[:3] == (1, LIVE_INSTANCES,
                              (LIVE_INSTANCES, LIVE_INSTANCES))

