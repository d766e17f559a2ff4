"""The traffic checks' expectation per scheduler, and the held-open client they use for the
load-based ones (against a local HTTP server on loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from imgbuild.model import ALL_SCHEDULERS, Balancer
from imgbuild.verify.client import held
from imgbuild.verify.schedulers import EVEN, PINNED, spread_of


def test_every_scheduler_has_an_expectation() -> None:
    kinds = {s: spread_of(Balancer(scheduler=s)) for s in ALL_SCHEDULERS}
    assert {s for s, k in kinds.items() if k == "even"} == {"rr", "wrr"}
    assert {s for s, k in kinds.items() if k == "pinned"} == {"sh", "mh", "dh", "lblc", "lblcr", "fo"}
    assert {s for s, k in kinds.items() if k == "shared"} == {"lc", "wlc", "sed", "nq", "ovf", "twos"}
    assert set(ALL_SCHEDULERS) >= EVEN | PINNED


@pytest.mark.parametrize("scheduler", ["rr", "wlc", "sh"])
def test_persistence_pins_the_client_whatever_the_scheduler(scheduler: str) -> None:
    assert spread_of(Balancer(scheduler=scheduler, persistence=60)) == "pinned"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    open_now = 0
    most_open = 0
    lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection stays open after the answer

    def setup(self) -> None:
        super().setup()
        server: _Server = self.server  # type: ignore[assignment]
        with server.lock:
            server.open_now += 1
            server.most_open = max(server.most_open, server.open_now)

    def finish(self) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        with server.lock:
            server.open_now -= 1
        super().finish()

    def do_GET(self) -> None:
        body = b"<p>served by web-b</p>" if self.path == "/" else b"nope"
        self.send_response(200 if self.path == "/" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_held_connections_are_open_at_once(server: _Server) -> None:
    answers = held("127.0.0.1", server.server_address[1], "/", 5)
    assert answers == ["web-b"] * 5
    assert server.most_open == 5, "each connection must stay open until the last has answered"


def test_held_counts_failures_as_none(server: _Server) -> None:
    assert held("127.0.0.1", server.server_address[1], "/missing", 2) == [None, None]
    closed = server.server_address[1]
    server.shutdown()
    server.server_close()
    assert held("127.0.0.1", closed, "/", 1, timeout=1) == [None]
