"""role-stash-manage: the operator's command."""

import json
import pathlib
import subprocess
import sys

import pytest

from role_stash.cmd import manage as role_stash_manage
from role_stash.db import migration
from tests.helpers import INSTANCE

MANAGE = pathlib.Path(sys.executable).with_name("role-stash-manage")


@pytest.fixture
def manage(database_url, capsys):
    """manage(*arguments) -> (exit code, stdout, stderr) on the test's
    database."""
    def run(*arguments):
        code = role_stash_manage.main(
            ["--database-url", database_url, *arguments])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


def test_db_check_version_and_sync(manage):
    assert manage("db", "version")[1].strip() == "None (empty schema)"
    code, out, _ = manage("db", "check")
    assert code == migration.EXPAND_PENDING and "--expand" in out
    code, out, _ = manage("db", "sync", "--contract")
    assert code == migration.EXPAND_PENDING and "--expand" in out
    assert manage("db", "sync", "--expand")[0] == role_stash_manage.OK
    assert manage("db", "sync", "--contract")[:2] == (role_stash_manage.OK,
                                                      "nothing to apply\n")
    assert manage("db", "check")[:2] == (role_stash_manage.OK,
                                         "schema at head\n")
    head = migration.revisions()[-1].revision
    assert manage("db", "version")[1].strip() == head
    assert manage("db", "sync")[:2] == (role_stash_manage.OK,
                                        "nothing to apply\n")


def test_stash_show_list_delete_purge_as_json(manage):
    manage("db", "sync")
    code, out, _ = manage("stash", INSTANCE, "--project-id", "p",
                          "--user-id", "u", "--role", "member", "--role",
                          "a,b", "--json")
    assert code == role_stash_manage.OK
    stashed = json.loads(out)
    assert stashed["roles"] == ["member", "a,b"]
    code, out, _ = manage("show", INSTANCE, "--json")
    assert json.loads(out) == stashed
    code, out, _ = manage("show", INSTANCE, "--vendordata", "--json")
    assert json.loads(out) == {"project-id": "p", "instance-id": INSTANCE,
                               "boot-roles": "member"}
    code, out, _ = manage("list", "--role", "a,b", "--json")
    assert [item["instance_uuid"] for item in json.loads(out)] == [INSTANCE]
    assert manage("delete", INSTANCE, "--json")[:2] == (
        role_stash_manage.OK,
        json.dumps({"deleted": INSTANCE}, indent=2) + "\n")
    code, out, _ = manage("purge", "--all", "--json")
    assert code == role_stash_manage.OK
    assert json.loads(out)["rows"]["role_stashes"] == 1


def test_show_prints_text_by_default(manage):
    manage("db", "sync")
    manage("stash", INSTANCE, "--project-id", "p", "--user-id", "u",
           "--role", "member")
    code, out, _ = manage("show", INSTANCE)
    assert (code == role_stash_manage.OK
            and 'roles:             ["member"]' in out)


def test_bad_input_exits_2_and_names_the_field(manage):
    manage("db", "sync")
    code, _, err = manage("stash", "not-a-uuid", "--project-id", "p",
                          "--user-id", "u", "--role", "member")
    assert code == role_stash_manage.BAD_INPUT and "instance_uuid" in err
    code, _, err = manage("stash", INSTANCE, "--project-id", "p",
                          "--user-id", "u", "--role", "")
    assert code == role_stash_manage.BAD_INPUT and "roles[0]" in err
    code, _, err = manage("list", "--limit", "0")
    assert code == role_stash_manage.BAD_INPUT and "limit" in err


def test_missing_stash_exits_3_and_conflict_exits_4(manage):
    manage("db", "sync")
    code, _, err = manage("show", INSTANCE)
    assert code == role_stash_manage.NOT_FOUND and INSTANCE in err
    manage("stash", INSTANCE, "--project-id", "p", "--user-id", "u")
    code, _, err = manage("stash", INSTANCE, "--project-id", "q",
                          "--user-id", "u")
    assert code == role_stash_manage.CONFLICT and "replace" in err
    assert manage("stash", INSTANCE, "--project-id", "q", "--user-id", "u",
                  "--replace")[0] == role_stash_manage.OK


def test_unmigrated_database_exits_1(manage):
    code, _, err = manage("show", INSTANCE)
    assert code == role_stash_manage.DATABASE_FAILURE and "db sync" in err


def test_unreachable_database_exits_1_at_once(unreachable_url, capsys):
    code = role_stash_manage.main(["--database-url", unreachable_url,
                                   "db", "check"])
    assert code == role_stash_manage.DATABASE_FAILURE
    assert "cannot reach the database" in capsys.readouterr().err


def test_config_file_names_the_database(database_url, tmp_path, capsys):
    config = tmp_path / "role_stash.conf"
    config.write_text(f"[database]\nconnection = {database_url}\n")
    assert role_stash_manage.main(
        ["--config-file", str(config), "db", "sync"]) == role_stash_manage.OK
    assert role_stash_manage.main(
        ["--config-file", str(config), "db", "check"]) == role_stash_manage.OK
    assert role_stash_manage.main(
        ["--config-file", str(config), "--database-url", database_url,
         "db", "check"]) == role_stash_manage.BAD_INPUT


def test_console_script_runs_from_the_installed_package(database_url,
                                                        tmp_path):
    result = subprocess.run(
        [str(MANAGE), "--database-url", database_url, "db", "sync"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "schema upgraded to" in result.stdout


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as raised:
        role_stash_manage.main(["db", "sync", "--expand", "--contract"])
    assert raised.value.code == 2


@pytest.mark.parametrize("arguments", [
    ["--config-file", "/nonexistent/role_stash.conf", "db", "check"],
    ["--database-url", "nosuchdb+driver://x/y", "db", "check"],
    ["--database-url", "sqlite:////tmp/x.sqlite", "purge", "--before",
     "nan"],
    ["--database-url", "sqlite:////tmp/x.sqlite", "purge"],
], ids=["missing-config", "unknown-driver", "nan-date", "no-date"])
def test_bad_settings_exit_2_without_a_traceback(arguments, capsys):
    try:
        code = role_stash_manage.main(arguments)
    except SystemExit as usage_error:  # argparse's own refusal
        code = usage_error.code
    assert code == role_stash_manage.BAD_INPUT
    assert "Traceback" not in capsys.readouterr().err
