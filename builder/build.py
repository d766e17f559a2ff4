"""Build one role image: preflight, cache check, diskimage-builder, manifest, atomic publish."""

from __future__ import annotations

import ctypes
import functools
import ctypes.util
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from imgbuild.builder import dib, imagefs, mirror, preflight
from imgbuild.builder.cache import dib_cache_dir, image_key
from imgbuild.builder.elements import role_elements
from imgbuild.builder.mirror import Mirrors
from imgbuild.model import Build, Role
from imgbuild.publish import publish_dir

MANIFEST = "manifest.json"
SUFFIX = {"qcow2": "qcow2", "raw": "raw", "kernel": "vmlinuz", "initrd": "initrd"}


@dataclass(frozen=True)
class Result:
    manifest: dict
    cached: bool
    log: Path | None


def role_dir(output: Path, role: Role) -> Path:
    return output / role.value


def artefact(output: Path, role: Role, kind: str) -> Path:
    return role_dir(output, role) / f"{role.value}.{SUFFIX[kind]}"


def read_manifest(output: Path, role: Role) -> dict | None:
    path = role_dir(output, role) / MANIFEST
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _cache_hit(output: Path, role: Role, key: str) -> dict | None:
    """The existing manifest when it was built from the same inputs and its files are all there."""
    manifest = read_manifest(output, role)
    if not manifest or manifest.get("cache_key") != key:
        return None
    for entry in manifest["artefacts"].values():
        path = role_dir(output, role) / entry["file"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return None
    return manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _collect(stem: Path, dest: Path, role: Role, build: Build) -> dict[str, dict]:
    """Move dib's outputs into dest under stable names and describe each."""
    produced = {"kernel": stem.with_suffix(".vmlinuz"), "initrd": stem.with_suffix(".initrd")}
    produced |= {fmt: stem.with_suffix(f".{fmt}") for fmt in ("qcow2", "raw")}
    entries = {}
    for kind, src in produced.items():
        if kind not in build.formats and kind in ("qcow2", "raw"):
            continue
        target = dest / f"{role.value}.{SUFFIX[kind]}"
        src.rename(target)
        os.chmod(target, 0o644)
        entries[kind] = {"file": target.name, "bytes": target.stat().st_size, "sha256": _sha256(target)}
    return entries


def build_role(
    role: Role,
    build: Build,
    mirrors: Mirrors,
    output: Path,
    force: bool = False,
    on_phase: Callable[[str], None] = lambda _: None,
) -> Result:
    """Build (or reuse) the image of one role under output/<role>/."""
    key = image_key(role, build, mirrors, dib.dib_version())
    if not force and (hit := _cache_hit(output, role, key)):
        return Result(hit, cached=True, log=None)

    preflight.require_root()
    preflight.require_dib()
    preflight.require_tools(preflight.HOST_TOOLS)
    output.mkdir(parents=True, exist_ok=True)
    preflight.require_space(output)
    preflight.require_space(Path(tempfile.gettempdir()))
    mirror.check_reachable(mirrors, build.release)

    log = output / f"{role.value}.build.log"
    work = Path(tempfile.mkdtemp(prefix=f".{role.value}.", suffix=".tmp", dir=output))
    started = time.monotonic()
    try:
        stem = work / "dib" / role.value
        stem.parent.mkdir()
        # A directory of this build's own, so that anything a killed dib leaves behind can be released.
        (work / "tmp").mkdir()
        env = dib.environment(build, mirrors, dib_cache_dir(role, build, mirrors), work / "tmp")
        dib.run(dib.command(role, build, stem), env, log, on_phase)
        on_phase("writing manifest")
        packages = imagefs.packages(stem.with_suffix(".raw"))
        final = work / role.value
        final.mkdir()
        artefacts = _collect(stem, final, role, build)
        manifest = {
            "role": role.value,
            "cache_key": key,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1),
            "diskimage_builder": dib.dib_version(),
            "elements": role_elements(role),
            "release": build.release,
            "kernel_flavour": build.kernel,
            "mirrors": {"main": mirrors.main, "security": mirrors.security},
            "artefacts": artefacts,
            "packages": packages,
        }
        (final / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(work / "dib")
        publish_dir(final, role_dir(output, role))
        return Result(manifest, cached=False, log=log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_roles(
    roles: list[Role],
    build: Build,
    mirrors: Mirrors,
    output: Path,
    force: bool,
    on_phase: Callable[[Role, str], None],
) -> dict[Role, Result]:
    """Build the roles in parallel (dib is mostly I/O and dpkg); the first failure is raised."""
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        futures = {
            role: pool.submit(build_role, role, build, mirrors, output, force, functools.partial(on_phase, role))
            for role in roles
        }
        try:
            return {role: future.result() for role, future in futures.items()}
        except BaseException:
            dib.stop_all()
            raise
