"""Terminal output: progress on stderr, results as a table or as JSON on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

err = Console(stderr=True)
out = Console()


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def progress(title: str) -> Iterator[Any]:
    """A spinner with the elapsed time; call the yielded function with a status text."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task(title)

        def update(status: str) -> None:
            bar.update(task, description=f"{title}: {status}")

        yield update
