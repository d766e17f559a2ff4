"""How `imgbuild verify` schedules the node boots."""

from __future__ import annotations

import pytest

from imgbuild.model import Cluster, Role
from imgbuild.verify.cluster import boot_order, boot_slots


def test_web_servers_boot_first():
    order = boot_order(Cluster())
    roles = [n.role for n in order]
    assert roles == sorted(roles, key=lambda r: r != Role.webserver)
    assert {n.name for n in order} == {n.name for n in Cluster().nodes}


@pytest.mark.parametrize(("accel", "cores", "cpus", "slots"), [("kvm", 2, 1, 4), ("tcg", 2, 1, 2), ("tcg", 2, 2, 1), ("tcg", 1, 2, 1), ("tcg", 8, 1, 8)])
def test_boot_slots(monkeypatch, accel, cores, cpus, slots):
    """Under TCG one vCPU per host core boots at a time; KVM boots every node at once."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert boot_slots(Cluster(), accel, cpus) == slots
