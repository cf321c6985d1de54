"""psycopg 3's cursors on role_stash's own engines describe a result shape
once per connection (role_stash.db.described_once): the same description
psycopg gives, column for column, the caller's engines and a chosen
cursor factory left alone."""

import psycopg
import pytest
import sqlalchemy as sa

from role_stash.db import api
from role_stash.db import described_once

INSTANCE = "5a1f0c2e-7b3d-4c8e-9f60-1d2e3f4a5b6c"
on_psycopg = pytest.mark.parametrize("server", ["postgresql-psycopg"],
                                     indirect=True)
# Statements of several shapes: role_stash's read, and columns whose
# types, modifiers and sizes differ.
SHAPES = (
    "SELECT id, instance_uuid, project_id, created_at, deleted "
    "FROM role_stashes WHERE instance_uuid = %s",
    "SELECT 1::int2 AS a, 'x'::varchar(5) AS b, now() AS c, "
    "1.5::numeric(6, 2) AS d, ARRAY['r']::text[] AS e, %s::text AS f",
)


def described(columns):
    return [(column.name, column.type_code, column.display_size,
             column.internal_size, column.precision, column.scale,
             column.null_ok) for column in columns]


@pytest.fixture
def repository(migrated_url):
    repository = api.StashRepository.from_url(migrated_url)
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["member"], replace=True)
    yield repository
    repository.close()


@on_psycopg
def test_reads_use_cursors_that_describe_once(repository):
    with repository.lone_engines.reader().connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        assert (dbapi_connection.cursor_factory
                is described_once.DescribedOnceCursor)
    assert repository.get_stash(INSTANCE).roles == ("member",)


@on_psycopg
@pytest.mark.parametrize("sql", SHAPES)
def test_the_description_is_psycopgs_own(repository, sql):
    with repository.lone_engines.reader().connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        first = dbapi_connection.cursor()
        first.execute(sql, (INSTANCE,))
        again = dbapi_connection.cursor()
        again.execute(sql, (INSTANCE,))
        plain = psycopg.Cursor(dbapi_connection)
        plain.execute(sql, (INSTANCE,))
        assert described(first.description) == described(plain.description)
        # The same Column objects, in a list of each caller's own.
        assert [id(column) for column in first.description] == [
            id(column) for column in again.description]
        assert first.description is not again.description


@on_psycopg
def test_one_statement_of_two_shapes_is_described_twice(repository):
    """psycopg sends a small and a large integer as int2 and int8: one SQL
    text, two result shapes."""
    with repository.lone_engines.reader().connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        type_codes = []
        for value in (1, 10 ** 12, 1):
            cursor.execute("SELECT %s AS n", (value,))
            [column] = cursor.description
            type_codes.append(column.type_code)
        assert type_codes == [psycopg.adapters.types["int2"].oid,
                              psycopg.adapters.types["int8"].oid,
                              psycopg.adapters.types["int2"].oid]


@on_psycopg
def test_no_result_rows_no_description(repository):
    with repository.lone_engines.reader().connect() as connection:
        cursor = connection.connection.dbapi_connection.cursor()
        cursor.execute("SET application_name = 'role_stash_test'")
        assert cursor.description is None


@on_psycopg
def test_the_callers_engines_and_cursor_factory_are_left_alone(
        repository, migrated_url):
    with repository.context_manager.writer.get_engine().connect() as (
            connection):
        assert (connection.connection.dbapi_connection.cursor_factory
                is psycopg.Cursor)
    engine = sa.create_engine(migrated_url, connect_args={
        "cursor_factory": psycopg.ClientCursor})
    described_once.use_on(engine)
    try:
        with engine.connect() as connection:
            assert (connection.connection.dbapi_connection.cursor_factory
                    is psycopg.ClientCursor)
    finally:
        engine.dispose()
