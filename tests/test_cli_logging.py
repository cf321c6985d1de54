"""role-stash-manage logs through oslo.log, as every OpenStack -manage
command does (--debug, --log-file, --log-dir, --log-config-append, ... and
[DEFAULT] in --config-file); its log never holds a bound parameter, even at
--debug with [database] connection_debug = 100; a log it cannot open is
bad input, exit 2."""

import json
import re

import pytest

from role_stash.cmd import manage
from tests.helpers import INSTANCE

SECRETS = ("project-kept-out-of-logs", "user-kept-out-of-logs",
           "role-kept-out-of-logs", INSTANCE)


def test_a_failing_statement_at_debug_logs_no_bound_value(database_url,
                                                          tmp_path, capsys):
    """The statements are logged, each failing one too, their values
    never: the schema is missing, so the stash's INSERT fails."""
    config = tmp_path / "role_stash.conf"
    config.write_text(f"[database]\nconnection = {database_url}\n"
                      "connection_debug = 100\n")
    log_file = tmp_path / "role-stash-manage.log"
    code = manage.main(["--config-file", str(config), "--debug", "--log-file",
                     str(log_file), "stash", INSTANCE, "--project-id",
                     SECRETS[0], "--user-id", SECRETS[1], "--role",
                     SECRETS[2]])
    err = capsys.readouterr().err
    assert code == manage.DATABASE_FAILURE and "db sync" in err
    log = log_file.read_text()
    # "[-]", or the request context another test left current.
    debug = (r" DEBUG role_stash\.cmd\.manage \[[^]]*\] "
             r"role-stash-manage stash ")
    assert re.search(debug + "on ", log)
    assert re.search(debug + r"failed \(exit 1\)", log)
    assert "INSERT INTO role_stash" in log
    assert "[SQL parameters hidden due to hide_parameters=True]" in log
    for secret in SECRETS:
        assert secret not in log
        assert secret not in err


def test_log_lines_go_to_stderr_and_stdout_keeps_the_answer(migrated_url,
                                                            repository,
                                                            capsys):
    code = manage.main(["--database-url", migrated_url, "purge", "--all",
                     "--json"])
    captured = capsys.readouterr()
    assert code == manage.OK
    assert json.loads(captured.out)["total"] == 0
    assert "INFO role_stash.db.housekeeping" in captured.err
    assert "purge: role_stashes_shadow 0" in captured.err


def test_debug_and_log_file_come_from_the_config_file_too(migrated_url,
                                                          repository,
                                                          tmp_path, capsys):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    config = tmp_path / "role_stash.conf"
    config.write_text(f"[DEFAULT]\nlog_dir = {log_dir}\n"
                      "log_file = manage.log\n"
                      f"[database]\nconnection = {migrated_url}\n")
    assert manage.main(["--config-file", str(config), "purge", "--all"]) == (
        manage.OK)
    logged = "purge: role_stashes_shadow 0"
    assert logged in (log_dir / "manage.log").read_text()
    assert logged not in capsys.readouterr().err


@pytest.mark.parametrize("arguments, option", [
    (["--log-file", "/nonexistent-folder/manage.log"], "--log-file"),
    (["--log-dir", "/nonexistent-folder"], "--log-dir"),
    (["--log-config-append", "/nonexistent-folder/logging.conf"],
     "--log-config-append"),
], ids=["log-file", "log-dir", "log-config-append"])
def test_a_log_that_cannot_be_opened_exits_2_naming_the_option(
        arguments, option, capsys):
    code = manage.main([*arguments, "--database-url", "sqlite://", "db",
                     "check"])
    err = capsys.readouterr().err
    assert code == manage.BAD_INPUT
    assert err.startswith(f"error: invalid {option}: cannot log as asked: ")
    assert "Traceback" not in err
