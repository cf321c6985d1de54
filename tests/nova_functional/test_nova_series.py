"""contrib/nova/patches applies to the installed Nova, in the order of its
series file; with [role_stash] enabled left off, the patched Nova does not
even import role_stash."""

import os
import subprocess
import sys

# Every module the series changes.
PATCHED_MODULES = ("nova.conf", "nova.conductor.manager",
                   "nova.conductor.tasks.cross_cell_migrate",
                   "nova.db.main.api", "nova.api.metadata.base")


def test_series_file_lists_every_patch_in_order(series):
    patches, names = series
    assert names == sorted(path.name for path in patches.glob("*.patch"))
    assert names


def test_every_patch_applies_to_the_installed_nova(patched_nova):
    # The fixture fails, naming the patch, at the first one that does not.
    assert "role_stash" in (patched_nova / "nova" / "conf" /
                            "role_stash.py").read_text(encoding="utf-8")


def test_patched_nova_left_off_does_not_import_role_stash(patched_nova):
    check = (
        "import sys\n"
        "import nova.conf\n"
        "nova.conf.CONF([], project='nova', default_config_files=[])\n"
        f"for name in {PATCHED_MODULES!r}:\n"
        "    __import__(name)\n"
        "assert sys.modules['nova.conf'].__file__.startswith(sys.argv[1])\n"
        "print(nova.conf.CONF.role_stash.enabled, sorted(\n"
        "    n for n in sys.modules if n.startswith('role_stash')))\n")
    run = subprocess.run(
        [sys.executable, "-c", check, str(patched_nova)],
        env=dict(os.environ, PYTHONPATH=str(patched_nova)),
        capture_output=True, text=True, check=True, timeout=300)
    assert run.stdout.split("\n")[-2] == "False []"
