"""One way to run a command: a failure is one line naming the command, its exit and its last words."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imgbuild.run import CommandFailed, logging_to, run, start


def test_success_returns_the_output() -> None:
    assert run(["sh", "-c", "echo out; echo err >&2"], text=True).stdout == "out\n"


def test_failure_is_one_line_with_the_stderr_tail_as_detail(tmp_path: Path) -> None:
    script = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3"
    with pytest.raises(CommandFailed) as err:
        run(["sh", "-c", script], why="testing", hint="do something else", log_path=tmp_path / "x.log")
    message = str(err.value)
    assert "\n" not in message
    assert (
        message.startswith("`sh -c ")
        and "failed (exit 3) while testing: line30; do something else; full log: " in message
    )
    assert err.value.detail.splitlines() == [f"line{i}" for i in range(11, 30)]
    assert err.value.exit_code == 1


def test_check_false_hands_back_the_status() -> None:
    assert run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_missing_program_and_timeout_are_one_line() -> None:
    with pytest.raises(CommandFailed, match=r"^no-such-tool not found; install no-such-pkg \(needed for"):
        run(["no-such-tool", "--x"], hint="install no-such-pkg")
    with pytest.raises(CommandFailed, match="did not finish within 0 s while waiting"):
        run(["sleep", "5"], timeout=0.2, why="waiting")
    with pytest.raises(CommandFailed, match="not found"):
        start(["no-such-tool"])


def test_a_long_command_is_shortened() -> None:
    with pytest.raises(CommandFailed) as err:
        run(["sh", "-c", "exit 1", *["argument"] * 50])
    assert len(str(err.value)) < 250


def test_commands_in_a_logging_context_are_logged_and_failures_name_the_log(tmp_path: Path) -> None:
    log = tmp_path / "commands.log"
    with logging_to(log):
        run(["true"])
        start(["sleep", "0"]).wait()
        with pytest.raises(CommandFailed, match=rf"exit 3\): last words; full log: {log}$"):
            run(["sh", "-c", "echo first >&2; echo last words >&2; exit 3"])
    run(["echo", "outside"])  # after the context: not logged
    said = [re.sub(r"^\[imgbuild \d\d:\d\d:\d\d\] ", "", line) for line in log.read_text().splitlines()]
    assert re.fullmatch(r"\$ true: exit 0 in \d+\.\d\d s", said[0]), said
    assert re.fullmatch(r"\$ sleep 0 &: started, pid \d+", said[1]), said
    assert re.fullmatch(r"\$ sh -c '.*': exit 3 in \d+\.\d\d s", said[2]) and said[3:] == ["  first", "  last words"], (
        said
    )
    assert "outside" not in log.read_text()
