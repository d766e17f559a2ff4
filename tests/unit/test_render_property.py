"""Any accepted cluster renders files that parse: generated clusters, every artefact read back.

A value that slipped a newline or a quote into a rendered file would show up here as a YAML
error, a stray directive or a wrong count of node lines.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgbuild import model
from imgbuild.builder import pxe
from imgbuild.cloudinit import render

HOSTNAME = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
COMMENT = st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs", "Cc")), max_size=20)
HA_CF = (
    "logfacility",
    "logfile",
    "keepalive",
    "warntime",
    "deadtime",
    "initdead",
    "udpport",
    "bcast",
    "mcast",
    "ucast",
    "auto_failback",
    "node",
    "ping",
    "respawn",
    "apiauth",
    "crm",
)
IPXE = ("#!ipxe", "kernel", "initrd", "boot", "iseq", "echo", "exit")
PXELINUX = ("DEFAULT", "LABEL", "KERNEL", "INITRD", "APPEND")


@st.composite
def clusters(draw: st.DrawFn) -> dict[str, Any]:
    prefix = draw(st.integers(16, 26))
    base = draw(st.sampled_from(["10.0.0.0", "172.16.0.0", "192.168.0.0", "100.64.0.0"]))
    subnet = ipaddress.IPv4Network(f"{base}/{prefix}")
    hosts = draw(st.lists(st.integers(1, min(subnet.num_addresses - 2, 4000)), min_size=6, max_size=12, unique=True))
    addr = [str(subnet.network_address + h) for h in hosts]
    names = draw(st.lists(HOSTNAME, min_size=len(hosts), max_size=len(hosts), unique=True))
    webs = len(hosts) - 4  # two balancers, the VIP, a gateway
    nodes = [{"name": names[i], "role": "loadbalancer", "address": addr[i]} for i in range(2)]
    nodes += [{"name": names[2 + i], "role": "webserver", "address": addr[2 + i]} for i in range(webs)]
    page = model.served_pages()["ldirector.html"].strip()
    start = draw(st.integers(0, len(page) - 1))
    receive = page[start : draw(st.integers(start + 1, len(page)))]
    data: dict[str, Any] = {
        "name": draw(HOSTNAME),
        "nodes": draw(st.permutations(nodes)),
        "network": {
            "subnet": str(subnet),
            "vip": addr[-2],
            "domain": f"{draw(HOSTNAME)}.{draw(HOSTNAME)}",
            "interface": draw(st.from_regex(r"[a-z][a-z0-9]{0,14}", fullmatch=True)),
        },
        "balancer": {
            "port": draw(st.integers(1, 65535)),
            "scheduler": draw(st.sampled_from(model.SCHEDULERS[model.Build().release])),
            "quiescent": draw(st.booleans()),
            "check_receive": receive,
        },
        "heartbeat": {
            "transports": draw(
                st.lists(st.sampled_from(["bcast", "mcast", "ucast"]), min_size=1, max_size=3, unique=True)
            ),
            "link": {"enabled": draw(st.booleans())},
        },
        "admin": {
            "ssh_keys": [
                f"ssh-ed25519 AAAAC3Nza{i} {c}".rstrip() for i, c in enumerate(draw(st.lists(COMMENT, max_size=3)))
            ]
        },
    }
    if data["network"]["interface"] == "eth1":
        data["heartbeat"]["link"]["interface"] = "eth2"
    if draw(st.booleans()):
        data["network"]["gateway"] = addr[-1]
    if draw(st.booleans()):
        data["balancer"]["persistence"] = draw(st.integers(1, 86400))
    if draw(st.booleans()):
        data["admin"]["password"] = draw(
            st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs", "Cc")), min_size=8, max_size=40)
        )
    return data


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=clusters(), secret=st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
def test_every_rendered_artefact_parses(data: dict[str, Any], secret: str) -> None:
    cluster = model.parse(data)
    keys = list(cluster.admin.ssh_keys) or ["ssh-ed25519 AAAAC3Nza generated"]
    secrets = render.Secrets(
        authkeys=secret, admin_keys=keys, password_hash="$6$x$y" if cluster.admin.password else None
    )
    for node in cluster.nodes:
        seed = render.render_node(cluster, node, secrets)
        user_data = yaml.safe_load(seed.user_data)
        assert seed.user_data.startswith("#cloud-config\n") and user_data["hostname"] == node.name
        assert user_data["users"][0]["ssh_authorized_keys"] == keys
        files = {f["path"]: f["content"] for f in user_data["write_files"]}
        assert files == {f["path"]: f["content"] for f in render.node_files(cluster, node, secrets)}
        network = yaml.safe_load(seed.network_config)
        assert network["ethernets"][cluster.network.interface]["addresses"] == [
            f"{node.address}/{cluster.network.subnet.prefixlen}"
        ]
        assert yaml.safe_load(seed.meta_data)["local-hostname"] == node.name
        if node.role == model.Role.loadbalancer:
            ha_cf = _lines(files["/etc/ha.d/ha.cf"])
            assert all(line.split()[0] in HA_CF for line in ha_cf), ha_cf
            assert [line.split()[1] for line in ha_cf if line.startswith("node ")] == [
                b.name for b in cluster.by_role(model.Role.loadbalancer)
            ]
            assert len(_lines(files["/etc/ha.d/haresources"])) == 1
            assert _lines(files["/etc/ha.d/authkeys"]) == ["auth 3", f"3 sha1 {secret}"]
            ldirectord = _lines(files["/etc/ha.d/ldirectord.cf"])
            assert all(re.fullmatch(r"\s*[a-z]+=\S.*", line) for line in ldirectord), ldirectord
            assert sum(line.strip().startswith("real=") for line in ldirectord) == len(
                cluster.by_role(model.Role.webserver)
            )
        ipxe = [*_lines(pxe.ipxe_script(cluster, node)), "#!ipxe"]
        assert all(line.split()[0] in IPXE for line in ipxe), ipxe
        assert all(line.split()[0] in PXELINUX for line in _lines(pxe.pxelinux_config(cluster, node)))
    menu = pxe.ipxe_menu(cluster).splitlines()
    assert all(line.split()[0] in IPXE for line in _lines("\n".join(menu)))
    assert sum(line.startswith("iseq ") for line in menu) == len(cluster.nodes)
