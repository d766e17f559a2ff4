"""When a node counts as up: cloud-init has finished its boot and SSH answers. A fact of these
images and their seeds, not of QEMU, so it lives here rather than in the Machine."""

from __future__ import annotations

import re
import time

import paramiko

from imgbuild.qemu.machine import Machine

# cloud-init's final message, printed on the console when its last stage ends.
FINISHED = r"Cloud-init v\. \S+ finished at"
# Written by cloud-init's last stage; far cheaper to test than running `cloud-init status` (Python) under emulation.
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"


def finished_booting(machine: Machine) -> bool:
    """Non-blocking and free for the guest: cloud-init announced its end on this boot's console."""
    return machine.running() and re.search(FINISHED, machine.console_text()) is not None


def is_ready(machine: Machine) -> bool:
    """Non-blocking: cloud-init announced its end on the console and SSH confirms it."""
    if not finished_booting(machine):
        return False
    try:
        return machine.execute(f"test -f {BOOT_FINISHED}", timeout=10)[0] == 0
    except (OSError, paramiko.SSHException, EOFError):
        machine.close_ssh()
        return False


def wait_until_booted(machine: Machine, timeout: float) -> None:
    """The console says cloud-init has finished; SSH may not answer yet. timeout: since start."""
    machine.wait_for_console_text(FINISHED, timeout=machine.started_at + timeout - time.monotonic())


def wait_until_ready(machine: Machine, timeout: float) -> float:
    """cloud-init is done and SSH answers; returns seconds since start.

    Watch the console first: polling SSH during boot would cost the guest CPU it needs to boot.
    """
    deadline = machine.started_at + timeout
    wait_until_booted(machine, timeout)
    machine.wait_until_succeeds(f"test -f {BOOT_FINISHED}", deadline - time.monotonic())
    return time.monotonic() - machine.started_at
