"""role-stash-manage upgrade check, on oslo.upgradecheck: each check on a
healthy database and on a broken one (schema behind head, old soft-deleted
rows, MariaDB tables and connections that cannot hold every role name),
oslo.upgradecheck's table, JSON and exit codes. The orphan check, which
needs Nova's schema, is in tests/nova."""

import datetime
import json

from oslo_utils import timeutils
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from role_stash.cmd import manage
from role_stash.cmd import status
from role_stash.db import migration
from role_stash.db import models
from tests.helpers import INSTANCE

WARNING, FAILURE, ERROR = 1, 2, 255
STASHES = models.Stash.__table__


@pytest.fixture
def check(capsys):
    """check(url, *options) -> (exit code, {check name: (result code,
    details)}) of `upgrade check --json` on url."""
    def run(url, *options, arguments=()):
        code = manage.main(["--database-url", url, *arguments, "upgrade",
                         "check", "--json", *options])
        out = capsys.readouterr().out
        results = json.loads(out)["checks"]
        return code, {result["check"]: (result["result"], result["details"])
                      for result in results}
    return run


def upgrade(url, target):
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        migration.upgrade(connection, target)
    engine.dispose()


def test_a_healthy_database_passes_every_check(check, migrated_url,
                                               repository):
    code, results = check(migrated_url)
    assert code == status.Code.SUCCESS
    assert [result for result, _ in results.values()] == [0, 0, 0, 0, 0]
    head = migration.revisions()[-1].revision
    assert results["Schema at head"][1] == f"At head, revision {head}."
    assert results["Tables apart from Nova's"][1].startswith(
        "Does not apply: Nova's tables are not in ")
    assert "--nova-database-url" in results["Orphaned stashes"][1]


def test_the_table_output_is_oslo_upgradechecks(migrated_url, repository,
                                                capsys):
    assert manage.main(["--database-url", migrated_url, "upgrade",
                     "check"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("+---")
    assert "| Upgrade Check Results" in out
    assert "| Check: Schema at head" in out and "| Result: Success" in out


def test_a_schema_behind_head_fails_naming_the_command(check, database_url):
    code, results = check(database_url)
    assert code == FAILURE
    result, details = results["Schema at head"]
    assert result == FAILURE and "`role-stash-manage db sync`" in details
    assert results["Unarchived deleted rows"][0] == WARNING
    first = migration.revisions()[0].revision
    upgrade(database_url, first)
    code, results = check(database_url)
    result, details = results["Schema at head"]
    assert (code, result) == (FAILURE, FAILURE)
    assert details.startswith(f"At revision {first}; expand revisions are "
                              "pending")
    assert "`role-stash-manage db sync --expand`" in details


def test_old_soft_deleted_rows_warn_until_purged(check, migrated_url,
                                                 repository, tmp_path,
                                                 capsys):
    forty_days_ago = timeutils.utcnow() - datetime.timedelta(days=40)
    repository.stash_roles(INSTANCE, project_id="p", user_id="u",
                           roles=["member"])
    repository.delete_stash(INSTANCE)
    with repository.context_manager.writer.get_engine().begin() as connection:
        connection.execute(STASHES.update().values(deleted_at=forty_days_ago))
    code, results = check(migrated_url)
    result, details = results["Unarchived deleted rows"]
    assert (code, result) == (WARNING, WARNING)
    assert details == (
        "1 stashes soft-deleted in role_stashes more than 30 days ago (the "
        f"oldest on {forty_days_ago:%Y-%m-%d}) wait: run `role-stash-manage "
        "archive-deleted --until-complete`.")
    # Archived, they wait in the shadow table, until purged (a newer
    # stash: SQLite's archive leaves the newest row in place).
    repository.stash_roles("0b7a3c2e-9d8f-4e6a-8b1c-2d3e4f5a6b7c",
                           project_id="p", user_id="u", roles=["member"])
    assert repository.archive_deleted().rows["role_stashes"] == 1
    code, results = check(migrated_url)
    result, details = results["Unarchived deleted rows"]
    threshold = timeutils.utcnow() - datetime.timedelta(days=30)
    assert (code, result) == (WARNING, WARNING)
    assert details == (
        "1 stashes archived in role_stashes_shadow more than 30 days ago "
        f"(the oldest on {forty_days_ago:%Y-%m-%d}) wait: run "
        f"`role-stash-manage purge --before {threshold:%Y-%m-%d}`.")
    config = tmp_path / "role_stash.conf"
    config.write_text(f"[database]\nconnection = {migrated_url}\n"
                      "[role_stash]\ndeleted_rows_warn_after_days = 60\n")
    code = manage.main(["--config-file", str(config), "upgrade", "check"])
    assert code == 0, capsys.readouterr().out
    capsys.readouterr()
    repository.purge_deleted(before=timeutils.utcnow())
    assert check(migrated_url)[0] == 0


def test_a_check_that_cannot_run_exits_255(unreachable_url, capsys):
    code = manage.main(["--database-url", unreachable_url, "upgrade", "check"])
    assert code == ERROR
    assert "DatabaseUnavailable" in capsys.readouterr().out


# --- MySQL and MariaDB's character sets -------------------------------------

@pytest.mark.parametrize("server", ["sqlite", "postgresql",
                                    "postgresql-psycopg"], indirect=True)
def test_other_backends_say_the_charset_check_does_not_apply(
        check, migrated_url, repository):
    result, details = check(migrated_url)[1]["MySQL character sets"]
    assert result == 0 and details.startswith("Does not apply")


# Character sets per table and per connection: MySQL and MariaDB's alone.
on_mariadb = pytest.mark.parametrize("server", ["mariadb"], indirect=True)


@pytest.fixture
def mariadb_url(database_url):
    upgrade(database_url, "head")
    return database_url


def with_charset(url, charset):
    parsed = make_url(url)
    query = {key: value for key, value in parsed.query.items()
             if key != "charset"}
    if charset is not None:
        query["charset"] = charset
    return parsed.set(query=query).render_as_string(hide_password=False)


@on_mariadb
def test_utf8mb4_tables_and_connection_pass(check, mariadb_url):
    result, details = check(with_charset(mariadb_url, "utf8mb4"))[1][
        "MySQL character sets"]
    assert result == 0
    assert details == ("Tables and connection are utf8mb4 with collation "
                       "utf8mb4_nopad_bin.")


@on_mariadb
@pytest.mark.parametrize("charset", ["latin1", "utf8mb3"])
def test_a_table_in_another_charset_fails_naming_the_fix(check, mariadb_url,
                                                         charset):
    engine = sa.create_engine(mariadb_url)
    with engine.begin() as connection:
        connection.execute(sa.text(
            f"ALTER TABLE role_stash_roles CONVERT TO CHARACTER SET "
            f"{charset}"))
    engine.dispose()
    code, results = check(mariadb_url)
    result, details = results["MySQL character sets"]
    assert (code, result) == (FAILURE, FAILURE)
    assert f"table role_stash_roles defaults to {charset}_" in details
    assert f"column role_stash_roles.name is {charset} {charset}_" in details
    assert details.endswith(
        "; ALTER TABLE role_stash_roles CONVERT TO CHARACTER SET utf8mb4 "
        "COLLATE utf8mb4_nopad_bin.")
    assert "role_stashes" not in details


@on_mariadb
def test_a_3_byte_connection_fails(check, mariadb_url):
    code, results = check(with_charset(mariadb_url, "utf8"))
    result, details = results["MySQL character sets"]
    assert (code, result) == (FAILURE, FAILURE)
    assert "the connection's character_set_connection is utf8mb3" in details
    assert "put charset=utf8mb4 in the [database] connection URL" in details


@on_mariadb
def test_a_url_naming_no_charset_warns_of_novas_engines(check, mariadb_url):
    code, results = check(with_charset(mariadb_url, None))
    result, details = results["MySQL character sets"]
    assert (code, result) == (WARNING, WARNING)
    assert "Nova's engines on it get oslo.db's 3-byte utf8" in details


@on_mariadb
def test_a_mariadb_url_is_checked_as_a_mysql_one(check, migrated_url,
                                                  repository):
    """On a mariadb+pymysql:// URL the orphan check's look for Nova's
    tables failed with DatabaseError (SQLAlchemy's has_table met oslo.db's
    bare DBError for MySQL's error 1146); every check now runs."""
    url = sa.make_url(migrated_url).set(drivername="mariadb+pymysql")
    code, results = check(url.render_as_string(hide_password=False))
    assert code == 0
    assert [result for result, _ in results.values()] == [0, 0, 0, 0, 0]
