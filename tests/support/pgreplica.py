"""A private PostgreSQL primary and a streaming hot standby of it, for the read-replica tests.

``ReplicaPair(base).start()`` runs ``initdb`` for a primary (trust authentication on
127.0.0.1, replication connections included, ``wal_level = replica``), starts it on a free port
of ``PORTS``, takes a ``pg_basebackup -R`` of it as the standby, starts that on another port
(``hot_standby = on``) and waits until the standby streams and has replayed everything the
primary wrote. ``stop()`` stops both and removes their folders.

Neither cluster is the machine's PostgreSQL: both live in a temporary folder, listen on
127.0.0.1 only, run with ``fsync = off`` (they hold test data) and are gone at the end. When
the tests run as root, every PostgreSQL program runs as the ``postgres`` user, because
``initdb`` and ``pg_ctl`` refuse to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from .net import REPLICA_PORTS, port_is_free

PORTS = REPLICA_PORTS
#: Programs the pair needs.
PROGRAMS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
#: Settings of both clusters (the standby inherits the primary's through the base backup).
PRIMARY_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 5
wal_keep_size = '64MB'
hot_standby = on
fsync = off
full_page_writes = off
shared_buffers = '32MB'
max_connections = 40
log_min_messages = warning
"""
PG_HBA = """
host all all 127.0.0.1/32 trust
host replication all 127.0.0.1/32 trust
"""


class ReplicaUnavailable(RuntimeError):
    """The pair cannot be run here (no PostgreSQL programs, no ``postgres`` user)."""


def find_bindir() -> Path:
    """The folder of ``initdb`` and friends: ``$PG_BINDIR`` if set, else ``pg_config
    --bindir``, the newest ``/usr/lib/postgresql/*/bin`` (Debian), or ``$PATH``."""
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        # Named explicitly: that folder or nothing.
        folder = Path(os.environ["PG_BINDIR"])
        if all((folder / program).is_file() for program in PROGRAMS):
            return folder
        raise ReplicaUnavailable(f"PG_BINDIR={folder} lacks one of {', '.join(PROGRAMS)}")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            output = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(output.stdout.strip()))
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += debian
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for folder in candidates:
        if all((folder / program).is_file() for program in PROGRAMS):
            return folder
    raise ReplicaUnavailable(
        f"PostgreSQL server programs ({', '.join(PROGRAMS)}) not found; "
        "install PostgreSQL or set PG_BINDIR"
    )


def free_ports(count: int, exclude: tuple[int, ...] = ()) -> list[int]:
    """``count`` ports of ``PORTS`` nobody listens on, in random order (fewer collisions with
    other test runs choosing at the same moment)."""
    ports = [port for port in PORTS if port not in exclude]
    random.shuffle(ports)
    found = [port for port in ports if port_is_free(port)][:count]
    if len(found) < count:
        raise ReplicaUnavailable(f"no free port left in {PORTS}")
    return found


class Cluster:
    """One PostgreSQL cluster (data folder, port, log) run through ``pg_ctl``."""

    def __init__(self, pair: ReplicaPair, name: str, port: int) -> None:
        self.pair = pair
        self.name = name
        self.port = port
        self.datadir = pair.base / name
        self.logfile = pair.base / f"{name}.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.url(dbname), connect_timeout=5, **kwargs)

    def query(self, sql: str, *params: Any, dbname: str = "postgres") -> Any:
        """The first column of the first row of ``sql``, on a connection of its own."""
        with self.connect(dbname) as conn:
            cursor = conn.execute(sql, params or None)
            row = cursor.fetchone() if cursor.description else None
        return row[0] if row else None

    def configure(self, text: str) -> None:
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(text)

    def start(self) -> None:
        self.pair.run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", self.datadir, "-l", self.logfile,
            "-o", f"-p {self.port}",
        )  # fmt: skip

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self.pair.run("pg_ctl", "stop", "-w", "-t", "30", "-m", "fast", "-D", self.datadir)

    def log(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""


class ReplicaPair:
    """A primary and its streaming hot standby, each on a port of ``PORTS``."""

    def __init__(
        self, bindir: Path | None = None, standby_conf: str = "", base: Path | None = None
    ) -> None:
        self.bindir = bindir or find_bindir()
        self.standby_conf = standby_conf
        self.as_postgres: list[str] = []
        if os.geteuid() == 0:
            # initdb and pg_ctl refuse to run as root.
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise ReplicaUnavailable("running as root and there is no postgres user") from None
            if not shutil.which("runuser"):
                raise ReplicaUnavailable("running as root and runuser is not installed")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        self.base = base or Path(tempfile.mkdtemp(prefix="pgreplica-"))
        if self.as_postgres:
            os.chown(self.base, account.pw_uid, account.pw_gid)
        primary_port, standby_port = free_ports(2)
        self.primary = Cluster(self, "primary", primary_port)
        self.standby = Cluster(self, "standby", standby_port)
        self.startup_seconds = 0.0

    def run(self, program: str, *args: Any, timeout: float = 120) -> str:
        command = [*self.as_postgres, str(self.bindir / program), *map(str, args)]
        done = subprocess.run(
            command,
            cwd=self.base,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            logs = "\n".join(f"--- {c.name} log:\n{c.log()[-3000:]}" for c in self.clusters())
            raise RuntimeError(
                f"{program} failed ({done.returncode}):\n{done.stdout}{done.stderr}\n{logs}"
            )
        return done.stdout

    def clusters(self) -> list[Cluster]:
        return [self.primary, self.standby]

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> ReplicaPair:
        began = time.monotonic()
        try:
            self.run(
                "initdb", "-D", self.primary.datadir, "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            self.primary.configure(PRIMARY_CONF)
            (self.primary.datadir / "pg_hba.conf").write_text(PG_HBA)
            self.start_cluster(self.primary)
            self.run(
                "pg_basebackup", "-h", "127.0.0.1", "-p", self.primary.port, "-U", "postgres",
                "-D", self.standby.datadir, "-R", "-X", "stream", "-c", "fast", "--no-sync",
            )  # fmt: skip
            self.standby.configure(f"\nhot_standby = on\n{self.standby_conf}\n")
            self.start_cluster(self.standby)
            self.wait_streaming()
            self.wait_replayed()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def start_cluster(self, cluster: Cluster) -> None:
        """Start ``cluster``; on a port someone took meanwhile, try another one."""
        for _attempt in range(3):
            try:
                cluster.start()
                return
            except RuntimeError:
                if "could not bind" not in cluster.log() and "already in use" not in cluster.log():
                    raise
                taken = tuple(c.port for c in self.clusters())
                cluster.port = free_ports(1, exclude=taken)[0]
        cluster.start()

    def stop(self) -> None:
        for cluster in (self.standby, self.primary):
            with contextlib.suppress(Exception):
                cluster.stop()
        if not os.environ.get("PGREPLICA_KEEP"):  # PGREPLICA_KEEP=1 keeps data and logs
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> ReplicaPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- replication ---------------------------------------------------------------------

    def wait_streaming(self, timeout: float = 30) -> None:
        def streaming() -> bool:
            try:
                return self.standby.query("SELECT status FROM pg_stat_wal_receiver") == "streaming"
            except psycopg.OperationalError:  # still starting
                return False

        wait(streaming, timeout, "the standby to stream from the primary")

    def flush_wal(self) -> None:
        """Make the primary flush its WAL, so it goes to the standby.

        A commit flushes, but a record of a transaction still open (the lock of a ``LOCK
        TABLE``, say) may wait in the WAL buffers; committing a transaction with an id flushes
        it too."""
        self.primary.query("SELECT pg_current_xact_id()")

    def wait_replayed(self, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        self.flush_wal()
        target = self.primary.query("SELECT pg_current_wal_lsn()::text")
        wait(
            lambda: self.standby.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", target),
            timeout,
            f"the standby to replay up to {target}",
        )

    def pause_replay(self) -> None:
        """Stop applying WAL on the standby (it still receives it): the standby lags."""
        self.standby.query("SELECT pg_wal_replay_pause()")
        wait(
            lambda: self.standby.query("SELECT pg_get_wal_replay_pause_state()") == "paused",
            10,
            "the standby's replay to pause",
        )

    def resume_replay(self) -> None:
        self.standby.query("SELECT pg_wal_replay_resume()")

    def create_database(self, name: str) -> None:
        """A database on the primary, replayed on the standby before this returns."""
        self.primary.query(f'DROP DATABASE IF EXISTS "{name}"')
        self.primary.query(f'CREATE DATABASE "{name}"')
        self.wait_replayed()


def wait(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextlib.contextmanager
def replica_pair(**kwargs: Any) -> Iterator[ReplicaPair]:
    pair = ReplicaPair(**kwargs)
    with pair:
        yield pair
