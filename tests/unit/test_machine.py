"""A Machine's commands without a VM: what succeed, fail, execute and the waits return or raise,
and the step log of every command a check runs (its check, duration and exit status)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from imgbuild.qemu.command import BootSpec
from imgbuild.qemu.machine import Machine, NodeFailed
from imgbuild.qemu.steplog import StepLog

Answer = tuple[int, bytes, bytes] | Exception


class FakeShell:
    """A root shell that answers from a table: command -> (status, stdout, stderr) or an exception;
    a list answers in turn, its last answer for good."""

    def __init__(self, answers: dict[str, Answer | list[Answer]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def run(self, command: str, timeout: float) -> tuple[int, bytes, bytes]:
        self.calls.append(command)
        answer = self.answers[command]
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


def test_every_command_on_a_node_is_logged_with_its_check_and_status(tmp_path: Path) -> None:
    log = StepLog(tmp_path / "steps.jsonl")
    node = Machine("web1", BootSpec(image=None), tmp_path, "tcg")
    node.step_log = log
    node._shell = FakeShell({"true": (0, b"", b""), "false": (1, b"", b"no"), "hang": TimeoutError("no answer")})  # type: ignore[assignment]
    log.check = "test_one"
    node.succeed("true")
    with pytest.raises(NodeFailed):
        node.succeed("false")
    log.check = "test_two"
    with pytest.raises(TimeoutError):
        node.run("hang")
    node._shell = FakeShell({"true": (0, b"", b"")})  # type: ignore[assignment]
    sampler = threading.Thread(target=node.succeed, args=("true",), name="sampler")
    sampler.start()
    sampler.join()
    steps = [json.loads(line) for line in log.path.read_text().splitlines()]
    picked = [(s["check"], s["node"], s["command"], s["status"]) for s in steps]
    assert picked[:3] == [
        ("test_one", "web1", "true", 0),
        ("test_one", "web1", "false", 1),
        ("test_two", "web1", "hang", "TimeoutError: no answer"),
    ]
    assert steps[3]["thread"] == "sampler" and "thread" not in steps[0]
    assert all(s["seconds"] >= 0 and s["at"] > 0 for s in steps)
    assert log.count == 4 and log.per_check == {"test_one": 2, "test_two": 2}


def test_no_step_log_no_file(tmp_path: Path) -> None:
    node = Machine("web1", BootSpec(image=None), tmp_path, "tcg")
    node._shell = FakeShell({"true": (0, b"", b"")})  # type: ignore[assignment]
    node.succeed("true")
    assert list(tmp_path.iterdir()) == []


def _node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: dict[str, Answer | list[Answer]]) -> Machine:
    monkeypatch.setattr("imgbuild.qemu.machine.time.sleep", lambda _: None)
    node = Machine("web1", BootSpec(image=None), tmp_path, "tcg")
    node._shell = FakeShell(answers)  # type: ignore[assignment]
    return node


def test_stdout_is_the_result_and_stderr_goes_into_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    node = _node(tmp_path, monkeypatch, {"ok": (0, b"out\n", b"warning\n"), "bad": (3, b"", b"no such unit\n")})
    assert node.execute("ok") == (0, "out\n")
    assert node.succeed("ok") == "out\n"
    assert node.fail("bad") == ""
    with pytest.raises(NodeFailed, match="`bad` exited 3: no such unit"):
        node.succeed("bad")
    with pytest.raises(NodeFailed, match="`ok` succeeded but should have failed: out\nwarning"):
        node.fail("ok")


def test_waits_retry_until_the_outcome_and_ride_out_a_lost_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = _node(tmp_path, monkeypatch, {"up": [(1, b"", b""), (1, b"", b""), (0, b"yes", b"")]})
    assert node.wait_until_succeeds("up", timeout=30) == "yes"
    # A dropped session (a reboot, a cut link) is closed, and the next try logs in again.
    node._shell = FakeShell({"gone": [(0, b"", b""), EOFError("session dropped")]})  # type: ignore[assignment]
    monkeypatch.setattr(node, "ssh_client", lambda timeout: None)
    monkeypatch.setattr("imgbuild.qemu.machine.RootShell", lambda _client: FakeShell({"gone": (2, b"at last", b"")}))
    assert node.wait_until_fails("gone", timeout=30) == "at last"


def test_a_wait_gives_up_at_its_timeout_with_the_last_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr("imgbuild.qemu.machine.time.monotonic", lambda: float(next(clock)))
    node = _node(tmp_path, monkeypatch, {"up": (1, b"still down", b" (for now)")})
    with pytest.raises(NodeFailed, match=r"`up` did not succeed within 30 s: still down \(for now\)"):
        node.wait_until_succeeds("up", timeout=30)
    node._shell = FakeShell({"down": (0, b"", b"")})  # type: ignore[assignment]
    with pytest.raises(NodeFailed, match="`down` did not fail within 30 s"):
        node.wait_until_fails("down", timeout=30)


def test_wait_for_unit_ends_at_once_on_a_failed_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    poll = "s=$(systemctl is-active apache2); echo $s; [ $s = active ] || [ $s = failed ]"
    status = "systemctl status --no-pager -n 20 apache2"
    node = _node(tmp_path, monkeypatch, {poll: (0, b"failed\n", b""), status: (3, b"Main PID: exited 1", b"")})
    with pytest.raises(NodeFailed, match="unit apache2 failed:\nMain PID: exited 1"):
        node.wait_for_unit("apache2", timeout=600)
    shell = node._shell
    assert isinstance(shell, FakeShell) and shell.calls == [poll, status]  # one poll, not 600 s of them
    node._shell = FakeShell({poll: [(1, b"activating\n", b""), (0, b"active\n", b"")]})
    node.wait_for_unit("apache2", timeout=600)
