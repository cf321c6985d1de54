"""The README's two set-up commands work: CI runs the test command as it
stands, and the main job's command runs on a fresh copy of the tree."""

import os
import pathlib
import shutil
import subprocess
import sys

import sqlalchemy as sa

from role_stash.db import migration

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Each set-up command makes its own virtual environment: that is how the
# README's commands are told from its other lines, wherever they stand.
COMMANDS = [line.strip() for line in
            (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("python3 -m venv .venv && ")]
INSTALL_STEPS = ("python3 -m venv .venv", ".venv/bin/pip install -q -e .")


def _command(marker):
    """Return the README's one set-up command that holds marker."""
    found = [command for command in COMMANDS if marker in command]
    assert len(found) == 1, (marker, COMMANDS)
    return found[0]


def test_ci_runs_the_readme_test_command():
    """.ci/run runs the test command verbatim, so every CI run proves it
    (and the install the main job's command makes, which is a part of
    it: the same editable install, fewer extras)."""
    test_command = _command("/bin/pytest")
    assert ".venv/bin/pip install -q -e '.[test" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_main_job_command_runs_on_a_fresh_copy(tmp_path):
    """The main job's command as the README gives it, on a copy of the
    tree's migrations and examples: its steps after the install run
    verbatim, twice (a rerun is an exact repeat: the same stash), against
    this test run's installed role_stash."""
    steps = _command("examples/").split(" && ")
    assert tuple(steps[:len(INSTALL_STEPS)]) == INSTALL_STEPS, steps
    for name in ("alembic", "examples"):
        shutil.copytree(ROOT / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "alembic.ini", tmp_path)
    # The install's result: .venv/bin's python and alembic are this run's.
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    bin_dir = pathlib.Path(sys.executable).parent
    for name, target in (("python", sys.executable),
                         ("alembic", bin_dir / "alembic")):
        (venv_bin / name).write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        (venv_bin / name).chmod(0o755)
    environment = {**os.environ, "ROLE_STASH_DATABASE_URL": ""}
    for _ in range(2):
        result = subprocess.run(
            ["bash", "-c", " && ".join(steps[len(INSTALL_STEPS):])],
            cwd=tmp_path, env=environment, capture_output=True, text=True,
            timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert ('"boot-roles": "member,reader,load-balancer_member"'
                in result.stdout)
        assert ('"instance-id": "6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8c"'
                in result.stdout)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'role_stash.sqlite'}")
    with engine.connect() as connection:
        assert migration.check(connection) == migration.AT_HEAD
    engine.dispose()
