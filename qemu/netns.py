"""A private L2 segment: a network namespace with a bridge, one tap per node, a client address
(and the cluster's gateway, which the balancers ping), and a second bridge for the balancers'
heartbeat link.

Nothing of it touches the host's own network; `enter()` moves this process (and
every QEMU, SSH and HTTP client it starts) into the namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from imgbuild.errors import UserError
from imgbuild.run import run

PREFIX = "imgbuild-"
BRIDGE = "br0"
LINK_BRIDGE = "br1"  # the balancers' heartbeat link: a segment of its own, no client on it
_CLONE_NEWNET = 0x40000000


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    run(cmd, text=True, hint="creating namespaces needs root (CAP_NET_ADMIN)")


def _setns(path: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise UserError(f"cannot enter network namespace {path}: {os.strerror(err)}; run as root")
    finally:
        os.close(fd)


@dataclass
class Segment:
    name: str
    subnet: IPv4Network
    client: IPv4Address
    taps: list[str] = field(default_factory=list)
    kept: bool = False  # set to leave the namespace behind on exit (`verify --keep`)

    def add_tap(self, tap: str, bridge: str = BRIDGE) -> str:
        _ip("tuntap", "add", "dev", tap, "mode", "tap", netns=self.name)
        _ip("link", "set", tap, "master", bridge, "up", netns=self.name)
        self.taps.append(tap)
        return tap


def existing() -> list[str]:
    """Namespaces made by imgbuild (by name prefix), e.g. left by a killed run."""
    runs = Path("/run/netns")
    return sorted(p.name for p in runs.iterdir() if p.name.startswith(PREFIX)) if runs.is_dir() else []


def remove_orphans() -> list[str]:
    """Delete the namespaces of runs that were killed outright (SIGKILL skips every cleanup): named
    after a process that is gone, with no process left inside. A kept cluster's QEMUs keep its own."""
    removed = []
    for name in existing():
        owner = name.removeprefix(PREFIX)
        if not owner.isdigit() or Path(f"/proc/{owner}").exists():
            continue
        inside = run(["ip", "netns", "pids", name], text=True, check=False)
        if inside.returncode == 0 and not inside.stdout.strip():
            delete(name)
            removed.append(name)
    return removed


def delete(name: str) -> None:
    run(["ip", "netns", "del", name], check=False)


@contextmanager
def segment(
    name: str, subnet: IPv4Network, client: IPv4Address, gateway: IPv4Address | None = None
) -> Iterator[Segment]:
    """Create the namespace and its bridge; remove both (and the taps with them) on exit."""
    if shutil.which("ip", path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
        raise UserError("`ip` not found; install iproute2")
    _ip("netns", "add", name)
    seg = Segment(name, subnet, client)
    try:
        _ip("link", "set", "lo", "up", netns=name)
        _ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "mcast_snooping", "0", netns=name)
        for address in (client, gateway) if gateway else (client,):
            _ip("addr", "add", f"{address}/{subnet.prefixlen}", "dev", BRIDGE, netns=name)
        _ip("link", "set", BRIDGE, "up", netns=name)
        _ip("link", "add", LINK_BRIDGE, "type", "bridge", "stp_state", "0", "mcast_snooping", "0", netns=name)
        _ip("link", "set", LINK_BRIDGE, "up", netns=name)
        yield seg
    finally:
        if not seg.kept:
            delete(name)


_home: list[int] = []


def leave() -> None:
    """Back to the namespace this process came from (no-op when not inside one)."""
    while _home:
        fd = _home.pop()
        ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).setns(fd, _CLONE_NEWNET)
        os.close(fd)


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the body (and everything it starts) inside the namespace; come back afterwards."""
    _home.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY))
    try:
        _setns(f"/run/netns/{name}")
        yield
    finally:
        leave()
