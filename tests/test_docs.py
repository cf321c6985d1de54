"""The documentation builds with warnings as errors, and every release
note parses as reno reads it."""

import logging
import pathlib
import re
import subprocess
import sys

from reno import config as reno_config
from reno import loader as reno_loader

ROOT = pathlib.Path(__file__).resolve().parent.parent
SPHINX_BUILD = pathlib.Path(sys.executable).with_name("sphinx-build")
NOTES = ROOT / "releasenotes" / "notes"
# reno's own name of a note: a slug, then a unique id of 16 hex digits.
NOTE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*-[0-9a-f]{16}\.yaml")


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
