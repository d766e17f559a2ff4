"""Boot every node of the model on one private L2 segment and tear it all down afterwards."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypedDict

from imgbuild.errors import UserError
from imgbuild.model import Cluster, Node, Role, valid_hostname
from imgbuild.paths import NOCLOUD_ISO, artefact, seed_dir
from imgbuild.qemu import netns
from imgbuild.qemu.accel import Accel
from imgbuild.qemu.command import BootSpec, Hardware, Nic
from imgbuild.qemu.machine import Login, Machine
from imgbuild.verify.readiness import wait_until_booted, wait_until_ready


@dataclass
class RunningCluster:
    model: Cluster
    machines: dict[str, Machine]
    client: IPv4Address
    workdir: Path
    ssh_key: Path
    accel: Accel
    netns_name: str = ""
    boot_seconds: dict[str, float] = field(default_factory=dict)
    ready_seconds: float = 0.0

    def machine(self, node: Node | str) -> Machine:
        return self.machines[node if isinstance(node, str) else node.name]

    def role(self, role: Role) -> list[Machine]:
        return [self.machines[n.name] for n in self.model.by_role(role)]


def boot_spec(node: Node, images: Path, seeds: Path, seed_name: str = NOCLOUD_ISO) -> BootSpec:
    """Direct kernel boot of the role's root filesystem. The raw one when it was built: the qcow2
    is compressed, and decompressing what a boot reads cost each node seconds of host CPU."""
    raw = artefact(images, node.role, "raw")
    return BootSpec(
        image=raw if raw.is_file() else artefact(images, node.role, "qcow2"),
        seed=seed_dir(seeds, node) / seed_name,
        kernel=artefact(images, node.role, "kernel"),
        initrd=artefact(images, node.role, "initrd"),
    )


def node_machine(
    cluster: Cluster,
    node: Node,
    boot: BootSpec,
    workdir: Path,
    accel: Accel,
    segment: netns.Segment,
    tap: str,
    ssh_key: Path,
    *,
    name: str | None = None,
    memory_mb: int = Hardware.memory_mb,
    cpus: int = Hardware.cpus,
) -> Machine:
    """A QEMU machine for one node of the cluster: its MAC on a tap of segment named tap, its
    address, the admin's login, and a balancer's heartbeat-link NIC (n1) on the link bridge."""
    nics = [Nic(segment.add_tap(tap), cluster.mac(node))]
    if link_mac := cluster.link_mac(node):
        nics.append(Nic(segment.add_tap(f"{tap}l", netns.LINK_BRIDGE), link_mac))
    return Machine(
        name or node.name,
        boot,
        workdir,
        accel,
        hardware=Hardware(memory_mb, cpus, tuple(nics)),
        login=Login(str(node.address), cluster.admin.user, ssh_key),
    )


def boot_order(cluster: Cluster) -> list[Node]:
    """Web servers first: ldirectord checks them as soon as the balancers are up."""
    return sorted(cluster.nodes, key=lambda n: n.role != Role.webserver)


def boot_slots(cluster: Cluster, accel: Accel, cpus: int) -> int:
    """How many nodes boot at once: all under KVM; under TCG one vCPU per host core, the next
    starting as soon as cloud-init has finished on one. Emulated first boots are CPU-bound, and
    more of them than cores only slows each down (four at once on two cores took 250 s here)."""
    if accel == "kvm":
        return len(cluster.nodes)
    return max(1, (os.cpu_count() or 1) // cpus)


@contextmanager
def running(
    cluster: Cluster,
    *,
    images: Path,
    seeds: Path,
    workdir: Path,
    ssh_key: Path,
    accel: Accel,
    memory_mb: int,
    cpus: int,
    ready_timeout: float,
    on_status: Callable[[str, str], None],
    keep: Callable[[RunningCluster], bool] = lambda _: False,
) -> Iterator[RunningCluster]:
    """Namespace, bridge, one tap and one QEMU per node; everything is removed on exit, also on errors and Ctrl-C.

    When keep(cluster) says so at the end, the namespace and the nodes are left running (see `remove_kept`).
    """
    client = cluster.free_address()  # where the checks run from
    name = f"{netns.PREFIX}{os.getpid()}"
    netns.remove_orphans()
    with ExitStack() as stack:
        segment = stack.enter_context(netns.segment(name, cluster.network.subnet, client, cluster.network.gateway))
        stack.enter_context(netns.entered(name))
        machines: dict[str, Machine] = {}

        @stack.callback
        def _cleanup() -> None:
            for machine in machines.values():
                machine.cleanup()

        for index, node in enumerate(cluster.nodes):
            spec = boot_spec(node, images, seeds)
            machines[node.name] = node_machine(
                cluster, node, spec, workdir, accel, segment, f"tap{index}", ssh_key, memory_mb=memory_mb, cpus=cpus
            )
        started = time.monotonic()
        running_cluster = RunningCluster(cluster, machines, client, workdir, ssh_key, accel, netns_name=name)

        slots = threading.Semaphore(boot_slots(cluster, accel, cpus))

        def wait(machine: Machine) -> None:
            wait_until_booted(machine, ready_timeout)
            slots.release()  # its boot's work is done: the next node starts while SSH is checked
            seconds = wait_until_ready(machine, ready_timeout)
            running_cluster.boot_seconds[machine.name] = round(seconds, 1)
            on_status(machine.name, f"ready in {seconds:.0f} s")

        def raise_failures(futures: list[Future[None]]) -> None:
            for future in futures:
                if future.done():
                    future.result()  # a node that failed to boot ends the run here

        pool = ThreadPoolExecutor(max_workers=len(machines))
        try:
            pending: list[Future[None]] = []
            for node in boot_order(cluster):
                while not slots.acquire(timeout=1):
                    raise_failures(pending)
                raise_failures(pending)
                machines[node.name].start()
                on_status(node.name, "booting")
                pending.append(pool.submit(wait, machines[node.name]))
            for future in pending:
                future.result()
        except BaseException:
            for machine in machines.values():
                machine.stop()  # waiting threads see their QEMU gone and return at once
            raise
        finally:
            pool.shutdown(wait=True)
        running_cluster.ready_seconds = round(time.monotonic() - started, 1)
        yield running_cluster
        if keep(running_cluster):
            segment.kept = True
            stack.pop_all()  # leave namespace and QEMUs running; `imgbuild verify --down` removes them
            netns.leave()


class KeptRecord(TypedDict):
    """kept.json in the cluster's state directory: what `verify --down` needs to remove a kept
    cluster (read back as untrusted input: remove_kept checks every field)."""

    netns: str
    pids: list[int]
    workdir: str
    nodes: dict[str, str]  # node name -> address, for SSH


def kept_record(cluster: RunningCluster) -> KeptRecord:
    """What `verify --down` needs to remove a kept cluster."""
    return {
        "netns": cluster.netns_name,
        "pids": [m.process.pid for m in cluster.machines.values() if m.process and m.running()],
        "workdir": str(cluster.workdir),
        "nodes": {n.name: str(n.address) for n in cluster.model.nodes},
    }


def remove_kept(record: dict[str, Any]) -> None:
    """Stop the QEMUs of a kept cluster, delete its namespace and overlays: only what the record
    proves is its own (a QEMU running on that workdir, an imgbuild namespace, a node's overlay)."""
    try:
        workdir = Path(record["workdir"])
        pids = [int(pid) for pid in record["pids"]]
        nodes = [valid_hostname(name) for name in record["nodes"]]
        namespace = record["netns"]
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(
            f"the kept record is damaged ({err}); stop its QEMUs and `ip netns delete` its namespace by hand"
        ) from None
    if not (
        workdir.is_absolute()
        and re.fullmatch(r"verify-\d{8}-\d{6}", workdir.name)
        and re.fullmatch(rf"{netns.PREFIX}\d+", namespace)
    ):
        raise UserError(f"the kept record names {workdir} and {namespace!r}, not a verify run's; remove them by hand")
    for pid in pids:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"qemu-system" in cmdline and bytes(workdir) in cmdline:  # our QEMU, never a recycled pid
            os.kill(pid, signal.SIGTERM)
    netns.delete(namespace)
    for name in nodes:
        overlay = workdir / f"{name}.qcow2"
        if overlay.is_file() and not overlay.is_symlink():
            overlay.unlink()
