"""A fault drill as a runbook step: traffic runs around the fault, figures and a timeline come out.

with drill(cluster, drills, "a-power-loss-active", "Power loss of the active balancer", bound_s=2.0) as d:
    d.fault(f"power off {active.name}", active.crash)
    d.until(lambda: holds_vip(standby), "the standby holds the VIP", timeout=60)
assert d.figures.outage_s <= d.bound_s
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from imgbuild.model import Role
from imgbuild.qemu.machine import SSH_ERRORS, Machine, NodeFailed
from imgbuild.verify.client import Figures, Traffic, arp_owner
from imgbuild.verify.cluster import RunningCluster

# heartbeat, ResourceManager, ldirectord, ipfail and our resource scripts log to local0 (facility 16);
# the journal keeps their lines to the microsecond, which the seconds of /var/log/ha-log hide.
HA_JOURNAL = "journalctl --no-pager -o short-precise SYSLOG_FACILITY=16"
HA_LOG_LIMIT = 40_000  # bytes per balancer and drill, enough for a takeover and a return


def until(predicate: Callable[[], bool], what: str, timeout: float, interval: float = 0.2) -> float:
    """Retry predicate until it holds or the deadline passes; returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(interval)
    return time.monotonic() - started


@dataclass
class Drill:
    name: str
    title: str
    bound_s: float | None
    traffic: Traffic
    bounded: str = "outage_s"  # the figure bound_s is for
    fault_at: float | None = None
    heal_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    figures: Figures | None = None
    ha_log: dict[str, str] = field(default_factory=dict)  # what each balancer's heartbeat logged
    recorded: dict[str, Any] | None = None  # the report's entry, once the drill has ended

    def note(self, key: str, value: Any) -> Any:
        """A figure worked out after the drill ended: into extra and the report's entry. Returns value."""
        self.extra[key] = value
        if self.recorded is not None:
            self.recorded["figures"][key] = value
        return value

    def fault(self, what: str, act: Callable[[], object]) -> None:
        self.fault_at = self.traffic.mark(what)
        act()

    def heal(self, what: str, act: Callable[[], object]) -> None:
        self.heal_at = self.traffic.mark(what)
        act()

    def until(self, predicate: Callable[[], bool], what: str, timeout: float) -> float:
        """Wait for what; the moment it held goes on the timeline. Returns seconds since the fault."""
        until(predicate, what, timeout)
        return self._held(what)

    def until_on(self, machine: Machine, condition: str, what: str, timeout: float) -> float:
        """Like until, for a shell condition polled inside the node every 50 ms: the figure holds no
        SSH round trip (0.15 s and more under emulation)."""
        tries = max(1, int(timeout / 0.05))
        machine.succeed(
            f"n=0; until {condition}; do n=$((n+1)); [ $n -lt {tries} ] || exit 1; sleep 0.05; done",
            timeout=2 * timeout + 10,
        )
        return self._held(what)

    def synced(self, standby: Machine, timeout: float = 20) -> float:
        """Wait until standby's IPVS table holds the long download's connection, which its sync
        daemon learns from the active director's. A connection reaches the standby up to 3 s after
        it opened (the kernel sends a part-filled sync buffer once it is 2 s old and looks every
        second), and later on a slow host: a fixed wait lost the download in 2 of 13 rounds.
        Returns seconds since the traffic started."""
        slow = self.traffic.slow
        assert slow is not None and slow.local_port, "the drill's client has no long download to sync"
        entry = f":{slow.local_port} +{re.escape(self.traffic.host)}:{self.traffic.port} "
        try:
            return self.until_on(
                standby, f"ipvsadm -L -n -c | grep -qE '{entry}'", f"{standby.name} holds the download", timeout
            )
        except NodeFailed:
            raise AssertionError(
                f"{standby.name} did not learn the long download's connection from the sync daemon within "
                f"{timeout:.0f} s: a failover would reset it"
            ) from None

    def _held(self, what: str) -> float:
        """Put what on the timeline now; seconds since the fault (or the traffic's start)."""
        return self.traffic.mark(what) - (self.fault_at or self.traffic.started)

    def recovered(self, timeout: float = 60) -> None:
        """Wait (bounded) until new connections succeed again and the long download flows after it."""
        self.until(lambda: _succeeded_since(self.traffic, self.fault_at), "new connections succeed", timeout)
        back = time.monotonic()
        # TCP backs off while the VIP is away: give the download up to a minute to flow again.
        if self.traffic.download:
            self.until(lambda: _flows(self.traffic, back), "the long download flows", timeout)
        time.sleep(1.0)  # a tail of good requests after recovery, for the picture and the figures

    def record(self) -> dict[str, Any]:
        rel = self.traffic.started
        return {
            "name": self.name,
            "title": self.title,
            "bound_s": self.bound_s,
            "bounded": self.bounded,
            "fault_at": None if self.fault_at is None else round(self.fault_at - rel, 3),
            "heal_at": None if self.heal_at is None else round(self.heal_at - rel, 3),
            "figures": {
                **(self.figures.as_dict() if self.figures else {}),
                "keepalive_errors": ", ".join(f"{k} {n}" for k, n in sorted(self.traffic.errors.items())) or None,
                **self.extra,
            },
            "ha_log": self.ha_log,
            **self.traffic.timeline(),
        }


def _guest_clock(machine: Machine) -> int | None:
    try:
        return int(machine.succeed("date +%s", timeout=10))
    except (NodeFailed, ValueError, *SSH_ERRORS):  # a dead or rebooting balancer has no log to offer
        return None


def _ha_log_since(machine: Machine, since: int) -> str:
    if not machine.running():
        return "(powered off)"
    try:
        return machine.succeed(f"{HA_JOURNAL} --since=@{since} | head -c {HA_LOG_LIMIT}", timeout=20)
    except (NodeFailed, *SSH_ERRORS) as err:
        return f"(could not read: {err})"


def _flows(traffic: Traffic, moment: float) -> bool:
    """The download received bytes after moment, or ended (its error is reported by the drill)."""
    slow = traffic.slow
    return slow is None or slow.error is not None or slow.bytes_after(moment) > 0


def _succeeded_since(traffic: Traffic, moment: float | None) -> bool:
    """A new connection started after the last failure (and after moment) succeeded."""
    rows = sorted(r for r in traffic.requests if r[4] == "new" and (moment is None or r[0] > moment))
    failed = [r[0] for r in rows if not r[2]]
    return any(r[2] and r[0] > (failed[-1] if failed else 0.0) for r in rows)


@contextmanager
def drill(
    cluster: RunningCluster,
    drills: list[dict[str, Any]],
    name: str,
    title: str,
    bound_s: float | None,
    baseline: float = 1.5,
    bounded: str = "outage_s",
    **traffic: Any,
) -> Iterator[Drill]:
    """Run the body under client traffic; record the drill (also when the body fails)."""
    net, lb = cluster.model.network, cluster.model.balancer
    macs = {m.mac: m.name for m in cluster.role(Role.loadbalancer) if m.mac}
    client = Traffic(str(net.vip), lb.port, owner=arp_owner(str(net.vip), macs), **traffic)
    clocks = {m.name: _guest_clock(m) for m in cluster.role(Role.loadbalancer) if m.running()}
    client.start()
    d = Drill(name, title, bound_s, client, bounded)
    try:
        time.sleep(baseline)  # good requests before the fault
        yield d
    finally:
        client.stop()
        d.extra["client_open_fds"] = len(os.listdir("/proc/self/fd"))  # the client must not leak
        d.figures = client.figures(since=d.fault_at)
        d.ha_log = {n: _ha_log_since(cluster.machine(n), t) for n, t in clocks.items() if t is not None}
        record = d.record()
        figure = record["figures"].get(bounded)
        record["passed"] = bound_s is None or (figure is not None and figure <= bound_s)
        d.recorded = record
        drills.append(record)
