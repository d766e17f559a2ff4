"""Terminal output: progress on stderr, results as a table or as JSON on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

err = Console(stderr=True)
out = Console()


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def progress(titles: list[str]) -> Iterator[Callable[[str, str], None]]:
    """One spinner line per title with its elapsed time; call update(title, status)."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks = {title: bar.add_task(title) for title in titles}

        def update(title: str, status: str) -> None:
            bar.update(tasks[title], description=f"{title}: {status}")

        yield update
