"""One QEMU node, driven like the NixOS test driver: start, wait_for_*, succeed, fail, crash.

Console goes to a log file, control to QMP (qemu.qmp), commands to SSH (paramiko).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import paramiko

from imgbuild.bootargs import disk_cmdline
from imgbuild.errors import UserError
from imgbuild.qemu.accel import Accel, kernel_args, qemu_args
from imgbuild.qemu.rootshell import RootShell
from imgbuild.qemu.steplog import StepLog
from imgbuild.run import run, start
from qemu.qmp.legacy import QEMUMonitorProtocol

QEMU = "qemu-system-x86_64"
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


class NodeFailed(Exception):
    """A node did not do what a step required; the message carries its console tail."""


@dataclass(frozen=True)
class BootSpec:
    """What a node boots and how.

    With a kernel: direct kernel boot, root on image (the role's filesystem). Without: the
    firmware boots, from image (a whole disk) or, when there is no image, from the network.
    Images are never written: the node runs on an overlay, disk_size bytes when set (a cloud
    flavour's bigger disk).
    """

    image: Path | None
    seed: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    firmware: Literal["bios", "uefi"] = "bios"
    disk_size: int | None = None


def backing_format(image: Path) -> str:
    """The image's format, from its name: a role image is .raw or .qcow2 (also .disk.qcow2)."""
    return "raw" if image.suffix == ".raw" else "qcow2"


class Machine:
    def __init__(
        self,
        name: str,
        boot: BootSpec,
        workdir: Path,
        accel: Accel,
        memory_mb: int = 384,
        cpus: int = 1,
        mac: str | None = None,
        tap: str | None = None,
        address: str | None = None,
        ssh_user: str = "admin",
        ssh_key: Path | None = None,
        links: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.name, self.boot, self.workdir, self.accel = name, boot, workdir, accel
        self.memory_mb, self.cpus, self.mac, self.tap = memory_mb, cpus, mac, tap
        self.address, self.ssh_user, self.ssh_key = address, ssh_user, ssh_key
        self.links = links  # further NICs as (tap, MAC): n1, n2, ... in this order
        self.console = workdir / f"{name}.console.log"
        self.overlay = workdir / f"{name}.qcow2"
        self.efi_vars = workdir / f"{name}.efivars.fd"
        self.qmp_path = workdir / f"{name}.qmp"
        self.process: subprocess.Popen[bytes] | None = None
        self._ssh: paramiko.SSHClient | None = None
        self._shell: RootShell | None = None
        # A drill samples nodes from a thread while the checks go on: one SSH session, opened
        # once, and one root shell on it that runs one command at a time.
        self._ssh_lock = threading.Lock()
        self._shell_lock = threading.Lock()
        self.started_at = 0.0
        self.step_log: StepLog | None = None  # every command run here, once verify's checks run

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        boot = self.boot
        firmware = []
        if boot.firmware == "uefi":
            firmware = [
                "-drive",
                f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive",
                f"if=pflash,format=raw,unit=1,file={self.efi_vars}",
            ]
        if boot.kernel:
            cmdline = " ".join([disk_cmdline(), *kernel_args(self.accel)])
            firmware += ["-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", cmdline]
        # Explicit devices in this order: the disk is vda and the first thing the firmware boots.
        disks = []
        if boot.image:
            disks += [
                "-drive",
                f"file={self.overlay},if=none,id=disk0,format=qcow2,discard=unmap",
                "-device",
                "virtio-blk-pci,drive=disk0,bootindex=1",
            ]
        if boot.seed:
            disks += [
                "-drive",
                f"file={boot.seed},if=none,id=seed0,format=raw,readonly=on",
                "-device",
                "virtio-blk-pci,drive=seed0",
            ]
        net = ["-nic", "none"]
        if self.tap:
            pxe = "" if boot.image or boot.kernel else ",bootindex=1"
            net = [
                "-netdev",
                f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
                "-device",
                f"virtio-net-pci,netdev=n0,mac={self.mac}{pxe}",
            ]
            for index, (tap, mac) in enumerate(self.links, start=1):
                net += [
                    "-netdev",
                    f"tap,id=n{index},ifname={tap},script=no,downscript=no",
                    "-device",
                    f"virtio-net-pci,netdev=n{index},mac={mac}",
                ]
        return [
            QEMU,
            "-name",
            self.name,
            "-machine",
            "q35",
            *qemu_args(self.accel),
            "-m",
            str(self.memory_mb),
            "-smp",
            str(self.cpus),
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            f"file:{self.console}",
            "-qmp",
            f"unix:{self.qmp_path},server=on,wait=off",
            *firmware,
            *disks,
            "-device",
            "virtio-rng-pci",
            *net,
        ]

    def start(self) -> None:
        """Boot from a fresh overlay on the role image (the image itself stays untouched)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.overlay.unlink(missing_ok=True)
        if self.boot.image:
            size = [str(self.boot.disk_size)] if self.boot.disk_size else []
            run(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    backing_format(self.boot.image),
                    "-b",
                    self.boot.image.resolve(),
                    self.overlay,
                    *size,
                ],
                why=f"creating {self.name}'s overlay",
                hint="install qemu-utils",
            )
        if self.boot.firmware == "uefi":
            shutil.copyfile(OVMF_VARS, self.efi_vars)  # the firmware's writable NVRAM, one per node
        self.console.write_bytes(b"")
        self.started_at = time.monotonic()
        self.process = start(
            self.command(),
            hint="install qemu-system-x86",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def restart(self) -> None:
        """Boot again from the same overlay (a reboot after a power cut); the old console log is kept."""
        if self.running():
            raise NodeFailed(f"{self.name}: still running; crash or stop it before booting it again")
        self.close_ssh()
        if self.console.exists():
            self.console.rename(self.console.with_suffix(f".{int(time.time())}.log"))
        self.started_at = time.monotonic()
        self.process = start(
            self.command(),
            hint="install qemu-system-x86",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Kill QEMU (if running) and forget the SSH session; idempotent."""
        self.close_ssh()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cleanup(self) -> None:
        self.stop()
        self.overlay.unlink(missing_ok=True)
        self.efi_vars.unlink(missing_ok=True)
        self.qmp_path.unlink(missing_ok=True)

    # -- QMP ---------------------------------------------------------------------------------

    def qmp(self, command: str, **args: object) -> object:
        return self.qmp_all([(command, args)])[-1]

    def qmp_all(self, commands: list[tuple[str, dict[str, object]]]) -> list[object]:
        """Several QMP commands on one connection: back to back, milliseconds apart."""
        monitor = QEMUMonitorProtocol(str(self.qmp_path))
        monitor.connect()
        try:
            return [monitor.cmd(command, **args) for command, args in commands]
        finally:
            monitor.close()

    def crash(self) -> None:
        """Pull the plug: QEMU exits at once, the guest gets no chance to shut down."""
        self.close_ssh()
        with contextlib.suppress(OSError, EOFError):
            self.qmp("quit")
        if self.process is not None:
            self.process.wait(timeout=30)

    def block(self, *nics: int) -> None:
        """Pull NICs' cables (0, the default: the first, the cluster's segment), all at once; the VM
        runs on (the NixOS driver's block)."""
        self.qmp_all([("set_link", {"name": f"n{nic}", "up": False}) for nic in nics or (0,)])

    def unblock(self, *nics: int) -> None:
        self.qmp_all([("set_link", {"name": f"n{nic}", "up": True}) for nic in nics or (0,)])

    # -- console -----------------------------------------------------------------------------

    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def console_tail(self, lines: int = 30) -> str:
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", self.console_text())
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise NodeFailed(
                f"{self.name}: QEMU exited ({self.process.returncode}): {err.strip()}\n{self.console_tail()}"
            )

    def wait_for_console(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the serial console shows pattern (a regex)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            if match := regex.search(self.console_text()):
                return match
            self._check_alive()
            time.sleep(0.5)
        raise NodeFailed(f"{self.name}: no {pattern!r} on the console within {timeout:.0f} s\n{self.console_tail()}")

    # -- SSH ---------------------------------------------------------------------------------

    def ssh_client(self, timeout: float = 20) -> paramiko.SSHClient:
        """The node's one SSH session (opened on first use, again after a reboot)."""
        with self._ssh_lock:
            if self._ssh is not None and self._ssh.get_transport() and self._ssh.get_transport().is_active():  # type: ignore[union-attr]
                return self._ssh
            self._ssh = self._login(timeout)
            return self._ssh

    def _login(self, timeout: float) -> paramiko.SSHClient:
        if not self.address or not self.ssh_key:
            raise NodeFailed(f"{self.name}: has no network address or SSH key to log in with")
        client = paramiko.SSHClient()
        # Fresh host keys every boot of a throwaway overlay: nothing to pin against.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            self.address,
            username=self.ssh_user,
            key_filename=str(self.ssh_key),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
        )
        return client

    def close_ssh(self) -> None:
        if self._shell is not None:
            self._shell.close()
            self._shell = None
        if self._ssh is not None:
            self._ssh.close()
            self._ssh = None

    def run(self, command: str, timeout: float = 60) -> tuple[int, str, str]:
        """Run a shell command as root on the node: (exit status, stdout, stderr). Goes into the
        step log, when there is one."""
        started = time.monotonic()
        with self._shell_lock:
            shell = self._shell
            try:
                if shell is None:
                    shell = self._shell = RootShell(self.ssh_client(timeout=min(timeout, 20)))
                status, stdout, stderr = shell.run(command, timeout)
            except BaseException as err:
                # Out of step with its framing, or gone: the next command opens a new one.
                if shell is not None:
                    shell.close()
                if self._shell is shell:
                    self._shell = None
                if self.step_log is not None:
                    self.step_log.add(self.name, command, f"{type(err).__name__}: {err}", time.monotonic() - started)
                raise
        if self.step_log is not None:
            self.step_log.add(self.name, command, status, time.monotonic() - started)
        return status, stdout.decode(errors="replace"), stderr.decode(errors="replace")

    def execute(self, command: str, timeout: float = 60) -> tuple[int, str]:
        """Run a shell command as root on the node: (exit status, stdout then stderr)."""
        status, stdout, stderr = self.run(command, timeout)
        return status, stdout + stderr

    def succeed(self, command: str, timeout: float = 60) -> str:
        status, output = self.execute(command, timeout)
        if status != 0:
            raise NodeFailed(f"{self.name}: `{command}` exited {status}: {output.strip()}")
        return output

    def fail(self, command: str, timeout: float = 60) -> str:
        status, output = self.execute(command, timeout)
        if status == 0:
            raise NodeFailed(f"{self.name}: `{command}` succeeded but should have failed: {output.strip()}")
        return output

    def wait_until_succeeds(self, command: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            try:
                status, last = self.execute(command, timeout=max(5.0, deadline - time.monotonic()))
                if status == 0:
                    return last
            except (TimeoutError, OSError, paramiko.SSHException, EOFError):
                self.close_ssh()
            if time.monotonic() > deadline:
                raise NodeFailed(
                    f"{self.name}: `{command}` did not succeed within {timeout:.0f} s: {last.strip()}\n{self.console_tail()}"
                )
            self._check_alive()
            time.sleep(1)

    def wait_for_unit(self, unit: str, timeout: float = 60) -> None:
        """Wait until unit is active; a unit that failed ends the wait at once."""
        quoted = shlex.quote(unit)
        state = self.wait_until_succeeds(
            f"s=$(systemctl is-active {quoted}); echo $s; [ $s = active ] || [ $s = failed ]", timeout
        ).strip()
        if state != "active":
            raise NodeFailed(
                f"{self.name}: unit {unit} {state}:\n{self.execute(f'systemctl status --no-pager -n 20 {quoted}')[1]}"
            )


def require_qemu() -> None:
    for tool, package in ((QEMU, "qemu-system-x86"), ("qemu-img", "qemu-utils")):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} not found; install it with: apt-get install {package}")
