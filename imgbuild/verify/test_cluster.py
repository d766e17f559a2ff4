"""The cluster, checked the way its operator and its clients see it (run by `imgbuild verify`).

Order matters: read-only checks first, then the drills. The balancer failover comes first
among them: its failed balancer boots again while the web server checks and the Apache drill
run on the new active one, and a later check sees how it returned. The web server checks wait
until then because they need neither balancer, and that reboot is the longest wait of the run.
Then the planned stop hands the VIP back, a lost ping node (with a gateway) moves it again, and
a web server loses power last, since it stays down.

Every expectation comes from the cluster's model (any number of web servers, names, addresses,
interface, port, scheduler, persistence), never from the reference cluster's values.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from testinfra.host import Host

from imgbuild.builder.elements import arp_sysctls
from imgbuild.model import Balancer, Network, Node, Role, ipvs_modules
from imgbuild.qemu.machine import Machine
from imgbuild.verify.client import failures_after, held, who_answers
from imgbuild.verify.cluster import RunningCluster
from imgbuild.verify.drill import Drill, drill, until
from imgbuild.verify.readiness import finished_booting, is_ready
from imgbuild.verify.schedulers import spread_of
from imgbuild.verify.stacks import LDIRECTORD_RUNNING, VRRP_DUMP, stack_of

# What issue #14 asks of a balancer's power loss and of a planned stop.
OUTAGE_BOUND_S = 2.0
PLANNED_STOP_BOUND_S = 1.0
# ldirectord checks the real servers one after another and sleeps check_interval after each
# round, then removes a failed one with ipvsadm: a server that fails right after its check is out
# after check_interval + the others' checks + check_timeout + that call, and the probe sees it
# one poll and an SSH return later. Under emulation that extra was 0.3 s on a fast host and up
# to 0.76 s on a slow one (cluster ready in 90 s instead of 50 s); the drills allow 1 s, which
# with the defaults (1 + 1) is the 3 s for a dead server.
CHECK_ROUND_S = 1.0


# Traffic before a balancer fault: the 3.5 s every balancer drill ran with in the green runs
# before the drills also waited for the standby to hold the long download (Drill.synced). With
# that wait alone the fault came 1.6 s in, and heartbeat's partition drill once left the holder
# with both real servers deleted after the heal (cause not found): the lead time stays.
LEAD_S = 3.5

# LVSDirector's make-before-break release, still waiting for a peer to take the VIP over.
RELEASE_PENDING = "systemctl is-active --quiet imgbuild-vip-release.service"


def holds_vip(machine: Machine, vip: str, iface: str) -> bool:
    return f"inet {vip}/" in machine.succeed(f"ip -4 -o addr show dev {iface}")


def vip_holders(cluster: RunningCluster) -> list[Machine]:
    net = cluster.model.network
    return [m for m in cluster.role(Role.loadbalancer) if holds_vip(m, str(net.vip), net.interface)]


def active_balancer(cluster: RunningCluster, settle: float = 90.0) -> Machine:
    """The balancer holding the VIP and running its director. Right after boot heartbeat may still be
    negotiating (initdead, then the resource start), so wait a bounded while for a first holder and
    the end of its resource start (ldirectord comes last); two holders fail at once."""
    net = cluster.model.network
    deadline = time.monotonic() + settle
    while True:
        up = [m for m in cluster.role(Role.loadbalancer) if finished_booting(m)]  # not one that is (re)booting
        holders = [m for m in up if holds_vip(m, str(net.vip), net.interface)]
        if holders or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(holders) == 1, f"VIP {net.vip} held by {[m.name for m in holders]}, expected exactly one balancer"
    holders[0].wait_until_succeeds(
        stack_of(cluster.model).director_running(cluster.model), timeout=max(5.0, deadline - time.monotonic())
    )
    return holders[0]


def scheduled(net: Network, lb: Balancer, servers: Iterable[Node]) -> str:
    """Shell test: every one of servers is in the virtual service, in route mode, with weight."""
    return " && ".join(
        f"ipvsadm -L -n -t {net.vip}:{lb.port} | grep -qE '{s.address}:{lb.port} +Route +[1-9]'" for s in servers
    )


def check_bound(lb: Balancer) -> float:
    """Seconds until ldirectord has taken a failed real server out (see CHECK_ROUND_S)."""
    return lb.check_interval + lb.check_timeout + CHECK_ROUND_S


def vip_here(net: Network) -> str:
    """Shell condition: this node holds the VIP (holds_vip, for polling inside a node)."""
    return f"{{ ip -4 -o addr show dev {net.interface} | grep -qF ' inet {net.vip}/'; }}"


def hears(cluster: RunningCluster, peer: Machine) -> str:
    """Shell test on a standby: its HA stack hears peer serving."""
    return stack_of(cluster.model).hears(cluster.model.node(peer.name))


def sync_daemons(machine: Machine) -> set[str]:
    """The IPVS connection-sync daemons running on the node: master, backup (either stack)."""
    return set(re.findall(r"^(master|backup) sync daemon", machine.succeed("ipvsadm -L --daemon"), re.M))


def heartbeat_restarts(machine: Machine) -> int:
    """How often the node's heartbeat restarted itself since boot (it does after a partition)."""
    return int(
        machine.succeed(
            "journalctl -b --no-pager -o cat -t heartbeat | grep -c 'Heartbeat restart triggered' || true"
        ).strip()
        or 0
    )


def table_entries_of(machine: Machine, failures: list[str]) -> list[str]:
    """The director's connection entries of the client ports that failed (see failures_after):
    which real server a recycled port was sent to, and in what state."""
    ports = sorted({m for f in failures for m in re.findall(r"\(port (\d+)\)", f) if m != "0"})
    if not ports:
        return []
    found = machine.execute(f"ipvsadm -L -n -c | grep -E ':({'|'.join(ports)}) '")[1]
    return found.splitlines()


def real_servers(machine: Machine, vip: str, port: int) -> dict[str, tuple[str, int]]:
    """address -> (forward method, weight) of the virtual service in `ipvsadm -L -n`."""
    table = machine.succeed(f"ipvsadm -L -n -t {vip}:{port}")
    return {m[0]: (m[1], int(m[2])) for m in re.findall(r"->\s+([\d.]+):\d+\s+(\w+)\s+(\d+)", table)}


# -- every node ---------------------------------------------------------------------------------


def test_identity(node: Node, host: Host, cluster: RunningCluster) -> None:
    assert host.run("hostname").stdout.strip() == node.name
    assert str(node.address) in host.interface(cluster.model.network.interface).addresses


@pytest.fixture(scope="module")
def machine_ids(cluster: RunningCluster) -> dict[str, str]:
    return {m.name: m.succeed("cat /etc/machine-id").strip() for m in cluster.machines.values()}


def test_machine_id_is_the_nodes_own(node: Node, cluster: RunningCluster, machine_ids: dict[str, str]) -> None:
    """Made at first boot, so nodes cloned from one image still differ (and systemd did not take
    the boot for a first boot of an unconfigured system, which costs seconds)."""
    assert re.fullmatch(r"[0-9a-f]{32}", machine_ids[node.name]), machine_ids[node.name]
    assert list(machine_ids.values()).count(machine_ids[node.name]) == 1, machine_ids
    assert "Detected first boot" not in cluster.machine(node).succeed("journalctl -b -o cat _PID=1 | head -50")


def test_cloud_init_finished_without_errors(host: Host) -> None:
    """What `cloud-init status` reports, read from the same two files: starting its Python costs
    several seconds per node under emulation."""
    status = json.loads(host.check_output("cat /run/cloud-init/status.json"))["v1"]
    result = json.loads(host.check_output("cat /run/cloud-init/result.json"))["v1"]
    stages = {name: stage for name, stage in status.items() if isinstance(stage, dict)}
    assert status["stage"] is None, f"still running stage {status['stage']}"
    assert all(s["finished"] for s in stages.values() if s["start"]), stages
    assert stages["modules-final"]["finished"], "the final stage did not run"
    errors = [e for s in stages.values() for e in s["errors"]] + result["errors"]
    assert errors == [], errors


def test_cloud_init_stages_ran_in_one_process(host: Host) -> None:
    """One process ran every stage: the image's imgbuild-cloud-init.service for cloud-init 22.4
    (bookworm), cloud-init's own cloud-init-main.service from 24.1 on (trixie)."""
    unit = (
        "imgbuild-cloud-init.service"
        if host.run("systemctl cat imgbuild-cloud-init.service").rc == 0
        else "cloud-init-main.service"
    )
    log = host.check_output(f"journalctl -b -o cat -u {unit}")
    for stage in ("init-local", "init", "modules:final"):
        assert re.search(rf"Cloud-init v\. \S+ running '{stage}'", log), f"stage {stage} did not run in {unit}"
    assert host.check_output(f"systemctl show -P Result {unit}") == "success"


def test_no_failed_units(host: Host) -> None:
    result = host.run("systemctl --failed --no-legend --plain")
    assert result.rc == 0, f"systemctl --failed could not answer: {result.stderr}"
    assert result.stdout.strip() == "", result.stdout


# -- load balancers -----------------------------------------------------------------------------


def test_ipvs_modules_loaded(cluster: RunningCluster, balancer_host: Host) -> None:
    """Every scheduler the model accepts for the release is loaded: the image's list comes from its kernel."""
    loaded = {line.split()[0] for line in balancer_host.run("lsmod").stdout.splitlines()[1:]}
    expected = ipvs_modules(cluster.model.build.release)
    assert expected <= loaded, sorted(expected - loaded)


def test_forwarding_sysctls(balancer_host: Host) -> None:
    assert balancer_host.sysctl("net.ipv4.ip_forward") == 1
    # a removed real server is forgotten, and a recycled client port is scheduled anew (drill f)
    assert balancer_host.sysctl("net.ipv4.vs.expire_nodest_conn") == 1
    assert balancer_host.sysctl("net.ipv4.vs.conn_reuse_mode") == 3


@pytest.mark.stack("heartbeat")
def test_heartbeat_daemons(balancer_host: Host) -> None:
    assert balancer_host.service("heartbeat").is_running
    assert not balancer_host.service("keepalived").is_running
    # the watches of the notes on the seed: sync daemon restarted, VIP yielded after a partition
    for watch in ("lvs-sync-watch", "lvs-link-watch"):
        assert balancer_host.service(watch).is_running, watch
    # The packaged unit waits up to 30 minutes on stop and never kills; ours is bounded.
    stop = balancer_host.check_output("systemctl show heartbeat -p TimeoutStopUSec -p SendSIGKILL")
    assert "TimeoutStopUSec=20s" in stop and "SendSIGKILL=yes" in stop, stop
    authkeys = balancer_host.file("/etc/ha.d/authkeys")
    assert (authkeys.mode, authkeys.user, authkeys.group) == (0o600, "root", "root")


@pytest.mark.stack("keepalived")
def test_keepalived_daemons(balancer_host: Host) -> None:
    """keepalived alone: heartbeat and the watches of its resource group stay inert (no ha.cf);
    lvs-sync-watch serves both stacks."""
    assert balancer_host.service("keepalived").is_running
    assert balancer_host.service("lvs-sync-watch").is_running
    for unit in ("heartbeat", "lvs-sync-backup", "lvs-link-watch"):
        assert not balancer_host.service(unit).is_running, unit
    # one journal query (local0) keeps the HA log of either stack
    assert "--log-facility=0" in balancer_host.check_output("systemctl show keepalived -p ExecStart")


@pytest.mark.stack("heartbeat")
def test_ipfail_running(balancer_host: Host) -> None:
    assert balancer_host.process.filter(comm="ipfail"), "ipfail is not running"


@pytest.mark.stack("keepalived")
def test_vrrp_states(cluster: RunningCluster) -> None:
    """The VIP holder is VRRP master, the other a backup that hears it (the counterpart of ipfail
    and heartbeat's membership)."""
    active = active_balancer(cluster)
    for machine in cluster.role(Role.loadbalancer):
        dump = machine.succeed(VRRP_DUMP)
        if machine is active:
            assert re.search(r"State = MASTER$", dump, re.M), dump
        else:
            assert re.search(r"State = BACKUP$", dump, re.M), dump
            assert machine.execute(hears(cluster, active))[0] == 0, dump


def test_vip_on_exactly_one_balancer(cluster: RunningCluster) -> None:
    """Exactly one holder (active_balancer). heartbeat gives the VIP to the node haresources names,
    the first balancer; keepalived with nopreempt (auto_failback off) to whichever balancer's VRRP
    came up first, since neither takes it from the other afterwards."""
    active = active_balancer(cluster)
    if cluster.model.ha.stack == "heartbeat" or cluster.model.heartbeat.auto_failback:
        assert active.name == cluster.model.by_role(Role.loadbalancer)[0].name


@pytest.mark.stack("heartbeat")
def test_ldirectord_only_on_active(cluster: RunningCluster) -> None:
    """ldirectord runs on the balancer that holds the VIP and on no other."""
    active = active_balancer(cluster)
    for machine in cluster.role(Role.loadbalancer):
        status, output = machine.execute(LDIRECTORD_RUNNING)
        if machine is active:
            assert status == 0 and "ldirectord" in output, output
        else:
            assert status != 0, f"ldirectord runs on standby {machine.name}: {output}"


@pytest.mark.stack("keepalived")
def test_virtual_server_on_both_balancers(cluster: RunningCluster) -> None:
    """keepalived's checker keeps the virtual server on the standby too: a takeover moves the VIP only."""
    net, lb = cluster.model.network, cluster.model.balancer
    for machine in cluster.role(Role.loadbalancer):
        reals = real_servers(machine, str(net.vip), lb.port)
        assert {str(w.address) for w in cluster.model.by_role(Role.webserver)} <= set(reals), (machine.name, reals)


def test_ipvs_table(cluster: RunningCluster) -> None:
    net, lb = cluster.model.network, cluster.model.balancer
    active = active_balancer(cluster)
    table = active.wait_until_succeeds(f"ipvsadm -L -n -t {net.vip}:{lb.port}", timeout=30)
    assert re.search(rf"TCP\s+{re.escape(str(net.vip))}:{lb.port}\s+{lb.scheduler}\b", table), table
    reals = real_servers(active, str(net.vip), lb.port)
    for web in cluster.model.by_role(Role.webserver):
        assert reals.get(str(web.address), ("", 0))[0] == "Route", table
        assert reals[str(web.address)][1] > 0, table


@pytest.mark.stack("heartbeat")
def test_ha_messages_reach_the_journal(cluster: RunningCluster) -> None:
    """logfacility/logfile local0: heartbeat and ldirectord messages are kept on the node."""
    active = active_balancer(cluster)
    # LVSDirector loads the table first, so ldirectord's start adopts ("Changed") the virtual server.
    vip = f"{cluster.model.network.vip}:{cluster.model.balancer.port}"
    assert re.search(
        rf"(Added|Changed) virtual server: {re.escape(vip)}", active.succeed("journalctl -b --no-pager -t ldirectord")
    )
    for machine in cluster.role(Role.loadbalancer):
        assert "Configuration validated" in machine.succeed(
            "journalctl -b --no-pager -t heartbeat; cat /var/log/ha-log"
        )


@pytest.mark.stack("keepalived")
def test_vrrp_messages_reach_the_journal(cluster: RunningCluster) -> None:
    """keepalived logs to local0 as heartbeat does: the takeover and the checker's verdicts are kept."""
    active = active_balancer(cluster)
    log = active.succeed("journalctl -b --no-pager -o cat SYSLOG_FACILITY=16")
    assert "(VIP) Entering MASTER STATE" in log, log[-2000:]
    for web in cluster.model.by_role(Role.webserver):
        assert f"Remote Web server [{web.address}]:tcp:{cluster.model.balancer.port} succeed on service." in log, log[
            -2000:
        ]


def test_connection_sync_roles(cluster: RunningCluster) -> None:
    """As the seed checks: master sync daemon on the active balancer, only the backup on the standby."""
    active = active_balancer(cluster)
    for machine in cluster.role(Role.loadbalancer):
        daemons = sync_daemons(machine)
        if machine is active:
            assert "master" in daemons, daemons
        else:
            assert daemons == {"backup"}, daemons


# -- the client's view --------------------------------------------------------------------------


def test_vip_answered_by_active_balancer_only(
    cluster: RunningCluster, client_neighbour: Callable[[str], str | None], vip_url: str
) -> None:
    """ARP for the VIP resolves to the active balancer's NIC, never to a web server's."""
    assert who_answers(vip_url) is not None
    mac = client_neighbour(str(cluster.model.network.vip))
    active = active_balancer(cluster)
    assert mac == active.mac, f"VIP resolves to {mac}, active balancer {active.name} has {active.mac}"


def answers_through(cluster: RunningCluster, vip_url: str) -> list[str | None]:
    """Requests through the VIP as the scheduler spreads them (schedulers.spread_of): for the
    load-based schedulers 3 connections per web server held open at once, otherwise 10 per web
    server one after another. The answering server of each, None for a failure."""
    net, lb = cluster.model.network, cluster.model.balancer
    servers = len(cluster.model.by_role(Role.webserver))
    if spread_of(lb) == "shared":
        return held(str(net.vip), lb.port, "/", 3 * servers)
    return [who_answers(vip_url) for _ in range(10 * servers)]


def test_traffic_through_vip(cluster: RunningCluster, vip_url: str, report: dict[str, Any]) -> None:
    """No request fails, and they spread as the scheduler does: rr and wrr in equal shares;
    persistence, sh, mh, dh, lblc, lblcr and fo keep the client on one server; lc, wlc, sed, nq,
    ovf and twos put held-open connections on every web server."""
    webs = {w.name for w in cluster.model.by_role(Role.webserver)}
    kind = spread_of(cluster.model.balancer)
    answers = Counter(answers_through(cluster, vip_url))
    report["spread"] = {"kind": kind, "answers": dict(answers)}
    assert None not in answers and set(answers) <= webs, answers
    if kind == "pinned":
        assert len(answers) == 1, f"the client moved between servers: {answers}"
    elif kind == "shared":
        assert set(answers) == webs, f"not every web server took a connection: {answers}"
    else:
        total = sum(answers.values())
        assert all(abs(answers[w] / total - 1 / len(webs)) <= 0.1 / len(webs) for w in webs), answers


# -- drills -------------------------------------------------------------------------------------


def converged(cluster: RunningCluster, timeout: float = 60.0) -> Machine:
    """Wait (bounded) until one balancer holds the VIP and runs ldirectord and no balancer still
    waits to hand the VIP over; the holder. What every drill must leave behind."""

    def settled() -> bool:
        holders = vip_holders(cluster)
        return (
            len(holders) == 1
            and holders[0].execute(stack_of(cluster.model).director_running(cluster.model))[0] == 0
            and all(m.execute(RELEASE_PENDING)[0] != 0 for m in cluster.role(Role.loadbalancer))
        )

    until(settled, "one VIP holder, running ldirectord, no release pending", timeout)
    return active_balancer(cluster)


def standby_of(cluster: RunningCluster, active: Machine) -> Machine:
    return next(m for m in cluster.role(Role.loadbalancer) if m is not active)


def lose_power(
    cluster: RunningCluster, drills: list[dict[str, Any]], name: str, active: Machine, watch: BalancerReturn
) -> Drill:
    """Power the active balancer off under client load and wait until clients are served again;
    the failed balancer boots again at once, watched by watch. Returns the drill."""
    net = cluster.model.network
    standby = standby_of(cluster, active)
    with drill(
        cluster,
        drills,
        name,
        f"Power loss of the active balancer ({active.name})",
        bound_s=OUTAGE_BOUND_S,
        baseline=LEAD_S,
    ) as d:
        try:
            d.extra["synced_s"] = round(d.synced(standby), 2)
            d.fault(f"power off {active.name}", active.crash)
            d.extra["vip_moved_s"] = round(
                d.until(lambda: holds_vip(standby, str(net.vip), net.interface), f"{standby.name} holds the VIP", 120),
                2,
            )
            d.recovered()
        finally:
            if d.fault_at is not None:  # powered off: boot it again (a failed wait must not boot a running node twice)
                watch.start(returning=active, holder=standby)
    return d


def assert_served_through(d: Drill) -> None:
    """Clients were served again within the bound, and the long download went on (connection sync)."""
    seen = d.figures
    assert seen is not None and d.bound_s is not None  # set when the drill ended; the failover drills have a bound
    assert seen.outage_s != float("inf"), "HTTP through the VIP never came back"
    assert seen.download_error is None, seen.download_error
    assert seen.download_bytes_after_recovery > 0, "the long-lived connection stalled after the failover"
    assert seen.outage_s <= d.bound_s, (
        f"outage {seen.outage_s:.2f} s, bound {d.bound_s} s ({seen.failed}/{seen.total} new connections failed)"
    )


def test_drill_balancer_failover(
    cluster: RunningCluster, report: dict[str, Any], drills: list[dict[str, Any]], balancer_return: BalancerReturn
) -> None:
    """Power the active balancer off under client load: the VIP moves, new connections recover,
    the persistent connections and the long download survive (connection sync). Then the failed
    balancer boots again, watched while the next drills run."""
    active = active_balancer(cluster)
    d = lose_power(cluster, drills, "a-power-loss-active", active, balancer_return)
    seen = d.figures
    assert seen is not None  # set when the drill ended
    report["vip_moved_s"] = d.extra["vip_moved_s"]
    report["failover_outage_s"] = round(seen.outage_s, 2)
    report["failover_outage_bound_s"] = OUTAGE_BOUND_S
    report["failover_failed_requests"] = f"{seen.failed}/{seen.total}"
    report["long_download_bytes_after_recovery"] = seen.download_bytes_after_recovery
    report["keepalive_broken"] = seen.keepalive_broken
    assert "master" in sync_daemons(standby_of(cluster, active))
    assert_served_through(d)


# -- web servers, while the failed balancer boots again -----------------------------------------


def check_page_command(balancer: Balancer) -> str:
    """A shell command run on a web server that prints its check page, fetched as the balancers'
    health check fetches it (the images carry no curl: Python's urllib)."""
    url = f"http://127.0.0.1:{balancer.port}/{balancer.check_page}"
    return f"python3 -c \"import urllib.request as u; print(u.urlopen('{url}').read().decode())\""


def test_apache_and_check_page(webserver_host: Host, cluster: RunningCluster) -> None:
    lb = cluster.model.balancer
    assert webserver_host.service("apache2").is_running
    page = webserver_host.run(check_page_command(lb))
    assert lb.check_receive in page.stdout, page.stdout + page.stderr


def test_vip_on_loopback_and_arp_sysctls(webserver_host: Host, cluster: RunningCluster) -> None:
    net = cluster.model.network
    assert str(net.vip) in webserver_host.interface("lo").addresses
    for key, value in arp_sysctls().items():
        assert webserver_host.sysctl(key) == value, key
        # what the kernel applies on the cluster's interface: the higher of `all` and its own
        own = key.replace(".all.", f".{net.interface}.")
        assert max(webserver_host.sysctl(key), webserver_host.sysctl(own)) == value, own


# -- drills on the new active balancer ----------------------------------------------------------


def test_drill_apache_down_and_back(cluster: RunningCluster, vip_url: str, report: dict[str, Any]) -> None:
    """Apache stops on the first web server: the director takes it out, every request is
    answered by the others; started again, it is back in rotation (and, unless the scheduler or
    persistence pins the client elsewhere, answers again)."""
    model = cluster.model
    net, lb = model.network, model.balancer
    webs = model.by_role(Role.webserver)
    if len(webs) < 2:
        pytest.skip("needs a second web server to take the traffic")
    active = active_balancer(cluster)
    victim, survivors = webs[0], {w.name for w in webs[1:]}
    web = cluster.machine(victim)
    # Right after a failover the new director's checker may not have checked every web server
    # yet: wait (bounded) until it schedules them all, so the drill times its check, not its start.
    active.wait_until_succeeds(scheduled(net, lb, webs), timeout=60)
    web.succeed("systemctl stop apache2")
    try:
        removed_after = until(
            lambda: real_servers(active, str(net.vip), lb.port).get(str(victim.address), ("", 0))[1] == 0,
            f"{victim.name} out of rotation",
            check_bound(lb) + 5,
        )
        report["apache_down_detected_s"] = round(removed_after, 1)
        answers = Counter(answers_through(cluster, vip_url))
        assert set(answers) <= survivors, f"answers with {victim.name} down: {answers}"
    finally:
        web.succeed("systemctl start apache2")
    active.wait_until_succeeds(scheduled(net, lb, [victim]), timeout=lb.check_interval + lb.check_timeout + 10)
    if spread_of(lb) != "pinned":
        back = Counter(answers_through(cluster, vip_url))
        assert None not in back and victim.name in back, f"answers with {victim.name} back: {back}"


class BalancerReturn:
    """The failed balancer boots again in the background while other drills go on; every half
    second (bounded) it samples which balancers hold the VIP, until the returning node is ready
    and has heard the holder for as long as its stack could still take over (heartbeat: a node
    takes resources over only from a peer it has not heard for initdead), so after that the
    outcome is settled."""

    def __init__(self, cluster: RunningCluster) -> None:
        net = cluster.model.network
        self.cluster = cluster
        self.vip, self.interface = str(net.vip), net.interface
        self.settle = stack_of(cluster.model).settle_s(cluster.model)
        self.returning: Machine | None = None  # both set by start()
        self.holder: Machine | None = None
        self.samples, self.both = 0, 0
        self.errors: list[str] = []
        self.ready_at: float | None = None
        self.heard_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, returning: Machine, holder: Machine) -> None:
        self.returning, self.holder = returning, holder
        returning.restart()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        assert self.returning is not None and self.holder is not None  # start() set both before the watch
        deadline = time.monotonic() + 300
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                holder_has = holds_vip(self.holder, self.vip, self.interface)
                if self.ready_at is None and is_ready(self.returning):
                    self.ready_at = time.monotonic()
                if self.ready_at is not None and self.heard_at is None and self.hears_holder():
                    self.heard_at = time.monotonic()
                returning_has = self.ready_at is not None and holds_vip(self.returning, self.vip, self.interface)
            except Exception as err:  # noqa: BLE001  # any error of a (re)booting node: finish() reports it, the watch goes on
                self.errors.append(f"{type(err).__name__}: {err}")
                self._stop.wait(0.5)
                continue
            self.samples += 1
            self.both += holder_has and returning_has
            if self.heard_at is not None and time.monotonic() - self.heard_at > self.settle:
                return
            self._stop.wait(0.5)

    def hears_holder(self) -> bool:
        assert self.returning is not None and self.holder is not None  # only the watch asks, after start()
        return self.returning.execute(hears(self.cluster, self.holder))[0] == 0

    def finish(self) -> None:
        """Wait (bounded) for the watch to end."""
        assert self._thread is not None, (
            "the failover drill did not run, so no balancer is returning (run it too: -k 'failover or returns')"
        )
        self._thread.join(timeout=330)
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)


@pytest.fixture(scope="module")
def balancer_return(cluster: RunningCluster) -> Iterator[BalancerReturn]:
    watch = BalancerReturn(cluster)
    yield watch
    watch.stop()


def returned_as_standby(watch: BalancerReturn) -> None:
    """With auto_failback off the VIP stays; at no sampled moment do both balancers hold it."""
    watch.finish()
    returning, holder = watch.returning, watch.holder
    assert returning is not None and holder is not None  # finish() passed: the watch was started
    assert watch.ready_at is not None, (
        f"{returning.name} did not come back: {watch.errors[-3:]}\n{returning.console_tail()}"
    )
    assert watch.heard_at is not None, f"{returning.name} never heard {holder.name}: {watch.errors[-3:]}"
    assert watch.both == 0, f"both balancers held the VIP in {watch.both} of {watch.samples} samples"
    assert watch.samples >= 20, f"only {watch.samples} samples: {watch.errors[-3:]}"
    assert holds_vip(holder, watch.vip, watch.interface) and not holds_vip(returning, watch.vip, watch.interface)
    returning.wait_for_unit(stack_of(watch.cluster.model).unit, timeout=60)
    assert "master" not in sync_daemons(returning)


def test_drill_failed_balancer_returns_as_standby(balancer_return: BalancerReturn, report: dict[str, Any]) -> None:
    watch = balancer_return
    try:
        returned_as_standby(watch)
    finally:
        report["return_samples"] = watch.samples
        report["return_boot_s"] = (
            round((watch.ready_at or time.monotonic()) - watch.returning.started_at, 1) if watch.returning else None
        )


def test_drill_planned_stop(cluster: RunningCluster, report: dict[str, Any], drills: list[dict[str, Any]]) -> None:
    """Maintenance on the active balancer: its HA stack stopped cleanly. heartbeat hands over make
    before break (LVSDirector keeps the VIP and the table until the peer's gratuitous ARP has
    turned the clients); keepalived sends a priority-0 advert, so the backup takes over at once.
    Then the stack starts again and the node comes back as standby."""
    net = cluster.model.network
    unit = stack_of(cluster.model).unit
    active = active_balancer(cluster)
    standby = standby_of(cluster, active)
    standby.wait_until_succeeds(hears(cluster, active), timeout=60)
    with drill(
        cluster,
        drills,
        "e-planned-stop",
        f"{unit} stopped on the active balancer ({active.name})",
        bound_s=PLANNED_STOP_BOUND_S,
    ) as d:
        d.fault(
            f"stop {unit} on {active.name}",
            lambda: active.succeed(f"systemctl stop {unit}", timeout=60),
        )
        assert d.fault_at is not None  # set by d.fault
        d.extra["stop_s"] = round(time.monotonic() - d.fault_at, 2)
        d.extra["vip_moved_s"] = round(
            d.until(lambda: holds_vip(standby, str(net.vip), net.interface), f"{standby.name} holds the VIP", 60), 2
        )
        d.extra["released_s"] = round(
            d.until(lambda: not holds_vip(active, str(net.vip), net.interface), f"{active.name} released the VIP", 30),
            2,
        )
        d.recovered()
    seen = d.figures
    assert seen is not None  # set when the drill ended
    report["planned_stop_outage_s"] = round(seen.outage_s, 2)
    report["planned_stop_failed_requests"] = f"{seen.failed}/{seen.total}"
    assert seen.outage_s <= PLANNED_STOP_BOUND_S, f"outage {seen.outage_s:.2f} s, bound {PLANNED_STOP_BOUND_S} s"
    assert seen.download_error is None and seen.download_bytes_after_recovery > 0, (
        seen.download_error or "the long download stalled"
    )
    active.succeed(f"systemctl start {unit}")
    active.wait_until_succeeds(hears(cluster, standby), timeout=60)
    assert active_balancer(cluster) is standby, "the restarted balancer took the VIP back"


# -- the full fault matrix (imgbuild verify --faults), round after round -----------------------

SYNC_RESTORED_BOUND_S = 5.0  # lvs-sync-watch looks every 2 s


@pytest.mark.faults
def test_drill_sync_daemon_lost(cluster: RunningCluster, drills: list[dict[str, Any]], fault_round: int) -> None:
    """h. The standby's connection-sync daemon stops: lvs-sync-watch notices and starts it again,
    so the next drill's failover still carries the long download (keepalived, which swaps the
    daemons at each VRRP transition, never starts a lost one again either)."""
    standby = standby_of(cluster, active_balancer(cluster))
    backup = "ipvsadm -L --daemon | grep -q '^backup sync daemon'"
    standby.succeed(backup)
    with drill(
        cluster,
        drills,
        f"h-sync-daemon-lost-r{fault_round}",
        f"The standby's sync daemon stops ({standby.name})",
        bound_s=SYNC_RESTORED_BOUND_S,
        bounded="restored_s",
    ) as d:
        d.fault(
            f"stop the backup sync daemon on {standby.name}",
            lambda: standby.succeed("ipvsadm --stop-daemon backup"),
        )
        d.extra["restored_s"] = round(
            d.until(lambda: standby.execute(backup)[0] == 0, "lvs-sync-watch started it again", 30), 2
        )
    assert "no connection sync daemon ran" in standby.succeed("journalctl -b --no-pager -t lvs-sync")
    assert d.extra["restored_s"] <= SYNC_RESTORED_BOUND_S
    assert d.figures is not None  # set when the drill ended
    assert d.figures.failed == 0, (
        f"{d.figures.failed} new connections failed while only the standby's sync daemon was down"
    )


@pytest.mark.faults
def test_drill_second_failover(cluster: RunningCluster, drills: list[dict[str, Any]], fault_round: int) -> None:
    """b. Once a balancer has failed and come back as standby, the active one loses power: the
    returned one serves within the same bound and carries the long download, then the failed one
    comes back as standby in turn."""
    watch = BalancerReturn(cluster)
    try:
        d = lose_power(cluster, drills, f"b-second-failover-r{fault_round}", active_balancer(cluster), watch)
        assert_served_through(d)
        returned_as_standby(watch)
    finally:
        watch.stop()


PING_NODE_UP = "cl_status nodestatus {gateway} | grep -qx ping"  # heartbeat's status of a ping node it hears


@pytest.mark.stack("heartbeat")
def test_drill_ping_node_lost(cluster: RunningCluster, report: dict[str, Any], drills: list[dict[str, Any]]) -> None:
    """i. With a gateway set, both balancers ping it and ipfail weighs what each sees: the active
    balancer loses its path to the gateway (the replies dropped on its NIC) while heartbeat still
    runs, and the VIP moves to the standby, which still reaches it. Clients, who reach both
    balancers, are served throughout."""
    net, hb = cluster.model.network, cluster.model.heartbeat
    if net.gateway is None:
        pytest.skip("no ping node: network.gateway is not set")
    if not hb.ipfail:
        pytest.skip("ipfail is off (heartbeat.ipfail = false)")
    active = converged(cluster)
    standby = standby_of(cluster, active)
    standby.wait_until_succeeds(hears(cluster, active), timeout=60)
    for machine in (active, standby):
        machine.wait_until_succeeds(PING_NODE_UP.format(gateway=net.gateway), timeout=60)
    ingress = f"tc qdisc add dev {net.interface} ingress"
    active.succeed(
        "modprobe -a sch_ingress cls_u32 act_gact && "
        f"{{ tc qdisc del dev {net.interface} ingress 2>/dev/null; {ingress}; }}"
    )
    drop = (
        f"tc filter add dev {net.interface} parent ffff: protocol ip prio 1 "
        f"u32 match ip src {net.gateway}/32 action drop"
    )
    try:
        with drill(
            cluster,
            drills,
            "i-ping-node-lost",
            f"{active.name} loses its ping node {net.gateway}",
            bound_s=PLANNED_STOP_BOUND_S,
        ) as d:
            try:
                d.fault(f"replies of {net.gateway} dropped on {active.name}", lambda: active.succeed(drop))
                d.extra["vip_moved_s"] = round(
                    d.until(
                        lambda: holds_vip(standby, str(net.vip), net.interface), f"{standby.name} holds the VIP", 120
                    ),
                    2,
                )
                d.extra["released_s"] = round(
                    d.until(
                        lambda: not holds_vip(active, str(net.vip), net.interface),
                        f"{active.name} released the VIP",
                        60,
                    ),
                    2,
                )
                d.recovered()
            finally:
                d.heal(
                    f"replies of {net.gateway} back on {active.name}",
                    lambda: active.execute(f"tc filter del dev {net.interface} parent ffff: prio 1"),
                )
            active.wait_until_succeeds(PING_NODE_UP.format(gateway=net.gateway), timeout=60)
    finally:
        active.execute(f"tc qdisc del dev {net.interface} ingress")
    report["ping_node_lost_vip_moved_s"] = d.extra["vip_moved_s"]
    assert converged(cluster) is standby, "the VIP went back to the balancer that had lost its ping node"
    assert d.figures is not None  # set when the drill ended
    assert d.figures.outage_s <= PLANNED_STOP_BOUND_S, (
        f"outage {d.figures.outage_s:.2f} s, bound {PLANNED_STOP_BOUND_S} s "
        f"({d.figures.failed}/{d.figures.total} new connections failed)"
    )
    assert d.figures.download_error is None, d.figures.download_error


@pytest.mark.faults
def test_drill_hung_webserver(cluster: RunningCluster, drills: list[dict[str, Any]], fault_round: int) -> None:
    """g. Apache hangs (SIGSTOP: the kernel still accepts TCP, nothing answers): ldirectord's check
    times out and takes it out within check_bound; after SIGCONT it is back."""
    net, lb = cluster.model.network, cluster.model.balancer
    webs = cluster.model.by_role(Role.webserver)
    active = active_balancer(cluster)
    victim = webs[0]
    web = cluster.machine(victim)
    active.wait_until_succeeds(scheduled(net, lb, webs), timeout=60)
    bound = check_bound(lb)

    with drill(
        cluster,
        drills,
        f"g-hung-webserver-r{fault_round}",
        f"Apache hangs on {victim.name}",
        bound_s=bound,
        bounded="out_of_rotation_s",
    ) as d:
        try:
            d.fault(
                f"SIGSTOP apache2 on {victim.name}",
                lambda: web.succeed("systemctl kill -s STOP apache2"),
            )
            d.extra["out_of_rotation_s"] = round(
                d.until_on(active, f"! {scheduled(net, lb, [victim])}", f"{victim.name} out of rotation", bound + 30), 2
            )
            removed = time.monotonic()
            time.sleep(2.0)  # new connections go to the others only
        finally:
            d.heal(
                f"SIGCONT apache2 on {victim.name}",
                lambda: web.succeed("systemctl kill -s CONT apache2"),
            )
        assert d.heal_at is not None and d.fault_at is not None  # set by d.heal and d.fault
        d.extra["back_in_s"] = round(
            d.until_on(active, scheduled(net, lb, [victim]), f"{victim.name} back in rotation", bound + 30)
            - (d.heal_at - d.fault_at),
            2,
        )
    late = [r for r in d.traffic.requests if r[4] == "new" and removed < r[0] < d.heal_at]
    d.note("failed_while_out", sum(not r[2] for r in late))
    d.note("failures_while_out", failures_after(late, removed))
    d.note("table_entries_of_failures", table_entries_of(active, d.extra["failures_while_out"]))
    assert d.extra["out_of_rotation_s"] <= bound, (
        f"{victim.name} out after {d.extra['out_of_rotation_s']} s, bound {bound:.0f} s"
    )
    assert d.extra["failed_while_out"] == 0, (
        f"{d.extra['failed_while_out']} of {len(late)} new connections failed while {victim.name} was out: "
        f"{d.extra['failures_while_out']}, {d.extra['table_entries_of_failures']}"
    )


@pytest.mark.faults
@pytest.mark.stack("heartbeat")  # keepalived's counterpart: not written yet (issue #15)
def test_drill_heartbeat_path_lost(cluster: RunningCluster, drills: list[dict[str, Any]], fault_round: int) -> None:
    """d. The balancers lose one heartbeat path while clients reach both: first the cluster
    segment's heartbeats (dropped on both balancers' NIC), then the dedicated link (its cable
    pulled). Over the other path each still hears its peer: no takeover, never a second VIP,
    no failed request."""
    net, hb = cluster.model.network, cluster.model.heartbeat
    if not hb.link.enabled:
        pytest.skip("no second heartbeat path (heartbeat.link.enabled = false)")
    active = active_balancer(cluster)
    standby = standby_of(cluster, active)
    balancers = cluster.role(Role.loadbalancer)
    standby.wait_until_succeeds(hears(cluster, active), timeout=60)
    # The ingress qdisc goes on before the client runs and off after it: adding or deleting it
    # dropped a SYN in flight (1 of ~200 new connections, in CI and in a bench round); the drill
    # itself only adds and deletes the filter.
    qdisc = f"tc qdisc add dev {net.interface} ingress"
    no_qdisc = f"tc qdisc del dev {net.interface} ingress"
    for machine in balancers:
        machine.succeed(f"modprobe -a sch_ingress cls_u32 act_gact && {{ {no_qdisc} 2>/dev/null; {qdisc}; }}")
    hold = 4 * hb.deadtime_ms / 1000  # four times what it takes heartbeat to declare a peer dead
    drop = (
        f"tc filter add dev {net.interface} parent ffff: protocol ip prio 1 "
        f"u32 match ip protocol 17 0xff match ip dport {hb.udpport} 0xffff action drop"
    )
    undrop = f"tc filter del dev {net.interface} parent ffff: prio 1"
    samples: list[int] = []

    def watch(seconds: float) -> None:
        """Sample (bounded) how many balancers hold the VIP, and that the standby still hears the active."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append(len(vip_holders(cluster)))
            assert standby.execute(hears(cluster, active))[0] == 0, (
                f"{standby.name} lost {active.name} with one heartbeat path left"
            )
            time.sleep(0.2)

    def run_path_drill(d: Drill) -> None:
        try:
            d.fault(f"heartbeats on {net.interface} dropped", lambda: [m.succeed(drop) for m in balancers])
            watch(hold)
        finally:
            d.heal(f"heartbeats on {net.interface} back", lambda: [m.execute(undrop) for m in balancers])
        standby.wait_until_succeeds(hears(cluster, active), timeout=30)
        try:
            d.traffic.mark(f"cable of {active.name}'s {hb.link.interface} pulled")
            active.block(1)
            watch(hold)
        finally:
            d.traffic.mark(f"cable of {active.name}'s {hb.link.interface} back")
            active.unblock(1)
        time.sleep(1.0)

    try:
        with drill(
            cluster,
            drills,
            f"d-heartbeat-path-lost-r{fault_round}",
            "One heartbeat path lost at a time",
            bound_s=0.0,
            bounded="outage_total_s",
        ) as d:
            run_path_drill(d)
    finally:
        for machine in balancers:
            machine.execute(no_qdisc)
    d.note("holder_samples", len(samples))
    assert samples and set(samples) == {1}, f"VIP holders per sample: {samples}"
    assert active_balancer(cluster) is active, "the VIP moved with one heartbeat path left"
    assert d.figures is not None  # set when the drill ended
    assert d.figures.failed == 0, f"{d.figures.failed} of {d.figures.total} new connections failed"


@pytest.mark.faults
def test_drill_partition_active(cluster: RunningCluster, drills: list[dict[str, Any]], fault_round: int) -> None:
    """c. The active balancer's cable is pulled for 15 s, the VM runs on: the standby serves within
    the power-loss bound during the partition; when the cable is back, exactly one balancer holds
    the VIP within 2 s and clients see no further outage from the stack's split-brain handling
    (heartbeat: lvs-link-watch; keepalived: the instance goes to FAULT without carrier and comes
    back as a backup that does not preempt)."""
    net = cluster.model.network
    on_heartbeat = cluster.model.ha.stack == "heartbeat"
    active = active_balancer(cluster)
    standby = standby_of(cluster, active)
    standby.wait_until_succeeds(hears(cluster, active), timeout=60)
    holder_restarts_before = heartbeat_restarts(standby) if on_heartbeat else 0
    # Every cable of the node: with the dedicated heartbeat link, pulling only the cluster
    # segment's is drill d's business (one heartbeat path lost).
    nics = [0, 1] if cluster.model.heartbeat.link.enabled else [0]
    with drill(
        cluster,
        drills,
        f"c-partition-active-r{fault_round}",
        f"Partition of the active balancer ({active.name})",
        bound_s=OUTAGE_BOUND_S,
        baseline=LEAD_S,
    ) as d:
        try:
            d.extra["synced_s"] = round(d.synced(standby), 2)
            d.fault(f"cables of {active.name} pulled", lambda: active.block(*nics))
            d.extra["vip_moved_s"] = round(
                d.until(lambda: holds_vip(standby, str(net.vip), net.interface), f"{standby.name} holds the VIP", 60), 2
            )
            d.recovered()
            assert d.fault_at is not None  # set by d.fault
            time.sleep(max(0.0, 15.0 - (time.monotonic() - d.fault_at)))
        finally:
            d.heal(f"cables of {active.name} back", lambda: active.unblock(*nics))
        # The node whose cable came back yields (lvs-link-watch, or keepalived's FAULT state);
        # timed inside it, since polling both nodes over SSH took up to a second per round on a slow host.
        released = d.until_on(active, f"! {vip_here(net)}", f"{active.name} released the VIP", 60)
        assert d.heal_at is not None and d.fault_at is not None  # set by d.heal and d.fault
        d.extra["one_holder_s"] = round(released - (d.heal_at - d.fault_at), 2)
        assert vip_holders(cluster) == [standby], (
            "after the partition the VIP must stay with the node the clients were turned to"
        )
        # The cut-off node's heartbeat was killed and starts afresh (lvs-link-watch): the peer
        # takes it as a join. A heartbeat that hears its partitioned peer return restarts on both
        # nodes instead, and each gives the VIP up on the way: the client watches 30 s for that.
        listeners = cluster.role(Role.loadbalancer) if on_heartbeat else [active]  # a VRRP master hears no one
        d.until(
            lambda: all(m.execute(hears(cluster, standby_of(cluster, m)))[0] == 0 for m in listeners),
            "the returned node hears the holder",
            60,
        )
        time.sleep(max(0.0, 30.0 - (time.monotonic() - d.heal_at)))
        d.extra["holder_restarts"] = heartbeat_restarts(standby) - holder_restarts_before if on_heartbeat else 0
        # Then one of them must serve with health checks for good: once, both heartbeats came
        # back without either taking the group, and the VIP went with the last release.
        converged(cluster)
    after_heal = [r for r in d.traffic.requests if r[4] == "new" and r[0] > d.heal_at]
    d.note("failed_after_heal", sum(not r[2] for r in after_heal))
    d.note("failures_after_heal", failures_after(after_heal, d.heal_at))
    d.note("table_entries_of_failures", table_entries_of(standby, d.extra["failures_after_heal"]))
    assert_served_through(d)
    assert d.extra["one_holder_s"] <= 2.0, (
        f"two balancers held the VIP for {d.extra['one_holder_s']} s after the cable was back"
    )
    assert d.extra["failed_after_heal"] == 0, (
        f"{d.extra['failed_after_heal']} of {len(after_heal)} new connections failed after the partition healed: "
        f"{d.extra['failures_after_heal']}, {d.extra['table_entries_of_failures']}"
    )
    assert len(vip_holders(cluster)) == 1
    assert d.extra["holder_restarts"] == 0, (
        f"heartbeat on {standby.name}, which served, restarted after the partition: "
        "the cut-off node came back with its old heartbeat"
    )


def test_drill_webserver_power_loss(
    cluster: RunningCluster, report: dict[str, Any], drills: list[dict[str, Any]]
) -> None:
    """Last, since the node stays down: a web server loses power under client load. ldirectord
    takes it out of rotation within check_bound, and from then on no new connection is sent
    to it (expire_nodest_conn: IPVS forgets the dead server's connections, and with quiescent
    servers expire_quiescent_template its persistence templates; conn_reuse_mode 3: a client's
    recycled port is scheduled anew instead of following its old entry to the dead server)."""
    net, lb = cluster.model.network, cluster.model.balancer
    webs = cluster.model.by_role(Role.webserver)
    if len(webs) < 2:
        pytest.skip("needs a second web server to take the traffic")
    active = converged(cluster)  # not while the last drill's handover still settles
    victim = webs[-1]
    active.wait_until_succeeds(scheduled(net, lb, webs), timeout=60)
    bound = check_bound(lb)

    with drill(
        cluster,
        drills,
        "f-power-loss-webserver",
        f"Power loss of a web server ({victim.name})",
        bound_s=bound,
        bounded="out_of_rotation_s",
    ) as d:
        d.fault(f"power off {victim.name}", cluster.machine(victim).crash)
        detected = d.until_on(
            active, f"! {scheduled(net, lb, [victim])}", f"{victim.name} out of rotation", timeout=bound + 30
        )
        d.extra["out_of_rotation_s"] = round(detected, 2)
        removed = time.monotonic()
        time.sleep(3.0)  # every new connection from here on must succeed
    late = [r for r in d.traffic.requests if r[4] == "new" and r[0] > removed]
    # A powered-off server completes no handshake, so only a connection that never connected can
    # have been sent to it. One that connected and then failed reached a live server that answered
    # late: on the five-node emulated cluster, the server that took every pinned client over
    # stalled 0.4 s once (two answers past the client's 250 ms). Those are counted apart.
    d_failed_after = sum(not r[2] and str(r[3]).startswith("connect") for r in late)
    d.note("late_answers_after_removal", sum(not r[2] and not str(r[3]).startswith("connect") for r in late))
    report["webserver_out_of_rotation_s"] = round(detected, 2)
    report["webserver_failed_after_removal"] = f"{d_failed_after}/{len(late)}"
    d.note("failed_after_removal", d_failed_after)
    failures = d.note("failures_after_removal", failures_after(late, removed))
    entries = d.note("table_entries_of_failures", table_entries_of(active, failures))
    assert detected <= bound, (
        f"{victim.name} out of rotation after {detected:.2f} s, "
        f"bound check_interval + check_timeout + {CHECK_ROUND_S} = {bound} s"
    )
    assert late and d_failed_after == 0, (
        f"{d_failed_after} of {len(late)} new connections went unanswered after {victim.name} left the table: "
        f"{failures}, {entries}"
    )
