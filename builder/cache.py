"""Cache keys and locations: what a role image is built from decides whether to rebuild it."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from imgbuild import __version__
from imgbuild.builder.elements import element_files, elements_dir, role_elements
from imgbuild.builder.mirror import Mirrors
from imgbuild.model import Build, Role


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("IMGBUILD_CACHE", Path(base) / "imgbuild"))


def dib_cache_dir(role: Role, build: Build, mirrors: Mirrors) -> Path:
    """diskimage-builder's cache (debootstrap tarball, apt archives) per release, mirror and role.

    Per role, because dib neither locks its tarball nor shares the apt archive
    lock across chroots, and the roles build in parallel.
    """
    key = hashlib.sha256(f"{build.release}\0{mirrors.main}".encode()).hexdigest()[:16]
    return cache_root() / "dib" / f"{build.release}-{key}" / role.value


def image_key(role: Role, build: Build, mirrors: Mirrors, dib_version: str) -> str:
    """A digest of every input of a role image: same key, same image."""
    digest = hashlib.sha256()
    inputs = {
        "imgbuild": __version__,
        "role": role.value,
        "elements": role_elements(role),
        "build": build.model_dump(mode="json", exclude={"mirror", "security_mirror"}),
        "mirrors": [mirrors.main, mirrors.security],
        "diskimage-builder": dib_version,
    }
    digest.update(json.dumps(inputs, sort_keys=True).encode())
    root = elements_dir()
    for path in element_files(role):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(oct(path.stat().st_mode & 0o111).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
