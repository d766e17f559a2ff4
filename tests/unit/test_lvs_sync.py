"""LVSSyncDaemonSwap against a stub ipvsadm: a takeover's master start and the watch's ensure
never leave a backup daemon running on the director; each action's ipvsadm commands and status."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from shellstubs import calls, stub_env, write_stubs

SCRIPT = Path(__file__).parents[2] / "elements/imgbuild-loadbalancer/static/etc/ha.d/resource.d/LVSSyncDaemonSwap"

# The kernel's sync daemons as lines of $S/daemons; stopping one takes a while, as under emulation.
IPVSADM = """
case "$1 $2" in
  "-L --daemon") sed 's/$/ sync daemon (mcast=eth0, syncid=0)/' "$S/daemons" ;;
  "--start-daemon "*) sleep 0.3; echo "$2" >> "$S/daemons" ;;
  "--stop-daemon "*) sleep 0.3; grep -vx "$2" "$S/daemons" > "$S/daemons.new"; mv "$S/daemons.new" "$S/daemons" ;;
esac
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    # `ip -4 -o addr show dev eth0`: the addresses in $S/addresses
    write_stubs(tmp_path, {"ipvsadm": IPVSADM, "logger": "", "ip": 'sed "s#^#2: eth0    inet #" "$S/addresses"'})
    (tmp_path / "daemons").write_text("")
    (tmp_path / "addresses").write_text("192.168.6.2/24 brd 192.168.6.255 scope global eth0\n")
    return tmp_path


def swap(root: Path, role: str, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SCRIPT), role, action], env=stub_env(root, LVSDIRECTOR_ROOT=str(root)), text=True)


def daemons(root: Path) -> list[str]:
    return sorted((root / "daemons").read_text().split())


def ensure_from_none(root: Path) -> list[str]:
    """The watch's ensure on a node where no sync daemon runs: the daemons it leaves."""
    (root / "daemons").write_text("")
    assert swap(root, "backup", "ensure").wait(timeout=10) == 0
    return daemons(root)


def test_ensure_starts_backup_on_a_standby_and_master_on_the_director(root: Path) -> None:
    assert ensure_from_none(root) == ["backup"]
    (root / "run/imgbuild-lvsdirector").write_text("spec cf\n")
    assert ensure_from_none(root) == ["master"]


def test_a_takeover_and_the_watch_leave_only_the_master(root: Path) -> None:
    (root / "daemons").write_text("backup\n")
    (root / "run/imgbuild-lvsdirector").write_text("spec cf\n")  # LVSDirector start writes it first
    takeover = swap(root, "master", "start")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and takeover.poll() is None:  # the watch, as often as it can
        assert swap(root, "backup", "ensure").wait(timeout=10) == 0
    assert takeover.wait(timeout=10) == 0
    assert daemons(root) == ["master"]


def test_a_release_leaves_only_the_backup(root: Path) -> None:
    (root / "daemons").write_text("master\n")
    assert swap(root, "master", "stop").wait(timeout=10) == 0
    assert daemons(root) == ["backup"]


def test_ensure_on_keepalived_starts_the_master_where_the_vip_is(root: Path) -> None:
    """keepalived writes no director file: the node that holds the VIP is the director."""
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/lvs-sync").write_text("LVS_SYNC_INTERFACE=eth0\nLVS_SYNC_ID=0\nLVS_SYNC_VIP=192.168.6.24\n")
    assert ensure_from_none(root) == ["backup"]
    # an address that begins with the VIP's digits is not the VIP
    (root / "addresses").write_text(
        "192.168.6.2/24 brd 192.168.6.255 scope global eth0\n192.168.6.240/24 scope global secondary eth0\n"
    )
    assert ensure_from_none(root) == ["backup"]
    (root / "addresses").write_text(
        "192.168.6.2/24 brd 192.168.6.255 scope global eth0\n192.168.6.24/24 scope global secondary eth0\n"
    )
    assert ensure_from_none(root) == ["master"]


def run(root: Path, role: str, action: str) -> subprocess.CompletedProcess[str]:
    env = stub_env(root, LVSDIRECTOR_ROOT=str(root))
    return subprocess.run([str(SCRIPT), role, action], env=env, capture_output=True, text=True, check=False, timeout=10)


def daemon_commands(root: Path) -> list[str]:
    """What the script told ipvsadm to start or stop, leaving out its questions."""
    return [c for c in calls(root) if c.startswith("ipvsadm ") and c != "ipvsadm -L --daemon"]


def test_start_and_stop_swap_the_daemons_on_the_configured_interface(root: Path) -> None:
    """The sync messages go out on the interface and with the id of /etc/default/lvs-sync."""
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/lvs-sync").write_text("LVS_SYNC_INTERFACE=eth1\nLVS_SYNC_ID=7\n")
    (root / "daemons").write_text("backup\n")
    assert run(root, "master", "start").returncode == 0
    assert daemon_commands(root) == [
        "ipvsadm --stop-daemon backup",
        "ipvsadm --start-daemon master --mcast-interface eth1 --syncid 7",
    ]
    assert daemons(root) == ["master"]
    (root / "calls").unlink()
    assert run(root, "master", "stop").returncode == 0
    assert daemon_commands(root) == [
        "ipvsadm --stop-daemon master",
        "ipvsadm --start-daemon backup --mcast-interface eth1 --syncid 7",
    ]
    assert daemons(root) == ["backup"]


def test_a_second_start_leaves_the_running_daemon_alone(root: Path) -> None:
    """heartbeat starts the group again at each takeover: no second daemon, no failed start."""
    (root / "daemons").write_text("master\n")
    assert run(root, "master", "start").returncode == 0
    assert daemon_commands(root) == [] and daemons(root) == ["master"]


def test_status_reports_the_roles_daemon(root: Path) -> None:
    (root / "daemons").write_text("backup\n")
    assert run(root, "master", "status").stdout == "master sync daemon stopped\n"
    assert run(root, "backup", "status").stdout == "backup sync daemon running\n"
    assert daemon_commands(root) == [], "status changes nothing"


def test_ensure_leaves_a_running_daemon_alone(root: Path) -> None:
    (root / "daemons").write_text("backup\n")
    (root / "run/imgbuild-lvsdirector").write_text("spec cf\n")
    assert run(root, "backup", "ensure").returncode == 0
    assert daemon_commands(root) == [] and daemons(root) == ["backup"]


@pytest.mark.parametrize(("role", "action"), [("primary", "start"), ("master", "restart"), ("", "")])
def test_a_bad_role_or_action_is_a_usage_error(root: Path, role: str, action: str) -> None:
    result = run(root, role, action)
    assert result.returncode == 1 and result.stderr.startswith("usage: "), result.stderr
    assert daemon_commands(root) == []
