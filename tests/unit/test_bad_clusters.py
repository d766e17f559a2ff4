"""A corpus of bad cluster files: each exits 2 with exactly one `error:` line and no traceback.

Every file in bad_clusters/ starts with `# expect: <text>`, the text its one line must hold.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgbuild.cli import app

CORPUS = sorted((Path(__file__).parent / "bad_clusters").glob("*.toml"))


def one_error_line(args: list[str], tmp_path: Path) -> str:
    """Run the CLI in-process on a fresh state dir; return its one error line."""
    result = CliRunner().invoke(app, args, env={"IMGBUILD_STATE": str(tmp_path / "state")})
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert not (tmp_path / "state").exists(), "a bad file must not create state"
    return lines[0]


def test_corpus_is_large() -> None:
    assert len(CORPUS) >= 60


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_bad_cluster_file(path: Path, tmp_path: Path) -> None:
    expect = path.read_text().splitlines()[0].removeprefix("# expect: ")
    line = one_error_line(["render", "--node", "loadb1", "--config", str(path)], tmp_path)
    assert expect in line and line.startswith(f"error: {path}"), line


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [
        ("", None, "is a directory"),
        ("missing.toml", None, "no such file; write one with `imgbuild init"),
        ("empty.toml", b"", "holds no settings"),
        ("bin.toml", b"\xff\xfe\x00\x01name", "not a text file (not UTF-8)"),
        ("big.toml", b"# " + b"x" * 300_000, "larger than 256 KiB"),
    ],
    ids=["directory", "missing", "empty", "binary", "huge"],
)
def test_bad_paths(name: str, content: bytes | None, expect: str, tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    path = tmp_path / "files" / name
    if content is not None:
        path.write_bytes(content)
    assert expect in one_error_line(["render", "--node", "loadb1", "--config", str(path)], tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.toml"
    path.write_text('name = "x"')
    path.chmod(0)
    assert "cannot read it" in one_error_line(["render", "--node", "loadb1", "--config", str(path)], tmp_path)


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["render", "--node", "nosuch"], "no node named 'nosuch'"),
        (["render", "--node", "loadb1", "--part", "vendor-data"], "unknown part 'vendor-data'"),
        (["build", "--role", "database"], "database"),
        (["verify", "--rounds", "3"], "--rounds repeats the fault matrix; add --faults"),
    ],
)
def test_bad_arguments(args: list[str], expect: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, args, env={"IMGBUILD_STATE": str(tmp_path / "state")})
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], lines


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    """The installed entry point, not only the in-process runner: markup in a key name once crashed it."""
    path = next(p for p in CORPUS if "key-with-markup" in p.name)
    env = {**os.environ, "IMGBUILD_STATE": str(tmp_path / "state")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "imgbuild"), "render", "--node", "loadb1", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: {path}: [/x]: unknown key"], (
        result.stderr
    )


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["verify", "--rounds", "abc"], "Invalid value for '--rounds'"),
        (["build", "--nope"], "No such option: --nope"),
        (["nosuch"], "No such command 'nosuch'"),
        (["render"], "Missing option '--node'"),
        (["build", "--release", "sid"], "'sid' is not one of 'trixie', 'bookworm'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], expect: str, tmp_path: Path) -> None:
    """click's usage errors through the real entry point: one line and exit 2, not a framed block."""
    env = {**os.environ, "IMGBUILD_STATE": str(tmp_path / "state")}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "imgbuild"), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], (
        result.stderr
    )
