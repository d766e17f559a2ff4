"""Read files of a built (partitionless ext4) image with debugfs: no loop device, no mount."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from imgbuild.run import run


def _debugfs(image: Path, request: str) -> subprocess.CompletedProcess[bytes]:
    return run(["debugfs", "-R", request, image], why=f"reading {image}", hint="install e2fsprogs")


def read(image: Path, path: str) -> bytes | None:
    """The contents of a regular file in the image, or None when it does not exist."""
    if mode(image, path) is None:
        return None
    return _debugfs(image, f"cat {path}").stdout


def read_text(image: Path, path: str) -> str | None:
    data = read(image, path)
    return None if data is None else data.decode()


def mode(image: Path, path: str) -> int | None:
    """The full st_mode of a path in the image (file type included), or None when absent."""
    out = _debugfs(image, f"stat {path}")
    match = re.search(rb"Mode:\s+(\d+)", out.stdout)
    if not match:
        return None
    type_bits = {b"regular": 0o100000, b"directory": 0o040000, b"symlink": 0o120000}
    kind = re.search(rb"Type: (\w+)", out.stdout)
    return int(match.group(1), 8) | type_bits.get(kind.group(1) if kind else b"", 0)


def listdir(image: Path, path: str) -> list[str]:
    """Names in a directory of the image (without . and ..); empty when absent."""
    out = _debugfs(image, f"ls -p {path}").stdout.decode(errors="replace")
    names = [line.split("/")[5] for line in out.splitlines() if line.count("/") >= 6]
    return sorted(n for n in names if n not in (".", ".."))


def dump_dir(image: Path, path: str, dest: Path) -> Path:
    """Copy a directory of the image, recursively, into dest (which must exist); its copy."""
    _debugfs(image, f"rdump {path} {dest}")
    return dest / Path(path).name


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    architecture: str
    source: str
    source_version: str


def parse_status(status: str) -> list[DebPackage]:
    """Installed packages of a dpkg status file, as `dpkg-query -W` lists them."""
    found = []
    for stanza in status.split("\n\n"):
        fields: dict[str, str] = dict(re.findall(r"^(Package|Version|Architecture|Source|Status): (.*)$", stanza, re.M))
        if "Package" not in fields or not fields.get("Status", "").endswith(" installed"):
            continue
        # "Source: name (version)" when the binary's version differs from its source's
        source = re.fullmatch(r"(\S+)(?: \((\S+)\))?", fields.get("Source", fields["Package"]))
        binary_version = fields.get("Version", "")
        name, version = (source.group(1), source.group(2)) if source else (fields["Package"], None)
        found.append(
            DebPackage(
                fields["Package"], binary_version, fields.get("Architecture", ""), name, version or binary_version
            )
        )
    return sorted(found, key=lambda p: (p.name, p.architecture))


def installed(image: Path) -> list[DebPackage]:
    """Installed Debian packages, from the image's dpkg status."""
    return parse_status(read_text(image, "/var/lib/dpkg/status") or "")


def packages(image: Path) -> dict[str, str]:
    """Installed Debian packages and their versions, by name."""
    return {p.name: p.version for p in installed(image)}
