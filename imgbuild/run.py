"""Every external command goes through here: logged, and a failure is one line.

mkosi's model: one `run` that knows how to say what failed. The line names the command and
its exit status and ends with the last line of its stderr; the rest of stderr goes before it
as detail. Long-running processes (disk-image-create, QEMU, dnsmasq) stream their own logs
and are started with `start`. Inside `logging_to(path)` (a role's build log, a verify
report's commands.log) every command, its duration and exit status are appended to path,
and a failure names that log.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from imgbuild.errors import UserError

log = logging.getLogger("imgbuild.run")
TAIL_LINES = 20
# Where this thread's commands are logged (a context variable: each role's build thread has its own).
_log_path: ContextVar[Path | None] = ContextVar("imgbuild_command_log", default=None)


class CommandFailed(UserError):
    """An external command failed; the message says which and why."""


def _shown(cmd: Sequence[str]) -> str:
    text = shlex.join(str(c) for c in cmd)
    return text if len(text) <= 160 else text[:157] + "..."


@contextmanager
def logging_to(path: Path) -> Iterator[Path]:
    """Append every command run or started in this context to path."""
    token = _log_path.set(path)
    try:
        yield path
    finally:
        _log_path.reset(token)


def _record(line: str) -> None:
    log.debug("%s", line)
    if (path := _log_path.get()) is not None:
        with path.open("a") as out:
            out.write(f"[imgbuild {time.strftime('%H:%M:%S')}] {line}\n")


def _missing(cmd: Sequence[str], hint: str) -> CommandFailed:
    return CommandFailed(f"{cmd[0]} not found; {hint or 'install it'} (needed for `{_shown(cmd)}`)")


def run(
    cmd: Sequence[str | Path],
    *,
    check: bool = True,
    input: str | bytes | None = None,
    text: bool = False,
    timeout: float | None = None,
    why: str = "",
    hint: str = "",
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[Any]:
    """Run cmd to completion, output captured. With check, a non-zero exit raises CommandFailed:
    `why` says what imgbuild was doing, `hint` how to fix it, `log_path` where the full log is."""
    argv = [str(c) for c in cmd]
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, input=input, text=text, capture_output=True, timeout=timeout, env=env, check=False
        )
    except FileNotFoundError:
        _record(f"$ {shlex.join(argv)}: not found")
        raise _missing(argv, hint) from None
    except subprocess.TimeoutExpired:
        _record(f"$ {shlex.join(argv)}: timed out after {timeout} s")
        raise CommandFailed(
            f"`{_shown(argv)}` did not finish within {timeout:.0f} s" + (f" while {why}" if why else "")
        ) from None
    _record(f"$ {shlex.join(argv)}: exit {result.returncode} in {time.monotonic() - started:.2f} s")
    if result.returncode != 0 and result.stderr:
        err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr
        for line in err.strip().splitlines()[-TAIL_LINES:]:
            _record(f"  {line}")
    if check and result.returncode != 0:
        raise failure(argv, result.returncode, result.stderr, why=why, hint=hint, log_path=log_path)
    return result


def failure(
    cmd: Sequence[str],
    code: int,
    stderr: str | bytes | None,
    *,
    why: str = "",
    hint: str = "",
    log_path: Path | None = None,
) -> CommandFailed:
    """The one-line error for a failed command, its stderr's tail as detail."""
    err = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [line for line in err.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "no message"
    message = f"`{_shown(cmd)}` failed (exit {code}){f' while {why}' if why else ''}: {last}"
    if hint:
        message += f"; {hint}"
    if (log_path := log_path or _log_path.get()) is not None:
        message += f"; full log: {log_path}"
    return CommandFailed(message, detail="\n".join(lines[-TAIL_LINES:-1]))


def start(cmd: Sequence[str | Path], *, hint: str = "", **popen: Any) -> subprocess.Popen[Any]:
    """Start a long-running process; a missing program is one line, like run's failures."""
    argv = [str(c) for c in cmd]
    try:
        process = subprocess.Popen(argv, **popen)
    except FileNotFoundError:
        _record(f"$ {shlex.join(argv)} &: not found")
        raise _missing(argv, hint) from None
    _record(f"$ {shlex.join(argv)} &: started, pid {process.pid}")
    return process
