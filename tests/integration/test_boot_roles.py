"""Each role image boots under QEMU with a minimal NoCloud seed; the serial console shows it works.
The loadbalancer then loses power the moment its first boot is done, and must come back whole."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imgbuild.cloudinit.seedfs import write_iso
from imgbuild.model import Cluster, Role, ipvs_modules
from imgbuild.paths import artefact
from imgbuild.qemu.accel import choose
from imgbuild.qemu.command import BootSpec, Hardware
from imgbuild.qemu.machine import Machine
from imgbuild.verify.test_cluster import check_page_command

pytestmark = pytest.mark.slow

BALANCER = Cluster().balancer  # the reference cluster's check page and port
PROBES = {
    Role.loadbalancer: "echo IMGBUILD-PROBE ipvs=$(lsmod | grep -c '^ip_vs') "
    "heartbeat=$(systemctl is-active heartbeat) ldirectord=$(systemctl is-active ldirectord) IMGBUILD-END",
    Role.webserver: f"echo IMGBUILD-PROBE apache=$({check_page_command(BALANCER)} "
    f"| grep -qF '{BALANCER.check_receive}' && echo ok || echo bad) IMGBUILD-END",
}


# Printed at the end of every boot (a per-boot script runs last, in the final stage): the host key
# made at first boot, and whether sshd can load its keys.
IDENTITY = "key=$(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key | cut -d' ' -f2) sshd=$(/usr/sbin/sshd -t && echo ok)"
PROBE = r"IMGBUILD-PROBE (.*) IMGBUILD-END"


def minimal_seed(path: Path, role: Role) -> None:
    probe = PROBES[role].replace("IMGBUILD-END", f"{IDENTITY} IMGBUILD-END")
    user_data = (
        "#cloud-config\nwrite_files:\n  - path: /var/lib/cloud/scripts/per-boot/probe\n    permissions: '0755'\n"
        f"    content: {json.dumps('#!/bin/sh' + chr(10) + probe + chr(10))}\n"
    )
    write_iso(
        path, "cidata", {"user-data": user_data.encode(), "meta-data": f"instance-id: probe-{role.value}\n".encode()}
    )


def boot_probe(images: Path, tmp_path: Path, role: Role, power_cut: bool = False) -> list[str]:
    """The probe's line of each boot: one, or with power_cut two: QEMU quits the moment the first
    boot printed its probe (what the boot wrote before its final stage must be on disk), then boots again.
    Without, the node is shut down from inside and QEMU must exit cleanly."""
    seed = tmp_path / f"{role.value}-seed.iso"
    minimal_seed(seed, role)
    boot = BootSpec(
        artefact(images, role, "qcow2"), seed, artefact(images, role, "kernel"), artefact(images, role, "initrd")
    )
    machine = Machine(f"probe-{role.value}", boot, tmp_path, choose("auto")[0], hardware=Hardware(memory_mb=512))
    machine.start()
    try:
        probes = [machine.wait_for_console_text(PROBE, timeout=400).group(1)]
        if power_cut:
            machine.crash()
            machine.restart()
            second = machine.wait_for_console_text(PROBE, timeout=400)
            assert "Failed loading yaml" not in machine.console_text(), machine.console_tail()
            probes.append(second.group(1))
        else:
            machine.shutdown(timeout=180)
            assert machine.process is not None and machine.process.returncode == 0, machine.console_tail()
        return probes
    finally:
        machine.cleanup()


def test_both_roles_boot(images: Path, tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        (lb, lb_again), (web,) = pool.map(
            lambda r: boot_probe(images, tmp_path, r, power_cut=r is Role.loadbalancer),
            [Role.loadbalancer, Role.webserver],
        )
    probe = dict(re.findall(r"(\w+)=(\S*)", lb))
    assert probe["ipvs"] == str(len(ipvs_modules(images.name))), lb
    assert probe["heartbeat"] != "active", "heartbeat must wait for its configuration"
    assert probe["ldirectord"] != "active", "ldirectord is started by heartbeat only"
    assert probe["sshd"] == "ok" and probe["key"].startswith("SHA256:"), lb
    assert "apache=ok" in web, web
    # The power cut right after the first boot cost the node neither its host key nor its SSH.
    again = dict(re.findall(r"(\w+)=(\S*)", lb_again))
    assert (again["key"], again["sshd"]) == (probe["key"], "ok"), f"first boot: {lb}; after the power cut: {lb_again}"
