"""The sample configuration ships, and is what oslo-config-generator writes
from role_stash's `oslo.config.opts` entry point, as its instructions in
etc/oslo-config-generator/ (which the documentation's build follows) say."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
GENERATOR = pathlib.Path(sys.executable).with_name("oslo-config-generator")
SAMPLE = ROOT / "etc" / "role_stash.conf.sample"
INSTRUCTIONS = ROOT / "etc" / "oslo-config-generator" / "role_stash.conf"


def test_the_shipped_sample_is_what_the_generator_writes(tmp_path):
    written = tmp_path / "role_stash.conf.sample"
    subprocess.run([str(GENERATOR), "--config-file", str(INSTRUCTIONS),
                    "--output-file", str(written)],
                   check=True, capture_output=True, timeout=120)
    assert written.read_text() == SAMPLE.read_text(), (
        "regenerate it: oslo-config-generator --config-file "
        "etc/oslo-config-generator/role_stash.conf")
    sample = SAMPLE.read_text()
    for section in ("[database]", "[api]", "[vendordata_dynamic_auth]",
                    "[role_stash]"):
        assert section in sample
    for option in ("#connection = <None>", "#db_max_retries = 20",
                   "#vendordata_dynamic_failure_fatal = false",
                   "#auth_type = <None>", "#orphan_grace_period = 86400",
                   "#deleted_rows_warn_after_days = 30"):
        assert option in sample, option
