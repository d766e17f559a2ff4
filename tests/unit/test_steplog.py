"""The step log: every command a check runs on a node, with its check, duration and exit status."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from imgbuild.qemu.machine import BootSpec, Machine, NodeFailed
from imgbuild.qemu.steplog import StepLog


class FakeShell:
    """A root shell that answers from a table: command -> (status, stdout, stderr), or an exception."""

    def __init__(self, answers: dict[str, tuple[int, bytes, bytes] | Exception]) -> None:
        self.answers = answers

    def run(self, command: str, timeout: float) -> tuple[int, bytes, bytes]:
        answer = self.answers[command]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


def test_every_command_on_a_node_is_logged_with_its_check_and_status(tmp_path: Path):
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


def test_no_step_log_no_file(tmp_path: Path):
    node = Machine("web1", BootSpec(image=None), tmp_path, "tcg")
    node._shell = FakeShell({"true": (0, b"", b"")})  # type: ignore[assignment]
    node.succeed("true")
    assert list(tmp_path.iterdir()) == []
