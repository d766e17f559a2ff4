"""Terminal output: progress on stderr, results as a table or as JSON on stdout."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

# Text, never markup: paths, node names and error messages may hold '[' (a key named "[/x]" once
# crashed the error printer).
err = Console(stderr=True, markup=False)
out = Console()


def _line(mark: str, style: str, message: str) -> None:
    """A status line on stderr; the message is text, never markup (paths and errors may hold '[')."""
    err.print(Text.assemble((mark, style), " ", message), highlight=False, soft_wrap=True)


def ok(message: str) -> None:
    _line("✓", "green", message)


def warn(message: str) -> None:
    _line("warning:", "yellow", message)


def error(message: str) -> None:
    _line("error:", "bold red", message)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def progress(titles: list[str]) -> Iterator[Callable[[str, str], None]]:
    """One spinner line per title with its elapsed time; call update(title, status)."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks = {title: bar.add_task(title) for title in titles}

        def update(title: str, status: str) -> None:
            bar.update(tasks[title], description=f"{title}: {status}")

        yield update
