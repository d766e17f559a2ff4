"""Which diskimage-builder elements make a role image, and where ours live."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from imgbuild.model import Role

OS_ELEMENT = "debian-minimal"


def elements_dir() -> Path:
    """The directory of imgbuild's own elements (package data, or the source tree)."""
    return Path(str(resources.files("imgbuild.elements")))


# The web server image's ARP sysctls: the element writes this file, verify expects its values.
ARP_SYSCTLS_FILE = "imgbuild-webserver/static/etc/sysctl.d/60-imgbuild-lvs-dr.conf"


def arp_sysctls() -> dict[str, int]:
    """key -> value of the web server image's ARP sysctls, read from its element."""
    lines = (elements_dir() / ARP_SYSCTLS_FILE).read_text().splitlines()
    return {
        key.strip(): int(value)
        for line in lines
        if line.strip() and not line.startswith("#")
        for key, value in [line.split("=")]
    }


def role_elements(role: Role) -> list[str]:
    """The elements passed to disk-image-create: the OS, then our role element (it pulls in the rest)."""
    return [OS_ELEMENT, f"imgbuild-{role.value}"]


def element_files(role: Role) -> list[Path]:
    """Every file of our elements that a role image is made from, for the cache key (docs are not)."""
    root = elements_dir()
    wanted = {f"imgbuild-{role.value}"}
    pending = list(wanted)
    while pending:
        deps = root / pending.pop() / "element-deps"
        if deps.exists():
            for dep in deps.read_text().split():
                if (root / dep).is_dir() and dep not in wanted:
                    wanted.add(dep)
                    pending.append(dep)
    return sorted(
        p
        for name in wanted
        for p in (root / name).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.name != "README.rst"
    )
