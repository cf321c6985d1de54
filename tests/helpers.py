"""Constants and plain functions the tests share; the fixtures are in
tests/fixtures/."""

import os
import pathlib
import socket
import time

import pytest
import sqlalchemy as sa
import testing.postgresql

from role_stash.db import migration
from role_stash.db import models

# The instance of the README's example.
INSTANCE = "6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8c"

# A backend or server that cannot be had fails the run (as .ci/run asks)
# instead of skipping its tests.
STRICT = bool(os.environ.get("ROLE_STASH_REQUIRE_ALL_BACKENDS")
              or os.environ.get("CI"))

# Runs PostgreSQL's programs as the postgres user: they refuse root.
PG_WRAPPER = pathlib.Path(__file__).with_name("pg_as_postgres.sh")


def wait_until(predicate, what, seconds):
    """Return once predicate() is true; fail, naming what did not happen,
    after seconds."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.01)


def skip_or_fail(message):
    """Fail the test where every backend is required (STRICT), else skip
    it, with message."""
    if STRICT:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def postgresql_programs(names, links):
    """{name: path} of PostgreSQL's programs, found as testing.postgresql
    finds initdb; as root, links in the folder links to PG_WRAPPER, which
    runs each program as the postgres user."""
    # The folder initdb really is in (it may be found through a link
    # elsewhere): the other programs are beside it.
    bindir = os.path.dirname(os.path.realpath(
        testing.postgresql.find_program("initdb", ["bin"])))
    if os.geteuid() != 0:
        return {name: os.path.join(bindir, name) for name in names}
    os.environ["ROLE_STASH_PG_BINDIR"] = bindir
    links = pathlib.Path(links)
    links.mkdir(exist_ok=True)
    for name in names:
        (links / name).symlink_to(PG_WRAPPER)
    return {name: str(links / name) for name in names}


def upgrade(url, target="head", **engine_options):
    """Migrate the database at url to target through role_stash's
    migration API, on an engine of its own (engine_options go to
    create_engine)."""
    engine = sa.create_engine(url, **engine_options)
    try:
        with engine.begin() as connection:
            migration.upgrade(connection, target)
    finally:
        engine.dispose()


def payload_of(stash):
    """(project_id, user_id, roles) of a Stash; None for none."""
    return None if stash is None else (stash.project_id, stash.user_id,
                                       tuple(stash.roles))


def stash(repository, instance=INSTANCE, **fields):
    """Stash an instance's roles (the README's instance by default): project
    "p", user "u", roles ["member"], unless fields (stash_roles' keyword
    arguments) say otherwise."""
    return repository.stash_roles(instance, **{
        "project_id": "p", "user_id": "u", "roles": ["member"], **fields})


def uuid_of(index):
    """The UUID of the index-th instance of a test."""
    return f"00000000-0000-4000-8000-{index:012d}"


def deleted_on(repository, index, when):
    """Soft-delete the index-th instance's stash as if at when."""
    repository.delete_stash(uuid_of(index))
    engine = repository.context_manager.writer.get_engine()
    with engine.begin() as connection:
        connection.execute(
            sa.update(models.STASHES)
            .where(models.STASHES.c.instance_uuid == uuid_of(index))
            .values(deleted_at=when))


def session_id(connection):
    """The server's id of the session a Connection (PostgreSQL, MySQL,
    MariaDB) is on."""
    return connection.scalar(sa.text(
        "SELECT pg_backend_pid()" if connection.dialect.name == "postgresql"
        else "SELECT CONNECTION_ID()"))


def end_sessions(url, sessions):
    """End sessions of the server at url from another session, as an
    administrator or a failover would (PostgreSQL: waiting up to 5 s for
    each backend to go)."""
    killer = sa.create_engine(url)
    try:
        with killer.connect() as connection:
            for session in sessions:
                connection.execute(sa.text(
                    f"SELECT pg_terminate_backend({session}, 5000)"
                    if killer.dialect.name == "postgresql"
                    else f"KILL {session}"))
    finally:
        killer.dispose()
