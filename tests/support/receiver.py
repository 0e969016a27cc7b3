"""A webhook receiver on 127.0.0.1: a threaded ``http.server`` that records every POST and
answers from a script of (status, seconds to hang first)."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .net import RECEIVER_PORTS, port_is_free


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    #: Answers in order, ``(status, hang_seconds)``; the last one repeats.
    script: list[tuple[int, float]] = field(default_factory=lambda: [(200, 0.0)])
    received: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def answer(self, request: Received) -> tuple[int, float]:
        with self.lock:
            index = min(len(self.received), len(self.script) - 1)
            self.received.append(request)
            return self.script[index]

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
                status, hang = receiver.answer(request)
                if hang and receiver.stopping.wait(hang):
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        ports = [p for p in RECEIVER_PORTS if port_is_free(p)]
        for port in random.sample(ports, min(5, len(ports))):
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            except OSError:
                continue
            break
        else:
            raise RuntimeError("No free port for the webhook receiver.")
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = port
        # shutdown() waits for serve_forever's next poll: half a second by default.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[str]:
        return [request.headers["Report-Export-Event"] for request in self.received]
