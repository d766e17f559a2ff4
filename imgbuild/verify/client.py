"""The test client's view: HTTP through the VIP, with every loop bounded in count and time.

Under a drill the client runs `Traffic`: a new TCP connection every 50 ms (each bounded by
250 ms), four persistent HTTP/1.1 connections and one long slow download, plus the VIP's owner
as the client's ARP table sees it. The arithmetic on what it recorded (`failure_windows`,
`figures`) is pure, so unit tests feed it synthetic samples.
"""

from __future__ import annotations

import http.client
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from imgbuild.run import run

_SERVED_BY = re.compile(r"served by ([a-z0-9-]+)")
# Never through a proxy from the environment: the VIP lives on the test's own segment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

NEW = "new"  # the channel of requests that each open a new TCP connection


def who_answers(url: str, timeout: float = 2.0) -> str | None:
    """The web server that answered url, or None when the request failed."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return served_by(response.read())
    except (urllib.error.URLError, OSError):
        return None


def served_by(body: bytes) -> str:
    match = _SERVED_BY.search(body.decode(errors="replace"))
    return match.group(1) if match else "?"


def held(host: str, port: int, path: str, count: int, timeout: float = 2.0) -> list[str | None]:
    """The servers answering `count` HTTP/1.1 connections opened one after another and all held
    open until the last has answered (None: failed): a scheduler by active connections sees
    every earlier one while it places the next."""
    connections: list[http.client.HTTPConnection] = []
    answers: list[str | None] = []
    try:
        for _ in range(count):
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
            connections.append(connection)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                answers.append(served_by(body) if response.status == 200 else None)
            except (OSError, http.client.HTTPException):
                answers.append(None)
    finally:
        for connection in connections:
            connection.close()
    return answers


# -- what was recorded, and what it means -------------------------------------------------------

# One request: (start, seconds it took, ok, the answering server if ok else why it failed, channel).
Row = tuple[float, float, bool, "str | None", str]


def failure_windows(requests: Sequence[Sequence[Any]], channel: str = NEW) -> list[tuple[float, float]]:
    """Each run of failed requests on channel: (start of its first failure, start of the first
    success after it); the end is infinite when none followed. Rows may come in any order."""
    rows = sorted((r[0], bool(r[2])) for r in requests if r[4] == channel)
    windows: list[tuple[float, float]] = []
    began: float | None = None
    for at, ok in rows:
        if not ok and began is None:
            began = at
        elif ok and began is not None:
            windows.append((began, at))
            began = None
    if began is not None:
        windows.append((began, float("inf")))
    return windows


def outage(requests: Sequence[Sequence[Any]], channel: str = NEW) -> float:
    """Seconds from the first failed request to the first success after it (0 when none failed)."""
    windows = failure_windows(requests, channel)
    return windows[0][1] - windows[0][0] if windows else 0.0


def failures_after(
    requests: Sequence[Sequence[Any]], moment: float, until: float = float("inf"), channel: str = NEW
) -> list[str]:
    """The new connections started between moment and until that failed, as "+0.35 s: why"."""
    return [
        f"+{r[0] - moment:.2f} s: {r[3]}"
        for r in sorted(requests, key=lambda r: float(r[0]))
        if r[4] == channel and moment < r[0] < until and not r[2]
    ]


# The long download: a sparse 256 MiB file every web server serves during the drills.
DOWNLOAD = "/big.bin"
DOWNLOAD_SIZE = "256M"


@dataclass(frozen=True)
class Figures:
    """What a drill's client saw; times in seconds."""

    outage_s: float  # the first failure window of new connections
    outage_total_s: float  # every failure window added up
    windows: int
    failed: int
    total: int
    keepalive_requests: int
    keepalive_failed: int
    keepalive_broken: int  # persistent connections that ended in an error, not in the server's close
    download_bytes_after_recovery: int
    download_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) and v != float("inf") else v) for k, v in self.__dict__.items()}


def figures(
    requests: Sequence[Sequence[Any]],
    download: Sequence[tuple[float, int]],
    broken: int,
    download_error: str | None,
    since: float,
) -> Figures:
    """The figures of the requests started at or after `since` (the fault, or the traffic's start).
    Recovery for the download is the end of the first failure window, or `since` without one."""
    rows = [r for r in requests if r[0] >= since]
    new = [r for r in rows if r[4] == NEW]
    kept = [r for r in rows if r[4] != NEW]
    windows = failure_windows(rows)
    recovered = windows[0][1] if windows else since
    return Figures(
        outage_s=windows[0][1] - windows[0][0] if windows else 0.0,
        outage_total_s=sum(end - start for start, end in windows),
        windows=len(windows),
        failed=sum(not r[2] for r in new),
        total=len(new),
        keepalive_requests=len(kept),
        keepalive_failed=sum(not r[2] for r in kept),
        keepalive_broken=broken,
        download_bytes_after_recovery=sum(n for t, n in download if t > recovered),
        download_error=download_error,
    )


# -- the client ---------------------------------------------------------------------------------


def _get(host: str, port: int, path: str, timeout: float) -> tuple[bool, str]:
    """One HTTP/1.0 request on a new connection, all of it within timeout: (ok, the answering
    server) or (False, why, with the client port): a SYN left unanswered reads differently from
    a hung server, and the port finds the connection in the director's table."""
    deadline = time.monotonic() + timeout
    step = "connect"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
            step = "response"
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            body = b""
            while True:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        except OSError as err:
            why = "timeout" if isinstance(err, TimeoutError) else err.strerror or type(err).__name__
            return False, f"{step} {why} (port {_local_port(sock)})"
    if body.startswith(b"HTTP/1.1 200") or body.startswith(b"HTTP/1.0 200"):
        return True, served_by(body)
    return False, (body.split(b"\r\n", 1)[0].decode(errors="replace") or "empty response")


def _local_port(sock: socket.socket) -> int:
    try:
        return int(sock.getsockname()[1])
    except OSError:
        return 0


@dataclass
class Traffic:
    """The client under a drill, started before the fault and stopped after recovery.

    rate: new connections per second, each bounded by timeout; keepalive: persistent connections,
    one request every keepalive_interval each; download: a path served slowly on one connection.
    Every loop ends by itself after `limit` seconds.
    """

    host: str
    port: int = 80
    path: str = "/"
    rate: float = 20.0
    timeout: float = 0.25
    keepalive: int = 4
    keepalive_interval: float = 0.2
    keepalive_timeout: float = 10.0
    download: str | None = DOWNLOAD
    limit: float = 240.0
    owner: Callable[[], str | None] | None = None  # who holds the VIP, sampled every 0.1 s
    started: float = 0.0
    requests: list[Row] = field(default_factory=list)
    vip: list[tuple[float, str | None]] = field(default_factory=list)
    events: list[tuple[float, str]] = field(default_factory=list)
    broken: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # why persistent connections failed
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    slow: SlowDownload | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        if self.download:
            self.slow = SlowDownload(self.host, self.download, self.port, limit=self.limit)
            self.slow.start()
        loops: list[Callable[[], None]] = [self._new_connections, *[self._persistent(i) for i in range(self.keepalive)]]
        if self.owner:
            loops.append(self._watch_owner)
        for loop in loops:
            thread = threading.Thread(target=loop, daemon=True)
            thread.start()
            self._threads.append(thread)

    def mark(self, event: str) -> float:
        """Note a moment (a fault, a heal) on the traffic's timeline; returns it."""
        now = time.monotonic()
        self.events.append((now, event))
        return now

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.keepalive_timeout + 5)
        if self.slow:
            self.slow.stop()

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self.started + self.limit

    def _new_connections(self) -> None:
        """One new connection every 1/rate s on its own schedule, however long the last one takes."""
        period = 1 / self.rate

        def one(at: float) -> None:
            ok, server = _get(self.host, self.port, self.path, self.timeout)
            self.requests.append((at, time.monotonic() - at, ok, server, NEW))

        with ThreadPoolExecutor(max_workers=int(self.rate * self.timeout) + 2) as pool:
            tick = time.monotonic()
            while self._running():
                pool.submit(one, tick)
                tick += period
                self._stop.wait(max(0.0, tick - time.monotonic()))

    def _persistent(self, index: int) -> Callable[[], None]:
        channel = f"keepalive-{index}"

        def loop() -> None:
            conn: http.client.HTTPConnection | None = None
            served = 0  # requests answered on the current connection
            while self._running():
                at = time.monotonic()
                if conn is None:
                    conn, served = http.client.HTTPConnection(self.host, self.port, timeout=self.keepalive_timeout), 0
                try:
                    conn.request("GET", self.path)
                    response = conn.getresponse()
                    server = served_by(response.read())
                    self.requests.append((at, time.monotonic() - at, True, server, channel))
                    served += 1
                    if response.will_close:  # the server's own limit, not a failure
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as err:
                    self.errors[type(err).__name__] += 1
                    self.requests.append((at, time.monotonic() - at, False, None, channel))
                    self.broken += served > 0  # an established connection lost, not a refused new one
                    if conn is not None:
                        conn.close()
                    conn = None
                self._stop.wait(max(0.0, at + self.keepalive_interval - time.monotonic()))
            if conn is not None:
                conn.close()

        return loop

    def _watch_owner(self) -> None:
        assert self.owner is not None
        while self._running():
            self.vip.append((time.monotonic(), self.owner()))
            self._stop.wait(0.1)

    def figures(self, since: float | None = None) -> Figures:
        slow = self.slow
        return figures(
            self.requests,
            slow.received if slow else [],
            self.broken,
            slow.error if slow else None,
            self.started if since is None else since,
        )

    def timeline(self) -> dict[str, Any]:
        """requests, vip, download and events with times relative to the start, for the report."""

        def rel(t: float) -> float:
            return round(t - self.started, 3)

        return {
            "requests": [[rel(a), round(s, 3), ok, server, ch] for a, s, ok, server, ch in sorted(self.requests)],
            "vip": [[rel(t), holder] for t, holder in self.vip],
            "download": [[rel(t), n] for t, n in (self.slow.received if self.slow else [])],
            "events": [[rel(t), text] for t, text in self.events],
        }


def arp_owner(address: str, names: dict[str, str]) -> Callable[[], str | None]:
    """Who the client's ARP table says holds address: the name of its MAC in names, else None."""

    def owner() -> str | None:
        fields = run(["ip", "neigh", "show", address], check=False, text=True).stdout.split()
        if "lladdr" not in fields or "FAILED" in fields:
            return None
        return names.get(fields[fields.index("lladdr") + 1])

    return owner


@dataclass
class SlowDownload:
    """One long-lived TCP connection through the VIP, read slowly; records when bytes arrived."""

    host: str
    path: str
    port: int = 80
    chunk: int = 8192
    pause: float = 0.05
    limit: float = 240.0
    received: list[tuple[float, int]] = field(default_factory=list)
    error: str | None = None
    local_port: int = 0  # the connection's own port: how a director's table names it
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A small receive window keeps the server sending slowly, so the connection lives on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        # Keepalive probes carry our latest ACK through the VIP as soon as it answers again, so the
        # server resumes at once instead of after its retransmission back-off. Without connection
        # sync the new director answers such a probe with a reset.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 90)
        sock.settimeout(60)
        sock.connect((self.host, self.port))
        self.local_port = _local_port(sock)
        sock.sendall(f"GET {self.path} HTTP/1.0\r\nHost: {self.host}\r\n\r\n".encode())
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()

    def _run(self, sock: socket.socket) -> None:
        end = time.monotonic() + self.limit
        try:
            while not self._stop.is_set() and time.monotonic() < end:
                data = sock.recv(self.chunk)
                if not data:
                    self.error = "connection closed by the server before the end of the test"
                    return
                self.received.append((time.monotonic(), len(data)))
                self._stop.wait(self.pause)
        except OSError as err:
            self.error = f"{type(err).__name__}: {err}"
        finally:
            sock.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=65)

    def bytes_after(self, moment: float) -> int:
        return sum(n for t, n in self.received if t > moment)
