"""Which process runs each query, on a connection opened by which process.

The demo shop installs this app when ``REPORT_EXPORT_DB_PROBE_DIR`` is set (the worker
processes of ``test_processes``). Every query through Django appends one line to
``$REPORT_EXPORT_DB_PROBE_DIR/<pid>``: the process that opened the connection and the
database session it runs in (PostgreSQL's backend process id, MySQL/MariaDB's connection id;
on SQLite, which has no server, the id of the connection object, equal in a process and the
children it forked). A work horse running queries on its worker's connection shows up as a
line whose process is not the one that opened the connection.

Django's MySQL backend runs a query of its own on every new connection
(``init_connection_state``: ``SET SESSION TRANSACTION ISOLATION LEVEL ...``) before it sends
``connection_created``. The probe therefore remembers the DB-API connection it saw announced,
not only the wrapper: a query on a connection not announced yet runs inside ``connect()``, in
the process opening it, whatever process opened the wrapper's previous connection.

``database_handles(pid)`` is the other side: the descriptors through which a process holds
the database, read from /proc (sockets to the server's port, the SQLite file).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.apps import AppConfig
from django.db import connection as default_connection
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

PROBE_DIR_VARIABLE = "REPORT_EXPORT_DB_PROBE_DIR"


@dataclass(frozen=True)
class Query:
    pid: int
    opened_by: int
    session: int


#: Each wrapper's DB-API connection announced by ``connection_created``, and the process that
#: opened it (inherited as they are by a forked process).
_opened_by: weakref.WeakKeyDictionary[BaseDatabaseWrapper, tuple[Any, int]] = (
    weakref.WeakKeyDictionary()
)


def session_of(wrapper: BaseDatabaseWrapper) -> int:
    if wrapper.vendor == "postgresql":
        return int(wrapper.connection.info.backend_pid)
    if wrapper.vendor == "mysql":
        return int(wrapper.connection.thread_id())
    return id(wrapper.connection)


def opened(*, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    _opened_by[connection] = (connection.connection, os.getpid())
    if log not in connection.execute_wrappers:
        connection.execute_wrappers.append(log)


def opened_by(wrapper: BaseDatabaseWrapper) -> int:
    """The process that opened the connection ``wrapper`` runs its query on."""
    announced, pid = _opened_by.get(wrapper, (None, 0))
    if wrapper.connection is announced:
        return pid
    # Not announced yet: ``connect()`` is opening it in this process (MySQL's
    # ``init_connection_state`` queries before ``connection_created`` is sent).
    return os.getpid()


def log(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    wrapper = context["connection"]
    line = f"{os.getpid()} {opened_by(wrapper)} {session_of(wrapper)}\n"
    with open(Path(os.environ[PROBE_DIR_VARIABLE]) / str(os.getpid()), "a") as probe:
        probe.write(line)
    return execute(sql, params, many, context)


class DatabaseProbe(AppConfig):
    name = "tests"
    label = "database_probe"

    def ready(self) -> None:
        connection_created.connect(opened)


def read_queries(folder: Path) -> list[Query]:
    return [
        Query(*map(int, line.split()))
        for path in sorted(folder.iterdir())
        for line in path.read_text().splitlines()
    ]


def database_handles(pid: int) -> list[str]:
    """The descriptors of process ``pid`` that lead to the test database."""
    settings = default_connection.settings_dict
    descriptors = Path(f"/proc/{pid}/fd")
    targets = []
    for descriptor in descriptors.iterdir():
        try:
            targets.append(os.readlink(descriptor))
        except OSError:
            continue
    if default_connection.vendor == "sqlite":
        name = str(settings["NAME"])
        return [target for target in targets if target.startswith(name)]
    port = int(settings["PORT"] or (3306 if default_connection.vendor == "mysql" else 5432))
    to_server = tcp_sockets_to(port)
    return [target for target in targets if target in to_server]


def tcp_sockets_to(port: int) -> set[str]:
    """``socket:[inode]`` of every TCP connection whose remote port is ``port``."""
    sockets = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port:
                    sockets.add(f"socket:[{fields[9]}]")
    return sockets
