"""PostgreSQL."""


import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from role_stash.db.dialects.base import POSTGRESQL_OWN_SCHEMA
from role_stash.db.dialects.base import REPLY_COLUMNS
from role_stash.db.dialects.base import STASH_COLUMNS
from role_stash.db.dialects.base import STASHES_WITH_REPLIES
from role_stash.db.dialects.base import Statements
from role_stash.db.models import REPLIES
from role_stash.db.models import ROLES
from role_stash.db.models import STASHES
from role_stash.db.values import Stash


class PostgreSQL(Statements):
    """PostgreSQL: a stash's role names come back in an array, one row per
    stash; a bulk read matches one array parameter, one statement for any
    count; a new stash and its roles are written by one statement, which
    skips rather than fails on a live stash (a failed statement would
    abort the whole transaction, a caller's included)."""

    new_stash_in_one_statement = True

    def __init__(self):
        super().__init__()
        # Of with_for_update(), only the stash row: the role names come
        # from a subquery, which FOR UPDATE cannot lock.
        self.lock_one = self.read_one.with_for_update(of=STASHES)
        self.new_stash = self._new_stash_statement()

    def with_roles(self, stashes):
        columns = [stashes.c[column.name] for column in STASH_COLUMNS]
        return sa.select(*columns, self._role_names(stashes)).order_by(
            stashes.c.id)

    @staticmethod
    def _role_names(stashes):
        """A stash's role names, in order, as one array column."""
        names = sa.select(ROLES.c.name).where(
            ROLES.c.stash_id == stashes.c.id).order_by(ROLES.c.position)
        return sa.func.array(names.scalar_subquery()).label("roles")

    def with_roles_and_replies(self, *where):
        # One row per reply (one when none): the role names in an array.
        return sa.select(
            *STASH_COLUMNS, self._role_names(STASHES), *REPLY_COLUMNS,
        ).select_from(STASHES_WITH_REPLIES).where(*where).order_by(REPLIES.c.target)

    def fold_with_replies(self, rows):
        rows = list(rows)
        if not rows:
            return None, {}
        return self._stash_and_replies(rows[0], tuple(rows[0][8]), rows)

    def match_many(self):
        return STASHES.c.instance_uuid == sa.any_(sa.bindparam(
            "uuids", type_=postgresql.ARRAY(STASHES.c.instance_uuid.type)))

    def fold(self, result):
        return {row[0]: Stash(row[1], row[2], row[3], tuple(row[8]),
                              row[4], row[5], row[6], row[7])
                for row in result.all()}

    @staticmethod
    def _new_stash_statement():
        """The stash row (skipped when the instance has a live stash) and
        its roles, the list :names in order, in one statement that returns
        the new stash's id, or no row."""
        keys = ("instance_uuid", "project_id", "user_id", "project_domain_id",
                "user_domain_id", "created_at", "deleted")
        new_stash = (
            postgresql.insert(STASHES)
            .values({key: sa.bindparam(key, type_=STASHES.c[key].type)
                     for key in keys})
            .on_conflict_do_nothing(
                index_elements=["instance_uuid", "deleted"])
            .returning(STASHES.c.id)
            .cte("new_stash"))
        names = sa.func.unnest(
            # text[], not varchar(255)[]: a cast to varchar(n) would cut a
            # longer name short where the column refuses it.
            sa.cast(sa.bindparam("names"), postgresql.ARRAY(sa.Text))
        ).table_valued("name", with_ordinality="number").render_derived(
            name="names")
        new_roles = sa.insert(ROLES).from_select(
            ["stash_id", "position", "name"],
            sa.select(new_stash.c.id, names.c.number - 1, names.c.name)
            .select_from(new_stash.join(names, sa.true()))).cte("new_roles")
        return sa.select(new_stash.c.id).add_cte(new_roles)

    def insert_new_stash(self, connection, row, roles):
        return connection.execute(
            self.new_stash, {**row, "names": list(roles)}).scalar()

    # A batch reads and writes a few rows by key, and is planned so, on
    # the indexes. For its values: psycopg 3 prepares a statement on the
    # server once it has run it a few times, and PostgreSQL then tries a
    # generic plan, which for the replies of no live stash ("deleted = $1"
    # unknown) scans role_stashes whole for every reply. Without
    # sequential scans: before autovacuum has analyzed the shadow tables
    # (an archive fills them faster than it comes by), the planner takes
    # them for empty and scans a whole table for each batch's roles.
    _plan_on_the_indexes = sa.select(
        sa.func.set_config("plan_cache_mode", "force_custom_plan", True),
        sa.func.set_config("enable_seqscan", "off", True))

    def own_schema(self, inspector):
        return POSTGRESQL_OWN_SCHEMA

    moves_tables = True

    def move_table(self, table, from_schema, to_schema):
        return sa.text(f'ALTER TABLE "{from_schema}"."{table}" '
                       f'SET SCHEMA "{to_schema}"')

    def schema_grants(self, schema, owner, runtime):
        return [f'CREATE SCHEMA IF NOT EXISTS "{schema}" '
                f"AUTHORIZATION {owner}",
                f'GRANT USAGE ON SCHEMA "{schema}" TO {runtime}',
                f'ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA '
                f'"{schema}" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES '
                f"TO {runtime}",
                f'ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA '
                f'"{schema}" GRANT USAGE ON SEQUENCES TO {runtime}']

    def begin_batch(self, connection):
        connection.execute(self._plan_on_the_indexes)

    def lock_batch(self, select, table):
        # Only the rows returned are locked: a rival archive or purge skips
        # them and takes others, instead of copying rows this batch is
        # about to delete (an INSERT ... SELECT reads without locking here).
        return select.with_for_update(of=table, skip_locked=True)


