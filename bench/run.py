"""The benchmark runner: ``python -m bench [--rows N] [--runs R] ...`` (``--help``).

1. Data: the demo shop seeded with ``N`` orders (``manage.py seed_shop``) in a PostgreSQL
   database (``--pg-url``, created if missing), a SQLite file and, with ``--databases``
   naming ``mysql``, a MariaDB/MySQL database (``--mysql-url``), plus a second set with
   ``N / 10`` orders for the memory check. Databases that already hold exactly that many
   orders are reused (``--reseed`` forces a new seed).
2. Methods: each one a process of its own (``bench/methods.py``, ``psql``, ``sqlite3``,
   ``mariadb --batch``), run
   ``R`` times in rounds (every method once, then again), so that all ratios come from the
   same stretch of time. The runner takes each process's wall time and peak RSS from
   ``wait4``; the process reports the time of the work itself. Every output file is read back
   (its records counted) and the export job's files are compared byte for byte: fast path,
   generic path and the loop without the job's machinery must write the same bytes. A
   document service (``--service order``) runs the job and its two anchors only, PostgreSQL's
   own document COPY and DRF's nested serializers, and every file must hold the same
   documents and items of its first collection.
3. The status endpoint under load: gunicorn (``--status-workers`` processes) and wrk on
   loopback, against ``/api/report/order/status`` and a constant authenticated DRF view, in
   ``--status-rounds`` short rounds (each view once a round, which goes first alternating):
   this machine's speed drifts over minutes, and short neighbouring runs share it.
4. A table per database, medians of the runs, and the issue's goals with the measured ratios.
"""

from __future__ import annotations

import argparse
import compileall
import csv
import hashlib
import importlib.util
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
DEFAULT_PG_URL = "postgres://postgres@127.0.0.1:5432/bench_report_export"
DEFAULT_MYSQL_URL = "mysql://root@127.0.0.1:3306/bench_report_export"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
FORMATS = ("csv", "json", "xml", "jsonl", "xlsx")
#: Formats an export can be split into shards for (xlsx is written unsharded; jsonl's shards
#: are json's).
SHARDED_FORMATS = ("csv", "json", "xml")
TITLES = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "mysql": "MariaDB"}
#: The formats the issue's document goals name (JSON Lines is measured beside them).
DOCUMENT_GOAL_FORMATS = ("json", "xml")


@dataclass
class Database:
    vendor: str  # "postgresql", "sqlite" or "mysql" (MariaDB or MySQL)
    url: str
    small_url: str

    @property
    def title(self) -> str:
        return TITLES[self.vendor]


@dataclass
class Shape:
    """What the runner knows of the exported service (``python -m bench.methods shape``)."""

    formats: list[str]
    document: bool = False
    collection: str = ""  # a document's first collection, whose items the runner counts
    item: str = ""  # the element of one of its items in XML


@dataclass
class Method:
    key: str
    label: str
    vendor: str
    export_format: str
    argv: list[str] = field(default_factory=list)  # empty: python -m bench.methods <key>
    env: dict[str, str] = field(default_factory=dict)
    header: bool = True  # whether a CSV output starts with a header row
    group: str = ""  # "job", "loop" or "baseline"
    path: str = ""  # "fast" or "generic" for the project's own methods

    def output(self, folder: Path) -> Path:
        return folder / f"{self.vendor}-{self.key}-{self.path or 'base'}.{self.export_format}"


@dataclass
class Run:
    wall: float
    seconds: float
    rss_kib: int
    rows: int
    items: int = -1  # a document's items of its first collection (-1: not counted)
    digest: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    method: Method
    runs: list[Run] = field(default_factory=list)
    error: str = ""

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs)

    def median_extra(self, name: str) -> float:
        return statistics.median(float(run.extra[name]) for run in self.runs)

    def median_outside_reader(self) -> float | None:
        """Median seconds of work outside the reader's ``read`` (see ``ReaderClock``)."""
        if not all("read_seconds" in run.extra for run in self.runs):
            return None
        outside = [run.seconds - float(run.extra["read_seconds"]) for run in self.runs]
        return statistics.median(outside)


# --- Helpers --------------------------------------------------------------------------------


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def base_env(args: argparse.Namespace, database_url: str, media: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings",
        DATABASE_URL=database_url,
        REDIS_URL=args.redis_url,
        MEDIA_ROOT=str(media),
        BENCH_SERVICE=args.service,
        DEMO_VAR_DIR=str(args.workdir),
        DJANGO_DEBUG="0",
        PYTHONUNBUFFERED="1",
    )
    env.pop("REPORT_EXPORT_SETTINGS", None)
    return env


def run_process(
    argv: list[str], env: dict[str, str], stdout: Path, stderr: Path
) -> tuple[float, int, int]:
    """Run ``argv``; its wall time, exit code and peak RSS (KiB) as ``wait4`` reports it."""
    with stdout.open("wb") as out, stderr.open("ab") as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, process.returncode, int(usage.ru_maxrss)


def manage(args: argparse.Namespace, database_url: str, *command: str) -> str:
    env = base_env(args, database_url, args.workdir / "media")
    result = subprocess.run(
        [PYTHON, "manage.py", *command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode:
        raise SystemExit(f"manage.py {' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def count_records(path: Path, export_format: str, header: bool, service: str) -> int:
    if export_format == "tsv":  # mariadb --batch: a line a row, line breaks escaped
        with path.open("rb") as file:
            lines = sum(1 for _ in file)
        return lines - (1 if header else 0)
    if export_format == "csv":
        csv.field_size_limit(sys.maxsize)
        with path.open(newline="", encoding="utf-8") as file:
            records = sum(1 for _ in csv.reader(file, strict=True))
        return records - (1 if header else 0)
    if export_format == "json":
        with path.open("rb") as file:
            lines = sum(1 for _ in file)
        return lines - 2  # "[" and "]" on lines of their own, one object per line between
    if export_format == "jsonl":
        with path.open("rb") as file:
            return sum(1 for _ in file)
    if export_format == "xlsx":
        return xlsx_rows(path) - (1 if header else 0)
    return tags_in(path, f"<{service}>".encode())


def tags_in(path: Path, tag: bytes) -> int:
    count, tail = 0, b""
    with path.open("rb") as file:
        while block := file.read(1 << 24):
            data = tail + block
            count += data.count(tag)
            tail = data[-(len(tag) - 1) :]
    return count


#: COPY's text format escapes: a backslash is doubled and a line break inside a value (json_agg
#: puts one between items) is ``\n``.
COPY_ESCAPE = re.compile(rb"\\(.)")
COPY_UNESCAPED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f", b"v": b"\v"}


def count_items(path: Path, export_format: str, shape: Shape, copy_text: bool = False) -> int:
    """The items of the documents' first collection in a file of documents: a JSON array with
    a document a line, JSON Lines (``copy_text``: in COPY's text format) or XML."""
    if export_format == "xml":
        return tags_in(path, f"<{shape.item}>".encode())
    import orjson

    count = 0
    with path.open("rb") as file:
        for line in file:
            line = line.strip().removesuffix(b",")
            if line in (b"[", b"]", b""):
                continue
            if copy_text:
                line = COPY_ESCAPE.sub(lambda m: COPY_UNESCAPED.get(m[1], m[1]), line)
            count += len(orjson.loads(line)[shape.collection])
    return count


def xlsx_rows(path: Path) -> int:
    """Rows of every sheet of a workbook, header rows included (``<row`` elements, read
    from the zip as a stream)."""
    count = 0
    with zipfile.ZipFile(path) as workbook:
        for name in workbook.namelist():
            if not name.startswith("xl/worksheets/"):
                continue
            tail = b""
            with workbook.open(name) as sheet:
                while block := sheet.read(1 << 24):
                    data = tail + block
                    count += data.count(b"<row>") + data.count(b"<row ")
                    tail = data[-4:]
    return count


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


# --- Data -----------------------------------------------------------------------------------


def pg_connect(url: str) -> Any:
    import psycopg

    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def pg_available(url: str) -> bool:
    try:
        pg_connect(with_database(url, "postgres")).close()
    except Exception:
        return False
    return True


def mysql_connect(url: str, database: bool = True) -> Any:
    """A mysqlclient connection to ``url`` (to the server alone with ``database=False``)."""
    import MySQLdb

    parts = urlsplit(url)
    options: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": parts.username or "root",
        "password": parts.password or "",
        "charset": "utf8mb4",
        "connect_timeout": 5,
        "autocommit": True,
    }
    if database:
        options["database"] = database_name(url)
    return MySQLdb.connect(**options)


def mysql_available(url: str) -> bool:
    try:
        mysql_connect(url, database=False).close()
    except Exception:
        return False
    return True


def orders_in(database: str) -> int:
    """How many orders a database holds (-1: no shop tables yet)."""
    try:
        if database.startswith("sqlite"):
            import sqlite3

            path = sqlite_path(database)
            if not path.exists():
                return -1
            with sqlite3.connect(path) as connection:
                return int(connection.execute("SELECT count(*) FROM shop_order").fetchone()[0])
        if database.startswith("mysql"):
            connection = mysql_connect(database)
            try:
                cursor = connection.cursor()
                cursor.execute("SELECT count(*) FROM shop_order")
                return int(cursor.fetchone()[0])
            finally:
                connection.close()
        with pg_connect(database) as connection:
            return int(connection.execute("SELECT count(*) FROM shop_order").fetchone()[0])
    except Exception:
        return -1


def ensure_data(args: argparse.Namespace, database: str, orders: int) -> None:
    name = database if database.startswith("sqlite") else database_name(database)
    if database.startswith("mysql"):
        # A new database for a new seed: deleting rows keeps MariaDB's AUTO_INCREMENT
        # counters, and the keys must be those of the other databases' seed.
        fresh = args.reseed or orders_in(database) != orders
        connection = mysql_connect(database, database=False)
        try:
            cursor = connection.cursor()
            if fresh:
                cursor.execute(f"DROP DATABASE IF EXISTS `{database_name(database)}`")
            cursor.execute(
                f"CREATE DATABASE IF NOT EXISTS `{database_name(database)}` "
                "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        finally:
            connection.close()
    elif database.startswith("postgres"):
        with pg_connect(with_database(database, "postgres")) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [database_name(database)]
            ).fetchone()
            if not exists:
                admin.execute(f'CREATE DATABASE "{database_name(database)}"')
    else:
        sqlite_path(database).parent.mkdir(parents=True, exist_ok=True)
    manage(args, database, "migrate", "--noinput", "-v0")  # The project's tables may be new.
    if not args.reseed and orders_in(database) == orders:
        say(f"{name}: {orders:,} orders already there")
        return
    say(f"{name}: seeding {orders:,} orders (minutes for a million)")
    started = time.perf_counter()
    manage(args, database, "seed_shop", "--orders", str(orders), "--clear")
    if database.startswith("postgres"):
        with pg_connect(database) as connection:
            connection.execute("VACUUM ANALYZE")
    elif database.startswith("mysql"):
        connection = mysql_connect(database)
        try:
            cursor = connection.cursor()
            cursor.execute("SHOW TABLES LIKE 'shop\\_%'")
            tables = ", ".join(f"`{row[0]}`" for row in cursor.fetchall())
            cursor.execute(f"ANALYZE TABLE {tables}")
            cursor.fetchall()
        finally:
            connection.close()
    else:
        import sqlite3

        with sqlite3.connect(sqlite_path(database)) as connection:
            connection.execute("ANALYZE")
    say(f"{name}: seeded in {time.perf_counter() - started:.0f} s")


def check_redis(url: str) -> None:
    """Refuse a Redis database holding anything but this project's keys (it is flushed)."""
    from redis import Redis

    conn = Redis.from_url(url, socket_timeout=5)
    foreign = [
        key for key in conn.scan_iter(count=1000) if not key.startswith((b"report_export:", b"rq:"))
    ]
    if foreign:
        raise SystemExit(
            f"Refusing to run: Redis {url} holds {len(foreign)} other keys (e.g. "
            f"{foreign[0]!r}), and the benchmark flushes it. Give an empty one (--redis-url)."
        )


# --- Methods --------------------------------------------------------------------------------


NAMES = {"csv": "CSV", "json": "JSON", "xml": "XML", "jsonl": "JSON Lines", "xlsx": "xlsx"}


def methods_for(vendor: str, args: argparse.Namespace, shape: Shape) -> list[Method]:
    if shape.document:
        # Neither the flat COPY nor the naive loops nor django-import-export write documents.
        formats = [export_format for export_format in FORMATS if export_format in shape.formats]
        methods = document_copy(vendor) + export_methods(vendor, args, formats)
        label = "DRF nested ModelSerializer over prefetch_related + orjson (JSON)"
        methods.append(Method("drf-nested-json", label, vendor, "json"))
    else:
        # Every format the benchmark's loops write, for the service's own formats.
        methods = row_copy(vendor) + export_methods(vendor, args, FORMATS, shape.formats)
        methods += row_loops(vendor)
    for method in methods:
        method.group = method.group or "baseline"
    selected = []
    for method in methods:
        name = f"{vendor}:{method.key}:{method.path}"
        if args.only and not any(part in name for part in args.only):
            continue
        if any(part in name for part in args.skip):
            continue
        selected.append(method)
    return selected


def row_copy(vendor: str) -> list[Method]:
    """The database's own export of the flat rows, where it has one."""
    if vendor == "postgresql":
        methods = [
            Method("copy-psycopg", "psycopg 3 cursor.copy() (CSV)", vendor, "csv", header=False)
        ]
        if shutil.which("psql"):
            label = "psql COPY ... TO STDOUT (CSV)"
            methods.insert(0, Method("copy-psql", label, vendor, "csv", header=False))
        return methods
    if vendor == "mysql":
        if shutil.which("mariadb") or shutil.which("mysql"):
            label = "mariadb --batch (tab-separated, raw values)"
            return [Method("mariadb-batch", label, vendor, "tsv", header=False)]
        return []
    if shutil.which("sqlite3"):
        return [Method("sqlite3-cli", "sqlite3 -csv command line", vendor, "csv", header=False)]
    return []


def document_copy(vendor: str) -> list[Method]:
    """PostgreSQL building the documents itself, one a line, in one process."""
    if vendor != "postgresql":
        return []
    label = "PostgreSQL json_build_object/json_agg COPY (JSON Lines)"
    return [Method("copy-documents-jsonl", label, vendor, "jsonl")]


def export_methods(
    vendor: str,
    args: argparse.Namespace,
    formats: Iterable[str],
    offered: Iterable[str] | None = None,
) -> list[Method]:
    """The export job, in shards, and its loop alone, in ``formats`` on each read path; the
    export as staff run it in those of them the service offers (``offered``, default all)."""
    fast_settings = {"REPORT_EXPORT_SETTINGS": json.dumps({"FAST_PATH": True})}
    slow_settings = {"REPORT_EXPORT_SETTINGS": json.dumps({"FAST_PATH": False})}
    sharded = {"BENCH_WORKERS": str(args.workers)}
    formats = list(formats)
    paths = [("fast", fast_settings), ("generic", slow_settings)]
    if vendor != "postgresql":
        paths = [("generic", slow_settings)]
    methods: list[Method] = []
    for path, env in paths:
        for export_format in formats:
            label = f"export job, {NAMES[export_format]}, {path} path"
            methods.append(
                Method(f"job-{export_format}", label, vendor, export_format, env=env, path=path)
            )
            methods[-1].group = "job"
    offered = set(formats if offered is None else offered)
    for path, env in paths:
        for export_format in (f for f in formats if f in offered):
            label = f"whole process, {NAMES[export_format]}, {path} path"
            methods.append(
                Method(f"cli-{export_format}", label, vendor, export_format, env=env, path=path)
            )
            methods[-1].group = "cli"
    for path, env in paths if args.workers > 1 else []:
        for export_format in (f for f in SHARDED_FORMATS if f in formats):
            label = (
                f"export job, {NAMES[export_format]}, {path} path, "
                f"{args.workers} shards on {args.workers} workers"
            )
            methods.append(
                Method(
                    f"shards-{export_format}",
                    label,
                    vendor,
                    export_format,
                    env={**env, **sharded},
                    path=path,
                )
            )
            methods[-1].group = "job"
    for path, env in paths:
        for export_format in formats:
            label = f"reader+writer loop alone, {NAMES[export_format]}, {path} path"
            methods.append(
                Method(f"loop-{export_format}", label, vendor, export_format, env=env, path=path)
            )
            methods[-1].group = "loop"
    return methods


def row_loops(vendor: str) -> list[Method]:
    """What a Django developer writes by hand for flat rows, and django-import-export."""
    methods = [
        Method("naive-values-list-csv", "values_list().iterator(5000) + csv.writer", vendor, "csv"),
        Method("naive-models-csv", "model instances + csv.writer", vendor, "csv"),
        Method("naive-values-json", "values().iterator(5000) + orjson per row", vendor, "json"),
        Method("naive-values-xml", "values().iterator(5000) + lxml xmlfile", vendor, "xml"),
    ]
    for module, key, label in (
        (
            "xlsxwriter",
            "naive-xlsxwriter-xlsx",
            "values_list().iterator(5000) + xlsxwriter constant_memory",
        ),
        ("openpyxl", "naive-openpyxl-xlsx", "values_list().iterator(5000) + openpyxl write_only"),
    ):
        if importlib.util.find_spec(module) is None:
            say(f"{module} is not installed (pip install -e '.[bench]'): skipped")
        else:
            methods.append(Method(key, label, vendor, "xlsx"))
    try:
        import import_export  # noqa: F401
    except ImportError:
        say("django-import-export is not installed (pip install -e '.[bench]'): skipped")
    else:
        label = "django-import-export ModelResource.export()"
        methods.append(Method("import-export-csv", f"{label}, CSV", vendor, "csv"))
        methods.append(Method("import-export-xlsx", f"{label}, xlsx", vendor, "xlsx"))
    return methods


def method_argv(method: Method, database: Database, out: Path, sql: dict[str, str]) -> list[str]:
    if method.key == "copy-psql":
        copy = f"COPY ({sql[database.vendor]}) TO STDOUT WITH (FORMAT csv)"
        return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database.url, "-c", copy]
    if method.key == "sqlite3-cli":
        return ["sqlite3", "-csv", str(sqlite_path(database.url)), sql[database.vendor]]
    if method.key == "mariadb-batch":
        parts = urlsplit(database.url)
        client = shutil.which("mariadb") or "mysql"
        argv = [client, "--batch", "--skip-column-names", "--default-character-set=utf8mb4"]
        argv += [f"--host={parts.hostname or '127.0.0.1'}", f"--port={parts.port or 3306}"]
        argv += [f"--user={parts.username or 'root'}"]
        if parts.password:
            argv.append(f"--password={parts.password}")
        return [*argv, database_name(database.url), "-e", sql[database.vendor]]
    return [PYTHON, "-m", "bench.methods", method.key, str(out)]


def run_method(
    args: argparse.Namespace,
    method: Method,
    database: Database,
    sql: dict[str, str],
    shape: Shape,
    database_url: str | None = None,
) -> Run:
    url = database_url or database.url
    out = method.output(args.workdir / "out")
    stdout = out.with_suffix(out.suffix + ".stdout")
    stderr = args.workdir / "logs" / f"{database.vendor}-{method.key}-{method.path}.log"
    env = {**base_env(args, url, args.workdir / "media" / database.vendor), **method.env}
    argv = method_argv(method, replace_url(database, url), out, sql)
    direct = method.key in ("copy-psql", "sqlite3-cli", "mariadb-batch")
    if method.group == "cli":
        return run_cli(args, method, env, out, stderr, shape)
    # Each method starts with the writeback of the files before it done, not throttled by it.
    os.sync()
    wall, code, rss = run_process(argv, env, out if direct else stdout, stderr)
    if code:
        tail = stderr.read_text(errors="replace")[-2000:] if stderr.exists() else ""
        raise RuntimeError(f"exit code {code}\n{tail}")
    report: dict[str, Any] = {}
    if not direct:
        lines = stdout.read_text().strip().splitlines()
        report = json.loads(lines[-1]) if lines else {}
        stdout.unlink()
    seconds = float(report.pop("seconds", wall))
    rows = count_records(out, method.export_format, method.header, args.service)
    items = -1
    if shape.document:
        copy_text = method.key == "copy-documents-jsonl"
        items = count_items(out, method.export_format, shape, copy_text=copy_text)
    if "rows" in report and int(report.pop("rows")) != rows:
        raise RuntimeError(f"{out.name}: {rows} records read back, the method says otherwise")
    digest = file_digest(out) if method.group in ("job", "loop") else ""
    rss = int(report.pop("horse_rss_kib", rss))
    out.unlink()
    return Run(wall, seconds, rss, rows, items=items, digest=digest, extra=report)


def run_cli(
    args: argparse.Namespace,
    method: Method,
    env: dict[str, str],
    out: Path,
    stderr: Path,
    shape: Shape,
) -> Run:
    """``manage.py report_export start SERVICE --format F --wait`` against an idle
    ``manage.py rqworker``, the whole process timed as ``psql`` is: the export as a shop's
    staff run it, with the default settings (sharding by ``SHARD_ROWS`` included)."""
    from bench.worker import RESULT_ENV

    env = {**env, RESULT_ENV: str(out.with_suffix(".horse.json"))}
    logged = args.workdir / "logs" / f"{out.stem}.stdout"
    bench_method = [PYTHON, "-m", "bench.methods"]
    if run_process([*bench_method, "reset"], env, logged, stderr)[1]:
        raise RuntimeError(f"bench.methods reset failed: {stderr}")
    worker_argv = [PYTHON, "manage.py", "rqworker", "default"]
    worker_argv += ["--worker-class", "bench.worker.MeasuringWorker"]
    with stderr.open("ab") as log:
        worker = subprocess.Popen(worker_argv, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        wait_for_idle_worker(args.redis_url, worker)
        command = [PYTHON, "manage.py", "report_export", "start", args.service]
        command += ["--format", method.export_format, "--wait", "--interval", "0.05"]
        os.sync()
        wall, code, _ = run_process(command, env, logged, stderr)
        if code:
            raise RuntimeError(f"report_export start exited {code}: {stderr}")
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            # Now and then RQ's worker logs the warm shutdown it was asked for and goes on
            # waiting for jobs: left running, it would take the next runs' jobs.
            worker.kill()
            worker.wait()
    if run_process([*bench_method, "fetch", str(out)], env, logged, stderr)[1]:
        raise RuntimeError(f"bench.methods fetch failed: {stderr}")
    report = json.loads(logged.read_text().strip().splitlines()[-1])
    rows = count_records(out, method.export_format, method.header, args.service)
    if int(report.pop("rows")) != rows:
        raise RuntimeError(f"{out.name}: {rows} records read back, the export says otherwise")
    items = count_items(out, method.export_format, shape) if shape.document else -1
    digest = file_digest(out)
    out.unlink()
    rss = int(report.pop("horse_rss_kib"))
    return Run(wall, wall, rss, rows, items=items, digest=digest, extra=report)


def wait_for_idle_worker(redis_url: str, worker: subprocess.Popen[bytes]) -> None:
    """Until the RQ worker of ``worker`` is registered and idle, waiting for jobs."""
    from redis import Redis
    from rq import Worker

    connection = Redis.from_url(redis_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            raise RuntimeError(f"the rqworker exited with {worker.returncode}")
        if any(w.get_state() == "idle" for w in Worker.all(connection=connection)):
            return
        time.sleep(0.05)
    raise RuntimeError("the rqworker did not start listening within 60 s")


def replace_url(database: Database, url: str) -> Database:
    return Database(database.vendor, url, database.small_url)


def service_shape(args: argparse.Namespace, database: Database) -> Shape:
    out = args.workdir / "logs" / "shape.json"
    env = base_env(args, database.url, args.workdir / "media")
    _, code, _ = run_process(
        [PYTHON, "-m", "bench.methods", "shape"], env, out, out.with_suffix(".log")
    )
    if code:
        raise SystemExit(f"Could not read the service {args.service}: {out.with_suffix('.log')}")
    return Shape(**json.loads(out.read_text()))


def service_sql(args: argparse.Namespace, database: Database) -> str:
    out = args.workdir / "logs" / f"{database.vendor}-sql.txt"
    env = base_env(args, database.url, args.workdir / "media")
    _, code, _ = run_process(
        [PYTHON, "-m", "bench.methods", "sql"], env, out, out.with_suffix(".log")
    )
    if code:
        raise SystemExit(f"Could not build the service's SQL: {out.with_suffix('.log')}")
    return out.read_text().strip()


# --- Status endpoint under load -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk(url: str, session: str, seconds: int, connections: int) -> float:
    result = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            f"Cookie: sessionid={session}",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if not match or errors:
        raise RuntimeError(f"wrk against {url} failed:\n{result.stdout}{result.stderr}")
    return float(match.group(1))


def status_load(args: argparse.Namespace, database: Database) -> dict[str, Any] | None:
    missing = [tool for tool in ("wrk",) if not shutil.which(tool)]
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        missing.append("gunicorn")
    if missing:
        say(f"status load test skipped, missing: {', '.join(missing)} (apt-get install wrk)")
        return None
    env = base_env(args, database.url, args.workdir / "media" / database.vendor)
    env["DJANGO_SETTINGS_MODULE"] = "bench.server_settings"
    log = args.workdir / "logs" / "status-session.log"
    session_file = args.workdir / "logs" / "status-session.txt"
    _, code, _ = run_process([PYTHON, "-m", "bench.methods", "session"], env, session_file, log)
    if code:
        raise RuntimeError(f"could not log in a load-test user: {log}")
    session = session_file.read_text().strip()
    port = free_port()
    server_log = (args.workdir / "logs" / "gunicorn.log").open("ab")
    server = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "gunicorn",
            "bench.wsgi:application",
            "--workers",
            str(args.status_workers),
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=server_log,
        stderr=server_log,
    )
    base = f"http://127.0.0.1:{port}"
    status_url, constant_url = f"{base}/api/report/order/status", f"{base}/bench/constant"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        for url in (status_url, constant_url):  # warm up every worker
            wrk(url, session, 1, args.status_connections)
        served: dict[str, list[float]] = {status_url: [], constant_url: []}
        for round_number in range(args.status_rounds):
            # Each view goes first in every other round: neither always follows the other.
            order = (
                (status_url, constant_url) if round_number % 2 == 0 else (constant_url, status_url)
            )
            for url in order:
                served[url].append(wrk(url, session, args.status_seconds, args.status_connections))
        status, constant = served[status_url], served[constant_url]
    finally:
        server.terminate()
        server.wait(30)
        server_log.close()
    # Requests per second over the whole test: every round lasts as long for both views.
    return {
        "status_rps": statistics.fmean(status),
        "constant_rps": statistics.fmean(constant),
        "status_runs": status,
        "constant_runs": constant,
        "workers": args.status_workers,
        "connections": args.status_connections,
        "seconds": args.status_seconds,
        "rounds": args.status_rounds,
    }


# --- Report ---------------------------------------------------------------------------------


def table(title: str, outcomes: list[Outcome], copy_seconds: float | None) -> Iterator[str]:
    yield f"### {title}"
    yield ""
    yield "| method | wall s | work s | rows/s | work ÷ COPY | peak RSS MiB |"
    yield "|---|---:|---:|---:|---:|---:|"
    for outcome in outcomes:
        if outcome.error or not outcome.runs:
            yield f"| {outcome.method.label} | failed: {outcome.error.splitlines()[0][:60]} |||||"
            continue
        seconds = outcome.median("seconds")
        rows = outcome.runs[0].rows
        ratio = f"{seconds / copy_seconds:.2f}" if copy_seconds else "-"
        yield (
            f"| {outcome.method.label} | {outcome.median('wall'):.2f} | {seconds:.2f} | "
            f"{rows / seconds:,.0f} | {ratio} | {outcome.median('rss_kib') / 1024:.0f} |"
        )
    yield ""


def find(outcomes: Iterable[Outcome], key: str, path: str = "") -> Outcome | None:
    for outcome in outcomes:
        if outcome.method.key == key and outcome.method.path == path and outcome.runs:
            return outcome
    return None


def goal_line(goal: str, value: float | None, target: float, text: str, lower: bool = False) -> str:
    if value is None:
        return f"| {goal} | not measured | - |"
    met = value <= target if lower else value >= target
    return f"| {goal} | {text} | {'yes' if met else '**no**'} |"


def goals(
    results: dict[str, list[Outcome]],
    small: dict[str, list[Outcome]],
    load: dict[str, Any] | None,
    copy_seconds: float | None,
    document: bool = False,
) -> Iterator[str]:
    yield "### Goals"
    yield ""
    yield "| goal | measured | met |"
    yield "|---|---|:---:|"
    if document:
        yield from document_goals(results, copy_seconds)
    else:
        yield from row_goals(results, copy_seconds)
    for vendor, outcomes in results.items():
        for job in (o for o in outcomes if o.method.group == "job" and o.runs):
            peak = job.median("rss_kib") / 1024
            yield goal_line(
                f"work horse ≤ 120 MB ({vendor}, {job.method.label})",
                peak,
                120,
                f"{peak:.0f} MiB",
                lower=True,
            )
            little = find(small.get(vendor, []), job.method.key, job.method.path)
            if little:
                growth = peak - little.median("rss_kib") / 1024
                yield goal_line(
                    f"peak within 10 MB of {little.runs[0].rows:,} rows' ({vendor}, "
                    f"{job.method.label})",
                    growth,
                    10,
                    f"{growth:+.1f} MiB",
                    lower=True,
                )
    for vendor, outcomes in results.items():
        for job in (o for o in outcomes if o.method.key.startswith("job-") and o.runs):
            loop = find(outcomes, job.method.key.replace("job-", "loop-"), job.method.path)
            if loop:
                overhead = job.median("seconds") / loop.median("seconds") - 1
                yield goal_line(
                    f"job machinery ≤ 5% ({vendor}, {job.method.label})",
                    overhead * 100,
                    5,
                    f"{overhead * 100:+.1f}%",
                    lower=True,
                )
                job_outside = job.median_outside_reader()
                loop_outside = loop.median_outside_reader()
                if job_outside is not None and loop_outside is not None:
                    # The reader's own time moves by a quarter between runs of the same code
                    # here; what surrounds it is the machinery, measured without that noise.
                    extra = (job_outside - loop_outside) / loop.median("seconds")
                    yield goal_line(
                        f"job machinery ≤ 5%, time outside the reader ({vendor}, "
                        f"{job.method.label})",
                        extra * 100,
                        5,
                        f"{job_outside:.2f} s vs {loop_outside:.2f} s = {extra * 100:+.1f}%",
                        lower=True,
                    )
    if load and not all(load["constant_runs"]):
        # wrk got no answer in a round (a machine too loaded to serve within its timeout):
        # there is no ratio to report, and a goal is not judged on no data.
        yield goal_line("status endpoint ≥ 0.8x a constant DRF view (requests/s)", None, 0.8, "")
    elif load:
        value = load["status_rps"] / load["constant_rps"]
        # Each round pairs two runs seconds apart, so the machine's drift between rounds
        # cancels out of these: shown beside the whole-test verdict.
        rounds = [s / c for s, c in zip(load["status_runs"], load["constant_runs"], strict=True)]
        yield goal_line(
            "status endpoint ≥ 0.8x a constant DRF view (requests/s)",
            value,
            0.8,
            f"{load['status_rps']:,.0f} vs {load['constant_rps']:,.0f} req/s = {value:.2f}x "
            f"(per round: median {statistics.median(rounds):.2f}x, "
            f"{min(rounds):.2f}x to {max(rounds):.2f}x)",
        )
    yield ""


def row_goals(results: dict[str, list[Outcome]], copy_seconds: float | None) -> Iterator[str]:
    """The goals of a service of flat rows, against COPY, the naive loops and
    django-import-export."""
    pg = results.get("postgresql", [])
    floors = {"csv": 0.5, "json": 0.33, "xml": 0.25}
    for export_format, floor in floors.items():
        job = find(pg, f"job-{export_format}", "fast")
        value = copy_seconds / job.median("seconds") if job and copy_seconds else None
        yield goal_line(
            f"PostgreSQL {export_format.upper()} job ≥ {floor}x COPY's throughput",
            value,
            floor,
            f"{value:.2f}x" if value else "",
        )
    naive = {
        "csv": "naive-values-list-csv",
        "json": "naive-values-json",
        "xml": "naive-values-xml",
        "jsonl": "naive-values-json",  # the same loop; a line end for its comma
    }
    for vendor, outcomes in results.items():
        title = "PostgreSQL, fast path off" if vendor == "postgresql" else TITLES[vendor]
        # SQLite, the embedded default, is held to 2x; the other databases to 1.5x.
        floor = 2.0 if vendor == "sqlite" else 1.5
        for export_format, key in naive.items():
            job, loop = find(outcomes, f"job-{export_format}", "generic"), find(outcomes, key)
            value = loop.median("seconds") / job.median("seconds") if job and loop else None
            name = "JSON Lines" if export_format == "jsonl" else export_format.upper()
            yield goal_line(
                f"generic {name} job ({title}) ≥ {floor}x the naive loop",
                value,
                floor,
                f"{value:.2f}x" if value else "",
            )
    for vendor, outcomes in results.items():
        paths = [("generic", 3), ("fast", 8)] if vendor == "postgresql" else [("generic", 3)]
        for path, floor in paths:
            job = find(outcomes, "job-xlsx", path)
            for key, name in (
                ("naive-xlsxwriter-xlsx", "xlsxwriter"),
                ("naive-openpyxl-xlsx", "openpyxl"),
            ):
                loop = find(outcomes, key)
                value = loop.median("seconds") / job.median("seconds") if job and loop else None
                yield goal_line(
                    f"xlsx job ({TITLES[vendor]}, {path} path) ≥ {floor}x the {name} loop",
                    value,
                    floor,
                    f"{value:.2f}x" if value else "",
                )
        reference = find(outcomes, "import-export-xlsx")
        job = find(outcomes, "job-xlsx", "fast" if vendor == "postgresql" else "generic")
        value = reference.median("seconds") / job.median("seconds") if job and reference else None
        yield goal_line(
            f"xlsx job ({TITLES[vendor]}) ≥ 50x django-import-export's xlsx",
            value,
            50,
            f"{value:.1f}x" if value else "",
        )
        for path, _ in paths:
            jsonl, json_job = find(outcomes, "job-jsonl", path), find(outcomes, "job-json", path)
            value = (
                json_job.median("seconds") / jsonl.median("seconds") if jsonl and json_job else None
            )
            yield goal_line(
                f"jsonl job at least as fast as json ({TITLES[vendor]}, {path} path)",
                value,
                1,
                f"{value:.2f}x" if value else "",
            )
    for vendor, outcomes in results.items():
        reference = find(outcomes, "import-export-csv")
        jobs = [o for o in outcomes if o.method.group == "job" and o.runs]
        if reference and jobs:
            slowest = max(jobs, key=lambda o: o.median("seconds"))
            value = reference.median("seconds") / slowest.median("seconds")
            yield goal_line(
                f"every format ≥ 15x django-import-export ({vendor}; slowest: "
                f"{slowest.method.label})",
                value,
                15,
                f"{value:.1f}x",
            )


def document_goals(results: dict[str, list[Outcome]], copy_seconds: float | None) -> Iterator[str]:
    """The goals of a document service: the job's JSON and XML against PostgreSQL's own
    document COPY and against the nested DRF serializer on the same database."""

    def speed_up(slower: float | None, job: Outcome | None) -> float | None:
        return slower / job.median("seconds") if slower and job else None

    pg = results.get("postgresql", [])
    drf = find(pg, "drf-nested-json")
    for export_format in DOCUMENT_GOAL_FORMATS:
        job = find(pg, f"job-{export_format}", "fast")
        value = speed_up(copy_seconds, job)
        yield goal_line(
            f"PostgreSQL {export_format.upper()} documents job ≥ 1.0x the document COPY's "
            "throughput",
            value,
            1.0,
            f"{value:.2f}x" if value else "",
        )
        value = speed_up(drf.median("seconds") if drf else None, job)
        yield goal_line(
            f"PostgreSQL {export_format.upper()} documents job ≥ 10x the nested DRF serializer",
            value,
            10,
            f"{value:.1f}x" if value else "",
        )
    for vendor, outcomes in results.items():
        title = "PostgreSQL, fast path off" if vendor == "postgresql" else TITLES[vendor]
        drf = find(outcomes, "drf-nested-json")
        for export_format in DOCUMENT_GOAL_FORMATS:
            job = find(outcomes, f"job-{export_format}", "generic")
            value = speed_up(drf.median("seconds") if drf else None, job)
            yield goal_line(
                f"generic {export_format.upper()} documents job ({title}) ≥ 3x the nested DRF "
                "serializer",
                value,
                3,
                f"{value:.1f}x" if value else "",
            )


#: Whole process over the database's own COPY's, in throughput, by format (CSV; the rest).
WHOLE_PROCESS_FLOORS = {"csv": 0.8}
WHOLE_PROCESS_FLOOR = 0.7


def whole_process_goals(
    results: dict[str, list[Outcome]], copy: Outcome | None, service: str
) -> Iterator[str]:
    """The export as staff run it (``cli-*``): its whole process against the database's own
    COPY's whole process (``psql``, or for documents the document COPY's), the time from its
    start to the first rows read, and its work horse's peak."""
    lines = []
    copy_wall = copy.median("wall") if copy else None
    for vendor, outcomes in results.items():
        for cli in (o for o in outcomes if o.method.group == "cli" and o.runs):
            what = f"{vendor}, {service}, {cli.method.label}"
            if vendor == "postgresql" and cli.method.path == "fast":
                floor = WHOLE_PROCESS_FLOORS.get(cli.method.export_format, WHOLE_PROCESS_FLOOR)
                value = copy_wall / cli.median("wall") if copy_wall else None
                lines.append(
                    goal_line(
                        f"whole process ≥ {floor}x the COPY's throughput ({what})",
                        value,
                        floor,
                        f"{cli.median('wall'):.2f} s vs {copy_wall:.2f} s = {value:.2f}x"
                        if value and copy_wall
                        else "",
                    )
                )
            first = cli.median_extra("first_row_seconds") * 1000
            lines.append(
                goal_line(
                    f"start to first row ≤ 150 ms ({what})", first, 150, f"{first:.0f} ms", True
                )
            )
            peak = cli.median("rss_kib") / 1024
            lines.append(
                goal_line(f"work horse ≤ 100 MB ({what})", peak, 100, f"{peak:.0f} MiB", True)
            )
    if not lines:
        return
    yield "### The export as staff run it (whole process)"
    yield ""
    yield "| goal | measured | met |"
    yield "|---|---|:---:|"
    yield from lines
    yield ""


def sharding(results: dict[str, list[Outcome]], workers: int) -> Iterator[str]:
    """One export on one worker against the same export in shards on several, start to end."""
    rows = [
        (vendor, one, many)
        for vendor, outcomes in results.items()
        for many in outcomes
        if many.method.key.startswith("shards-") and many.runs
        if (one := find(outcomes, many.method.key.replace("shards-", "job-"), many.method.path))
    ]
    if not rows:
        return
    yield f"### One worker and {workers} workers (start to file published)"
    yield ""
    yield f"| database | format, path | 1 worker s | {workers} workers s | speed-up |"
    yield "|---|---|---:|---:|---:|"
    for vendor, one, many in rows:
        single = one.median_extra("start_to_end_seconds")
        several = many.median("seconds")
        what = f"{many.method.export_format.upper()}, {many.method.path}"
        yield f"| {vendor} | {what} | {single:.2f} | {several:.2f} | {single / several:.2f}x |"
    yield ""


def identity(results: dict[str, list[Outcome]]) -> Iterator[str]:
    """The export job's files must not depend on the path or the machinery."""
    for vendor, outcomes in results.items():
        for export_format in FORMATS:
            digests = {
                f"{o.method.key}/{o.method.path}": {run.digest for run in o.runs}
                for o in outcomes
                if o.method.group in ("job", "loop", "cli")
                and o.method.export_format == export_format
                and o.runs
            }
            every = set().union(*digests.values()) if digests else set()
            if len(every) > 1:
                yield f"**Byte identity broken** ({vendor}, {export_format}): {digests}"
            elif every:
                yield (
                    f"{vendor} {export_format}: {len(digests)} job/loop variants, "
                    f"identical files (sha256 {next(iter(every))[:16]}…)"
                )


def record_counts(results: dict[str, list[Outcome]], shape: Shape) -> Iterator[str]:
    """A document service's files, whatever wrote them, hold the same documents and items."""
    if not shape.document:
        return
    for vendor, outcomes in results.items():
        counts = {
            f"{o.method.key}/{o.method.path}": {(run.rows, run.items) for run in o.runs}
            for o in outcomes
            if o.runs
        }
        every = set().union(*counts.values()) if counts else set()
        if len(every) > 1:
            yield f"**Record counts differ** ({vendor}): {counts}"
        elif every:
            documents, items = next(iter(every))
            yield (
                f"{vendor} documents: {len(counts)} methods, {documents:,} documents with "
                f"{items:,} {shape.collection} in each file"
            )


# --- Main -----------------------------------------------------------------------------------


def add_redis_and_workdir(parser: argparse.ArgumentParser, workdir_holds: str) -> None:
    """The options every benchmark command shares: its Redis database and its folder."""
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL),
        help=f"Redis database, flushed by the runs (default {DEFAULT_REDIS_URL})",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(os.environ.get("DEMO_VAR_DIR", ROOT / "var")) / "bench",
        help=f"{workdir_holds} (default var/bench)",
    )


def at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders (default 1,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each method (default 3)")
    parser.add_argument(
        "--databases",
        default="postgresql,sqlite",
        help="comma-separated: postgresql, sqlite, mysql (default postgresql,sqlite; PostgreSQL "
        "and MariaDB/MySQL are skipped with a warning when they do not answer)",
    )
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("BENCH_MYSQL_URL", DEFAULT_MYSQL_URL),
        help=f"MariaDB/MySQL database to use, created if missing (default {DEFAULT_MYSQL_URL}); "
        "the memory check uses <name>_small beside it",
    )
    parser.add_argument(
        "--service",
        default="orderRow",
        help="the service every method exports (default orderRow, the demo's orders as flat "
        "rows, bench/exports.py; e.g. customerAccount); comma-separated: each in turn, with "
        "a report of its own",
    )
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL),
        help=f"PostgreSQL database to use, created if missing (default {DEFAULT_PG_URL}); "
        "the memory check uses <name>_small beside it",
    )
    add_redis_and_workdir(parser, workdir_holds="SQLite files, outputs and logs")
    parser.add_argument("--only", default="", help="run only methods whose name has one of these")
    parser.add_argument("--skip", default="", help="skip methods whose name has one of these")
    parser.add_argument(
        "--reference-runs",
        type=int,
        default=1,
        help="runs of django-import-export, minutes a run at a million rows (default 1)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="workers (and shards) of the sharded export job; 1 skips it (default 2)",
    )
    parser.add_argument("--reseed", action="store_true", help="seed the databases again")
    parser.add_argument("--no-memory", action="store_true", help="skip the N/10-row memory runs")
    parser.add_argument(
        "--status-rounds",
        type=at_least_one,
        default=20,
        help="load-test rounds, each view once a round, alternating which goes first (20)",
    )
    parser.add_argument("--status-seconds", type=at_least_one, default=2, help="per wrk run (2)")
    parser.add_argument("--status-workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--status-connections", type=int, default=16, help="wrk connections")
    parser.add_argument("--no-status", action="store_true", help="skip the load test")
    parser.add_argument(
        "--profile", action="store_true", help="also print a profile of the generic path"
    )
    parser.add_argument("--json", type=Path, help="write every measurement to this file")
    args = parser.parse_args(argv)
    args.only = [part for part in args.only.split(",") if part]
    args.skip = [part for part in args.skip.split(",") if part]
    args.workdir = args.workdir.resolve()
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for folder in ("out", "logs", "media"):
        (args.workdir / folder).mkdir(parents=True, exist_ok=True)
    check_redis(args.redis_url)
    # As a wheel's install does: the machines set PYTHONDONTWRITEBYTECODE, and every process
    # here would compile the project's sources again.
    for package in ("django_report_export", "testproject", "bench"):
        compileall.compile_dir(ROOT / package, quiet=1)
    services = [name.strip() for name in args.service.split(",") if name.strip()]
    codes, measured = [], {}
    for service in services:
        code, measured[service] = run_service(
            argparse.Namespace(**{**vars(args), "service": service})
        )
        codes.append(code)
    if args.json:
        body = measured[services[0]] if len(services) == 1 else {"services": measured}
        args.json.write_text(json.dumps(body, indent=1))
    return max(codes)


def run_service(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """Every method on the service ``args.service``: the report printed, the exit code and the
    measurements."""
    small_rows = max(1, args.rows // 10)
    databases: list[Database] = []
    for vendor in [part.strip() for part in args.databases.split(",") if part.strip()]:
        if vendor == "postgresql":
            if not pg_available(args.pg_url):
                say(f"PostgreSQL does not answer at {args.pg_url}: its part is skipped")
                continue
            small = with_database(args.pg_url, f"{database_name(args.pg_url)}_small")
            databases.append(Database(vendor, args.pg_url, small))
        elif vendor == "mysql":
            if not mysql_available(args.mysql_url):
                say(f"MariaDB/MySQL does not answer at {args.mysql_url}: its part is skipped")
                continue
            small = with_database(args.mysql_url, f"{database_name(args.mysql_url)}_small")
            databases.append(Database(vendor, args.mysql_url, small))
        elif vendor == "sqlite":
            url = f"sqlite:///{args.workdir / f'shop-{args.rows}.sqlite3'}"
            small = f"sqlite:///{args.workdir / f'shop-{small_rows}.sqlite3'}"
            databases.append(Database(vendor, url, small))
        else:
            raise SystemExit(f"Unknown database {vendor!r}: postgresql, sqlite or mysql.")
    if not databases:
        raise SystemExit("No database to run on.")
    for database in databases:
        ensure_data(args, database.url, args.rows)
        if not args.no_memory:
            ensure_data(args, database.small_url, small_rows)
    shape = service_shape(args, databases[0])
    sql = {} if shape.document else {db.vendor: service_sql(args, db) for db in databases}
    plan = {database.vendor: methods_for(database.vendor, args, shape) for database in databases}
    results = {vendor: [Outcome(method) for method in methods] for vendor, methods in plan.items()}
    load_before = os.getloadavg()
    for round_number in range(1, args.runs + 1):
        for database in databases:
            for outcome in results[database.vendor]:
                if outcome.error:
                    continue
                reference = outcome.method.key.startswith("import-export")
                if reference and round_number > args.reference_runs:
                    continue
                name = f"{database.vendor} {outcome.method.label}"
                say(f"run {round_number}/{args.runs}: {name}")
                try:
                    run = run_method(args, outcome.method, database, sql, shape)
                except Exception as exc:
                    outcome.error = str(exc)
                    say(f"FAILED: {name}: {exc}")
                    continue
                outcome.runs.append(run)
                say(
                    f"  {run.seconds:.2f} s work, {run.wall:.2f} s wall, "
                    f"{run.rss_kib / 1024:.0f} MiB"
                )
    small_results: dict[str, list[Outcome]] = {}
    if not args.no_memory:
        for database in databases:
            small_results[database.vendor] = []
            for outcome in results[database.vendor]:
                if outcome.method.group != "job" or outcome.error:
                    continue
                little = Outcome(outcome.method)
                say(f"memory run, {small_rows:,} rows: {database.vendor} {outcome.method.label}")
                try:
                    little.runs.append(
                        run_method(args, outcome.method, database, sql, shape, database.small_url)
                    )
                except Exception as exc:
                    little.error = str(exc)
                    say(f"FAILED: {exc}")
                small_results[database.vendor].append(little)
    load = None
    if not args.no_status:
        target = databases[0]
        say(f"status endpoint under load ({target.vendor})")
        try:
            load = status_load(args, target)
        except Exception as exc:
            say(f"FAILED: status load test: {exc}")
    profiles: dict[str, str] = {}
    if args.profile:
        for database in databases:
            out = args.workdir / "out" / f"profile-{database.vendor}.csv"
            log = args.workdir / "logs" / f"profile-{database.vendor}.log"
            stdout = out.with_suffix(".stdout")
            env = base_env(args, database.url, args.workdir / "media")
            rows = str(min(args.rows, 200_000))
            argv = [PYTHON, "-m", "bench.methods", "profile-csv", str(out), "--rows", rows]
            run_process(argv, env, stdout, log)
            profiles[database.vendor] = json.loads(stdout.read_text().splitlines()[-1])["profile"]
            out.unlink(missing_ok=True)
    load_after = os.getloadavg()

    pg = results.get("postgresql", [])
    if shape.document:
        copy = find(pg, "copy-documents-jsonl")
    else:
        copy = find(pg, "copy-psql") or find(pg, "copy-psycopg")
    copy_seconds = copy.median("seconds") if copy else None
    # django-import-export cannot write documents: a document service has no run of it.
    reference = "" if shape.document else f" ({args.reference_runs} of django-import-export)"
    lines = [
        f"## Export benchmark: {args.rows:,} orders ({args.service} service), median of "
        f"{args.runs} run(s){reference}",
        "",
        f"Machine: {os.cpu_count()} CPUs, {platform_text()}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after.",
        "",
    ]
    for database in databases:
        lines += table(
            f"{database.title} ({args.rows:,} orders, {args.service} service)",
            results[database.vendor],
            copy_seconds,
        )
    lines += goals(results, small_results, load, copy_seconds, shape.document)
    lines += whole_process_goals(results, copy, args.service)
    lines += sharding(results, args.workers)
    lines += identity(results)
    lines += record_counts(results, shape)
    for vendor, text in profiles.items():
        lines += ["", f"### Profile of the generic path ({vendor}, CSV)", "", "```", text, "```"]
    print("\n".join(lines), flush=True)
    measured = {
        "service": args.service,
        "rows": args.rows,
        "runs": args.runs,
        "results": {
            vendor: [
                {
                    "key": o.method.key,
                    "path": o.method.path,
                    "label": o.method.label,
                    "error": o.error,
                    "runs": [run.__dict__ for run in o.runs],
                }
                for o in outcomes
            ]
            for vendor, outcomes in results.items()
        },
        "load": load,
    }
    failed = [o for outcomes in results.values() for o in outcomes if o.error]
    broken = any("Byte identity broken" in line for line in identity(results))
    broken = broken or any("Record counts differ" in line for line in record_counts(results, shape))
    return (1 if failed or broken else 0), measured


def platform_text() -> str:
    import platform

    memory = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = int(meminfo.readline().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip() + ", "
                    break
    except OSError:
        pass
    return f"{cpu}Python {platform.python_version()}{memory}"
