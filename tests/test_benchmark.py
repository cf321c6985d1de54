"""benchmarks/run.py runs quickly on each backend and writes its records."""

import json
import math
import pathlib
import subprocess
import sys

from sqlalchemy.engine import make_url

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The script's backend names, by SQLAlchemy's.
SCRIPT_BACKENDS = {"sqlite": "sqlite", "postgresql": "postgresql",
                   "mysql": "mariadb"}
TIMING_KEYS = {"backend", "operation", "rows", "p50_us", "p99_us",
               "raw_p50_us", "raw_p99_us", "ratio_p50", "ratio_p99"}
MEMORY_KEYS = {"backend", "operation", "rows", "reads", "rss_before_kb",
               "rss_after_kb", "growth_kb"}
ROWS = 10_000


def _positive(value):
    return (isinstance(value, (int, float)) and math.isfinite(value)
            and value > 0)


def test_quick_benchmark_writes_well_formed_json(database_url, tmp_path):
    """A quick run of 50 calls per operation writes one record of each."""
    backend = SCRIPT_BACKENDS[make_url(database_url).get_backend_name()]
    output = tmp_path / "benchmark.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--calls", "50",
         "--backends", backend, f"--{backend}-url", database_url,
         "--use-existing-database", "--json", str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    records = json.loads(output.read_text())
    assert isinstance(records, list)
    for operation in ("read", "write", "bulk_read"):
        [record] = [record for record in records
                    if record["backend"] == backend
                    and record["operation"] == operation]
        assert TIMING_KEYS <= record.keys()
        assert record["rows"] == ROWS
        numbers = [record[key] for key in TIMING_KEYS - {"backend",
                                                          "operation"}]
        numbers += [record["round_trips"], record["raw_round_trips"]]
        assert all(_positive(number) for number in numbers), record
        for percentile in ("p50", "p99"):
            api_us = record[f"{percentile}_us"]
            raw_us = record[f"raw_{percentile}_us"]
            ratio = record[f"ratio_{percentile}"]
            # The times are rounded to 0.1 us, the ratio to 0.01.
            slack = 0.0051 + 0.051 * (1 + ratio) / raw_us
            assert abs(ratio - api_us / raw_us) <= slack, record
    [memory] = [record for record in records
                if record["backend"] == backend
                and record["operation"] == "memory"]
    assert memory.keys() == MEMORY_KEYS
    assert memory["rows"] == ROWS
    assert _positive(memory["reads"])
