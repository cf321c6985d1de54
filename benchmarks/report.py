"""The run's report: text tables of the records, the JSON files (the
records alone, or the results: the records with the machine and the
versions they were measured on), and the plot of latency distributions and
boot-storm throughput."""

import importlib.metadata
import json
import os
import pathlib
import platform

TIMING_COLUMNS = ("backend", "driver", "raw_driver", "operation", "rows",
                  "p50_us", "p99_us", "raw_p50_us", "raw_p99_us",
                  "ratio_p50", "ratio_p99")
STORM_COLUMNS = ("backend", "driver", "raw_driver", "layout",
                 "reads_per_s", "raw_reads_per_s", "ratio_reads_per_s",
                 "p50_us", "p99_us", "raw_p50_us", "raw_p99_us", "ratio_p99",
                 "core_ratio_reads_per_s", "connections", "raw_connections")
READ_COST_COLUMNS = ("backend", "driver", "layer", "instructions_per_read",
                     "added")
# Left-aligned: the names; right-aligned: the figures.
_NAMES = {"backend", "driver", "raw_driver", "operation", "layout", "layer"}


def format_table(records, columns):
    """Return the records as an aligned text table of columns."""
    rows = [columns] + [tuple("-" if record[column] is None
                              else str(record[column]) for column in columns)
                        for record in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(width) if column in _NAMES else cell.rjust(width)
                  for column, cell, width in zip(columns, row, widths))
        for row in rows)


def text(records, notes, seconds):
    """Return the whole text report."""
    timings = [record for record in records
               if "p50_us" in record and record["operation"] != "storm"]
    storms = [record for record in records if record["operation"] == "storm"]
    costs = [record for record in records
             if record["operation"] == "read_cost"]
    parts = [format_table(timings, TIMING_COLUMNS)]
    if storms:
        parts.append("boot storm (reads of get_stash, all workers at once):\n"
                     + format_table(storms, STORM_COLUMNS))
    if costs:
        parts.append("read cost (client instructions per read, by layer; "
                     "added: over the layer above):\n"
                     + format_table(costs, READ_COST_COLUMNS))
    parts.append("\n".join(notes))
    parts.append(f"total {seconds:.1f} s")
    return "\n\n".join(parts)


def write_json(records, path):
    """Write the records to path as a JSON list."""
    with open(path, "w") as output:
        json.dump(records, output, indent=2)
        output.write("\n")


# The libraries whose versions the results file names, by distribution,
# and the drivers', by module: a driver installs under one of several
# distributions (psycopg2 or psycopg2-binary), and PyMySQL's __version__
# is the mysqlclient version it stands in for.
LIBRARIES = ("SQLAlchemy", "oslo.db", "alembic")
DRIVER_MODULES = ("psycopg", "psycopg2", "pymysql", "MySQLdb")


def _cpu():
    """Return the CPU's model name, as the kernel gives it."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """Return what a reader of the results needs to know of the machine:
    its CPU, cores and kernel."""
    return {"cpu": _cpu(), "cores": os.cpu_count(),
            "kernel": f"{platform.system()} {platform.release()}"}


def load():
    """Return the machine's load average over the last minute."""
    return round(os.getloadavg()[0], 2)


def versions(servers):
    """Return {name: version} of Python, the libraries, every driver that
    can be imported here, and the servers ({backend: its version})."""
    found = {"Python": platform.python_version()}
    for name in LIBRARIES:
        found[name] = importlib.metadata.version(name)
    distributions = importlib.metadata.packages_distributions()
    for module in DRIVER_MODULES:
        for distribution in distributions.get(module, ()):
            found[distribution] = importlib.metadata.version(distribution)
    found.update((f"{backend} server", version)
                 for backend, version in servers.items())
    return found


def results_path(plot_path):
    """Return where the results of a run that drew plot_path go: beside
    it, the same name ending in .json."""
    return pathlib.Path(plot_path).with_suffix(".json")


def write_results(path, records, *, command, seconds, load_start, servers):
    """Write the run's results to path: the command, the machine (its load
    at the start, load_start, and now), the versions and the records."""
    results = {
        "command": command,
        "seconds": round(seconds, 1),
        "machine": {**machine(), "load_start": load_start,
                    "load_end": load()},
        "versions": versions(servers),
        "records": records,
    }
    with open(path, "w", encoding="utf-8") as output:
        json.dump(results, output, indent=2, ensure_ascii=False)
        output.write("\n")


def _style(label, drivers):
    """Return the matplotlib style of a side: one colour per driver, solid
    for the repository, dashed or hatched for the raw driver, dotted for
    SQLAlchemy Core."""
    side, driver = label.split(" ", 1)
    colour = f"C{drivers.index(driver) % 10}"
    if side == "repository":
        return {"color": colour}
    if side == "core":
        return {"color": colour, "linestyle": ":", "hatch": "..",
                "edgecolor": "black", "alpha": 0.6}
    return {"color": colour, "linestyle": "--", "hatch": "//",
            "edgecolor": "black"}


def _ecdf(axes, samples, backend, drivers, ticker):
    """Draw the read latency ECDF of each side of backend."""
    reads = [sample for sample in samples
             if sample["backend"] == backend and sample["operation"] == "read"]
    smallest = min(sample["rows"] for sample in reads)
    for sample in reads:
        if sample["rows"] != smallest:
            continue
        times_us = sorted(ns / 1000 for ns in sample["times_ns"])
        count = len(times_us)
        style = _style(sample["label"], drivers)
        axes.plot(times_us, [(i + 1) / count for i in range(count)],
                  label=sample["label"], color=style["color"],
                  linestyle=style.get("linestyle", "-"))
    axes.set_xscale("log")
    # The slowest half percent would squeeze the rest into a corner.
    tail = max(sorted(sample["times_ns"])[
        int(len(sample["times_ns"]) * 0.995)] for sample in reads
        if sample["rows"] == smallest) / 1000
    axes.set_xlim(right=tail * 1.2)
    # Ticks at 1, 2 and 5 per decade: a backend whose calls all fall
    # within one decade would otherwise show no tick label at all.
    axes.xaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 5)))
    axes.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_xlabel("get_stash latency, µs (log; the slowest 0.5 % cut)")
    axes.set_ylabel("fraction of calls")
    axes.set_title(f"{backend}: read, {smallest} stashes")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")


def _storm_bars(axes, records, backend, drivers):
    """Draw each side's boot-storm throughput per worker layout."""
    storms = [record for record in records if record["operation"] == "storm"
              and record["backend"] == backend]
    layouts = list(dict.fromkeys(record["layout"] for record in storms))
    throughput = {}  # {side label: {layout: reads/s}}
    for record in storms:
        throughput.setdefault(f"repository {record['driver']}", {})[
            record["layout"]] = record["reads_per_s"]
        throughput.setdefault(f"raw {record['raw_driver']}", {})[
            record["layout"]] = record["raw_reads_per_s"]
        throughput.setdefault(f"core {record['driver']}", {})[
            record["layout"]] = record["core_reads_per_s"]
    width = 0.8 / len(throughput)
    for number, (label, by_layout) in enumerate(sorted(throughput.items())):
        positions = [i + (number - (len(throughput) - 1) / 2) * width
                     for i in range(len(layouts))]
        style = _style(label, drivers)
        axes.bar(positions, [by_layout[layout] for layout in layouts], width,
                 label=label, color=style["color"],
                 hatch=style.get("hatch"), edgecolor=style.get("edgecolor"),
                 alpha=style.get("alpha"))
    axes.set_xticks(range(len(layouts)), [f"{layout}\n(workers x threads)"
                                          for layout in layouts])
    axes.set_ylabel("reads per second")
    axes.set_title(f"{backend}: boot storm throughput")
    # Headroom above the tallest bar keeps the legend off the bars.
    tallest = max(max(by_layout.values()) for by_layout in throughput.values())
    axes.set_ylim(top=tallest * 1.35)
    axes.legend(fontsize="small", ncol=2, loc="upper center")


def plot(records, samples, path):
    """Draw read latency ECDFs per backend (repository against raw, per
    driver) above the boot-storm throughput per layout; save to path."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib import ticker

    backends = list(dict.fromkeys(sample["backend"] for sample in samples))
    drivers = list(dict.fromkeys(
        sample["label"].split(" ", 1)[1] for sample in samples))
    stormed = {record["backend"] for record in records
               if record["operation"] == "storm"}
    columns = max(len(backends), 1)
    rows = 2 if stormed else 1
    figure, axes = pyplot.subplots(rows, columns, squeeze=False,
                                   figsize=(6 * columns, 4.5 * rows))
    for column, backend in enumerate(backends):
        _ecdf(axes[0][column], samples, backend, drivers, ticker)
        if not stormed:
            continue
        if backend in stormed:
            _storm_bars(axes[1][column], records, backend, drivers)
        else:
            axes[1][column].axis("off")
            axes[1][column].text(0.5, 0.5, f"{backend}: no boot storm\n"
                                 "(no server to count connections)",
                                 ha="center", va="center")
    figure.suptitle("role_stash: repository against the raw drivers")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
