"""Each role image boots under QEMU with a minimal NoCloud seed; the serial console shows it works."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from imgbuild.builder.build import artefact
from imgbuild.cloudinit.seedfs import write_iso
from imgbuild.model import Role, ipvs_modules
from imgbuild.qemu.accel import choose
from imgbuild.qemu.machine import BootSpec, Machine

pytestmark = pytest.mark.slow

PROBES = {
    Role.loadbalancer: "echo IMGBUILD-PROBE ipvs=$(lsmod | grep -c '^ip_vs') heartbeat=$(systemctl is-active heartbeat) "
    "ldirectord=$(systemctl is-active ldirectord) IMGBUILD-END",
    Role.webserver: "echo IMGBUILD-PROBE apache=$(python3 -c \"import urllib.request as u; "
    "print('ok' if b'Test Page' in u.urlopen('http://127.0.0.1/ldirector.html').read() else 'bad')\") IMGBUILD-END",
}


def minimal_seed(path, role: Role) -> None:
    user_data = f"#cloud-config\nruncmd:\n  - [sh, -c, {json.dumps(PROBES[role])}]\n"
    write_iso(path, "cidata", {"user-data": user_data.encode(), "meta-data": f"instance-id: probe-{role.value}\n".encode()})


def boot_probe(images, tmp_path, role: Role) -> str:
    seed = tmp_path / f"{role.value}-seed.iso"
    minimal_seed(seed, role)
    boot = BootSpec(artefact(images, role, "qcow2"), seed, artefact(images, role, "kernel"), artefact(images, role, "initrd"))
    machine = Machine(f"probe-{role.value}", boot, tmp_path, choose("auto")[0], memory_mb=512)
    machine.start()
    try:
        return machine.wait_for_console(r"IMGBUILD-PROBE (.*) IMGBUILD-END", timeout=400).group(1)
    finally:
        machine.cleanup()


def test_both_roles_boot(images, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        lb, web = pool.map(lambda r: boot_probe(images, tmp_path, r), [Role.loadbalancer, Role.webserver])
    probe = dict(re.findall(r"(\w+)=(\S+)", lb))
    assert probe["ipvs"] == str(len(ipvs_modules(images.name))), lb
    assert probe["heartbeat"] != "active", "heartbeat must wait for its configuration"
    assert probe["ldirectord"] != "active", "ldirectord is started by heartbeat only"
    assert "apache=ok" in web, web
