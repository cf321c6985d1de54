"""Timing: sides called in alternation one call at a time, percentiles,
comparison records, resident memory and progress lines."""

import dataclasses
import statistics
import sys
import time


@dataclasses.dataclass
class Side:
    """One contender of a comparison: a call and the arguments it gets."""

    label: str  # e.g. "repository psycopg", "raw psycopg2"
    call: object
    args: list
    times_ns: list = dataclasses.field(default_factory=list)


def interleave(sides, warmup):
    """Time every side's calls, the sides taking turns call by call after
    warmup untimed calls each; fill in each side's times_ns."""
    # One call at a time: a shared machine's slow spells (a busy
    # neighbour, a server process descheduled) then fall on every side
    # alike, where blocks of calls let one side take a spell alone.
    for side in sides:
        for arg in side.args[:warmup]:
            side.call(arg)
    order = list(sides)
    for index in range(warmup, min(len(side.args) for side in sides)):
        for side in order:
            arg = side.args[index]
            began = time.perf_counter_ns()
            side.call(arg)
            side.times_ns.append(time.perf_counter_ns() - began)
        order.append(order.pop(0))


def percentiles_us(samples_ns):
    """Return the p50 and p99 of samples in ns, in µs."""
    cuts = statistics.quantiles(samples_ns, n=100, method="inclusive")
    return cuts[49] / 1000, cuts[98] / 1000


def comparison(api_ns, raw_ns):
    """Return the p50/p99 fields comparing API times with raw ones."""
    p50, p99 = percentiles_us(api_ns)
    raw_p50, raw_p99 = percentiles_us(raw_ns)
    return {"p50_us": round(p50, 1), "p99_us": round(p99, 1),
            "raw_p50_us": round(raw_p50, 1), "raw_p99_us": round(raw_p99, 1),
            "ratio_p50": round(p50 / raw_p50, 2),
            "ratio_p99": round(p99 / raw_p99, 2)}


def rss_kb():
    """Return this process's resident set size in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def progress(message):
    """Print a timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr,
          flush=True)
