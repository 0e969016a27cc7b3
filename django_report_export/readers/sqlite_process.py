"""A process of the generic reader's own on SQLite, which reads and encodes every other chunk.

SQLite's engine runs inside the process that queries it, and the ``sqlite3`` module takes the
GIL for every row it hands over, so a second thread cannot read while the first encodes
(``readers/orm.py``). A second process can: ``ReadProcess`` forks one that reads the chunk
after the one this process reads, on a SQLite connection of its own, and sends it back
encoded. Where its chunk turns out not to follow the one read here (rows were added or
deleted between the two), it is dropped and read again here: the file holds what reading
every chunk here would have written.

The child is forked from a process that has threads (the run's heartbeat and progress
reports, which talk to Redis, not SQLite): it uses nothing they may hold, only its own SQLite
connection, the writer's encoding and a pipe, and it leaves with ``os._exit`` so that nothing
it inherited (the part file's buffer, Django's connections) is flushed or closed twice. It
ends when this process closes the pipe or is gone, and is killed by ``close()``.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import warnings
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from django_report_export.processes import discard_inherited_connections
from django_report_export.readers.base import Chunk

#: Reads the ``limit`` rows after a key and encodes them, in the child; ``None``: it cannot.
ReadChunk = Callable[[Any, int], "Chunk | None"]


class ReadProcess:
    """A forked process that reads one asked-for chunk at a time."""

    def __init__(self, read: ReadChunk, prepare: Callable[[], None]) -> None:
        self._read = read
        #: Run in the child before its first read (its connection of its own).
        self._prepare = prepare
        self._pid: int | None = None
        self._pipe: Connection | None = None
        #: The ``(after, limit)`` the child is reading, until its chunk is taken.
        self.asked: tuple[Any, int] | None = None
        self._broken = False

    def ask(self, after: Any, limit: int) -> None:
        """Have the child read the ``limit`` rows after ``after``, if it is free and alive."""
        if self.asked is not None or self._broken:
            return
        try:
            pipe = self._pipe if self._pipe is not None else self._fork()
            pipe.send((after, limit))
        except (OSError, ValueError):
            self.close()
            return
        self.asked = (after, limit)

    def take(self) -> Chunk | None:
        """The chunk asked for last (waiting for it); ``None`` when the child could not read it
        or is gone (it is then not asked again)."""
        if self.asked is None or self._pipe is None:
            return None
        self.asked = None
        try:
            chunk: Chunk | None = self._pipe.recv()
        except (EOFError, OSError):
            self.close()
            return None
        return chunk

    def close(self) -> None:
        """Kill the child and wait for it; the reader reads every later chunk itself."""
        self._broken = True
        self.asked = None
        pipe, self._pipe = self._pipe, None
        pid, self._pid = self._pid, None
        if pipe is not None:
            pipe.close()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _fork(self) -> Connection:
        ours, theirs = multiprocessing.Pipe()
        with warnings.catch_warnings():
            # Python 3.12 warns of forking a process with threads; the module docstring says
            # why this child takes none of their locks.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child's coverage is not collected
            ours.close()
            _serve(theirs, self._read, self._prepare)
        theirs.close()
        self._pid, self._pipe = pid, ours
        return ours


def _serve(pipe: Connection, read: ReadChunk, prepare: Callable[[], None]) -> None:
    """The child: answers each ``(after, limit)`` with its chunk, until the pipe closes."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # The parent decides when it ends.
        discard_inherited_connections()
        prepare()
        while True:
            try:
                after, limit = pipe.recv()
            except EOFError:
                break
            try:
                chunk = read(after, limit)
            except Exception:
                chunk = None  # The parent reads it and meets the error itself.
            pipe.send(chunk)
    except BaseException:
        code = 1
    finally:
        os._exit(code)
