"""Every command run on a node, as the NixOS test driver logs its steps: when, on which node, for
which check, how long it took and how it ended. One JSON object per line, so a report of a
long drill run stays readable with `jq` and a failed check's commands are a `grep` away."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path


class StepLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.check = ""  # the check running now (verify's plugin sets it)
        self.count = 0
        self.per_check: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, node: str, command: str, status: int | str, seconds: float) -> None:
        """status: the exit status, or what went wrong when the command never finished."""
        step = {
            "at": round(time.time(), 3),
            "check": self.check,
            "node": node,
            "command": command,
            "status": status,
            "seconds": round(seconds, 3),
        }
        if (thread := threading.current_thread()) is not threading.main_thread():
            step["thread"] = thread.name  # a drill's sampler or a returning node's watch
        with self._lock, self.path.open("a") as out:
            out.write(json.dumps(step) + "\n")
            self.count += 1
            self.per_check[self.check] += 1
