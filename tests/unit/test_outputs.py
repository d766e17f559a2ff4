"""Outputs and kept state: never written through a symlink, and `verify --down` removes only its own."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from imgbuild import model
from imgbuild.cloudinit import render, seeds
from imgbuild.errors import UserError
from imgbuild.publish import output_dir, publish_dir, staged
from imgbuild.qemu import netns
from imgbuild.run import run, start
from imgbuild.verify.cluster import remove_kept

CLUSTER = model.Cluster()
SECRETS = render.Secrets(authkeys="ab" * 32, admin_keys=["ssh-ed25519 AAAAC3Nza test"])


def test_a_symlinked_seeds_dir_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "etc"
    target.mkdir(mode=0o755)
    (tmp_path / "seeds").symlink_to(target)
    with pytest.raises(UserError, match="is a symlink"):
        seeds.write_node_seed(CLUSTER, CLUSTER.node("loadb1"), SECRETS, tmp_path / "seeds")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755 and not list(target.iterdir())


def test_a_symlinked_node_dir_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    out = output_dir(tmp_path / "seeds", private=True)
    (tmp_path / "elsewhere").mkdir()
    (out / "loadb1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UserError, match="is a symlink"):
        seeds.write_node_seed(CLUSTER, CLUSTER.node("loadb1"), SECRETS, out)
    assert (out / "loadb1").is_symlink() and not list((tmp_path / "elsewhere").iterdir())
    assert [p.name for p in out.iterdir()] == ["loadb1"], "no staging directory left behind"


def test_publish_replaces_a_real_directory(tmp_path: Path) -> None:
    final, new = tmp_path / "final", tmp_path / "new"
    final.mkdir()
    (final / "old").write_text("old")
    new.mkdir()
    (new / "fresh").write_text("fresh")
    publish_dir(new, final)
    assert [p.name for p in final.iterdir()] == ["fresh"] and not new.exists()


def _kept(tmp_path: Path, workdir: Path) -> dict[str, Any]:
    return {"netns": "imgbuild-999999", "pids": [], "workdir": str(workdir), "nodes": {"webserver1": "192.168.0.101"}}


def test_staged_output_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "out"
    final.mkdir()
    (final / "old").write_text("old")
    with pytest.raises(RuntimeError), staged(final) as work:
        (work / "half").write_text("half")
        raise RuntimeError("the build failed")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in final.iterdir()] == ["old"]
    with staged(final, mode=0o755) as work:
        (work / "new").write_text("new")
        assert not (final / "new").exists()  # nothing at final until the block is done
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in final.iterdir()] == ["new"]
    assert stat.S_IMODE(final.stat().st_mode) == 0o755


def test_down_removes_only_the_nodes_overlays(tmp_path: Path) -> None:
    workdir = tmp_path / "verify-20260101-000000"
    workdir.mkdir()
    for name in ("webserver1.qcow2", "unrelated.qcow2", "report.json"):
        (workdir / name).write_text("x")
    remove_kept(_kept(tmp_path, workdir))
    assert sorted(p.name for p in workdir.iterdir()) == ["report.json", "unrelated.qcow2"]


@pytest.mark.parametrize(
    "change",
    [
        {"workdir": "/etc"},
        {"workdir": "relative/verify-20260101-000000"},
        {"netns": "default"},
        {"nodes": {"../../x": "1"}},
        {"pids": ["1; rm"]},
        {"workdir": None},
    ],
)
def test_down_refuses_a_record_that_is_not_a_verify_runs(tmp_path: Path, change: dict[str, Any]) -> None:
    victim = tmp_path / "etc"
    victim.mkdir()
    (victim / "webserver1.qcow2").write_text("keep me")
    record = _kept(tmp_path, tmp_path / "verify-20260101-000000") | change
    with pytest.raises(UserError):
        remove_kept(record)
    assert (victim / "webserver1.qcow2").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")
def test_only_a_dead_runs_empty_namespace_is_removed() -> None:
    dead, alive = f"{netns.PREFIX}4194305", f"{netns.PREFIX}{os.getpid()}"  # 4194305 > the largest pid
    busy = f"{netns.PREFIX}4194306"
    for name in (dead, alive, busy):
        run(["ip", "netns", "add", name])
    sleeper = start(["ip", "netns", "exec", busy, "sleep", "30"])
    try:
        for _ in range(50):  # until the sleeper is inside
            if run(["ip", "netns", "pids", busy], text=True).stdout.strip():
                break
            time.sleep(0.1)
        assert dead in netns.remove_orphans()
        assert dead not in netns.existing() and {alive, busy} <= set(netns.existing())
    finally:
        sleeper.kill()
        sleeper.wait()
        for name in (dead, alive, busy):
            netns.delete(name)
