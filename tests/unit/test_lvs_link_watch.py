"""lvs-link-watch against stub commands in a scratch root: a balancer whose every heartbeat link
lost its carrier for deadtime kills its heartbeat and drops the VIP, and starts a fresh heartbeat
when a cable is back; shorter or partial losses only make it yield to a peer holding the VIP."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from shellstubs import calls, stub_env, write_stubs

SCRIPT = Path(__file__).parents[2] / "elements/imgbuild-loadbalancer/static/usr/lib/imgbuild/lvs-link-watch"
HA_CF = "keepalive 50ms\ndeadtime 300ms\nbcast eth0 eth1\nauto_failback off\n"
DEADTIME_S = 0.3
STATE = "192.168.0.105/24/eth0/192.168.0.255 ldirectord.cf"

STUBS = {
    # link events come from a FIFO the test writes to
    "bin/ip": 'exec cat "$S/events"',
    "bin/systemctl": """
case "$*" in
  "-q is-active heartbeat.service") [ -e "$S/heartbeat-active" ] ;;
  "kill --signal=KILL heartbeat.service") rm -f "$S/heartbeat-active" ;;
  "start --no-block heartbeat.service") touch "$S/heartbeat-active" ;;
esac""",
    "bin/logger": "",
    "etc/ha.d/resource.d/LVSDirector": "",
}


class Watch:
    """The script running on a scratch root, fed link events by hand."""

    def __init__(self, root: Path) -> None:
        self.root = root
        os.mkfifo(root / "events")
        env = stub_env(root, IMGBUILD_ROOT=str(root))
        self.process = subprocess.Popen([str(SCRIPT)], env=env, start_new_session=True)
        self.events = open(root / "events", "w")  # noqa: SIM115 - open for the watch's lifetime

    def carrier(self, **links: int) -> None:
        for link, up in links.items():
            (self.root / f"sys/class/net/{link}/carrier").write_text(f"{up}\n")
        self.events.write("2: eth0: <BROADCAST,MULTICAST> mtu 1500 state DOWN\n")
        self.events.flush()

    def calls(self) -> list[str]:
        return calls(self.root)

    def wait_for(self, call: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while call not in self.calls():
            assert time.monotonic() < deadline, f"no {call!r} in {self.calls()}"
            time.sleep(0.02)

    def close(self) -> None:
        self.events.close()
        os.killpg(self.process.pid, 9)
        self.process.wait(timeout=5)


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[Watch]:
    for rel in ("bin", "etc/ha.d/resource.d", "run", "sys/class/net/eth0", "sys/class/net/eth1"):
        (tmp_path / rel).mkdir(parents=True)
    write_stubs(tmp_path, STUBS)
    (tmp_path / "etc/ha.d/ha.cf").write_text(HA_CF)
    (tmp_path / "run/imgbuild-lvsdirector").write_text(STATE + "\n")
    (tmp_path / "heartbeat-active").touch()
    w = Watch(tmp_path)
    yield w
    w.close()


def test_cut_off_for_deadtime_kills_heartbeat_drops_the_vip_and_rejoins_fresh(watch: Watch) -> None:
    watch.carrier(eth0=0, eth1=0)
    watch.wait_for("systemctl kill --signal=KILL heartbeat.service")  # no cgroup.kill here
    watch.wait_for(f"LVSDirector {STATE} drop")
    assert (watch.root / "run/imgbuild-cut-off").exists()
    watch.carrier(eth0=1)
    watch.wait_for("systemctl start --no-block heartbeat.service")
    assert not (watch.root / "run/imgbuild-cut-off").exists()
    assert watch.calls().count("systemctl kill --signal=KILL heartbeat.service") == 1


def test_a_flap_shorter_than_deadtime_leaves_heartbeat_alone(watch: Watch) -> None:
    watch.carrier(eth0=0, eth1=0)
    watch.carrier(eth0=1, eth1=1)
    time.sleep(DEADTIME_S * 3)
    assert not any(c.startswith("systemctl kill") for c in watch.calls())
    assert f"LVSDirector {STATE} yield" in watch.calls()


def test_one_link_left_is_no_partition(watch: Watch) -> None:
    watch.carrier(eth0=1, eth1=0)
    time.sleep(DEADTIME_S * 3)
    assert not any(c.startswith("systemctl") for c in watch.calls() if "is-active" not in c)
    assert f"LVSDirector {STATE} yield" in watch.calls()


def test_a_stopped_heartbeat_is_not_touched(watch: Watch) -> None:
    (watch.root / "heartbeat-active").unlink()
    watch.carrier(eth0=0, eth1=0)
    time.sleep(DEADTIME_S * 3)
    watch.carrier(eth0=1, eth1=1)
    time.sleep(0.3)
    assert not any(c.startswith(("systemctl kill", "systemctl start")) for c in watch.calls())
    assert f"LVSDirector {STATE} drop" not in watch.calls()


def test_the_kill_takes_the_whole_cgroup_at_once(watch: Watch) -> None:
    cgroup = watch.root / "sys/fs/cgroup/system.slice/heartbeat.service"
    cgroup.mkdir(parents=True)
    (cgroup / "cgroup.kill").touch()
    (cgroup / "cgroup.procs").touch()  # empty: every process gone
    watch.carrier(eth0=0, eth1=0)
    watch.wait_for(f"LVSDirector {STATE} drop")
    assert (cgroup / "cgroup.kill").read_text() == "1\n"
    assert not any(c.startswith("systemctl kill") for c in watch.calls())
