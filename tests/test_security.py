"""Least privilege and what a reader may learn: the runtime needs only
SELECT, INSERT, UPDATE and DELETE on role_stash's tables (and its
sequences' USAGE on PostgreSQL), a reader that knows the instance's
project learns nothing of another's stash, and nothing that looks like a
token or a password is stored, sent or logged."""

import logging
import os
import stat

from oslo_db import exception as db_exc
import pytest
import sqlalchemy as sa

from role_stash import exception
from role_stash.cmd import manage
from role_stash.db import api
from role_stash.db import models
from tests.helpers import INSTANCE

APP_USER = "role_stash_app"
TABLES = tuple(models.Base.metadata.tables)


def test_a_reader_with_the_wrong_project_learns_nothing(repository):
    repository.stash_roles(INSTANCE, project_id="p-1", user_id="u-1",
                           roles=["member"])
    assert repository.get_stash(
        INSTANCE, expected_project_id="p-1").project_id == "p-1"
    with pytest.raises(exception.StashNotFound) as wrong:
        repository.get_stash(INSTANCE, expected_project_id="p-2")
    with pytest.raises(exception.StashNotFound) as missing:
        repository.get_stash("0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c",
                             expected_project_id="p-2")
    # The same error, the same words, but for the UUID asked about.
    assert str(wrong.value).replace(INSTANCE, "X") == str(
        missing.value).replace(missing.value.instance_uuid, "X")
    assert "p-1" not in str(wrong.value)
    with pytest.raises(exception.InvalidArgument,
                       match="expected_project_id"):
        repository.get_stash(INSTANCE, expected_project_id="")


def grant_runtime_rights(connection, database):
    """Make an account that may only read and write rows of role_stash's
    tables; return its URL's user and password."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(f"DROP ROLE IF EXISTS {APP_USER}"))
        connection.execute(sa.text(f"CREATE ROLE {APP_USER} LOGIN"))
        connection.execute(sa.text(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(TABLES)} "
            f"TO {APP_USER}"))
        connection.execute(sa.text(
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {APP_USER}"))
    else:
        connection.execute(sa.text(f"DROP USER IF EXISTS '{APP_USER}'@'%'"))
        connection.execute(sa.text(f"CREATE USER '{APP_USER}'@'%'"))
        for table in TABLES:
            connection.execute(sa.text(
                f"GRANT SELECT, INSERT, UPDATE, DELETE ON "
                f"`{database}`.`{table}` TO '{APP_USER}'@'%'"))


def revoke(connection):
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text(
            f"REVOKE ALL ON {', '.join(TABLES)} FROM {APP_USER}"))
        connection.execute(sa.text(
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {APP_USER}"))
        connection.execute(sa.text(f"DROP ROLE {APP_USER}"))
    else:
        connection.execute(sa.text(f"DROP USER '{APP_USER}'@'%'"))


@pytest.mark.parametrize("server", ["postgresql", "postgresql-psycopg",
                                    "mariadb"], indirect=True)
def test_the_runtime_needs_only_row_rights_on_its_tables(migrated_url,
                                                         repository):
    """Migrations ran as the owner (migrated_url); every call of the
    repository runs as an account with SELECT, INSERT, UPDATE and DELETE
    on role_stash's tables (the shadow tables too), and nothing more. SQLite
    has no accounts."""
    owner = sa.make_url(migrated_url)
    engine = sa.create_engine(owner)
    with engine.begin() as connection:
        grant_runtime_rights(connection, owner.database)
    app_url = owner.set(username=APP_USER, password=None)
    app = api.StashRepository.from_url(
        app_url.render_as_string(hide_password=False))
    try:
        app.stash_roles(INSTANCE, project_id="p", user_id="u",
                        roles=["member", "reader"])
        assert app.stash_roles(INSTANCE, project_id="p", user_id="u",
                               roles=["member"], replace=True).roles == (
            "member",)
        assert app.get_stash(INSTANCE).roles == ("member",)
        assert [s.instance_uuid for s in app.list_stashes(role="member")] == [
            INSTANCE]
        app.delete_stash(INSTANCE)
        app.stash_roles(INSTANCE, project_id="p", user_id="u",
                        roles=["member"])
        assert app.archive_deleted().rows["role_stashes"] == 1
        app.delete_stash(INSTANCE)
        assert dict(app.purge_deleted(everything=True).rows) == {
            "role_stashes_shadow": 1, "role_stash_roles_shadow": 1,
            "role_stash_vendordata_shadow": 0, "role_stashes": 1,
            "role_stash_roles": 1, "role_stash_vendordata": 0}
        # And nothing beyond rows: no DDL.
        with app.lone_engines.writer().begin() as connection:
            with pytest.raises((sa.exc.DBAPIError, db_exc.DBError)):
                connection.execute(sa.text("DROP TABLE role_stash_roles"))
    finally:
        app.close()
        with engine.begin() as connection:
            revoke(connection)
        engine.dispose()


class RequestContext:
    """What a Nova RequestContext carries: identity, and secrets that must
    go nowhere."""

    project_id = "p-1"
    user_id = "u-1"
    roles = ["member"]
    project_domain_id = "default"
    user_domain_id = "default"
    auth_token = "gAAAAABtoken-" + "t" * 40
    service_catalog = [{"endpoints": [{"password": "catalog-s3cret"}]}]


SECRETS = (RequestContext.auth_token, "catalog-s3cret")


def everything_logged(caplog):
    return "\n".join(f"{record.getMessage()} {record.args!r} "
                     f"{record.exc_text or ''}" for record in caplog.records)


def test_a_contexts_token_reaches_no_statement_row_or_log(
        migrated_url, count_statements, caplog):
    """With every log at DEBUG and oslo.db's SQL echo and tracing on, a
    stash made from a context carrying a token: the token is in no
    statement the database received (counted on its side), no stored row,
    no log line."""
    caplog.set_level(logging.DEBUG)
    repository = api.StashRepository.from_url(
        migrated_url, connection_debug=100, connection_trace=True)
    try:
        with count_statements() as statements:
            stashed = repository.stash_from_context(RequestContext(),
                                                    INSTANCE)
            assert repository.get_stash(INSTANCE) == stashed
            assert repository.list_stashes(role="member") == [stashed]
            repository.delete_stash(INSTANCE)
            repository.purge_deleted(before=api.timeutils.utcnow())
        with repository.lone_engines.writer().connect() as connection:
            rows = repr([connection.execute(sa.select(table)).all()
                         for table in models.Base.metadata.sorted_tables])
    finally:
        repository.close()
    assert statements and caplog.records
    sent = repr(list(statements))
    assert "member" in sent
    for secret in SECRETS:
        assert secret not in sent
        assert secret not in rows
        assert secret not in everything_logged(caplog)


PASSWORD = "url-s3cret-pw"


def test_a_database_urls_password_is_in_no_error_or_log(unreachable_url,
                                                        caplog, capsys):
    """An unreachable database with a password in its URL: the errors the
    repository and role-stash-manage give, everything they chain, and
    every log line leave the password out."""
    caplog.set_level(logging.DEBUG)
    url = sa.make_url(unreachable_url)
    if url.get_backend_name() != "sqlite":
        url = url.set(password=PASSWORD)
    url = url.render_as_string(hide_password=False)
    repository = api.StashRepository.from_url(url, connection_debug=100)
    try:
        with pytest.raises(exception.DatabaseUnavailable) as raised:
            repository.get_stash(INSTANCE)
    finally:
        repository.close()
    chain, error = [], raised.value
    while error is not None:
        chain.append(f"{error!r} {error}")
        error = error.__cause__ or error.__context__
    assert manage.main(["--database-url", url, "show", INSTANCE]) == (
        manage.DATABASE_FAILURE)
    printed = capsys.readouterr()
    for text in ("\n".join(chain), everything_logged(caplog), printed.out,
                 printed.err):
        assert PASSWORD not in text


def test_the_default_sqlite_file_is_created_private(tmp_path, monkeypatch):
    """The default database, a SQLite file in the working folder, holds
    cached vendordata replies: it is created readable by its owner alone,
    whatever the umask, by the first command that names it. Before, it
    was created world-readable (0644 under umask 022)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ROLE_STASH_DATABASE_URL", raising=False)
    old_umask = os.umask(0o022)
    try:
        manage.main(["list"])
    finally:
        os.umask(old_umask)
    created = tmp_path / "role_stash.sqlite"
    assert stat.S_IMODE(created.stat().st_mode) == 0o600
