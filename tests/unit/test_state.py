"""Per-cluster state: private whatever the umask, never someone else's, one secret for racing runs."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from imgbuild import state
from imgbuild.errors import UserError


@pytest.fixture(autouse=True)
def state_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "state"
    monkeypatch.setenv("IMGBUILD_STATE", str(root))
    return root


def test_dirs_and_files_are_private_under_a_wide_umask(state_root: Path) -> None:
    old = os.umask(0)
    try:
        state.authkeys_secret("c1")
        state.admin_key("c1")
    finally:
        os.umask(old)
    assert stat.S_IMODE(state_root.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_root / "c1").stat().st_mode) == 0o700
    for f in ("authkeys.secret", "admin_ed25519", "admin_ed25519.pub"):
        assert stat.S_IMODE((state_root / "c1" / f).stat().st_mode) == 0o600, f


def test_someone_elses_or_shared_dir_is_refused(state_root: Path) -> None:
    state_root.mkdir(mode=0o700)
    (state_root / "c1").mkdir()
    os.chmod(state_root / "c1", 0o777)
    with pytest.raises(UserError, match="writable by others"):
        state.authkeys_secret("c1")
    os.chmod(state_root / "c1", 0o700)
    os.chown(state_root / "c1", 65534, 65534)
    with pytest.raises(UserError, match="belongs to uid 65534"):
        state.authkeys_secret("c1")


def test_symlinks_are_never_followed(state_root: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    state_root.mkdir(mode=0o700)
    (state_root / "c1").symlink_to(target)
    with pytest.raises(UserError, match="is a symlink"):
        state.authkeys_secret("c1")
    (state_root / "c1").unlink()
    (state_root / "c1").mkdir(mode=0o700)
    (state_root / "c1" / "authkeys.secret").symlink_to(tmp_path / "planted")
    (tmp_path / "planted").write_text("ab" * 32)
    with pytest.raises(UserError, match="cannot read it"):
        state.authkeys_secret("c1")
    assert sorted(p.name for p in target.iterdir()) == []


@pytest.mark.parametrize("content", ["", "abc", "zz" * 32])
def test_empty_or_short_secret_is_an_error(state_root: Path, content: str) -> None:
    directory = state.cluster_dir("c1")
    state.write_private(directory / "authkeys.secret", content.encode())
    with pytest.raises(UserError, match="delete it to make a new one"):
        state.authkeys_secret("c1")


def _make(_: int) -> tuple[str, str, str]:
    key_path, public = state.admin_key("race")
    private = serialization.load_ssh_private_key(key_path.read_bytes(), None)
    derived = (
        private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    )
    return state.authkeys_secret("race"), public, derived


def test_racing_runs_agree_on_one_secret_and_one_key() -> None:
    with multiprocessing.get_context("fork").Pool(8) as pool:
        results = pool.map(_make, range(16))
    assert len({r[0] for r in results}) == 1
    assert len({r[1] for r in results}) == 1
    _secret, public, derived = results[0]
    assert public.split()[:2] == derived.split()[:2], "the deployed public key must match the private key"
