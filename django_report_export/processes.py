"""Database connections and RQ's processes.

RQ's worker runs the failure callback of an abandoned job (``maintenance.job_failed``) in its own
process, and forks a work horse for every job: a connection left open in the worker would be
inherited by each horse, one socket or SQLite handle used by two processes. Code of ours that
runs in the worker closes what it opened (``closing_new_connections``); a job starts by
discarding the connections its process inherited (``discard_inherited_connections``), without
closing them, because closing ends the session the worker still holds.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.dispatch import receiver

#: The process that opened each wrapper's current connection.
_opened_in: weakref.WeakKeyDictionary[BaseDatabaseWrapper, int] = weakref.WeakKeyDictionary()
#: Connections this process inherited and discarded, kept so that nothing finalizes them: a
#: SQLite handle closed here may checkpoint and delete the WAL the other process still reads.
_inherited: list[Any] = []


@receiver(connection_created)
def _remember_process(*, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    _opened_in[connection] = os.getpid()


def discard_inherited_connections() -> None:
    """Forget every database connection of this thread that another process opened."""
    pid = os.getpid()
    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is not None and _opened_in.get(wrapper) != pid:
            _inherited.append(wrapper.connection)
            # Django opens a new connection, with fresh transaction state, on the next query.
            wrapper.connection = None


@contextlib.contextmanager
def closing_new_connections() -> Iterator[None]:
    """Close, on the way out, every database connection opened inside the block."""
    open_before = [
        wrapper.connection
        for wrapper in connections.all(initialized_only=True)
        if wrapper.connection is not None
    ]
    try:
        yield
    finally:
        for wrapper in connections.all(initialized_only=True):
            if wrapper.connection is not None and not any(
                wrapper.connection is connection for connection in open_before
            ):
                wrapper.close()
