"""One QEMU node, driven like the NixOS test driver: start, wait_for_*, succeed, fail, crash.

Console goes to a log file, control to QMP (qemu.qmp), commands to SSH (paramiko).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from imgbuild.qemu.accel import Accel
from imgbuild.qemu.command import BootSpec, Hardware, NodeFiles, prepare_disks, qemu_command
from imgbuild.qemu.rootshell import RootShell
from imgbuild.qemu.steplog import StepLog
from imgbuild.run import start
from qemu.qmp.legacy import QEMUMonitorProtocol

# What a command over SSH raises when the node is gone, rebooting or unreachable.
SSH_ERRORS = (TimeoutError, OSError, EOFError, paramiko.SSHException)


class NodeFailed(Exception):
    """A node did not do what a step required; the message carries its console tail."""


@dataclass(frozen=True)
class Login:
    """How commands reach the node: SSH to address as user with key; a root shell on top."""

    address: str
    user: str
    key: Path


class Machine:
    def __init__(
        self,
        name: str,
        boot: BootSpec,
        workdir: Path,
        accel: Accel,
        *,
        hardware: Hardware = Hardware(),
        login: Login | None = None,
    ) -> None:
        self.name, self.boot, self.workdir, self.accel = name, boot, workdir, accel
        self.hardware, self.login = hardware, login
        self.files = NodeFiles.in_dir(workdir, name)
        self.process: subprocess.Popen[bytes] | None = None
        self._ssh: paramiko.SSHClient | None = None
        self._shell: RootShell | None = None
        # A drill samples nodes from a thread while the checks go on: one SSH session, opened
        # once, and one root shell on it that runs one command at a time.
        self._ssh_lock = threading.Lock()
        self._shell_lock = threading.Lock()
        self.started_at = 0.0
        self.step_log: StepLog | None = None  # every command run here, once verify's checks run

    @property
    def mac(self) -> str | None:
        """The MAC on the cluster's segment (n0)."""
        return self.hardware.nics[0].mac if self.hardware.nics else None

    @property
    def address(self) -> str | None:
        return self.login.address if self.login else None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Boot from a fresh overlay on the image (the image itself stays untouched)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        prepare_disks(self.name, self.boot, self.files)
        self.files.console.write_bytes(b"")
        self._launch()

    def restart(self) -> None:
        """Boot again from the same overlay (a reboot after a power cut); the old console log is kept."""
        if self.running():
            raise NodeFailed(f"{self.name}: still running; crash or stop it before booting it again")
        self.close_ssh()
        if self.files.console.exists():
            self.files.console.rename(self.files.console.with_suffix(f".{int(time.time())}.log"))
        self._launch()

    def _launch(self) -> None:
        self.started_at = time.monotonic()
        self.process = start(
            qemu_command(self.name, self.boot, self.hardware, self.files, self.accel),
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

    def shutdown(self, timeout: float = 120) -> None:
        """Press the power button (ACPI, over QMP), as an operator would: systemd-logind powers
        off and stops every service on the way. Waits for QEMU to exit."""
        self.close_ssh()
        if not self.running():
            return
        self.qmp("system_powerdown")
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise NodeFailed(f"{self.name}: did not power off within {timeout:.0f} s\n{self.console_tail()}") from None

    def cleanup(self) -> None:
        self.stop()
        for path in (self.files.overlay, self.files.efi_vars, self.files.qmp):
            path.unlink(missing_ok=True)

    # -- QMP ---------------------------------------------------------------------------------

    def qmp(self, command: str, **args: object) -> object:
        return self.qmp_all([(command, args)])[-1]

    def qmp_all(self, commands: list[tuple[str, dict[str, object]]]) -> list[object]:
        """Several QMP commands on one connection: back to back, milliseconds apart."""
        monitor = QEMUMonitorProtocol(str(self.files.qmp))
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
        console = self.files.console
        return console.read_text(errors="replace") if console.exists() else ""

    def console_tail(self, lines: int = 30) -> str:
        text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", self.console_text())
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
            raise NodeFailed(
                f"{self.name}: QEMU exited ({self.process.returncode}): {err.strip()}\n{self.console_tail()}"
            )

    def wait_for_console_text(self, pattern: str, timeout: float) -> re.Match[str]:
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
        if self.login is None:
            raise NodeFailed(f"{self.name}: has no network address or SSH key to log in with")
        client = paramiko.SSHClient()
        # Fresh host keys every boot of a throwaway overlay: nothing to pin against.
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            self.login.address,
            username=self.login.user,
            key_filename=str(self.login.key),
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
        """Run a shell command as root on the node: (exit status, stdout)."""
        status, stdout, _stderr = self.run(command, timeout)
        return status, stdout

    def succeed(self, command: str, timeout: float = 60) -> str:
        """stdout of command, which must exit 0; else NodeFailed with its stderr."""
        status, stdout, stderr = self.run(command, timeout)
        if status != 0:
            raise NodeFailed(f"{self.name}: `{command}` exited {status}: {(stdout + stderr).strip()}")
        return stdout

    def fail(self, command: str, timeout: float = 60) -> str:
        """stdout of command, which must exit non-zero."""
        status, stdout, stderr = self.run(command, timeout)
        if status == 0:
            raise NodeFailed(f"{self.name}: `{command}` succeeded but should have failed: {(stdout + stderr).strip()}")
        return stdout

    def wait_until_succeeds(self, command: str, timeout: float) -> str:
        """stdout of the first run of command that exits 0, retried every second for timeout s."""
        return self._wait_until(command, timeout, succeeds=True)

    def wait_until_fails(self, command: str, timeout: float) -> str:
        """stdout of the first run of command that exits non-zero, retried every second."""
        return self._wait_until(command, timeout, succeeds=False)

    def _wait_until(self, command: str, timeout: float, succeeds: bool) -> str:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            try:
                status, last, stderr = self.run(command, timeout=max(5.0, deadline - time.monotonic()))
                if (status == 0) == succeeds:
                    return last
                last += stderr
            except SSH_ERRORS:  # booting, rebooting or cut off: try again
                self.close_ssh()
            if time.monotonic() > deadline:
                raise NodeFailed(
                    f"{self.name}: `{command}` did not {'succeed' if succeeds else 'fail'} within {timeout:.0f} s: "
                    f"{last.strip()}\n{self.console_tail()}"
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
            status = self.execute(f"systemctl status --no-pager -n 20 {quoted}")[1]
            raise NodeFailed(f"{self.name}: unit {unit} {state}:\n{status}")
