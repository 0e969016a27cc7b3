"""Several API clients at once against a real multi-process server and two real workers.

``CLIENTS`` threads send random start (random format, fields, compression and filters),
pause, resume, cancel, status, history and download requests for one service to gunicorn
(3 worker processes) for ``DURATION`` seconds, while two ``rqworker`` processes run the
exports in chunks of ``CHUNK_SIZE`` rows. Then the invariants of SPEC §4-5 are checked:

* no request got a 500, every code is one the contract allows for its endpoint, every status
  body holds a legal status;
* at most one run wrote the slot at any moment: the chunks each run encoded (recorded by the
  probe writers of ``tests/support/probe.py``) never interleave in time with another run's, and the
  slot's run token, sampled from Redis, never comes back once replaced;
* every Finished file parses and holds exactly the rows its filters select, in key order,
  without a duplicate, byte for byte what an uninterrupted export writes; every file ever
  downloaded is one of them; no part is left behind by an ended export.

The figures are printed (run with ``-s``) for docs/reliability.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import itertools
import json
import os
import random
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from django.db.models import Q
from factory.random import reseed_random
from lxml import etree

from django_report_export.columns import column_names, selection
from django_report_export.formats import CSVWriter, JSONWriter, XMLWriter
from django_report_export.models import ReportExport, Status
from django_report_export.query import export_queryset
from django_report_export.registry import site
from django_report_export.status import decode, slot_key
from testproject.shop.factories import CustomerAccountFactory, InquiryFactory
from testproject.shop.models import Inquiry

from .support import probe
from .support.servers import LiveServer, basic_auth, live_worker
from .support.users import make_user
from .support.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SERVICE = "inquiry"  # the one demo service with all three formats
ROWS = 2000
CLIENTS = 4
#: Seconds of load; REPORT_EXPORT_LOAD_SECONDS runs a longer soak (docs/reliability.md).
DURATION = float(os.environ.get("REPORT_EXPORT_LOAD_SECONDS", "25"))
SETTINGS = {
    "CHUNK_SIZE": 20,
    "CHECKPOINT_INTERVAL": 0.2,
    "FORMATS": probe.FORMATS,
}
#: The codes the contract allows per endpoint, for an authenticated caller with the right.
ALLOWED = {
    "status": {200},
    "history": {200},
    "download": {200, 404},
    "start": {202, 503},
    "bad_start": {400},
    "pause": {200, 404, 503},
    "resume": {200, 404, 503},
    "cancel": {200, 404, 503},
}
#: The load alternates: STORM_SECONDS of every control operation in quick succession (races),
#: then CALM_SECONDS of mostly reads and resumes, so that exports also get to finish.
STORM_SECONDS, CALM_SECONDS = 4.0, 4.0
STORM = {
    "status": 30,
    "start": 10,
    "bad_start": 2,
    "pause": 16,
    "resume": 18,
    "cancel": 6,
    "history": 9,
    "download": 9,
}
CALM = {
    "status": 50,
    "start": 2,
    "pause": 3,
    "cancel": 1,
    "resume": 16,
    "history": 14,
    "download": 14,
}
METHODS = {"start": "post", "bad_start": "post", "pause": "post", "resume": "post"}
METHODS.update(cancel="delete", status="get", history="get", download="get")
WRITERS = {"csv": CSVWriter, "json": JSONWriter, "xml": XMLWriter}
STATUS_NAMES = dict(Status.choices)
SEARCH_TERMS = ["the", "hello", "a", "zz-no-such-text"]


@dataclass
class Outcome:
    """What the clients saw."""

    codes: Counter[tuple[str, int]] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    downloads: set[str] = field(default_factory=set)
    slowest: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, code: int, elapsed: float, problem: str | None = None) -> None:
        with self.lock:
            self.codes[op, code] += 1
            self.slowest[op] = max(self.slowest.get(op, 0.0), elapsed)
            if problem:
                self.problems.append(problem)


def random_start(rng: random.Random, customer_ids: list[int]) -> dict[str, str]:
    service = site.get(SERVICE)
    others = [name for name in column_names(service) if name != "id"]
    params = {"format": rng.choice(["json", "csv", "xml"])}
    if rng.random() < 0.7:
        chosen = rng.sample(others, rng.randint(0, len(others)))
        params["fields"] = ",".join(["id", *chosen])
    if rng.random() < 0.3:
        params["compression"] = "gzip"
    filters = {
        "status": lambda: rng.choice(["open", "answered", "closed"]),
        "answered": lambda: rng.choice(["true", "false"]),
        "customer": lambda: str(rng.choice(customer_ids)),
        "search": lambda: rng.choice(SEARCH_TERMS),
        "created_after": lambda: (dt.datetime.now(dt.UTC) - dt.timedelta(days=365)).isoformat(),
    }
    for name in rng.sample(sorted(filters), rng.choice([0, 0, 1, 1, 2])):
        params[name] = filters[name]()
    return params


def expected_ids(filters: dict[str, str]) -> list[str]:
    """The rows a start with ``filters`` must export, written without the FilterSet."""
    queryset = Inquiry.objects.all()
    if "status" in filters:
        queryset = queryset.filter(status=filters["status"])
    if "answered" in filters:
        queryset = queryset.filter(answered_at__isnull=filters["answered"] == "false")
    if "customer" in filters:
        queryset = queryset.filter(customer_id=int(filters["customer"]))
    if "search" in filters:
        term = filters["search"]
        queryset = queryset.filter(Q(subject__icontains=term) | Q(message__icontains=term))
    if "created_after" in filters:
        queryset = queryset.filter(
            created_at__gte=dt.datetime.fromisoformat(filters["created_after"])
        )
    return [str(pk) for pk in queryset.order_by("pk").values_list("pk", flat=True)]


def check_body(op: str, code: int, response: requests.Response) -> str | None:
    """A description of what is wrong with the body, or None."""
    if op == "download" and code == 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{op} {code}: not JSON: {response.text[:200]!r}"
    if code >= 400:
        if not {"detail", "type"} <= set(body):
            return f"{op} {code}: error body without detail/type: {body}"
        return None
    for item in body["results"] if op == "history" else [body]:
        if (
            item["status"] not in STATUS_NAMES
            or item["status_name"] != STATUS_NAMES[item["status"]]
        ):
            return f"{op} {code}: illegal status {item['status']!r} {item['status_name']!r}"
        if item["service"] != SERVICE or not 0 <= item["progress"] <= 100:
            return f"{op} {code}: bad body {item}"
    return None


def client(url: str, seed: int, deadline: float, outcome: Outcome, customer_ids: list[int]) -> None:
    """One client's requests until ``deadline``; a client that crashes is a problem."""
    try:
        requests_until(url, seed, deadline, outcome, customer_ids)
    except Exception as exc:
        with outcome.lock:
            outcome.problems.append(f"client {seed} crashed: {exc!r}")


def requests_until(
    url: str, seed: int, deadline: float, outcome: Outcome, customer_ids: list[int]
) -> None:
    rng = random.Random(seed)
    session = requests.Session()
    session.headers["Authorization"] = basic_auth("boss", "pw")
    began_load = time.monotonic()
    while time.monotonic() < deadline:
        storm = (time.monotonic() - began_load) % (STORM_SECONDS + CALM_SECONDS) < STORM_SECONDS
        weights = STORM if storm else CALM
        op = rng.choices(list(weights), list(weights.values()))[0]
        time.sleep(rng.uniform(0, 0.1 if storm else 0.3))
        params: dict[str, str] = {}
        if op == "start":
            params = random_start(rng, customer_ids)
        elif op == "bad_start":
            params = rng.choice([{"format": "pdf"}, {"format": "json", "status": "lost"}])
        endpoint = "start" if op == "bad_start" else op
        began = time.monotonic()
        try:
            response = session.request(
                METHODS[op], f"{url}/api/report/{SERVICE}/{endpoint}", params=params, timeout=60
            )
        except requests.RequestException as exc:
            outcome.record(op, 0, time.monotonic() - began, f"{op}: {exc!r}")
            continue
        elapsed = time.monotonic() - began
        code = response.status_code
        problem = check_body(op, code, response)
        if code not in ALLOWED[op]:
            problem = f"{op} answered {code}: {response.text[:300]!r}"
        if op == "download" and code == 200:
            with outcome.lock:
                outcome.downloads.add(hashlib.sha256(response.content).hexdigest())
        outcome.record(op, code, elapsed, problem)


class SlotSampler(threading.Thread):
    """Reads the slot's Redis hash every few milliseconds."""

    def __init__(self, redis: Any) -> None:
        super().__init__(daemon=True)
        self.redis = redis
        self.samples: list[dict[str, Any]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            raw = self.redis.hgetall(slot_key(SERVICE))
            if raw:
                self.samples.append(decode(raw))
            time.sleep(0.005)


def check_samples(samples: list[dict[str, Any]]) -> list[str]:
    problems = []
    processed: dict[str, int] = {}
    ended_runs: set[str] = set()
    current_run = ""
    for sample in samples:
        status, run = sample["status"], sample.get("run") or ""
        if status not in STATUS_NAMES:
            problems.append(f"illegal status in Redis: {sample}")
        if (status == Status.RUNNING) != bool(run):
            problems.append(f"run token {run!r} with status {status}")
        if run != current_run:
            if run in ended_runs:
                problems.append(f"run {run} wrote the slot again after it was replaced")
            if current_run:
                ended_runs.add(current_run)
            current_run = run
        count = sample.get("processed") or 0
        if count < processed.get(sample["id"], 0):
            problems.append(f"export {sample['id']}: processed went back to {count}")
        processed[sample["id"]] = count
    return problems


def check_probe(
    records: list[tuple[str, str, str, str, float, float]], order: dict[str, int]
) -> tuple[int, list[str]]:
    """Runs that wrote rows, and any two runs of the slot whose chunks overlap in time.

    Rows are compared by their place in the database's key order (``order``: id -> place)."""
    runs: dict[str, list[tuple[int, int, float, float]]] = defaultdict(list)
    for writer, service, first_id, last_id, began, ended in records:
        assert service == SERVICE
        runs[writer].append((order[first_id], order[last_id], began, ended))
    problems = []
    spans = []
    for writer, chunks in runs.items():
        chunks.sort(key=lambda chunk: chunk[2])
        for before, after in itertools.pairwise(chunks):
            if after[0] <= before[1]:
                problems.append(f"run {writer} wrote row #{after[0]} again after row #{before[1]}")
        spans.append((chunks[0][2], chunks[-1][3], writer))
    spans.sort()
    for (_, end, writer), (start, _, other) in itertools.pairwise(spans):
        if start <= end:
            problems.append(f"runs {writer} and {other} wrote the slot at the same time")
    return len(runs), problems


RUN_LINE = re.compile(r"Export (\S+) run (\w+) (began|ended) at row (\d+) on (\S+)\.")


def check_runs(
    logs: dict[str, str], exports: list[ReportExport]
) -> tuple[dict[str, int], list[str]]:
    """Runs the workers logged, and any break in the chain of rows of an export's runs.

    A run that continues an export (after a pause) must begin at the row the previous run
    ended at: no row skipped, none written twice.
    """
    runs: dict[str, dict[str, int]] = defaultdict(dict)
    export_of: dict[str, str] = {}
    workers_of: dict[str, set[str]] = defaultdict(set)
    for worker, text in logs.items():
        for export_id, token, event, row, slot in RUN_LINE.findall(text):
            assert slot == SERVICE
            runs[token][event] = int(row)
            export_of[token] = export_id
            workers_of[export_id].add(worker)
    problems = [f"run {token} never ended" for token, run in runs.items() if "ended" not in run]
    chains: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for token, run in runs.items():
        chains[export_of[token]].append((run.get("began", -1), run.get("ended", -1)))
    for export in exports:
        chain = sorted(chains.get(str(export.pk), []))
        row = 0
        for began, ended in chain:
            if began != row or ended < began:
                problems.append(f"export {export.pk}: runs {chain} do not follow each other")
                break
            row = ended
        if export.status == Status.FINISHED and row != export.processed:
            problems.append(f"export {export.pk}: last run ended at {row}, not {export.processed}")
    figures = {
        "runs": len(runs),
        "continued exports": sum(len(chain) > 1 for chain in chains.values()),
        "exports run on both workers": sum(len(names) > 1 for names in workers_of.values()),
        "runs ended by pause": sum(text.count(" paused at row ") for text in logs.values()),
        "jobs that found their export no longer Starting": sum(
            text.count("is no longer Starting") for text in logs.values()
        ),
    }
    return figures, problems


def parse_ids(data: bytes, export_format: str) -> list[str]:
    if export_format == "json":
        return [record["id"] for record in json.loads(data)]  # UUIDs, as text
    if export_format == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        position = rows[0].index("id")
        return [row[position] for row in rows[1:]]
    root = etree.fromstring(data)
    assert root.tag == f"{SERVICE}List"
    return [record.findtext("id") for record in root]


def reference_bytes(export: ReportExport) -> bytes:
    service = site.get(SERVICE)
    writer = WRITERS[export.format](SERVICE, export.fields)
    items = selection(service, export.fields).items
    rows = list(export_queryset(service, export).values_list(*items))
    return writer.header() + writer.encode_rows(rows, first=True) + writer.footer(empty=not rows)


@pytest.fixture
def inquiries(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    reseed_random(4)
    rng = random.Random(4)
    customers = CustomerAccountFactory.create_batch(20)
    choices = [*customers, None, None, None, None]
    rows = [InquiryFactory.build(customer=rng.choice(choices)) for _ in range(ROWS)]
    Inquiry.objects.bulk_create(rows, batch_size=500)
    make_user("boss", is_staff=True, is_superuser=True)  # password "pw", hashed with MD5
    return [customer.pk for customer in customers]


def test_parallel_clients_never_lose_a_row(inquiries, tmp_path, export_root, redis_db):
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    env = {probe.PROBE_DIR_VARIABLE: str(probe_dir)}
    began = time.monotonic()
    with (
        LiveServer(tmp_path / "gunicorn.log", workers=3, extra_env=env, **SETTINGS) as server,
        live_worker(tmp_path / "worker-a.log", extra_env=env, **SETTINGS) as worker_a,
        live_worker(tmp_path / "worker-b.log", extra_env=env, **SETTINGS) as worker_b,
    ):
        sampler = SlotSampler(redis_db)
        sampler.start()
        outcome = Outcome()
        deadline = time.monotonic() + DURATION
        threads = [
            threading.Thread(target=client, args=(server.url, n, deadline, outcome, inquiries))
            for n in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(DURATION + 120)
        load_seconds = time.monotonic() - began
        # Let the last export leave Starting/Running before the workers stop.
        wait_for(
            lambda: (
                int(redis_db.hget(slot_key(SERVICE), "status") or 0)
                not in (Status.STARTING, Status.RUNNING)
            ),
            timeout=60,
            interval=0.1,
        )
        sampler.stopped.set()
        sampler.join()
        for process in (worker_a.process, worker_b.process, server.process):
            assert process.poll() is None
        logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}

    # --- what the clients saw ------------------------------------------------------------
    assert not outcome.problems, "\n".join(outcome.problems[:20])
    assert not any(code == 500 for _, code in outcome.codes)
    for name, text in logs.items():
        assert "Traceback" not in text, f"{name}:\n{text[-3000:]}"

    # --- one run at a time -----------------------------------------------------------------
    assert check_samples(sampler.samples) == []
    order = {key: place for place, key in enumerate(expected_ids({}))}
    runs, overlaps = check_probe(probe.read_probe(probe_dir), order)
    assert overlaps == []

    # --- the data ------------------------------------------------------------------------
    exports = list(ReportExport.objects.filter(service=SERVICE).order_by("created_at"))
    by_status = Counter(Status(export.status).label for export in exports)
    current = redis_db.hget(slot_key(SERVICE), "id").decode()
    for export in exports:
        if str(export.pk) != current:
            assert export.status in (Status.CANCELED, Status.FINISHED), export
    assert Status.ERROR not in {export.status for export in exports}
    run_figures, breaks = check_runs(
        {name: text for name, text in logs.items() if name.startswith("worker")}, exports
    )
    assert breaks == []
    finished = [export for export in exports if export.status == Status.FINISHED]
    file_hashes = set()
    rows_checked = 0
    for export in finished:
        stored = (export_root / export.file_name).read_bytes()
        assert len(stored) == export.file_size
        file_hashes.add(hashlib.sha256(stored).hexdigest())
        data = gzip.decompress(stored) if export.compression == "gzip" else stored
        ids = parse_ids(data, export.format)
        assert ids == expected_ids(export.filters), (export.pk, export.filters)
        assert len(set(ids)) == len(ids) == export.processed == export.total
        assert data == reference_bytes(export)
        rows_checked += len(ids)
    assert finished, "no export finished: the load left no calm"
    assert outcome.downloads <= file_hashes
    kept = {export.file_name for export in finished}
    for export in exports:
        if export.status == Status.PAUSED:
            kept |= set(export.checkpoint.get("parts", []))
    files = {str(p.relative_to(export_root)) for p in export_root.rglob("*") if p.is_file()}
    assert files <= kept, sorted(files - kept)[:10]

    by_endpoint = Counter()
    for (op, _), count in outcome.codes.items():
        by_endpoint[op] += count
    print(
        f"\nconcurrency: {CLIENTS} clients x {DURATION:.0f} s against gunicorn (3 workers) "
        f"and 2 rqworkers; {sum(outcome.codes.values())} requests in {load_seconds:.1f} s",
        f"\n  per endpoint: {dict(sorted(by_endpoint.items()))}",
        f"\n  codes: {dict(sorted(outcome.codes.items()))}",
        f"\n  slowest answer per endpoint (s): "
        f"{ {op: round(s, 2) for op, s in sorted(outcome.slowest.items())} }",
        f"\n  exports: {len(exports)} {dict(by_status)}; runs that wrote rows: {runs}; "
        f"{run_figures}; "
        f"finished files checked: {len(finished)} ({rows_checked} rows); "
        f"downloads: {sum(outcome.codes[op, 200] for op in ['download'])}; "
        f"Redis samples: {len(sampler.samples)}",
    )
