"""What the documentation reads from role_stash at build time: the values
the prose names (as substitutions), the schema (from the models) and the
benchmark's results (from a run's JSON file, when one is committed)."""

import argparse
import ast
import datetime
import json
import logging
import pathlib

from docutils.statemachine import StringList
from oslo_upgradecheck import upgradecheck
from sphinx.util.docutils import SphinxDirective
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from benchmarks import cli as benchmark_cli
from benchmarks import raw as benchmark_raw
from benchmarks.scenarios import boot_storm
from role_stash.cmd import common as manage
from role_stash.cmd import manage as manage_command
from role_stash.conf import manage as conf_manage
from role_stash.db import engines
from role_stash.db import migration
from role_stash.db import models
from role_stash.db import nova_tables
from role_stash.db import reply_cache
from role_stash.db import retries as db_retries
from role_stash.db import urls
from role_stash.db import validation
from role_stash.nova import vendordata

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Alembic's environment script: read, never imported (it migrates).
ENV = ROOT / "alembic" / "env.py"


def _module_constant(path, name):
    """Return the literal the module at path assigns to name, read
    without importing it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for statement in tree.body:
        if (isinstance(statement, ast.Assign)
                and any(getattr(target, "id", None) == name
                        for target in statement.targets)):
            return ast.literal_eval(statement.value)
    raise LookupError(f"{path} assigns no {name}")


def _size(count):
    """Return a byte count as KiB or MiB when it is a whole number of them."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"


def _seconds(value):
    """Return seconds, or a timedelta, as seconds."""
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    return f"{value:g} s"


def _duration(delta):
    """Return a timedelta in days when it is whole days, else seconds."""
    days, rest = divmod(delta.total_seconds(), 24 * 3600)
    if days and not rest:
        return f"{days:g} day{'s' if days != 1 else ''}"
    return _seconds(delta)


def _command_defaults():
    """Return default(command, option): the default of a role-stash-manage
    command's option, read from the command line its own add_commands
    builds."""
    subparsers = argparse.ArgumentParser().add_subparsers()
    manage_command.add_commands(subparsers)
    return lambda command, option: str(subparsers.choices[command].get_default(
        option.lstrip("-").replace("-", "_")))


def _rows(count):
    """Return a count of rows as the benchmark names table sizes: 10k, 1M."""
    for suffix, size in (("M", 1_000_000), ("k", 1000)):
        if count >= size and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)


def _layouts(layouts):
    return ", ".join(f"{workers} × {threads}" for workers, threads in layouts)


def _retry_pauses(retries):
    """Return the pauses oslo.db's wrap_db_retry makes with these settings:
    the first interval, doubled after each try up to the largest."""
    pauses, interval = [], retries["retry_interval"]
    for _ in range(retries["max_retries"]):
        pauses.append(interval)
        if retries["inc_retry_interval"]:
            interval = min(interval * 2, retries["max_retry_interval"])
    return pauses


def values():
    """Return {substitution name: reStructuredText} of every value of
    role_stash's code that the pages name."""
    retries = db_retries.DEFAULT_RETRIES
    pauses = _retry_pauses(retries)
    default = _command_defaults()
    return {
        # Validation, at the door.
        "max_limit": str(validation.MAX_LIMIT),
        "max_bulk": str(validation.MAX_BULK),
        "max_batch": str(validation.MAX_BATCH),
        "max_roles": str(validation.MAX_ROLES),
        "max_reply_nesting": str(vendordata.MAX_REPLY_NESTING),
        "max_reply_body": _size(validation.MAX_REPLY_BODY_BYTES),
        "id_length": str(models.ID_LENGTH),
        "role_name_length": str(models.ROLE_NAME_LENGTH),
        "last_modified_length": str(models.LAST_MODIFIED_LENGTH),
        "nova_value_length": str(nova_tables.VALUE_LENGTH),
        # The vendordata cache.
        "max_cached_body": _size(vendordata.MAX_CACHED_BODY),
        "revalidate_keep": _duration(reply_cache.REVALIDATE_KEEP),
        # Engines and retries.
        "default_url": f"``{urls.DEFAULT_URL}``",
        "url_variable": f"``{urls.URL_ENVIRONMENT_VARIABLE}``",
        "retry_max_retries": str(retries["max_retries"]),
        "retry_interval": _seconds(retries["retry_interval"]),
        "retry_max_interval": _seconds(retries["max_retry_interval"]),
        "retry_window": _seconds(round(sum(pauses), 3)),
        "retry_pauses": ", ".join(_seconds(pause) for pause in pauses),
        "replica_retry_interval": _seconds(engines.REPLICA_RETRY_INTERVAL),
        # Migrations.
        "version_table": f"``{migration.VERSION_TABLE}``",
        "lock_timeout": f"``{_module_constant(ENV, 'DEFAULT_LOCK_TIMEOUT')}``",
        "lock_timeout_variable":
            f"``{_module_constant(ENV, 'LOCK_TIMEOUT_VARIABLE')}``",
        "check_at_head": str(migration.AT_HEAD),
        "check_expand_pending": str(migration.EXPAND_PENDING),
        "check_contract_pending": str(migration.CONTRACT_PENDING),
        # role-stash-manage.
        "exit_ok": str(manage.OK),
        "exit_database_failure": str(manage.DATABASE_FAILURE),
        "exit_bad_input": str(manage.BAD_INPUT),
        "exit_not_found": str(manage.NOT_FOUND),
        "exit_conflict": str(manage.CONFLICT),
        "exit_rows_left": str(manage.ROWS_LEFT),
        "exit_interrupted": str(manage.INTERRUPTED),
        "upgrade_success": str(upgradecheck.Code.SUCCESS.value),
        "upgrade_warning": str(upgradecheck.Code.WARNING.value),
        "upgrade_failure": str(upgradecheck.Code.FAILURE.value),
        "archive_max_rows": default("archive-deleted", "--max-rows"),
        "archive_batch_size": default("archive-deleted", "--batch-size"),
        "import_batch_size": default("import-nova", "--batch-size"),
        "import_listed": default("import-nova", "--max-listed"),
        "orphans_batch_size": default("delete-orphans", "--batch-size"),
        "orphans_listed": default("delete-orphans", "--max-listed"),
        "orphan_grace_period": _seconds(conf_manage.ORPHAN_GRACE_PERIOD),
        "deleted_rows_warn_after_days": str(
            conf_manage.DELETED_ROWS_WARN_AFTER_DAYS),
        # The benchmark.
        "bench_sizes": ", ".join(map(_rows, benchmark_cli.FULL.sizes)),
        "bench_quick_sizes": ", ".join(
            map(_rows, benchmark_cli.QUICK.sizes)),
        "bench_roles": str(len(benchmark_raw.ROLES)),
        "bench_layouts": _layouts(boot_storm.DEFAULT_LAYOUTS),
        "bench_lone_worker": _layouts([boot_storm.LONE_WORKER]),
    }


def substitutions():
    """Return the rst_epilog that defines |name| for each of values()."""
    return "\n".join(f".. |{name}| replace:: {text}"
                     for name, text in sorted(values().items())) + "\n"


class _Generated(SphinxDirective):
    """A directive whose content is reStructuredText that lines() writes."""

    has_content = False
    origin = "<role_stash>"

    def lines(self):
        raise NotImplementedError

    def run(self):
        return self.parse_text_to_nodes(
            StringList(list(self.lines()), self.origin),
            allow_section_headings=True)


def _list_table(header, rows):
    """Yield a list-table of a header row and rows of cells, as lines."""
    yield ".. list-table::"
    yield "   :header-rows: 1"
    yield ""
    for row in [header] + rows:
        first = True
        for cell in row:
            yield f"   {'* -' if first else '  -'} {cell or ' '}"
            first = False
    yield ""


def _columns(columns):
    """Return the names of columns, comma-separated."""
    return ", ".join(column.name for column in columns)


class SchemaTables(_Generated):
    """``.. role-stash-schema::``: each table of role_stash's models, live
    tables first, with its columns, keys and indexes as the models
    declare them."""

    origin = "<role_stash.db.models>"

    def lines(self):
        dialect = postgresql.dialect()
        tables = sorted(models.Base.metadata.sorted_tables,
                        key=lambda table: table.name.endswith("_shadow"))
        for table in tables:
            yield f"``{table.name}``"
            yield "-" * (len(table.name) + 4)
            yield ""
            doc = _first_paragraph(table)
            if doc:
                yield doc
                yield ""
            rows = []
            for column in table.columns:
                foreign = ", ".join(f"``{key.target_fullname}``"
                                    for key in column.foreign_keys)
                rows.append([
                    f"``{column.name}``",
                    f"``{column.type.compile(dialect=dialect)}``",
                    "" if column.nullable else "not null",
                    "primary key" if column.primary_key
                    else f"references {foreign}" if foreign else ""])
            yield from _list_table(["column", "PostgreSQL type", "null",
                                    "key"], rows)
            indexed = [f"``{constraint.name}`` (unique: "
                       f"{_columns(constraint.columns)})"
                       for constraint in table.constraints
                       if isinstance(constraint, sa.UniqueConstraint)]
            indexed += [f"``{index.name}`` ({_columns(index.columns)})"
                        for index in sorted(table.indexes,
                                            key=lambda index: index.name)]
            if indexed:
                yield "Keys and indexes: " + "; ".join(indexed) + "."
                yield ""


def _first_paragraph(table):
    """Return the first paragraph of the docstring of the model mapped to
    table, on one line."""
    for mapper in models.Base.registry.mappers:
        if table in mapper.tables:
            doc = mapper.class_.__doc__ or ""
            return " ".join(doc.strip().split("\n\n")[0].split())
    return ""


def _figure(value):
    """Return a figure of a results file as the tables show it."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}"


def benchmark_results(results, name, image=None):
    """Return, as lines of reStructuredText, a benchmark's results file
    (benchmarks/report.py's write_results) named name: its machine,
    versions and figures, and the plot image (a document path) if given."""
    machine = results["machine"]
    yield ("The figures below are read from the results file committed "
           f"with this tree, ``{name}``, written by "
           f"``{results['command']}`` in {_figure(results['seconds'])} s.")
    yield ""
    yield from _list_table(["machine and versions", ""], [
        ["CPU", machine["cpu"]],
        ["cores", _figure(machine["cores"])],
        ["kernel", machine["kernel"]],
        ["load average, start / end", f"{_figure(machine['load_start'])} / "
                                      f"{_figure(machine['load_end'])}"],
        *[[library, version]
          for library, version in sorted(results["versions"].items())],
    ])
    records = results["records"]
    timings = [record for record in records if "p50_us" in record
               and record["operation"] != "storm"]
    if timings:
        yield "Single calls (µs; ratio: repository / raw):"
        yield ""
        yield from _list_table(
            ["backend", "repository on", "raw", "operation", "stashes",
             "p50", "p99", "raw p50", "raw p99", "ratio p50", "ratio p99"],
            [[record["backend"], record["driver"], record["raw_driver"],
              record["operation"], _figure(record["rows"]),
              _figure(record["p50_us"]), _figure(record["p99_us"]),
              _figure(record["raw_p50_us"]), _figure(record["raw_p99_us"]),
              _figure(record["ratio_p50"]), _figure(record["ratio_p99"])]
             for record in timings])
    storms = [record for record in records if record["operation"] == "storm"]
    if storms:
        yield "Boot storms (reads per second; latency under load in µs):"
        yield ""
        yield from _list_table(
            ["backend", "layout", "repository on", "raw", "reads/s",
             "raw reads/s", "p99", "raw p99", "connections",
             "raw connections"],
            [[record["backend"], record["layout"], record["driver"],
              record["raw_driver"], _figure(record["reads_per_s"]),
              _figure(record["raw_reads_per_s"]), _figure(record["p99_us"]),
              _figure(record["raw_p99_us"]), _figure(record["connections"]),
              _figure(record["raw_connections"])] for record in storms])
    costs = [record for record in records
             if record["operation"] == "read_cost"]
    if costs:
        yield "Read cost (client instructions per read, by layer):"
        yield ""
        yield from _list_table(
            ["backend", "driver", "layer", "instructions per read", "added"],
            [[record["backend"], record["driver"], record["layer"],
              _figure(record["instructions_per_read"]),
              _figure(record["added"])] for record in costs])
    if image:
        yield f".. image:: {image}"
        yield f"   :alt: read latency and boot-storm throughput of {name}"
        yield ""


class BenchmarkResults(_Generated):
    """``.. role-stash-benchmark-results::``: the committed run's results
    (conf.py's role_stash_benchmark_results, a results file), with its
    plot when one is beside it in _static; a sentence saying there is none
    otherwise."""

    origin = "<benchmark results>"

    def lines(self):
        path = pathlib.Path(self.config.role_stash_benchmark_results)
        if not path.is_file():
            yield ("No results file is committed with this tree: run the "
                   "benchmark as above for figures of your own machine.")
            return
        self.env.note_dependency(str(path))
        plot = path.with_suffix(".png")
        static = pathlib.Path(self.env.srcdir) / "_static"
        image = (f"/_static/{plot.name}"
                 if plot.is_file() and plot.parent == static else None)
        yield from benchmark_results(
            json.loads(path.read_text(encoding="utf-8")), path.name, image)


class _EmptyGlobs(logging.Filter):
    """Drops Sphinx's warning of a toctree glob that matches no page.

    Each section's index lists its pages and then globs its folder, so a
    page added there needs no other edit; with no such page the glob is
    empty, which is no fault. Sphinx gives that warning no type that
    suppress_warnings could name.
    """

    def filter(self, record):
        return getattr(record, "subtype", None) != "empty_glob"


def setup(app):
    logging.getLogger("sphinx.sphinx.directives.other").addFilter(
        _EmptyGlobs())
    app.add_config_value("role_stash_benchmark_results", "", "env")
    app.add_directive("role-stash-schema", SchemaTables)
    app.add_directive("role-stash-benchmark-results", BenchmarkResults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
