"""The LVSDirector resource script against stub commands in a scratch root: start order, and the
make-before-break stop (the VIP and the table stay until another node answers for the VIP)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from shellstubs import calls, stub_env, write_stubs

SCRIPT = Path(__file__).parents[2] / "elements/imgbuild-loadbalancer/static/etc/ha.d/resource.d/LVSDirector"
SPEC = "192.168.0.105/24/eth0/192.168.0.255"
SERVICE = "-A -t 192.168.0.105:80 -s rr"

# Stubs keep their state in files of the scratch root and log every call.
STUBS = {
    "ip": """
case "$*" in
  "-4 -o addr show dev eth0")
    [ -e "$S/vip" ] && echo "2: eth0    inet 192.168.0.105/24 brd 192.168.0.255 scope global eth0" ;;
  "addr add "*) touch "$S/vip" ;;
  "addr del "*) rm "$S/vip" ;;
esac""",
    "ipvsadm": """
case "$1" in
  -S) cat "$S/table" 2>/dev/null ;;
  -R) grep -- "^-A" > "$S/table" ;;
  -D) grep -vF -- "$2 $3 " "$S/table" > "$S/table.new"; mv "$S/table.new" "$S/table" ;;
esac
# the kernel's view, as /proc/net/ip_vs shows it (192.168.0.105:80 in hex)
{
  echo "Prot LocalAddress:Port Scheduler Flags"
  grep -q "192.168.0.105:80" "$S/table" 2>/dev/null && echo "TCP  C0A80069:0050 rr"
} > "$S/proc/net/ip_vs"
""",
    "systemd-run": 'mkdir -p "$S/run/systemd/transient"; touch "$S/run/systemd/transient/imgbuild-vip-release.service"',
    "systemctl": 'rm -f "$S/run/systemd/transient/imgbuild-vip-release.service"',
    # DAD: exit 1 (a duplicate: another node answers for the VIP) once $S/peer-has-vip exists
    "arping": '[ ! -e "$S/peer-has-vip" ]',
    "logger": "",
    "chrt": "",
    "nice": 'shift 2; exec "$@"',
    "renice": "",
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for rel in ("bin", "proc/net", "etc/ha.d/resource.d", "usr/libexec/heartbeat", "var/run", "run"):
        (tmp_path / rel).mkdir(parents=True)
    # ldirectord daemonizes: its pid in the pidfile, its command line in (the scratch) /proc
    ldirectord = (
        'echo "PERL5OPT=$PERL5OPT" >> "$S/calls"; echo $$ > "$S/var/run/ldirectord.ldirectord.cf.pid"; '
        'mkdir -p "$S/proc/$$"; printf "/usr/bin/perl\\0/usr/sbin/ldirectord" > "$S/proc/$$/cmdline"'
    )
    resources = {"LVSSyncDaemonSwap": "", "ldirectord": ldirectord}
    write_stubs(
        tmp_path,
        {
            **STUBS,
            **{f"etc/ha.d/resource.d/{name}": body for name, body in resources.items()},
            "usr/libexec/heartbeat/send_arp": "",
        },
    )
    (tmp_path / "etc/ha.d/ipvs.rules").write_text(f"{SERVICE}\n-a -t 192.168.0.105:80 -r 192.168.0.110:80 -g -w 1\n")
    return tmp_path


def run(root: Path, action: str, **extra: str) -> str:
    env = stub_env(root, LVSDIRECTOR_ROOT=str(root), **extra)
    result = subprocess.run(
        [str(SCRIPT), SPEC, "ldirectord.cf", action], env=env, capture_output=True, text=True, check=False, timeout=10
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_start_moves_the_vip_before_the_slow_parts(root: Path) -> None:
    run(root, "start")
    names = [c.split()[0] for c in calls(root)]
    assert names.index("ipvsadm") < names.index("ip") < names.index("LVSSyncDaemonSwap") < names.index("ldirectord")
    assert "ip addr add 192.168.0.105/24 brd 192.168.0.255 dev eth0" in calls(root)
    # LWP's protocol modules load with ldirectord, not inside its first check's timeout
    assert "PERL5OPT=-MLWP::Protocol::http -MURI::http -MIO::Uncompress::Gunzip" in calls(root)
    # it starts below the node's other work (its perl compile starved the forwarding at -10),
    # then its checks run at -10
    assert "nice -n 5 " + str(root / "etc/ha.d/resource.d/ldirectord") + " ldirectord.cf start" in calls(root)
    pid = (root / "var/run/ldirectord.ldirectord.cf.pid").read_text().strip()
    assert calls(root)[-1] == f"renice -n -10 -p {pid}"
    assert (root / "table").read_text().strip() == SERVICE
    assert run(root, "status").strip() == "LVSDirector 192.168.0.105 running"


def test_a_takeover_logs_its_time_and_leaves_real_time_after_the_vip(root: Path) -> None:
    (root / "proc/uptime").write_text("50.38 12.00\n")
    run(root, "start", TAKEOVER_AT="50.15")
    names = [c.split()[0] for c in calls(root)]
    assert names.index("ip") < names.index("chrt") < names.index("LVSSyncDaemonSwap")
    assert next(c for c in calls(root) if c.startswith("chrt")).startswith("chrt --other --pid 0 ")
    line = "logger -t LVSDirector -p local0.info 192.168.0.105 up on eth0, 230 ms after harc heard the peer is dead"
    deadline = time.monotonic() + 5  # the log line is written in the background
    while line not in calls(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in calls(root)


def test_a_plain_start_stays_at_its_priority(root: Path) -> None:
    run(root, "start")
    assert not [c for c in calls(root) if c.startswith("chrt")]


def test_a_second_start_keeps_the_running_table(root: Path) -> None:
    run(root, "start")
    run(root, "start")
    assert [c for c in calls(root) if c.startswith("ipvsadm -R")] == ["ipvsadm -R"]
    assert run(root, "status").strip() == "LVSDirector 192.168.0.105 running"


def test_a_start_leaves_a_running_ldirectord_alone(root: Path) -> None:
    """heartbeat starts the group again for each takeover while a healed partition restarts it:
    a second perl start of ldirectord only cost the node's CPU."""
    run(root, "start")
    assert [c for c in calls(root) if c.startswith("ldirectord")] == ["ldirectord ldirectord.cf start"]
    ldirectord = subprocess.Popen(["sleep", "30"])
    try:
        (root / "var/run/ldirectord.ldirectord.cf.pid").write_text(f"{ldirectord.pid}\n")
        (root / f"proc/{ldirectord.pid}").mkdir(parents=True)
        (root / f"proc/{ldirectord.pid}/cmdline").write_text("/usr/bin/perl\0/usr/sbin/ldirectord\0")
        run(root, "start")
        assert [c for c in calls(root) if c.startswith("ldirectord")] == ["ldirectord ldirectord.cf start"]
        assert len([c for c in calls(root) if c.startswith("renice")]) == 1, "renice only right after its own start"
        (root / f"proc/{ldirectord.pid}/cmdline").write_text("/bin/sleep\0")  # the pid now someone else's
        run(root, "start")
        starts = [c for c in calls(root) if c.startswith("ldirectord")]
        assert starts == ["ldirectord ldirectord.cf start"] * 2
    finally:
        ldirectord.kill()
        ldirectord.wait()


def test_stop_keeps_forwarding_until_the_peer_has_the_vip(root: Path) -> None:
    run(root, "start")
    assert (root / "run/imgbuild-lvsdirector").read_text().split() == [SPEC, "ldirectord.cf"]
    ldirectord = subprocess.Popen(["sleep", "30"])
    (root / "var/run/ldirectord.ldirectord.cf.pid").write_text(f"{ldirectord.pid}\n")
    run(root, "stop")
    assert ldirectord.wait(timeout=5) == -9, "ldirectord must die without its cleanup, which empties the table"
    assert not (root / "var/run/ldirectord.ldirectord.cf.pid").exists()
    assert (root / "vip").exists() and (root / "table").read_text().strip() == SERVICE
    scheduled = [c for c in calls(root) if c.startswith("systemd-run")]
    assert len(scheduled) == 1 and scheduled[0].endswith(f"LVSDirector {SPEC} ldirectord.cf release"), scheduled
    assert "LVSSyncDaemonSwap master stop" not in calls(root), "the sync master runs on while this node forwards"
    # heartbeat must not take the resource for running while its release is pending
    assert run(root, "status").strip() == "LVSDirector 192.168.0.105 stopped"
    (root / "peer-has-vip").touch()
    run(root, "release")
    assert not (root / "vip").exists() and (root / "table").read_text() == ""
    assert not (root / "run/imgbuild-lvsdirector").exists()
    assert calls(root)[-1] == "LVSSyncDaemonSwap master stop"


def test_release_waits_while_no_other_node_answers(root: Path) -> None:
    run(root, "start")
    # The peer answers on the third probe: two probes found the VIP free, so this node kept it.
    (root / "bin/arping").write_text(
        '#!/bin/sh\necho "arping $*" >> "$S/calls"\n[ "$(grep -c ^arping "$S/calls")" -lt 3 ]\n'
    )
    run(root, "release")
    assert len([c for c in calls(root) if c.startswith("arping -D")]) == 3
    assert not (root / "vip").exists()


def test_yield_releases_only_to_another_holder(root: Path) -> None:
    run(root, "start")
    ldirectord = subprocess.Popen(["sleep", "30"])
    (root / "var/run/ldirectord.ldirectord.cf.pid").write_text(f"{ldirectord.pid}\n")
    run(root, "yield")
    assert (root / "vip").exists(), "nobody else answers for the VIP: this node keeps it"
    assert ldirectord.poll() is None
    (root / "peer-has-vip").touch()
    run(root, "yield")
    assert not (root / "vip").exists() and (root / "table").read_text() == ""
    # left running, ldirectord re-created the virtual service on its next check
    assert ldirectord.wait(timeout=5) == -9


def test_start_during_a_pending_release_cancels_it(root: Path) -> None:
    run(root, "start")
    run(root, "stop")
    run(root, "start")
    assert "systemctl stop imgbuild-vip-release.service" in calls(root)
    assert run(root, "status").strip() == "LVSDirector 192.168.0.105 running"


def test_stop_without_the_vip_schedules_nothing(root: Path) -> None:
    run(root, "stop")
    assert not [c for c in calls(root) if c.startswith("systemd-run")]
    assert "LVSSyncDaemonSwap master stop" in calls(root)
    assert run(root, "status").strip() == "LVSDirector 192.168.0.105 stopped"
