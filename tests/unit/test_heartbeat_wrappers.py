"""imgbuild's wrappers around heartbeat on a balancer, against stub commands: harc's takeover fast
path, mach_down taking our own group back, and heartbeat-follow outliving heartbeat's self-restart.
They call heartbeat's files by absolute path, so each runs in a private mount namespace where the
scratch root's etc/ and usr/ lie over the system's (and the element's usr/lib, the real peers.sh,
between them)."""

from __future__ import annotations

import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest
from shellstubs import calls, private_mounts, stub_env, write_stubs

pytestmark = private_mounts

STATIC = Path(__file__).parents[2] / "elements/imgbuild-loadbalancer/static"
SCRIPTS = STATIC / "usr/lib/imgbuild"
HA_CF = "keepalive 250ms\nnode loadb1\nnode loadb2\nping 192.168.0.1\n"


def in_namespace(root: Path, *argv: str) -> list[str]:
    """argv in a private mount namespace with root's etc/ and usr/ over the system's, and root/uptime
    as /proc/uptime when it exists."""
    mounts = []
    for top in ("etc", "usr/lib", "usr/libexec", "usr/share"):
        (root / top).mkdir(parents=True, exist_ok=True)
        layers = [root / top, *([STATIC / top] if (STATIC / top).is_dir() else []), Path("/", top)]
        lowerdir = ":".join(str(layer) for layer in layers)
        mounts.append(f"mount -t overlay overlay -o lowerdir={shlex.quote(lowerdir)} /{top}")
    if (root / "uptime").exists():
        mounts.append(f"mount --bind {shlex.quote(str(root / 'uptime'))} /proc/uptime")
    script = " && ".join(mounts) + ' && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


def run(root: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    env = stub_env(root, **env)
    return subprocess.run(in_namespace(root, *argv), env=env, capture_output=True, text=True, check=False, timeout=20)


# -- harc ---------------------------------------------------------------------------------------

# chrt runs its command with the policy it was given, as $CHRT; takeover logs what it got.
CHRT = 'export CHRT="$1 $2"; shift 2; exec "$@"'
CHRT_REFUSED = 'echo "chrt: failed to set pid 0\'s policy: Operation not permitted" >&2; exit 1'


@pytest.fixture
def harc_root(tmp_path: Path) -> Path:
    (tmp_path / "uptime").write_text("4711.25 9000.50\n")
    write_stubs(
        tmp_path,
        {
            "chrt": CHRT,
            "usr/lib/imgbuild/takeover": 'echo "TAKEOVER_AT=$TAKEOVER_AT CHRT=${CHRT:-}" >> "$S/calls"',
            "etc/ha.d/harc.distrib": "exit ${DISTRIB_STATUS:-0}",
        },
    )
    return tmp_path


def test_harc_runs_the_takeover_at_real_time_priority_first(harc_root: Path) -> None:
    result = run(harc_root, str(SCRIPTS / "harc"), "status", HA_st="dead", HA_src="loadb1")
    assert result.returncode == 0, result.stderr
    assert calls(harc_root) == [
        "chrt --rr 1 /usr/lib/imgbuild/takeover loadb1",
        "takeover loadb1",
        "TAKEOVER_AT=4711.25 CHRT=--rr 1",  # when harc heard it, for LVSDirector's log line
        "harc.distrib status",
    ]


def test_harc_without_real_time_runs_the_takeover_plainly(harc_root: Path) -> None:
    write_stubs(harc_root, {"chrt": CHRT_REFUSED})
    result = run(harc_root, str(SCRIPTS / "harc"), "status", HA_st="dead", HA_src="loadb1")
    assert result.returncode == 0, result.stderr
    assert calls(harc_root) == [
        "chrt --rr 1 /usr/lib/imgbuild/takeover loadb1",
        "takeover loadb1",
        "TAKEOVER_AT=4711.25 CHRT=",
        "harc.distrib status",
    ]


@pytest.mark.parametrize(("args", "state"), [(["status"], "active"), (["status"], ""), (["ifstat", "eth1"], "dead")])
def test_harc_leaves_every_other_event_to_heartbeats_harc(harc_root: Path, args: list[str], state: str) -> None:
    result = run(harc_root, str(SCRIPTS / "harc"), *args, HA_st=state, HA_src="loadb1")
    assert result.returncode == 0, result.stderr
    assert calls(harc_root) == ["harc.distrib " + " ".join(args)]


def test_harc_exits_as_heartbeats_harc(harc_root: Path) -> None:
    assert run(harc_root, str(SCRIPTS / "harc"), "status", HA_st="active", DISTRIB_STATUS="3").returncode == 3


# -- mach_down ----------------------------------------------------------------------------------

GROUPS = ["LVSDirector::192.168.0.105/24/eth0/192.168.0.255::ldirectord.cf", "IPaddr::192.168.0.107"]


@pytest.fixture
def mach_down_root(tmp_path: Path) -> Path:
    (tmp_path / "etc/ha.d").mkdir(parents=True)
    (tmp_path / "etc/ha.d/ha.cf").write_text(HA_CF)
    # heartbeat's shell library: where its binaries are, and its log
    shellfuncs = 'HA_NOARCHBIN=/usr/lib/heartbeat\nha_log() { echo "ha_log $*" >> "$S/calls"; }\n'
    (tmp_path / "etc/ha.d/shellfuncs").write_text(shellfuncs)
    (tmp_path / "keys").write_text("".join(f"{group}\n" for group in GROUPS))
    write_stubs(
        tmp_path,
        {
            "usr/share/heartbeat/mach_down.distrib": "exit ${DISTRIB_STATUS:-0}",
            "usr/lib/heartbeat/ResourceManager": '[ "$1" != listkeys ] || cat "$S/keys"',
        },
    )
    return tmp_path


def mach_down(root: Path, node: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run(root, str(SCRIPTS / "mach_down"), node, HA_CURHOST="loadb2", **env)


@pytest.mark.parametrize("node", ["loadb1", "LOADB1"])
def test_mach_down_takes_our_groups_back_from_a_dead_peer(mach_down_root: Path, node: str) -> None:
    result = mach_down(mach_down_root, node)
    assert result.returncode == 0, result.stderr
    taken = []
    for group in GROUPS:
        taken += [
            f"ha_log info: {SCRIPTS / 'mach_down'}: taking our resource group {group} back from dead node loadb1",
            f"ResourceManager takegroup {group}",
        ]
    assert calls(mach_down_root) == [f"mach_down.distrib {node}", "ResourceManager listkeys loadb2", *taken]


@pytest.mark.parametrize("node", ["192.168.0.1", "loadb2", "", "loadb"])
def test_mach_down_takes_nothing_for_a_ping_node_ourselves_or_a_stranger(mach_down_root: Path, node: str) -> None:
    result = mach_down(mach_down_root, node)
    assert result.returncode == 0, result.stderr
    assert calls(mach_down_root) == [f"mach_down.distrib {node}"]


def test_mach_down_stops_where_heartbeats_failed(mach_down_root: Path) -> None:
    assert mach_down(mach_down_root, "loadb1", DISTRIB_STATUS="4").returncode == 4
    assert calls(mach_down_root) == ["mach_down.distrib loadb1"]


# -- heartbeat-follow ---------------------------------------------------------------------------

FOLLOW = SCRIPTS / "heartbeat-follow"


@pytest.fixture
def follow_root(tmp_path: Path) -> Path:
    """heartbeat runs HB_RUNS seconds and exits HB_STATUS; pgrep finds the pids of $S/masters in turn."""
    (tmp_path / "masters").write_text("")
    write_stubs(
        tmp_path,
        {
            "usr/libexec/heartbeat/heartbeat": 'sleep "${HB_RUNS:-0}"; exit "${HB_STATUS:-0}"',
            "pgrep": 'read -r pid < "$S/masters" || exit 1; sed -i 1d "$S/masters"; echo "$pid"',
            "logger": "",
        },
    )
    return tmp_path


def test_follow_exits_as_heartbeat_when_it_did_not_restart(follow_root: Path) -> None:
    result = run(follow_root, str(FOLLOW), HB_STATUS="3")
    assert result.returncode == 3, result.stderr
    assert calls(follow_root) == ["heartbeat -f", "pgrep -o -x heartbeat"]


def test_follow_stays_while_the_restarted_heartbeat_runs(follow_root: Path) -> None:
    """The unit's main process must not exit while the heartbeat it restarted into runs: systemd
    would stop the unit, and that heartbeat with it."""
    restarted = subprocess.Popen(["sleep", "3"])
    (follow_root / "masters").write_text(f"{restarted.pid}\n")
    follow = subprocess.Popen(in_namespace(follow_root, str(FOLLOW)), env=stub_env(follow_root, HB_STATUS="1"))
    try:
        line = f"logger -t heartbeat-follow -p local0.info heartbeat restarted itself as {restarted.pid}; following it"
        deadline = time.monotonic() + 2
        while line not in calls(follow_root):
            assert time.monotonic() < deadline and follow.poll() is None, calls(follow_root)
            time.sleep(0.05)
        time.sleep(0.2)
        assert restarted.poll() is None and follow.poll() is None, "it left while the restarted heartbeat ran"
        restarted.wait(timeout=5)  # reaped: tail --pid waits for a zombie too
        assert follow.wait(timeout=5) == 0, "heartbeat's own exit status was the restart's, not a failure"
    finally:
        for process in (follow, restarted):
            process.kill()
            process.wait()
    assert calls(follow_root)[-1] == "pgrep -o -x heartbeat"


def test_follow_outlives_the_term_of_a_stop_until_heartbeat_exits(follow_root: Path) -> None:
    """systemd sends TERM after ExecStop (heartbeat -k): heartbeat is still releasing its resources."""
    env = stub_env(follow_root, HB_RUNS="1", HB_STATUS="0")
    follow = subprocess.Popen(in_namespace(follow_root, str(FOLLOW)), env=env)
    try:
        deadline = time.monotonic() + 5
        while "heartbeat -f" not in calls(follow_root):
            assert time.monotonic() < deadline and follow.poll() is None, calls(follow_root)
            time.sleep(0.02)
        follow.send_signal(signal.SIGTERM)
        assert follow.wait(timeout=10) == 0
    finally:
        follow.kill()
        follow.wait()
    assert calls(follow_root) == ["heartbeat -f", "pgrep -o -x heartbeat"]
