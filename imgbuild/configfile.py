"""Write the cluster description out as a commented TOML file to edit.

The file is generated from the model itself (its fields, descriptions and class docstrings), so
it names every setting `load` accepts and cannot drift from it.
"""

from __future__ import annotations

import inspect
import json
import textwrap
import typing
from collections.abc import Iterator

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from imgbuild.model import Cluster

HEADER = """imgbuild cluster description (TOML). Defaults reproduce the reference "Ultra Monkey" cluster:
two Apache real servers behind two heartbeat + ldirectord load balancers sharing a virtual IP.
Unknown keys are errors. Change what your cluster needs: names, addresses, subnet, VIP, domain,
interface names, port, scheduler, any number of web servers. `imgbuild verify` takes every
expectation from this file (an example unlike the reference in each of these:
tests/integration/clusters/custom.toml).

Each setting is explained above it; a commented-out one is unset, and shows an example value."""
WIDTH = 100


def render(cluster: Cluster) -> str:
    """The cluster as TOML that `load` reads back to an equal cluster."""
    lines = [*_comment(HEADER), "", *_table(Cluster, cluster.model_dump(mode="json"), "", explain=True)]
    return "\n".join(lines) + "\n"


def _table(model: type[BaseModel], data: dict[str, typing.Any], path: str, explain: bool) -> Iterator[str]:
    """A table's keys, then its sub-tables: TOML puts a table's own keys before any sub-table.

    explain: comment each key and show unset ones as examples; off for the second and later
    entries of an array of tables, which the first already explains.
    """
    tables: list[tuple[str, type[BaseModel], bool]] = []
    for name, info in model.model_fields.items():
        if nested := _nested(info):
            tables.append((name, *nested))
        else:
            yield from _key(name, info, data[name], explain)
    for name, sub, many in tables:
        key = f"{path}.{name}" if path else name
        for i, row in enumerate(data[name] if many else [data[name]]):
            yield ""
            if explain and i == 0:
                yield from _comment(sub.__doc__ or "")
            yield f"[[{key}]]" if many else f"[{key}]"
            yield from _table(sub, row, key, explain and i == 0)


def _nested(info: FieldInfo) -> tuple[type[BaseModel], bool] | None:
    """The model a field holds and whether as a list (an array of tables); None for a plain value."""
    many = typing.get_origin(info.annotation) is list
    inner = typing.get_args(info.annotation)[0] if many else info.annotation
    if isinstance(inner, type) and issubclass(inner, BaseModel):
        return inner, many
    return None


def _key(name: str, info: FieldInfo, value: object, explain: bool) -> list[str]:
    """One `key = value` line, its description above it; an unset key commented out with an example."""
    if not explain:
        return [] if value is None else [f"{name} = {_value(value)}"]
    line = f"{name} = {_value(value)}" if value is not None else f"# {name} = {_value(_example(name, info))}"
    return [*_comment(info.description or ""), line]


def _example(name: str, info: FieldInfo) -> object:
    """What an unset field shows: the first of its `examples`, which it must have to appear at all."""
    if not info.examples:
        raise TypeError(f"{name} may be unset but has no examples=[...] to show in the cluster file")
    return info.examples[0]


def _value(value: object) -> str:
    """A TOML literal for a value of a JSON-mode dump (str, int, float, bool, or a list of them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # 2.0 stays a float; inf and nan are TOML too
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw and TOML refuses
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(map(_value, value)) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def _comment(text: str) -> list[str]:
    """Text (a docstring too) as `# ` lines of at most WIDTH columns; a blank line starts a paragraph."""
    lines: list[str] = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines += ["#"] if lines else []
        lines += textwrap.wrap(
            " ".join(paragraph.split()),
            WIDTH,
            initial_indent="# ",
            subsequent_indent="# ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    return lines
