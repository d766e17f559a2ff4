"""The cluster model: the seed's defaults, and one clear line for every invalid description."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imgbuild import configfile, model
from imgbuild.errors import ConfigError


def test_default_is_the_seed_cluster() -> None:
    c = model.Cluster()
    assert [(n.name, n.role.value, str(n.address)) for n in c.nodes] == [
        ("webserver1", "webserver", "192.168.0.101"),
        ("webserver2", "webserver", "192.168.0.102"),
        ("loadb1", "loadbalancer", "192.168.0.103"),
        ("loadb2", "loadbalancer", "192.168.0.104"),
    ]
    assert str(c.network.vip) == "192.168.0.105"
    assert c.balancer.scheduler == "rr" and not c.balancer.quiescent  # the seed says yes: see the model
    assert (c.balancer.check_interval, c.balancer.check_timeout) == (1, 1)  # the seed: 2, 10
    assert not c.heartbeat.auto_failback and c.heartbeat.auth_method == "sha1"
    # the second heartbeat path: one address and one NIC per balancer, none for web servers
    assert [(str(c.link_address(n)), c.link_mac(n)) for n in c.by_role(model.Role.loadbalancer)] == [
        ("10.255.255.1", "52:56:0a:ff:ff:01"),
        ("10.255.255.2", "52:56:0a:ff:ff:02"),
    ]
    assert c.link_address(c.node("webserver1")) is None


def test_init_file_round_trips_to_the_default() -> None:
    text = configfile.render(model.Cluster())
    assert model.parse(tomllib.loads(text)) == model.Cluster()
    assert text.count("#") > 20, "the written file explains its fields"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"nodes": [{"name": "x", "role": "webserver", "address": "10.0.0.1"}]},
            "node x: address 10.0.0.1 is not a host address",
        ),
        ({"network": {"vip": "192.168.0.101"}}, "network.vip 192.168.0.101 is also a node address"),
        ({"network": {"vip": "10.1.1.1"}}, "network.vip 10.1.1.1 is not a host address"),
        (
            {"heartbeat": {"keepalive_ms": 1000, "deadtime_ms": 2000}},
            "deadtime_ms must be more than twice keepalive_ms",
        ),
        ({"heartbeat": {"auth_method": "crc"}}, "auth_method 'crc' authenticates nothing"),
        ({"balancer": {"scheduler": "fifo"}}, "balancer.scheduler"),
        ({"balancer": {"persistence": 0}}, "balancer.persistence"),
        # Linux 6.2 added twos: bookworm's kernel has no such module
        (
            {"balancer": {"scheduler": "twos"}, "build": {"release": "bookworm"}},
            "balancer.scheduler 'twos' is not in bookworm's kernel; use build.release = 'trixie'",
        ),
        (
            {"nodes": [{"name": "Bad_Name", "role": "webserver", "address": "192.168.0.1"}]},
            "nodes[0].name: not a valid hostname",
        ),
        ({"colour": "red"}, "colour: unknown key"),
        ({"heartbeat": {"link": {"interface": "eth0"}}}, "heartbeat.link.interface eth0 is network.interface"),
        ({"heartbeat": {"link": {"subnet": "192.168.0.0/30"}}}, "overlaps network.subnet 192.168.0.0/24"),
        ({"heartbeat": {"link": {"subnet": "10.9.9.0/31"}}}, "fewer than two host addresses"),
        ({"balancer": {"port": 80, "sheduler": "rr"}}, "balancer.sheduler: unknown key"),
        # a trailing newline must not pass a pattern: it would split haresources and user-data lines
        ({"name": "ultramonkey\n"}, "name: not a valid hostname"),
        ({"network": {"domain": "example.com\n"}}, "network.domain: not a valid DNS domain"),
        (
            {"nodes": [{"name": "loadb1\n", "role": "webserver", "address": "192.168.0.1"}]},
            "nodes[0].name: not a valid hostname",
        ),
        (
            {"nodes": [{"name": "w", "role": "webserver", "address": "192.168.0.1", "mac": "52:54:00:00:00:01\n"}]},
            "nodes[0].mac: not a MAC",
        ),
        ({"admin": {"ssh_keys": ["ssh-ed25519 AAAA x\n"]}}, "is not an OpenSSH public key line"),
        ({"admin": {"ssh_keys": ["ssh-ed25519 AAAA x\rcommand"]}}, "is not an OpenSSH public key line"),
        ({"build": {"mirror": "http://deb.example.org/debian\n"}}, "is not an http(s):// or file:// URL"),
    ],
)
def test_invalid_descriptions_get_one_line(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        model.parse(data, "cluster.toml")
    text = str(err.value)
    assert message in text and "\n" not in text and text.startswith("cluster.toml: ")
    assert err.value.exit_code == 2


@pytest.mark.parametrize("release", model.RELEASES)
def test_every_scheduler_of_the_release_is_accepted(release: str) -> None:
    for scheduler in model.SCHEDULERS[release]:
        cluster = model.parse({"balancer": {"scheduler": scheduler}, "build": {"release": release}})
        assert f"ip_vs_{scheduler}" in model.ipvs_modules(release) and cluster.balancer.scheduler == scheduler


def test_another_release_is_validated_again() -> None:
    cluster = model.parse({"balancer": {"scheduler": "twos"}})
    assert cluster.build.release == "trixie"
    with pytest.raises(
        ConfigError, match=r"^--release bookworm: balancer.scheduler 'twos' is not in bookworm's kernel"
    ):
        cluster.for_release("bookworm")
    assert model.Cluster().for_release("bookworm").for_release("trixie") == model.Cluster()


def _nodes(lbs: int, webs: int, dup: bool = False) -> list[dict[str, str]]:
    nodes = [{"name": f"lb{i}", "role": "loadbalancer", "address": f"192.168.0.{10 + i}"} for i in range(lbs)]
    nodes += [{"name": f"web{i}", "role": "webserver", "address": f"192.168.0.{50 + i}"} for i in range(webs)]
    if dup and nodes:
        nodes.append(dict(nodes[0]))
    return nodes


@settings(max_examples=60, deadline=None)
@given(lbs=st.integers(0, 4), webs=st.integers(0, 4), dup=st.booleans())
def test_topology_rules(lbs: int, webs: int, dup: bool) -> None:
    data = {"nodes": _nodes(lbs, webs, dup)}
    valid = lbs == 2 and webs >= 1 and not dup
    if valid:
        assert len(model.parse(data).nodes) == lbs + webs
    else:
        with pytest.raises(ConfigError):
            model.parse(data)


@settings(max_examples=60, deadline=None)
@given(
    keepalive=st.integers(100, 5000),
    deadtime=st.integers(200, 20000),
    warntime=st.integers(100, 20000),
    initdead=st.integers(200, 60000),
)
def test_heartbeat_timing_rules(keepalive: int, deadtime: int, warntime: int, initdead: int) -> None:
    data = {
        "heartbeat": {
            "keepalive_ms": keepalive,
            "deadtime_ms": deadtime,
            "warntime_ms": warntime,
            "initdead_ms": initdead,
        }
    }
    valid = deadtime > 2 * keepalive and keepalive <= warntime < deadtime and initdead >= deadtime
    if valid:
        model.parse(data)
    else:
        with pytest.raises(ConfigError):
            model.parse(data)


def test_load_missing_file_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="imgbuild init"):
        model.load(tmp_path / "nope.toml")


def test_macs_are_stable_and_distinct() -> None:
    c = model.Cluster()
    macs = [c.mac(n) for n in c.nodes]
    assert len(set(macs)) == 4 and all(m.startswith("52:54:") for m in macs)
