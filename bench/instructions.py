"""What the export job's machinery costs in instructions, on SQLite:
``python -m bench.instructions [--rows N] [--formats csv,json,xml] [--cache]``.

Wall time on a shared 2-vCPU machine moves by a quarter between runs of the same code, so a
machinery of a few per cent cannot be seen in it (docs/performance.md, *The job around the
reader*). An instruction count barely moves: valgrind's cachegrind counts the same program on
the same data nearly alike whatever else the machine is doing. SQLite runs inside the
exporting process, so there the count holds all the work of an export.

For each format, the export job (``bench.methods job-FMT``, its burst worker running the job in
its own process: a forked work horse's count would begin with everything its parent had
counted) and the reader and writer loop alone (``loop-FMT``) run under cachegrind on N and on
2N orders. The difference between the two counts is what N rows cost, per-chunk work (progress
reports, pause and cancel checks) included; what is left at N rows, less the count of a
process that starts Python, sets Django up and builds the service's query
(``bench.methods sql``), is the work done once per export (for the job: its imports, the
worker, counting, the run token, checkpoints, publishing, RQ's own bookkeeping of the job).
Both give each method's count at ``--project`` rows; the job's over the loop's is the
machinery's cost. ``--cache`` also simulates the caches and prints the data cache misses per
row (about three times slower).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from bench.run import (
    PYTHON,
    ROOT,
    SHARDED_FORMATS,
    add_redis_and_workdir,
    base_env,
    check_redis,
    ensure_data,
    say,
    sqlite_path,
)

#: The formats whose instructions are counted (the text formats with a fast path).
FORMATS = SHARDED_FORMATS

#: The loops and the start-up read a copy of each database: the jobs write to theirs.
LOOP_COPY = "-loop"


@dataclass(frozen=True)
class Count:
    """Cachegrind's totals of one run, summed over its processes."""

    instructions: int
    d1_misses: int = 0  # first-level data cache misses, reads and writes
    ll_misses: int = 0  # last-level data cache misses, reads and writes

    def __sub__(self, other: Count) -> Count:
        return Count(
            self.instructions - other.instructions,
            self.d1_misses - other.d1_misses,
            self.ll_misses - other.ll_misses,
        )


def read_counts(files: list[Path]) -> Count:
    totals: dict[str, int] = {}
    for path in files:
        events: list[str] = []
        for line in path.read_text().splitlines():
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                for event, value in zip(events, line.split()[1:], strict=True):
                    totals[event] = totals.get(event, 0) + int(value)
    if "Ir" not in totals:
        raise RuntimeError(f"no cachegrind summary in {', '.join(map(str, files))}")
    return Count(
        totals["Ir"],
        totals.get("D1mr", 0) + totals.get("D1mw", 0),
        totals.get("DLmr", 0) + totals.get("DLmw", 0),
    )


def counted(args: argparse.Namespace, method: str, orders: int, copy: str = "") -> Count:
    """Run ``bench.methods METHOD`` on the database of ``orders`` orders under cachegrind."""
    folder = args.workdir / "instructions" / f"{method}-{orders}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    out = folder / f"export.{method.rpartition('-')[2]}"
    env = base_env(args, database_url(args, orders, copy), args.workdir / "media" / "instructions")
    env["PYTHONHASHSEED"] = "0"  # the same string hashes, hence the same dict probes, each run
    env["BENCH_IN_PROCESS"] = "1"  # one process: a forked child's count starts from its parent's
    argv = [
        "valgrind",
        "--tool=cachegrind",
        f"--cache-sim={'yes' if args.cache else 'no'}",
        *([f"--LL={args.last_level_cache}"] if args.cache else []),
        f"--cachegrind-out-file={folder}/cachegrind.%p",
        PYTHON,
        "-m",
        "bench.methods",
        method,
        str(out),
    ]
    say(f"{method}, {orders:,} orders, under cachegrind")
    log = folder / "log.txt"
    with log.open("wb") as output:
        code = subprocess.run(argv, cwd=ROOT, env=env, stdout=output, stderr=output).returncode
    if code:
        raise RuntimeError(f"{method} failed (exit {code}): {log.read_text()[-2000:]}")
    return read_counts(sorted(folder.glob("cachegrind.*")))


def last_level_cache(cpu: Path = Path("/sys/devices/system/cpu/cpu0")) -> str:
    """The machine's last-level cache as cachegrind's ``--LL=size,ways,line`` takes it, from
    sysfs: cachegrind's own reading of the CPU (``cpuid``) can be wrong on a virtual machine
    (a 256 MB direct-mapped L3 on one with 32 MB, 16 ways). Cachegrind wants a power of two
    of sets; like its own reading, a cache of 1.5 times that (12 MB, 16 ways) is taken as
    having 1.5 times the ways."""
    unified = [
        index
        for index in (cpu / "cache").glob("index*")
        if (index / "type").read_text().strip() == "Unified"
    ]
    if not unified:
        raise SystemExit(f"No unified cache under {cpu / 'cache'}: leave out --cache.")
    last = max(unified, key=lambda index: int((index / "level").read_text()))
    size = (last / "size").read_text().strip()
    size_bytes = int(size.rstrip("KMG")) * {"K": 2**10, "M": 2**20, "G": 2**30}.get(size[-1], 1)
    ways = int((last / "ways_of_associativity").read_text())
    line = int((last / "coherency_line_size").read_text())
    if ways <= 0 or line <= 0 or size_bytes % (ways * line):
        raise SystemExit(f"Cannot simulate a {size} cache of {ways} ways: leave out --cache.")
    sets = size_bytes // (ways * line)
    if sets & (sets - 1) and sets % 3 == 0 and ways % 2 == 0:
        sets, ways = sets * 2 // 3, ways * 3 // 2
    if sets & (sets - 1):
        raise SystemExit(f"A {size} cache of {ways} ways has {sets} sets, not a power of two.")
    return f"{size_bytes},{ways},{line}"


def database_url(args: argparse.Namespace, orders: int, copy: str = "") -> str:
    return f"sqlite:///{args.workdir / f'shop-{orders}{copy}.sqlite3'}"


@dataclass(frozen=True)
class Measured:
    export_format: str
    orders: int  # N
    startup: Count  # a process that starts Python, sets Django up, builds the query
    loop: tuple[Count, Count]  # at N and 2N orders
    job: tuple[Count, Count]

    def per_row(self, runs: tuple[Count, Count]) -> Count:
        difference = runs[1] - runs[0]
        return Count(*(round(value / self.orders) for value in vars(difference).values()))

    def once(self, runs: tuple[Count, Count]) -> int:
        """Instructions of one export that do not grow with its rows, start-up left out."""
        grown = runs[1].instructions - runs[0].instructions  # what N more rows cost
        return runs[0].instructions - grown - self.startup.instructions

    def projected(self, runs: tuple[Count, Count], rows: int) -> int:
        """Instructions of an export of ``rows`` rows, start-up left out."""
        per_row = (runs[1].instructions - runs[0].instructions) / self.orders
        return self.once(runs) + round(per_row * rows)


def measure(args: argparse.Namespace) -> list[Measured]:
    """Every count, two at a time: the jobs one after another (each flushes the Redis
    database), the loops and the start-up beside them on a copy of each database, which the
    jobs write to."""
    sizes = (args.rows, 2 * args.rows)
    for orders in sizes:
        copy_database(sqlite_path(database_url(args, orders)), copy_path(args, orders))

    def count_all(kind: str) -> dict[tuple[str, int], Count]:
        copy = "" if kind == "job" else LOOP_COPY
        return {
            (fmt, n): counted(args, f"{kind}-{fmt}", n, copy) for fmt in args.formats for n in sizes
        }

    with ThreadPoolExecutor(max_workers=2) as pool:
        job_runs = pool.submit(count_all, "job")
        loop_runs = pool.submit(count_all, "loop")
        startup = pool.submit(counted, args, "sql", args.rows, LOOP_COPY).result()
        jobs, loops = job_runs.result(), loop_runs.result()
    return [
        Measured(
            fmt,
            args.rows,
            startup,
            (loops[(fmt, sizes[0])], loops[(fmt, sizes[1])]),
            (jobs[(fmt, sizes[0])], jobs[(fmt, sizes[1])]),
        )
        for fmt in args.formats
    ]


def copy_path(args: argparse.Namespace, orders: int) -> Path:
    return sqlite_path(database_url(args, orders, LOOP_COPY))


def copy_database(source: Path, target: Path) -> None:
    """SQLite's own copy: the file alone may lack what its write-ahead log holds."""
    target.unlink(missing_ok=True)
    with closing(sqlite3.connect(source)) as original, closing(sqlite3.connect(target)) as copy:
        original.backup(copy)


def report(args: argparse.Namespace, results: list[Measured]) -> str:
    rows = args.project
    lines = [
        f"Instructions (cachegrind), SQLite, {args.rows:,} and {2 * args.rows:,} orders; "
        f"projected to {rows:,}:",
        "",
        "| format | loop per row | job per row | job over loop, per row "
        "| once per export, job over loop "
        f"| job over loop at {rows:,} rows |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        loop_row, job_row = result.per_row(result.loop), result.per_row(result.job)
        once = result.once(result.job) - result.once(result.loop)
        total = result.projected(result.job, rows) / result.projected(result.loop, rows)
        lines.append(
            f"| {result.export_format.upper()} | {loop_row.instructions:,} "
            f"| {job_row.instructions:,} "
            f"| {(job_row.instructions / loop_row.instructions - 1) * 100:+.2f}% "
            f"| {once / 1e6:+,.0f} M | {(total - 1) * 100:+.2f}% |"
        )
    if args.cache:
        lines += [
            "",
            "| format | D1 misses per row, loop | job | LL misses per row, loop | job |",
            "|---|---:|---:|---:|---:|",
        ]
        for result in results:
            loop_row, job_row = result.per_row(result.loop), result.per_row(result.job)
            lines.append(
                f"| {result.export_format.upper()} | {loop_row.d1_misses:,} "
                f"| {job_row.d1_misses:,} | {loop_row.ll_misses:,} | {job_row.ll_misses:,} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.instructions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rows", type=int, default=20_000, help="N (default 20,000)")
    parser.add_argument("--formats", default=",".join(FORMATS), help="default csv,json,xml")
    parser.add_argument(
        "--project", type=int, default=1_000_000, help="rows to project to (default 1,000,000)"
    )
    parser.add_argument("--cache", action="store_true", help="also simulate the caches")
    parser.add_argument("--reseed", action="store_true", help="seed the databases again")
    add_redis_and_workdir(parser, workdir_holds="SQLite files and cachegrind's output")
    parser.set_defaults(service="orderRow")  # the instructions are counted on flat orders
    args = parser.parse_args(argv)
    args.formats = [part for part in args.formats.split(",") if part]
    if unknown := set(args.formats) - set(FORMATS):
        parser.error(f"unknown format {sorted(unknown)[0]!r}: csv, json or xml")
    args.workdir = args.workdir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (apt-get install -y valgrind).")
    check_redis(args.redis_url)
    # Read once, and before seeding: a cache cachegrind cannot simulate stops the run here.
    args.last_level_cache = last_level_cache() if args.cache else None
    for orders in (args.rows, 2 * args.rows):
        ensure_data(args, database_url(args, orders), orders)
    print(report(args, measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
