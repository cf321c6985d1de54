"""An operator with only the installed wheel can migrate and manage, and
the wheel carries its licence."""

import importlib.metadata
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """A folder holding role_stash installed from a wheel built of ROOT."""
    wheels = tmp_path_factory.mktemp("wheels")
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                    "-q", "-w", str(wheels),
                    str(ROOT)], check=True, timeout=300, cwd=wheels)
    wheel, = wheels.glob("role_stash-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                    "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    return site


def test_wheel_carries_the_migrations(installed_wheel):
    migrations = installed_wheel / "role_stash" / "migrations"
    assert (migrations / "env.py").is_file()
    assert (migrations / "script.py.mako").is_file()
    assert sorted(path.name for path in (migrations / "versions").glob("*.py"))
    assert not (installed_wheel / "alembic").exists()


def test_wheel_carries_the_licence(installed_wheel):
    dist_info, = installed_wheel.glob("role_stash-*.dist-info")
    metadata = importlib.metadata.Distribution.at(dist_info).metadata
    assert (metadata["License-Expression"] or metadata["License"]) == (
        "Apache-2.0")
    assert ("License :: OSI Approved :: Apache Software License"
            in metadata.get_all("Classifier"))
    licence, = dist_info.rglob("LICENSE")
    assert licence.read_text() == (ROOT / "LICENSE").read_text()


def test_installed_package_migrates_without_a_checkout(installed_wheel,
                                                       database_url,
                                                       tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(installed_wheel)}
    probe = subprocess.run(
        [sys.executable, "-c", "import role_stash.db.migration as m; "
         "print(m.script_location())"],
        cwd=tmp_path, env=environment, capture_output=True, text=True,
        check=True)
    assert probe.stdout.strip() == str(
        installed_wheel / "role_stash" / "migrations")
    for command in (["db", "sync"], ["db", "check"]):
        result = subprocess.run(
            [sys.executable, "-m", "role_stash.cmd.manage", "--database-url",
             database_url, *command],
            cwd=tmp_path, env=environment, capture_output=True, text=True,
            timeout=120)
        assert result.returncode == 0, result.stderr
    assert "schema at head" in result.stdout
