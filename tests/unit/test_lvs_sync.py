"""LVSSyncDaemonSwap against a stub ipvsadm: a takeover's master start and the watch's ensure
never leave a backup daemon running on the director."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "elements/imgbuild-loadbalancer/static/etc/ha.d/resource.d/LVSSyncDaemonSwap"

# The kernel's sync daemons as lines of $S/daemons; stopping one takes a while, as under emulation.
IPVSADM = """#!/bin/sh
case "$1 $2" in
  "-L --daemon") sed 's/$/ sync daemon (mcast=eth0, syncid=0)/' "$S/daemons" ;;
  "--start-daemon "*) sleep 0.3; echo "$2" >> "$S/daemons" ;;
  "--stop-daemon "*) sleep 0.3; grep -vx "$2" "$S/daemons" > "$S/daemons.new"; mv "$S/daemons.new" "$S/daemons" ;;
esac
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "bin").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "bin/ipvsadm").write_text(IPVSADM)
    (tmp_path / "bin/logger").write_text("#!/bin/sh\n")
    # `ip -4 -o addr show dev eth0`: the addresses in $S/addresses
    (tmp_path / "bin/ip").write_text('#!/bin/sh\nsed "s#^#2: eth0    inet #" "$S/addresses"\n')
    for stub in ("ipvsadm", "logger", "ip"):
        (tmp_path / "bin" / stub).chmod(0o755)
    (tmp_path / "daemons").write_text("")
    (tmp_path / "addresses").write_text("192.168.6.2/24 brd 192.168.6.255 scope global eth0\n")
    return tmp_path


def swap(root: Path, role: str, action: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PATH": f"{root / 'bin'}:{os.environ['PATH']}", "S": str(root), "LVSDIRECTOR_ROOT": str(root)}
    return subprocess.Popen([str(SCRIPT), role, action], env=env, text=True)


def daemons(root: Path) -> list[str]:
    return sorted((root / "daemons").read_text().split())


def ensure_from_none(root: Path) -> list[str]:
    """The watch's ensure on a node where no sync daemon runs: the daemons it leaves."""
    (root / "daemons").write_text("")
    assert swap(root, "backup", "ensure").wait(timeout=10) == 0
    return daemons(root)


def test_ensure_starts_backup_on_a_standby_and_master_on_the_director(root: Path):
    assert ensure_from_none(root) == ["backup"]
    (root / "run/imgbuild-lvsdirector").write_text("spec cf\n")
    assert ensure_from_none(root) == ["master"]


def test_a_takeover_and_the_watch_leave_only_the_master(root: Path):
    (root / "daemons").write_text("backup\n")
    (root / "run/imgbuild-lvsdirector").write_text("spec cf\n")  # LVSDirector start writes it first
    takeover = swap(root, "master", "start")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and takeover.poll() is None:  # the watch, as often as it can
        assert swap(root, "backup", "ensure").wait(timeout=10) == 0
    assert takeover.wait(timeout=10) == 0
    assert daemons(root) == ["master"]


def test_a_release_leaves_only_the_backup(root: Path):
    (root / "daemons").write_text("master\n")
    assert swap(root, "master", "stop").wait(timeout=10) == 0
    assert daemons(root) == ["backup"]


def test_ensure_on_keepalived_starts_the_master_where_the_vip_is(root: Path):
    """keepalived writes no director file: the node that holds the VIP is the director."""
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/lvs-sync").write_text("LVS_SYNC_INTERFACE=eth0\nLVS_SYNC_ID=0\nLVS_SYNC_VIP=192.168.6.24\n")
    assert ensure_from_none(root) == ["backup"]
    # an address that begins with the VIP's digits is not the VIP
    (root / "addresses").write_text("192.168.6.2/24 brd 192.168.6.255 scope global eth0\n192.168.6.240/24 scope global secondary eth0\n")
    assert ensure_from_none(root) == ["backup"]
    (root / "addresses").write_text("192.168.6.2/24 brd 192.168.6.255 scope global eth0\n192.168.6.24/24 scope global secondary eth0\n")
    assert ensure_from_none(root) == ["master"]
