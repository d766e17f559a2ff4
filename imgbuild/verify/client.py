"""The test client's view: HTTP through the VIP, with every loop bounded in count and time."""

from __future__ import annotations

import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

_SERVED_BY = re.compile(r"served by ([a-z0-9-]+)")
# Never through a proxy from the environment: the VIP lives on the test's own segment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def who_answers(url: str, timeout: float = 2.0) -> str | None:
    """The web server that answered url, or None when the request failed."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            match = _SERVED_BY.search(response.read().decode(errors="replace"))
            return match.group(1) if match else "?"
    except (urllib.error.URLError, OSError):
        return None


def spread(url: str, count: int, timeout: float = 2.0) -> Counter[str | None]:
    """Answering server of `count` sequential requests (None counts failures)."""
    return Counter(who_answers(url, timeout) for _ in range(count))


@dataclass
class OutageProbe:
    """Requests every `interval` s until stopped or `limit` s pass: measures the client-visible outage."""

    url: str
    interval: float = 0.2
    timeout: float = 1.0
    limit: float = 180.0
    samples: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        end = time.monotonic() + self.limit
        while not self._stop.is_set() and time.monotonic() < end:
            began = time.monotonic()
            self.samples.append((began, who_answers(self.url, self.timeout) is not None))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.timeout + 5)

    def outage(self) -> float:
        """Seconds from the first failed request to the first success after it (0 when none failed)."""
        failed = [t for t, ok in self.samples if not ok]
        if not failed:
            return 0.0
        recovered = [t for t, ok in self.samples if ok and t > failed[0]]
        if not recovered:
            return float("inf")
        return recovered[0] - failed[0]


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
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 90)
        sock.settimeout(180)
        sock.connect((self.host, self.port))
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
            self._thread.join(timeout=185)

    def bytes_after(self, moment: float) -> int:
        return sum(n for t, n in self.received if t > moment)
