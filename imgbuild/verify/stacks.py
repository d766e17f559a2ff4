"""The questions the checks ask of the HA stack, answered for heartbeat and for keepalived.

heartbeat starts ldirectord on the node that holds the VIP only; keepalived's checker keeps the
virtual server on both balancers, so its takeover moves the address alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgbuild.model import Cluster, Node

LDIRECTORD_PID = "/var/run/ldirectord.ldirectord.cf.pid"  # $RUNPID.$CFGNAME.pid, CFGNAME as haresources names it
# As `ldirectord ldirectord.cf status` decides (its pid file names a live ldirectord), without the
# ten seconds its Perl start costs per balancer under emulation.
LDIRECTORD_RUNNING = f"kill -0 $(cat {LDIRECTORD_PID}) && ps -o comm= -p $(cat {LDIRECTORD_PID})"
# keepalived writes its VRRP state to /tmp/keepalived.data on SIGUSR1, from its VRRP process and
# not at once: the file is read once it holds the instance's state (bounded, 3 s).
# `State = MASTER|BACKUP|FAULT`, and on a backup `Master router = <address>` once it has heard the master's adverts.
VRRP_DUMP = (
    "rm -f /tmp/keepalived.data; kill -USR1 $(cat /run/keepalived.pid) && for i in $(seq 30); do"
    " grep -qE '^ *State = (INIT|BACKUP|MASTER|FAULT|STOP)$' /tmp/keepalived.data 2>/dev/null && break; sleep 0.1;"
    " done; sleep 0.2; cat /tmp/keepalived.data"
)


@dataclass(frozen=True)
class Stack:
    name: str
    unit: str  # what a planned stop stops

    def director_running(self, cluster: Cluster) -> str:
        """Shell test on a balancer: its director has taken the virtual service up."""
        if self.name == "heartbeat":
            return LDIRECTORD_RUNNING
        return (
            "systemctl is-active --quiet keepalived && ipvsadm -L -n -t "
            f"{cluster.network.vip}:{cluster.balancer.port} >/dev/null"
        )

    def hears(self, peer: Node) -> str:
        """Shell test on a standby: it hears peer as the node that serves (and would not take over)."""
        if self.name == "heartbeat":
            return f"cl_status nodestatus {peer.name} | grep -qx active"
        return f"{VRRP_DUMP} | grep -qxE ' *Master router = {peer.address}'"

    def settle_s(self, cluster: Cluster) -> float:
        """How long after a returning node first hears the holder nothing can change any more:
        heartbeat waits initdead before it acts; a VRRP backup would take over after three missed
        adverts, so watch for that long twice over."""
        if self.name == "heartbeat":
            return cluster.heartbeat.initdead_ms / 1000
        return max(2.0, 2 * 3 * cluster.keepalived.advert_ms / 1000)


STACKS = {"heartbeat": Stack("heartbeat", "heartbeat"), "keepalived": Stack("keepalived", "keepalived")}


def stack_of(cluster: Cluster) -> Stack:
    return STACKS[cluster.ha.stack]
