"""The documentation builds with warnings as errors, and every release
note parses as reno reads it."""

import importlib.util
import logging
import pathlib
import re
import subprocess
import sys

from docutils import core as docutils_core
from reno import config as reno_config
from reno import loader as reno_loader

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPHINX_BUILD = pathlib.Path(sys.executable).with_name("sphinx-build")
NOTES = ROOT / "releasenotes" / "notes"
# reno's own name of a note: a slug, then a unique id of 16 hex digits.
NOTE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*-[0-9a-f]{16}\.yaml")
EXTENSION = ROOT / "doc" / "source" / "_ext" / "role_stash_docs.py"
TIMING = {"backend": "postgresql", "driver": "psycopg", "raw_driver":
          "psycopg2", "operation": "read", "rows": 10000, "p50_us": 262.0,
          "p99_us": 473.5, "raw_p50_us": 243.1, "raw_p99_us": 431.0,
          "ratio_p50": 1.08, "ratio_p99": 1.1, "round_trips": 1.0,
          "raw_round_trips": 1.0}
STORM = {**TIMING, "operation": "storm", "layout": "8x4", "workers": 8,
         "threads": 4, "seconds": 20.0, "reads_per_s": 5108.2,
         "raw_reads_per_s": 10083.0, "ratio_reads_per_s": 0.51,
         "connections": 32, "raw_connections": 32}
READ_COST = {"backend": "postgresql", "driver": "psycopg", "operation":
             "read_cost", "layer": "get_stash", "rows": 1000000,
             "reads": 1000, "instructions_per_read": 547012, "added": 64000}


def _build(source, output):
    """Build source as HTML into output with warnings as errors; fail with
    Sphinx's words if it does not build."""
    result = subprocess.run(
        [str(SPHINX_BUILD), "-W", "--keep-going", "-q", "-E", "-b", "html",
         str(source), str(output)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_documentation_builds_without_a_warning(tmp_path):
    _build(ROOT / "doc" / "source", tmp_path)
    assert (tmp_path / "cli" / "role-stash-manage.html").is_file()
    assert (tmp_path / "configuration" / "config.html").is_file()


def test_a_benchmark_results_file_renders_as_valid_text(monkeypatch):
    """What the benchmark page shows of a committed results file (none is
    committed now, so the build above does not show it)."""
    monkeypatch.syspath_prepend(str(ROOT))  # as conf.py does: benchmarks
    spec = importlib.util.spec_from_file_location("role_stash_docs",
                                                  EXTENSION)
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)
    results = {
        "command": "python -m benchmarks --plot benchmark.png",
        "seconds": 2032.4,
        "machine": {"cpu": "AMD EPYC", "cores": 2, "kernel": "Linux 6.1",
                    "load_start": 3.1, "load_end": 5.4},
        "versions": {"Python": "3.11.7", "SQLAlchemy": "2.1.9",
                     "postgresql server": "15.20"},
        "records": [TIMING, STORM, READ_COST,
                    {"backend": "postgresql", "driver": "psycopg",
                     "operation": "memory", "rows": 1000000, "reads": 100000,
                     "rss_before_kb": 1, "rss_after_kb": 1, "growth_kb": 0}],
    }
    text = "\n".join(extension.benchmark_results(results, "benchmark.json"))
    tree = docutils_core.publish_doctree(
        text, settings_overrides={"halt_level": 2, "report_level": 2})
    shown = tree.astext()
    for figure in ("AMD EPYC", "15.20", "262", "5,108", "547,012", "1.08"):
        assert figure in shown


def test_the_release_notes_build_without_a_warning(tmp_path):
    _build(ROOT / "releasenotes" / "source", tmp_path)


def test_every_release_note_parses_as_reno_reads_it(caplog):
    notes = sorted(NOTES.glob("*.yaml"))
    assert notes
    conf = reno_config.Config(str(ROOT))
    sections = {conf.prelude_section_name} | {
        section.name for section in conf.sections}
    with caplog.at_level(logging.WARNING, logger="reno"), \
            reno_loader.Loader(conf, ignore_cache=True) as loader:
        for note in notes:
            assert NOTE_NAME.fullmatch(note.name), note.name
            content = loader.parse_note_file(
                str(note.relative_to(ROOT)), None)
            assert content and set(content) <= sections, note.name
    assert not caplog.records, [record.getMessage()
                                for record in caplog.records]
