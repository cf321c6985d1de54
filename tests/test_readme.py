"""The README's promises: CI runs its test command, its main job works."""

import os
import pathlib
import re
import subprocess
import sys

import sqlalchemy as sa

from role_stash.db import migration

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMANDS = re.findall(r"```sh\n(.+?)\n```", README)


def test_readme_gives_exactly_two_setup_commands():
    assert len(COMMANDS) == 2
    install_and_run, install_and_test = COMMANDS
    assert "alembic upgrade head" in install_and_run
    assert "examples/create_then_get.py" in install_and_run
    assert install_and_test.endswith(".venv/bin/pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert COMMANDS[1] in ci


def test_main_job_migrates_stashes_and_prints_vendordata(tmp_path):
    """The README's first command, less the install, in a fresh folder."""
    bin_dir = pathlib.Path(sys.executable).parent
    environment = {**os.environ, "ROLE_STASH_DATABASE_URL": ""}
    subprocess.run([str(bin_dir / "alembic"), "-c",
                    str(ROOT / "alembic.ini"), "upgrade", "head"],
                   cwd=tmp_path, env=environment, check=True,
                   capture_output=True, timeout=120)
    for _ in range(2):  # a rerun is an exact repeat: same stash
        printed = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "create_then_get.py")],
            cwd=tmp_path, env=environment, check=True, capture_output=True,
            text=True, timeout=120).stdout
        assert '"boot-roles": "member,reader,load-balancer_member"' in printed
        assert '"instance-id": "6f1c4c5e-2d3b-4e4a-9c1d-3b2a1f0e9d8c"' in printed
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'role_stash.sqlite'}")
    with engine.connect() as connection:
        assert migration.check(connection) == migration.AT_HEAD
    engine.dispose()
