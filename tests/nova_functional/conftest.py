"""Nova with role_stash's patch series (contrib/nova/patches) applied: the
installed nova package copied to a temporary folder and patched there, so
the environment's own Nova stays as it was. Nova's own tests, unit and
functional, then run on that copy in processes of their own (Nova's test
packages patch their process with eventlet): harness/run_nova_tests.py,
with the copy first on PYTHONPATH.

Needs the `nova` extra (pip install -e '.[test,nova]'); without it these
tests skip.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

nova = pytest.importorskip("nova", reason="the nova extra is not installed")

HERE = pathlib.Path(__file__).resolve().parent
HARNESS = HERE / "harness"
PATCHES = HERE.parents[1] / "contrib" / "nova" / "patches"

# The harness holds modules that run only inside a patched Nova's process.
collect_ignore = ["harness"]

# One run of Nova's tests must end well within this.
RUN_TIMEOUT = 900


def _series():
    return (PATCHES / "series").read_text(encoding="utf-8").split()


@pytest.fixture(scope="session")
def series():
    """The patches folder, and the patch file names its series file lists,
    in order."""
    return PATCHES, _series()


@pytest.fixture(scope="session")
def patched_nova(tmp_path_factory):
    """The folder holding the patched copy of the installed nova package;
    fails, naming the patch and git's complaint, when the series no longer
    applies."""
    root = tmp_path_factory.mktemp("patched-nova")
    installed = pathlib.Path(nova.__file__).parent
    shutil.copytree(installed, root / "nova",
                    ignore=shutil.ignore_patterns("__pycache__"))
    # Nova's configuration fixture looks for api-paste.ini under
    # <state_path>/etc/nova, state_path being the folder that holds nova/;
    # Nova's wheel installs it under <prefix>/etc/nova.
    (root / "etc" / "nova").mkdir(parents=True)
    shutil.copy(pathlib.Path(sys.prefix, "etc", "nova", "api-paste.ini"),
                root / "etc" / "nova")
    for name in _series():
        applied = subprocess.run(
            ["git", "apply", "--verbose", str(PATCHES / name)], cwd=root,
            capture_output=True, text=True)
        if applied.returncode:
            pytest.fail(f"{name} does not apply to the installed Nova "
                        f"({installed}):\n{applied.stderr}", pytrace=False)
    return root


@pytest.fixture(scope="session")
def run_nova_tests(patched_nova):
    """run_nova_tests(*selections): run Nova's test modules, classes or
    methods (dotted names, each optionally NAME:REGEX, keeping the tests
    whose id matches) on the patched Nova, in one process of their own;
    return the counts the run reports, {"run": N, ..., "selected":
    {selection: N}}."""
    return lambda *selections: _run_nova_tests(patched_nova, selections)


def _run_nova_tests(patched_nova, names):
    """Fail with the tail of the run's output unless every selection ran
    tests and every test ran passed."""
    command = [sys.executable, str(HARNESS / "run_nova_tests.py")]
    environment = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(patched_nova),
                                                str(HARNESS)]))
    run = subprocess.run(command + list(names), cwd=patched_nova,
                         env=environment, capture_output=True, text=True,
                         timeout=RUN_TIMEOUT)
    lines = run.stdout.strip().splitlines()
    if run.returncode or not lines:
        pytest.fail(f"Nova's tests {names} failed on the patched Nova "
                    f"(exit {run.returncode}):\n{run.stderr[-20000:]}",
                    pytrace=False)
    return json.loads(lines[-1])
