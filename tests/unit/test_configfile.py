"""The file `imgbuild init` writes: every setting of the model, explained, and read back unchanged."""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from imgbuild import configfile, model

CLUSTERS = Path(__file__).parents[1] / "integration" / "clusters"
SETTING = re.compile(r"^(?:# )?(\w+) = ")
COMMENTED_OUT = re.compile(r"^# (\w+ = )", re.MULTILINE)
PLAIN = st.one_of(st.text(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False))


def _tables(
    root: type[BaseModel] = model.Cluster, path: str = "", header: str = ""
) -> Iterator[tuple[str, type[BaseModel], list[str]]]:
    """(table header, model, its plain-valued fields) of the root ("" header) and every table reachable from it."""
    plain, subs = [], []
    for name, info in root.model_fields.items():
        many = typing.get_origin(info.annotation) is list
        sub = typing.get_args(info.annotation)[0] if many else info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            subs.append((f"{path}.{name}" if path else name, sub, many))
        else:
            plain.append(name)
    yield header, root, plain
    for key, sub, many in subs:
        yield from _tables(sub, key, f"[[{key}]]" if many else f"[{key}]")


def _settings() -> set[tuple[str, str]]:
    """(table header, key) of every plain-valued field: what the file must show."""
    return {(header, name) for header, _, names in _tables() for name in names}


def _shown(text: str) -> set[tuple[str, str]]:
    """(table header, key) of every `key = ` and `# key = ` line of the file."""
    header, shown = "", set()
    for line in text.splitlines():
        if line.startswith("["):
            header = line
        elif match := SETTING.match(line):
            shown.add((header, match[1]))
    return shown


def _round_trip(cluster: model.Cluster) -> model.Cluster:
    return model.parse(tomllib.loads(configfile.render(cluster)), "rendered")


def test_every_field_appears_under_its_table() -> None:
    assert _settings() <= _shown(configfile.render(model.Cluster()))


def test_every_field_and_table_is_explained() -> None:
    for header, table, names in _tables():
        assert table.__doc__, f"{table.__name__} needs a docstring: it explains {header or 'the file'}"
        for name in names:
            info = table.model_fields[name]
            assert info.description, f"{table.__name__}.{name} needs a description: the file would show a bare key"
            if info.default is None:
                assert info.examples, f"{table.__name__}.{name} may be unset: it needs examples=[...] to show"


def test_lines_fit_the_width() -> None:
    assert max(map(len, configfile.render(model.Cluster()).splitlines())) <= configfile.WIDTH


@pytest.mark.parametrize("name", ["custom.toml", "keepalived.toml"])
def test_other_clusters_read_back_unchanged(name: str) -> None:
    cluster = model.load(CLUSTERS / name)
    assert cluster != model.Cluster() and _round_trip(cluster) == cluster


def test_uncommenting_every_example_sets_every_field() -> None:
    """Each example is a valid value, so an operator can uncomment one and edit it."""
    text = configfile.render(model.Cluster())
    assert COMMENTED_OUT.search(text), "the default leaves some fields unset"
    cluster = model.parse(tomllib.loads(COMMENTED_OUT.sub(r"\1", text)), "uncommented")
    assert not COMMENTED_OUT.search(configfile.render(cluster)), "an example left a field unset"
    assert _round_trip(cluster) == cluster


def test_awkward_strings_read_back_unchanged() -> None:
    key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 "quoted" back\\slash ünïcode 🐒'
    cluster = model.parse({"admin": {"ssh_keys": [key], "password": 'pa"ss\\wörd 🐒'}})
    assert _round_trip(cluster) == cluster


@given(value=st.one_of(PLAIN, st.lists(PLAIN, max_size=4)))
def test_any_plain_value_is_a_toml_literal(value: object) -> None:
    assert tomllib.loads(f"key = {configfile._value(value)}")["key"] == value
