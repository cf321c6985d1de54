"""Nova's database, read only: the columns role_stash reads, and its reads.

The tables are Core sa.Table definitions of just the columns read here, on
a MetaData of their own (never role_stash's models, never created or
migrated by role_stash): Nova is not a dependency, and its schema is
Nova's. Nothing here writes to Nova's tables.
"""

import typing

import sqlalchemy as sa

from role_stash import exception
from role_stash.db import engines
from role_stash.db import errors

# Where Nova keeps the create-time roles: the names joined by commas.
BOOT_ROLES_KEY = "boot_roles"
# instance_system_metadata.value is a String(255): a longer value fails
# Nova's write on PostgreSQL and MySQL, or is cut to it by a server in a
# lax SQL mode.
VALUE_LENGTH = 255

_NOVA = sa.MetaData()

INSTANCES = sa.Table(
    "instances", _NOVA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uuid", sa.String(36)),
    sa.Column("project_id", sa.String(255)),
    sa.Column("user_id", sa.String(255)),
    sa.Column("deleted", sa.Integer),
)

SYSTEM_METADATA = sa.Table(
    "instance_system_metadata", _NOVA,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("instance_uuid", sa.String(36)),
    sa.Column("key", sa.String(255)),
    sa.Column("value", sa.String(255)),
    sa.Column("deleted", sa.Integer),
)

LIVE_INSTANCE = INSTANCES.c.deleted == 0


class NovaInstance(typing.NamedTuple):
    """One row of Nova's instances, with its live boot_roles values (none,
    one, or more where Nova's table holds duplicates)."""

    id: int
    uuid: str
    project_id: str | None
    user_id: str | None
    deleted: bool
    boot_roles: tuple[str | None, ...]


def _uuid_forms(instance_uuids):
    """The UUIDs as stashed (lower case) and in upper case: PostgreSQL
    compares case-sensitively, and a stash must never lose its instance
    for a UUID Nova stored in capitals."""
    return sorted({form for value in instance_uuids
                   for form in (value, value.upper())})


_INSTANCES_IN = {}


def no_live_instance(instance_uuid_column, schema=None):
    """A condition on a row holding an instance UUID: Nova's instances
    table, in the same database (in schema, when named), has no live row
    for it. Checked in the statement that uses it, so an instance
    committed since a scan keeps its stash."""
    instances = INSTANCES
    if schema is not None:
        instances = _INSTANCES_IN.get(schema)
        if instances is None:
            instances = _INSTANCES_IN[schema] = INSTANCES.to_metadata(
                sa.MetaData(), schema=schema)
    return ~sa.exists().where(
        instances.c.uuid.in_([instance_uuid_column,
                              sa.func.upper(instance_uuid_column)]),
        instances.c.deleted == 0)


class NovaDatabase:
    """Reads of Nova's instances and their boot_roles, on an enginefacade
    transaction context manager of Nova's (main or cell) database."""

    def __init__(self, context_manager):
        self.context_manager = context_manager

    @classmethod
    def from_url(cls, url):
        """Return the reader of Nova's database at a URL."""
        return cls(engines.context_manager_from_url(url))

    @classmethod
    def from_config(cls, conf, group="database"):
        """Return the reader of the database of an oslo.config [database]
        section (nova.conf's)."""
        return cls(engines.context_manager_from_config(conf, group))

    def _read(self, work):
        with errors.translated_errors():
            with self.context_manager.reader.get_engine().connect() as (
                    connection):
                return work(connection)

    def holds_nova_tables(self):
        """Whether the database has Nova's instances and
        instance_system_metadata tables."""
        def inspect(connection):
            inspector = sa.inspect(connection)
            return all(inspector.has_table(table.name)
                       for table in (INSTANCES, SYSTEM_METADATA))
        return self._read(inspect)

    def require_nova_tables(self, option):
        """Raise InvalidArgument naming option unless the database holds
        Nova's tables."""
        if not self.holds_nova_tables():
            raise exception.InvalidArgument(
                option, "the database named has no Nova instances and "
                        "instance_system_metadata tables: name Nova's (cell) "
                        "database, whose [database] connection nova.conf "
                        "gives")

    def count_instances(self):
        """Return how many rows Nova's instances table has, deleted ones
        included."""
        return self._read(lambda connection: connection.execute(
            sa.select(sa.func.count()).select_from(INSTANCES)).scalar_one())

    def instances_after(self, after_id, limit):
        """Return up to limit NovaInstance of ids above after_id, by id,
        deleted ones included (without their boot_roles), in one
        statement."""
        batch = (sa.select(INSTANCES.c.id, INSTANCES.c.uuid,
                           INSTANCES.c.project_id, INSTANCES.c.user_id,
                           INSTANCES.c.deleted)
                 .where(INSTANCES.c.id > after_id)
                 .order_by(INSTANCES.c.id).limit(limit).subquery())
        boot_roles = sa.and_(
            SYSTEM_METADATA.c.instance_uuid == batch.c.uuid,
            SYSTEM_METADATA.c.key == BOOT_ROLES_KEY,
            SYSTEM_METADATA.c.deleted == 0,
            batch.c.deleted == 0)
        statement = (sa.select(batch, SYSTEM_METADATA.c.id,
                               SYSTEM_METADATA.c.value)
                     .select_from(batch.outerjoin(SYSTEM_METADATA, boot_roles))
                     .order_by(batch.c.id, SYSTEM_METADATA.c.id))

        def read(connection):
            instances = []
            for row in connection.execute(statement):
                if not instances or instances[-1][0] != row[0]:
                    instances.append([row[0], row[1], row[2], row[3],
                                      row[4] != 0, []])
                if row[5] is not None:
                    instances[-1][5].append(row[6])
            return [NovaInstance(*values[:5], tuple(values[5]))
                    for values in instances]

        return self._read(read)

    def instance_states(self, instance_uuids):
        """Return {instance UUID, as given: whether Nova deleted it} for
        those of instance_uuids that have a row in Nova's instances table;
        one without a row is left out (never created, or archived or
        purged by Nova)."""
        if not instance_uuids:
            return {}
        statement = sa.select(INSTANCES.c.uuid, INSTANCES.c.deleted).where(
            INSTANCES.c.uuid.in_(sa.bindparam("uuids", expanding=True)))

        def read(connection):
            states = {}
            for uuid, deleted in connection.execute(
                    statement, {"uuids": _uuid_forms(instance_uuids)}):
                # A live row wins over a deleted one of the other case.
                key = uuid.lower()
                states[key] = states.get(key, True) and deleted != 0
            return {value: states[value.lower()] for value in instance_uuids
                    if value.lower() in states}

        return self._read(read)
