"""A root shell kept open on a node, as the NixOS test driver keeps one on its backdoor.

A command on its own SSH exec channel costs the node a session process, the user's shell and
sudo: 0.4 s each under emulation. Written to one `sudo sh` that stays open it costs a fork of
that shell: 0.15 s (both measured on an idle node here).
"""

from __future__ import annotations

import secrets
import time

import paramiko

# Where a command's stderr waits until its stdout has been sent: the channel carries one stream.
_STDERR = "/run/imgbuild-shell.err"


class RootShell:
    """One `sudo sh` on an SSH session; one command at a time (callers serialise)."""

    def __init__(self, client: paramiko.SSHClient) -> None:
        transport = client.get_transport()
        if transport is None:
            raise EOFError("the SSH session is closed")
        self._channel = transport.open_session()
        self._channel.exec_command("sudo -n sh")
        self._received = b""

    def run(self, command: str, timeout: float) -> tuple[int, bytes, bytes]:
        """(exit status, stdout, stderr) of command, run in a subshell with stdin from /dev/null.

        Framed by a random token: stdout, then "\\n<token> <status>\\n", stderr, "\\n<token>\\n".
        """
        token = secrets.token_hex(8)
        self._channel.sendall(
            f"( {command}\n) </dev/null 2>{_STDERR}; printf '\\n%s %d\\n' {token} $?; cat {_STDERR}; printf "
            f"'\\n%s\\n' {token}\n".encode()
        )
        status_mark, end_mark = f"\n{token} ".encode(), f"\n{token}\n".encode()
        deadline = time.monotonic() + timeout
        while True:
            start = self._received.find(status_mark)
            eol = self._received.find(b"\n", start + len(status_mark)) if start >= 0 else -1
            end = self._received.find(end_mark, eol) if eol >= 0 else -1
            if end >= 0:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"`{command}` did not finish within {timeout:.0f} s")
            self._channel.settimeout(remaining)
            chunk = self._channel.recv(1 << 16)
            if not chunk:
                raise EOFError("the root shell closed")
            self._received += chunk
        status = int(self._received[start + len(status_mark) : eol])
        stdout, stderr = self._received[:start], self._received[eol + 1 : end]
        self._received = self._received[end + len(end_mark) :]
        return status, stdout, stderr

    def close(self) -> None:
        self._channel.close()
