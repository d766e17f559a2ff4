"""Element composition, cache keys and the dib command line, without building anything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from imgbuild import paths
from imgbuild.builder import cache, dib, elements, openstack
from imgbuild.builder.mirror import Mirrors
from imgbuild.model import Build, OpenStack, Role

MIRRORS = Mirrors("http://m/debian", "http://m/debian-security")


def test_role_elements_pull_in_common() -> None:
    assert elements.role_elements(Role.loadbalancer) == ["debian-minimal", "imgbuild-loadbalancer"]
    names = {p.relative_to(elements.elements_dir()).parts[0] for p in elements.element_files(Role.webserver)}
    assert names == {"imgbuild-common", "imgbuild-webserver"}


def test_hooks_are_executable_and_phase_ordered() -> None:
    root = elements.elements_dir()
    hooks = [p for p in root.glob("*/*.d/*") if p.is_file() and p.parent.name != "environment.d"]
    assert hooks
    for hook in hooks:
        assert os.access(hook, os.X_OK), hook
        assert hook.name[:2].isdigit(), f"{hook} is not named by order"


def test_no_node_data_or_secret_in_elements() -> None:
    node_values = {"192.168.", "loadb1", "webserver1", "example.com"}
    for path in elements.elements_dir().rglob("*"):
        if path.is_file() and path.suffix != ".pyc":
            text = path.read_text(errors="replace")
            assert not any(v in text for v in node_values), path
            assert "PRIVATE KEY" not in text and path.name not in ("authkeys", "ha.cf", "haresources"), path


def test_cache_key_tracks_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = cache.image_key(Role.loadbalancer, Build(), MIRRORS, "3.43.0")
    assert base == cache.image_key(Role.loadbalancer, Build(), MIRRORS, "3.43.0")
    assert base != cache.image_key(Role.webserver, Build(), MIRRORS, "3.43.0")
    assert base != cache.image_key(Role.loadbalancer, Build(kernel="amd64"), MIRRORS, "3.43.0")
    assert base != cache.image_key(
        Role.loadbalancer, Build(), Mirrors("http://other/debian", MIRRORS.security), "3.43.0"
    )
    assert base != cache.image_key(Role.loadbalancer, Build(), MIRRORS, "3.44.0")
    # an edited element file changes the key
    copy = tmp_path / "elements"
    shutil.copytree(elements.elements_dir(), copy)
    monkeypatch.setattr(elements, "elements_dir", lambda: copy)
    monkeypatch.setattr(cache, "elements_dir", lambda: copy)
    assert cache.image_key(Role.loadbalancer, Build(), MIRRORS, "3.43.0") == base
    (copy / "imgbuild-common" / "README.rst").write_text("docs only\n", encoding="utf-8")
    assert cache.image_key(Role.loadbalancer, Build(), MIRRORS, "3.43.0") == base, "a doc edit must not rebuild"
    (copy / "imgbuild-common" / "package-installs.yaml").write_text("vim:\n", encoding="utf-8")
    assert cache.image_key(Role.loadbalancer, Build(), MIRRORS, "3.43.0") != base


def test_dib_command_and_environment(tmp_path: Path) -> None:
    cmd = dib.command(Role.webserver, Build(image_size_gb=2.0), tmp_path / "webserver")
    assert cmd[0] == "disk-image-create" and cmd[-2:] == ["debian-minimal", "imgbuild-webserver"]
    assert cmd[cmd.index("-t") + 1] == "raw" and "2.0" in cmd
    env = dib.environment(Build(), MIRRORS, tmp_path / "cache", tmp_path / "tmp", 1796148062)
    assert env["SOURCE_DATE_EPOCH"] == "1796148062"
    assert env["DIB_DISTRIBUTION_MIRROR"] == "http://m/debian"
    assert env["DIB_DEBIAN_SECURITY_MIRROR"] == "http://m/debian-security"
    assert env["DIB_RELEASE"] == "trixie" and env["IMGBUILD_KERNEL"] == "cloud-amd64"
    assert Path(env["ELEMENTS_PATH"]) == elements.elements_dir()
    assert env["TMP_DIR"] == str(tmp_path / "tmp") and env["DIB_IMAGE_CACHE"] == str(tmp_path / "cache")


def test_dib_cache_is_per_role_and_mirror() -> None:
    a = cache.dib_cache_dir(Role.loadbalancer, Build(), MIRRORS)
    assert a != cache.dib_cache_dir(Role.webserver, Build(), MIRRORS)
    assert a != cache.dib_cache_dir(Role.loadbalancer, Build(), Mirrors("http://x", "http://y"))


@pytest.mark.parametrize(
    "cpuinfo,dev_ok,expected",
    [("flags\t: fpu vmx sse", True, True), ("flags\t: fpu sse", True, False), ("flags\t: svm", False, False)],
)
def test_kvm_only_with_hardware_flags(tmp_path: Path, cpuinfo: str, dev_ok: bool, expected: bool) -> None:
    from imgbuild.qemu import accel

    dev = tmp_path / "kvm"
    if dev_ok:
        dev.write_text("")
    assert accel.kvm_usable(cpuinfo, dev) is expected


def test_each_release_has_its_own_images_cache_and_key() -> None:
    trixie, bookworm = Build(release="trixie"), Build(release="bookworm")
    assert paths.release_dir(Path("images"), "trixie") != paths.release_dir(Path("images"), "bookworm")
    assert cache.dib_cache_dir(Role.webserver, trixie, MIRRORS) != cache.dib_cache_dir(
        Role.webserver, bookworm, MIRRORS
    )
    assert cache.image_key(Role.webserver, trixie, MIRRORS, "3.43.0") != cache.image_key(
        Role.webserver, bookworm, MIRRORS, "3.43.0"
    )
    assert dib.environment(trixie, MIRRORS, Path("c"), Path("t"), 0)["DIB_RELEASE"] == "trixie"
    assert openstack.image_properties("qcow2", 1, "trixie", OpenStack())["properties"]["os_version"] == "13"


def test_arp_sysctls_come_from_the_web_server_element() -> None:
    """verify's expectation and the image share one file; `all` only, so any interface name works."""
    assert elements.arp_sysctls() == {"net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2}
