"""Rendering: golden files for the seed cluster, secrets handling, seed volumes read back."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from imgbuild import model, paths, state
from imgbuild.cloudinit import credentials, render, seedfs, seeds

GOLDEN = Path(__file__).parent.parent / "golden"
SECRETS = render.Secrets(
    authkeys="0123456789abcdef" * 4, admin_keys=["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGolden golden@test"]
)
CLUSTER = model.Cluster()


def _rendered(node: model.Node) -> dict[str, str]:
    data = render.render_node(CLUSTER, node, SECRETS)
    files = {"meta-data": data.meta_data, "network-config": data.network_config, "user-data": data.user_data}
    files |= {name: content.decode() for name, content in seeds.config_drive_files(CLUSTER, node, data).items()}
    files |= {f"files{f['path']}": f["content"] for f in render.node_files(CLUSTER, node, SECRETS)}
    return files


@pytest.mark.parametrize("node", CLUSTER.nodes, ids=[n.name for n in CLUSTER.nodes])
def test_golden(node: model.Node) -> None:
    for name, content in _rendered(node).items():
        golden = GOLDEN / node.name / name
        if os.environ.get("UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(content)
        assert golden.read_text() == content, f"{golden} differs; UPDATE_GOLDEN=1 rewrites it after review"


def test_seed_values_in_balancer_files() -> None:
    files = {f["path"]: f for f in render.node_files(CLUSTER, CLUSTER.node("loadb1"), SECRETS)}
    assert (
        files["/etc/ha.d/haresources"]["content"].strip()
        == "loadb1 LVSDirector::192.168.0.105/24/eth0/192.168.0.255::ldirectord.cf"
    )
    assert files["/etc/ha.d/ipvs.rules"]["content"] == (
        "-A -t 192.168.0.105:80 -s rr\n"
        "-a -t 192.168.0.105:80 -r 192.168.0.101:80 -g -w 1\n"
        "-a -t 192.168.0.105:80 -r 192.168.0.102:80 -g -w 1\n"
    )
    ha = files["/etc/ha.d/ha.cf"]["content"]
    for line in (
        "logfacility local0",
        "bcast eth0 eth1",
        "auto_failback off",
        "node loadb1",
        "node loadb2",
        "respawn hacluster /usr/libexec/heartbeat/ipfail",
        "apiauth ipfail gid=haclient uid=hacluster",
    ):
        assert line in ha.splitlines()
    ld = files["/etc/ha.d/ldirectord.cf"]["content"]
    for line in (
        "real=192.168.0.101:80 gate",
        "real=192.168.0.102:80 gate",
        'receive="Test Page"',
        "scheduler=rr",
        "quiescent=no",
    ):
        assert line in ld
    assert files["/etc/ha.d/authkeys"]["mode"] == "0600"
    assert files["/etc/ha.d/authkeys"]["content"] == f"auth 3\n3 sha1 {SECRETS.authkeys}\n"


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"balancer": {"persistence": 300}}, "persistent=300"),
        ({"balancer": {"scheduler": "wlc"}}, "scheduler=wlc"),
        (
            {"heartbeat": {"transports": ["mcast", "ucast"]}},
            "mcast eth0 225.0.0.1 694 1 0\nmcast eth1 225.0.0.1 694 1 0\n"
            "ucast eth0 192.168.0.103\nucast eth0 192.168.0.104\nucast eth1 10.255.255.1\nucast eth1 10.255.255.2",
        ),
        ({"heartbeat": {"link": {"enabled": False}}}, "bcast eth0\n"),
        ({"heartbeat": {"link": {"interface": "ens5", "subnet": "172.31.0.0/29"}}}, "bcast eth0 ens5\n"),
        ({"heartbeat": {"auto_failback": True}}, "auto_failback on"),
        ({"heartbeat": {"auth_method": "md5"}}, "3 md5 "),
    ],
)
def test_options_reach_the_files(change: dict[str, Any], expect: str) -> None:
    cluster = model.parse(change)
    text = "".join(f["content"] for f in render.node_files(cluster, cluster.node("loadb2"), SECRETS))
    assert expect in text


def test_keepalived_stack_renders_its_own_files_only() -> None:
    cluster = model.parse({"ha": {"stack": "keepalived"}})
    files = {
        node.name: {f["path"]: f["content"] for f in render.node_files(cluster, node, SECRETS)}
        for node in cluster.nodes
    }
    # no heartbeat file, no secret; lvs-sync-watch's settings serve both stacks
    assert set(files["loadb1"]) == set(files["loadb2"]) == {"/etc/keepalived/keepalived.conf", "/etc/default/lvs-sync"}
    assert "LVS_SYNC_VIP=192.168.0.105\n" in files["loadb1"]["/etc/default/lvs-sync"]
    assert files["webserver1"] == {
        f["path"]: f["content"] for f in render.node_files(CLUSTER, CLUSTER.node("webserver1"), SECRETS)
    }
    conf = files["loadb1"]["/etc/keepalived/keepalived.conf"]
    lines = [line.strip() for line in conf.splitlines()]
    for line in (
        "vrrp_version 3",
        "lvs_sync_daemon eth0 VIP id 0",
        "state BACKUP",
        "interface eth0",
        "virtual_router_id 51",
        "priority 150",
        "advert_int 0.20",
        "nopreempt",
        "unicast_src_ip 192.168.0.103",
        "192.168.0.104",
        "check_unicast_src",
        "192.168.0.105/24 dev eth0",
        "virtual_server 192.168.0.105 80 {",
        "delay_loop 1",
        "lvs_sched rr",
        "lvs_method DR",
        "real_server 192.168.0.101 80 {",
        "real_server 192.168.0.102 80 {",
        "path /ldirector.html",
        'regex "Test Page"',
        "connect_timeout 1",
    ):
        assert line in lines, line
    assert (
        "persistence_timeout" not in conf
        and "inhibit_on_failure" not in conf
        and "192.168.0.103" not in conf.split("unicast_peer")[1]
    )
    assert "priority 100" in files["loadb2"]["/etc/keepalived/keepalived.conf"]


@pytest.mark.parametrize(
    ("change", "expect", "absent"),
    [
        ({"heartbeat": {"auto_failback": True}}, "state BACKUP", "nopreempt"),
        ({"keepalived": {"unicast": False}}, "virtual_router_id", "unicast_peer"),
        ({"keepalived": {"advert_ms": 1000, "virtual_router_id": 7}}, "advert_int 1.00", "advert_int 0.20"),
        (
            {"balancer": {"persistence": 60, "quiescent": True, "scheduler": "wlc", "port": 8080}},
            "persistence_timeout 60",
            "lvs_sched rr",
        ),
    ],
)
def test_keepalived_options_reach_the_file(change: dict[str, Any], expect: str, absent: str) -> None:
    cluster = model.parse({"ha": {"stack": "keepalived"}} | change)
    conf = render.node_files(cluster, cluster.node("loadb2"), SECRETS)[0]["content"]
    assert expect in conf and absent not in conf


def test_md5_warns_and_sha1_does_not() -> None:
    assert credentials.warnings(model.parse({"heartbeat": {"auth_method": "md5"}}))
    assert not credentials.warnings(CLUSTER)


def test_password_only_as_sha512_hash() -> None:
    secrets = render.Secrets("x" * 64, ["ssh-ed25519 AAAA k"], render.hash_password("s3cret pass"))
    text = render.render_node(CLUSTER, CLUSTER.node("webserver1"), secrets).user_data
    assert "s3cret" not in text and "$6$" in text and "ssh_pwauth: true" in text and "lock_passwd: false" in text
    assert "ssh_pwauth: false" in render.render_node(CLUSTER, CLUSTER.node("webserver1"), SECRETS).user_data


def test_masked_review_hides_secrets() -> None:
    text = render.render_node(CLUSTER, CLUSTER.node("loadb1"), SECRETS).user_data
    shown = render.masked(text, SECRETS)
    assert SECRETS.authkeys in text and SECRETS.authkeys not in shown and render.MASK in shown


def test_masked_hides_every_encoding_of_a_secret() -> None:
    """As written, as JSON escapes it and as YAML quotes it: a hash with '\\' or '"' or non-ASCII."""
    odd = render.Secrets(authkeys='s3"cr\\et€', admin_keys=[], password_hash='$6$a/b\\c"')
    text = "\n".join(
        f"{value} {json.dumps(value)} {render.yaml_string(value)}" for value in (odd.authkeys, odd.password_hash)
    )
    shown = render.masked(text, odd)
    assert "cr" not in shown and "a/b" not in shown and shown.count(render.MASK) == 6, shown


def test_state_secrets_are_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGBUILD_STATE", str(tmp_path))
    first = state.authkeys_secret("c1")
    assert len(bytes.fromhex(first)) >= 32 and first == state.authkeys_secret("c1") != state.authkeys_secret("c2")
    _key_path, public = state.admin_key("c1")
    assert public.startswith("ssh-ed25519 ") and state.admin_key("c1")[1] == public
    for path in (tmp_path / "c1").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((tmp_path / "c1").stat().st_mode) == 0o700


def test_seed_volumes_read_back(tmp_path: Path) -> None:
    out = seeds.write_node_seed(CLUSTER, CLUSTER.node("loadb1"), SECRETS, tmp_path / "seeds")
    assert stat.S_IMODE(out.stat().st_mode) == 0o700 and stat.S_IMODE((tmp_path / "seeds").stat().st_mode) == 0o700
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    label, files = seedfs.read_iso(out / paths.NOCLOUD_ISO)
    assert label == "cidata" and set(files) == {"user-data", "meta-data", "network-config"}
    assert files["user-data"] == (out / "user-data").read_bytes() and files["user-data"].startswith(b"#cloud-config\n")
    label, files = seedfs.read_iso(out / paths.CONFIG_DRIVE_ISO)
    assert label == "config-2"
    assert set(files) == {
        "openstack/latest/meta_data.json",
        "openstack/latest/user_data",
        "openstack/latest/network_data.json",
    }
    network = json.loads(files["openstack/latest/network_data.json"])
    assert network["networks"][0]["ip_address"] == "192.168.0.103"
    assert network["links"][0]["ethernet_mac_address"] == CLUSTER.mac(CLUSTER.node("loadb1"))
    # a second render replaces the directory as a whole
    seeds.write_node_seed(CLUSTER, CLUSTER.node("loadb1"), SECRETS, tmp_path / "seeds")
    assert sorted(p.name for p in (tmp_path / "seeds").iterdir()) == ["loadb1"]
