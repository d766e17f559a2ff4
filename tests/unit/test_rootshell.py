"""The root shell's framing, against a real local sh standing in for the node's `sudo sh`."""

from __future__ import annotations

import os
import select
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgbuild.qemu import rootshell
from imgbuild.qemu.rootshell import RootShell


class LocalChannel:
    """The slice of a paramiko channel RootShell uses, backed by a local sh."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.timeout: float | None = None

    def exec_command(self, command: str) -> None:
        assert command == "sudo -n sh"
        self.process = subprocess.Popen(["sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def sendall(self, data: bytes) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def settimeout(self, timeout: float) -> None:
        self.timeout = timeout

    def recv(self, size: int) -> bytes:
        assert self.process is not None and self.process.stdout is not None
        if not select.select([self.process.stdout], [], [], self.timeout)[0]:
            raise TimeoutError
        return os.read(self.process.stdout.fileno(), size)

    def close(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()


class LocalClient:
    def __init__(self) -> None:
        self.channel = LocalChannel()

    def get_transport(self) -> LocalClient:
        return self

    def open_session(self) -> LocalChannel:
        return self.channel


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RootShell]:
    monkeypatch.setattr(rootshell, "_STDERR", str(tmp_path / "stderr"))
    shell = RootShell(LocalClient())  # type: ignore[arg-type]  # a stand-in, not a paramiko.SSHClient
    yield shell
    shell.close()


def test_status_stdout_and_stderr_come_apart(shell: RootShell) -> None:
    assert shell.run("echo out; echo err >&2; exit 3", 5) == (3, b"out\n", b"err\n")
    assert shell.run("printf 'no newline'; printf 'nor here' >&2", 5) == (0, b"no newline", b"nor here")
    assert shell.run("true", 5) == (0, b"", b"")


def test_commands_cannot_disturb_the_shell(shell: RootShell) -> None:
    assert shell.run("cat; echo stdin is empty", 5) == (0, b"stdin is empty\n", b"")
    assert shell.run("cd /; exit 1", 5)[0] == 1
    assert shell.run("pwd", 5)[1] != b"/\n"
    assert shell.run("for i in 1 2; do\n echo $i\ndone # a comment", 5) == (0, b"1\n2\n", b"")


def test_large_output_and_many_commands(shell: RootShell) -> None:
    assert shell.run("seq 1 200000 | tail -1; head -c 300000 /dev/zero | wc -c", 5)[1].split() == [b"200000", b"300000"]
    assert [shell.run(f"echo {i}", 5)[1] for i in range(20)] == [f"{i}\n".encode() for i in range(20)]


def test_a_command_that_overruns_its_timeout_raises(shell: RootShell) -> None:
    with pytest.raises(TimeoutError):
        shell.run("sleep 5", 0.5)
