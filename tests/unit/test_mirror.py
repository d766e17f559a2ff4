"""Mirror detection from the host's apt sources, in both formats, and its overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbuild.builder import mirror
from imgbuild.errors import UserError

DEB822 = """Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.internal/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.internal/debian-security
Suites: bookworm-security
Components: main
"""


def _apt(tmp_path: Path, main_list: str = "", parts: dict[str, str] | None = None) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(main_list)
    for name, text in (parts or {}).items():
        (tmp_path / "sources.list.d" / name).write_text(text)
    return tmp_path


def test_deb822_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGBUILD_MIRROR", raising=False)
    monkeypatch.delenv("IMGBUILD_SECURITY_MIRROR", raising=False)
    apt = _apt(
        tmp_path, parts={"debian.sources": DEB822, "other.list": "deb https://packages.example/apt cloud-sdk main\n"}
    )
    assert mirror.resolve("bookworm", apt_etc=apt) == mirror.Mirrors(
        "http://mirror.internal/debian", "http://mirror.internal/debian-security"
    )


def test_one_line_sources_with_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGBUILD_MIRROR", raising=False)
    monkeypatch.delenv("IMGBUILD_SECURITY_MIRROR", raising=False)
    text = (
        "# comment\n"
        "deb-src http://x/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://a/debian/ bookworm main contrib\n"
        "deb http://a/sec bookworm-security main\n"
    )
    assert mirror.resolve("bookworm", apt_etc=_apt(tmp_path, text)) == mirror.Mirrors("http://a/debian", "http://a/sec")


def test_flag_and_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = _apt(tmp_path, parts={"debian.sources": DEB822})
    monkeypatch.setenv("IMGBUILD_MIRROR", "http://env/debian")
    monkeypatch.delenv("IMGBUILD_SECURITY_MIRROR", raising=False)
    assert mirror.resolve("bookworm", apt_etc=apt).main == "http://env/debian"
    assert mirror.resolve("bookworm", main="http://flag/debian", apt_etc=apt).main == "http://flag/debian"


def test_no_mirror_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IMGBUILD_MIRROR", raising=False)
    monkeypatch.delenv("IMGBUILD_SECURITY_MIRROR", raising=False)
    with pytest.raises(UserError, match="--mirror"):
        mirror.resolve("bookworm", apt_etc=_apt(tmp_path))


def test_unreachable_mirror_is_one_clear_line() -> None:
    with pytest.raises(UserError, match="mirror unreachable"):
        mirror.release_epoch(
            mirror.Mirrors("http://127.0.0.1:9/debian", "http://127.0.0.1:9/sec"), "bookworm", timeout=2
        )


def _release(root: Path, suite: str, text: str) -> None:
    (root / "dists" / suite).mkdir(parents=True)
    (root / "dists" / suite / "Release").write_text(text)


def test_source_date_epoch_is_the_newest_release_date(tmp_path: Path) -> None:
    _release(tmp_path / "debian", "trixie", "Origin: Debian\nDate: Sat, 28 Nov 2026 09:12:40 UTC\nSuite: stable\n")
    _release(tmp_path / "sec", "trixie-security", "Origin: Debian\nDate: Tue, 01 Dec 2026 18:01:02 UTC\n")
    mirrors = mirror.Mirrors((tmp_path / "debian").as_uri(), (tmp_path / "sec").as_uri())
    assert mirror.release_epoch(mirrors, "trixie") == 1796148062  # 2026-12-01T18:01:02Z


def test_a_release_file_without_a_date_is_one_clear_line(tmp_path: Path) -> None:
    _release(tmp_path / "debian", "trixie", "Origin: Debian\n")
    _release(tmp_path / "sec", "trixie-security", "Date: nonsense\n")
    mirrors = mirror.Mirrors((tmp_path / "debian").as_uri(), (tmp_path / "sec").as_uri())
    with pytest.raises(UserError, match="not a Debian Release file"):
        mirror.release_epoch(mirrors, "trixie")


def test_another_release_from_the_hosts_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A bookworm host builds trixie images from the archive it uses itself, not from a third party.
    monkeypatch.delenv("IMGBUILD_MIRROR", raising=False)
    monkeypatch.delenv("IMGBUILD_SECURITY_MIRROR", raising=False)
    apt = _apt(
        tmp_path, parts={"a-vendor.list": "deb https://packages.example/apt cloud-sdk main\n", "debian.sources": DEB822}
    )
    assert mirror.resolve("trixie", apt_etc=apt) == mirror.Mirrors(
        "http://mirror.internal/debian", "http://mirror.internal/debian-security"
    )
