"""Build one role image: preflight, cache check, diskimage-builder, manifest, atomic publish."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from imgbuild import ui
from imgbuild.builder import dib, imagefs, mirror, preflight, rootfs, sbom, wholedisk
from imgbuild.builder.cache import dib_cache_dir, image_key
from imgbuild.builder.elements import role_elements
from imgbuild.builder.mirror import Mirrors
from imgbuild.builder.openstack import GlanceImage, image_properties
from imgbuild.model import Build, Cluster, OpenStack, Role
from imgbuild.paths import MANIFEST, SBOM_SUFFIX, SUFFIX, build_log, release_dir, role_dir
from imgbuild.publish import output_dir, staged, write_json
from imgbuild.run import logging_to, run

# zstd, faster than zlib both ways. Default 64 KiB clusters: QEMU decompresses a whole cluster
# for every read it serves, and with 2 MiB clusters a boot from the image read 2013 times
# (4 GB decompressed, seconds of host CPU per node); 3 % bigger than 2 MiB clusters.
QEMU_IMG_OPTIONS = "compression_type=zstd"


class Artefact(TypedDict, total=False):
    file: str
    bytes: int
    sha256: str
    sha1: str
    virtual_bytes: int  # whole disks: the size a VM sees


class SbomRecord(TypedDict):
    file: str  # <role>.spdx.json, SPDX 2.3
    sha256: str
    packages: int  # installed Debian packages it lists
    licensed: int  # of which with a licence from a machine-readable copyright file
    seconds: float  # what writing it added to the build


class Manifest(TypedDict):
    """manifest.json: what a role image is, what it was built from, and its Glance properties."""

    role: str
    cache_key: str  # builder.cache.image_key of the inputs: equal key, reusable image
    built_at: str
    source_date_epoch: int  # every timestamp in the image: the mirror state's (mirror.release_epoch)
    build_seconds: float
    root_filesystems: rootfs.Timings  # remaking dib's image as reproducible ext4 and squashfs
    disk_assembly_seconds: float
    diskimage_builder: str
    elements: list[str]
    release: str
    kernel_flavour: str
    mirrors: dict[str, str]
    artefacts: dict[str, Artefact]  # kind (paths.SUFFIX) -> file
    packages: dict[str, str]  # name -> version, as dpkg lists them in the image
    openstack: GlanceImage
    sbom: SbomRecord


@dataclass(frozen=True)
class Result:
    manifest: Manifest
    cached: bool
    log: Path | None


def read_manifest(output: Path, role: Role) -> Manifest | None:
    path = role_dir(output, role) / MANIFEST
    try:
        manifest: Manifest = json.loads(path.read_text())
        return manifest
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _cache_hit(output: Path, role: Role, key: str) -> Manifest | None:
    """The existing manifest when it was built from the same inputs and its files are all there."""
    manifest = read_manifest(output, role)
    if not manifest or manifest.get("cache_key") != key:
        return None
    for entry in manifest["artefacts"].values():
        path = role_dir(output, role) / entry["file"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            return None
    return manifest


def _digests(path: Path) -> tuple[str, str]:
    """sha256 and sha1 in one read: the manifest's checksum and the one SPDX 2.3 requires of a file."""
    sha256, sha1 = hashlib.sha256(), hashlib.sha1()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def _wanted(build: Build) -> list[str]:
    return ["kernel", "initrd", "squashfs", *build.formats, *(f"disk-{fmt}" for fmt in build.disk_formats)]


def _qcow2(raw: Path, qcow2: Path) -> None:
    """A compressed qcow2 of a raw image (the same bytes for the same raw)."""
    run(
        ["qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", QEMU_IMG_OPTIONS, raw, qcow2],
        why=f"converting {raw.name} to qcow2",
        hint="check the free space of the output directory",
    )


def _root_filesystems(stem: Path, build: Build, identity: uuid.UUID, epoch: int) -> rootfs.Timings:
    """<stem>.raw, .squashfs (and .qcow2): builder.rootfs's, in place of dib's raw image."""
    dib_raw, ext4 = stem.with_suffix(".raw"), stem.with_suffix(".ext4")
    timings = rootfs.remake(dib_raw, ext4, stem.with_suffix(".squashfs"), identity, epoch)
    ext4.replace(dib_raw)
    if "qcow2" in build.formats:
        _qcow2(dib_raw, stem.with_suffix(".qcow2"))
    return timings


def _whole_disk(stem: Path, build: Build, work: Path, identity: uuid.UUID, epoch: int) -> int:
    """Assemble <stem>.disk.raw (and .disk.qcow2) from the root filesystem; its virtual size."""
    disk = stem.with_suffix(".disk.raw")
    work.mkdir()
    lay = wholedisk.assemble(stem.with_suffix(".raw"), disk, work, identity, epoch)
    if "qcow2" in build.disk_formats:
        _qcow2(disk, stem.with_suffix(".disk.qcow2"))
    return lay.disk_bytes


def _collect(stem: Path, dest: Path, role: Role, build: Build) -> dict[str, Artefact]:
    """Move the outputs (dib's, its element hooks', the whole disk) into dest under stable names."""
    entries: dict[str, Artefact] = {}
    for kind in _wanted(build):
        target = dest / f"{role.value}.{SUFFIX[kind]}"
        stem.with_suffix(f".{SUFFIX[kind]}").rename(target)
        os.chmod(target, 0o644)
        sha256, sha1 = _digests(target)
        entries[kind] = {"file": target.name, "bytes": target.stat().st_size, "sha256": sha256, "sha1": sha1}
    return entries


def _openstack(role: Role, release: str, artefacts: dict[str, Artefact], openstack: OpenStack) -> GlanceImage:
    """The Glance properties of the role's whole disk (qcow2 when built, else raw)."""
    kind = "disk-qcow2" if "disk-qcow2" in artefacts else "disk-raw"
    disk = artefacts[kind]
    glance = image_properties(kind.removeprefix("disk-"), disk["virtual_bytes"], release, openstack)
    return {"name": f"imgbuild-{role.value}", "artefact": kind, "file": disk["file"], **glance}


def _write_manifest(directory: Path, manifest: Manifest) -> None:
    write_json(directory / MANIFEST, manifest)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _sbom(directory: Path, role: Role, release: str, created: str, artefacts: dict[str, Artefact]) -> SbomRecord:
    """Write <role>.spdx.json beside the artefacts, from the packages in the role's root filesystem."""
    started = time.monotonic()
    raw = directory / artefacts["raw"]["file"]
    packages = imagefs.installed(raw)
    licences = sbom.image_licences(raw, packages)
    document = sbom.document(
        image_name=f"imgbuild-{role.value}",
        release=release,
        created=created,
        packages=packages,
        licences=licences,
        artefacts={
            kind: (a["file"], a["sha256"], a.get("sha1") or _digests(directory / a["file"])[1])
            for kind, a in artefacts.items()
        },
        namespace_seed=f"imgbuild/{role.value}/{release}/{artefacts['raw']['sha256']}",
    )
    path = directory / f"{role.value}.{SBOM_SUFFIX}"
    write_json(path, document)
    licensed = sum(1 for p in packages if p.name in licences)
    return {
        "file": path.name,
        "sha256": _digests(path)[0],
        "packages": len(packages),
        "licensed": licensed,
        "seconds": round(time.monotonic() - started, 2),
    }


def build_role(
    role: Role,
    build: Build,
    mirrors: Mirrors,
    output: Path,
    openstack: OpenStack,
    force: bool = False,
    on_phase: Callable[[str], None] = lambda _: None,
    epoch: int | None = None,
) -> Result:
    """Build (or reuse) the image of one role under output/<role>/. Its timestamps are epoch's
    (SOURCE_DATE_EPOCH); by default the mirror state's."""
    key = image_key(role, build, mirrors, dib.dib_version())
    if not force and (hit := _cache_hit(output, role, key)):
        # Glance properties are not image inputs: a changed min_ram rewrites the manifest only.
        # An image built before imgbuild wrote SBOMs gets one from its root filesystem.
        fresh = _openstack(role, hit["release"], hit["artefacts"], openstack)
        if hit.get("openstack") != fresh or "sbom" not in hit:
            hit["openstack"] = fresh
            if "sbom" not in hit:
                created = _iso(hit["source_date_epoch"]) if "source_date_epoch" in hit else hit["built_at"]
                hit["sbom"] = _sbom(role_dir(output, role), role, hit["release"], created, hit["artefacts"])
            _write_manifest(role_dir(output, role), hit)
        return Result(hit, cached=True, log=None)

    preflight.require_root()
    preflight.require_dib()
    preflight.require_tools(preflight.HOST_TOOLS, preflight.HOST_FILES)
    output_dir(output)
    preflight.require_space(output)
    preflight.require_space(Path(tempfile.gettempdir()))
    found_epoch = mirror.release_epoch(mirrors, build.release)  # also fails early on an unreachable mirror
    epoch = found_epoch if epoch is None else epoch

    log = build_log(output, role)
    log.write_text("")  # this build's: dib's output and every command imgbuild runs for it
    work = Path(tempfile.mkdtemp(prefix=f".{role.value}.", suffix=".tmp", dir=output))
    started = time.monotonic()
    try:
        with logging_to(log):
            stem = work / "dib" / role.value
            stem.parent.mkdir()
            # A directory of this build's own, so that anything a killed dib leaves behind can be released.
            (work / "tmp").mkdir()
            env = dib.environment(build, mirrors, dib_cache_dir(role, build, mirrors), work / "tmp", epoch)
            dib.run(dib.command(role, build, stem), env, log, on_phase)
            on_phase("making root filesystems")
            identity = rootfs.root_uuid(role, build, epoch)  # the root's UUID; the disk's GUIDs derive from it
            root_timings = _root_filesystems(stem, build, identity, epoch)
            on_phase("assembling whole disk")
            assembly_started = time.monotonic()
            disk_bytes = _whole_disk(stem, build, work / "disk", identity, epoch)
            assembly_seconds = round(time.monotonic() - assembly_started, 1)
            on_phase("writing manifest")
            packages = imagefs.packages(stem.with_suffix(".raw"))
            with staged(role_dir(output, role), mode=0o755) as final:
                artefacts = _collect(stem, final, role, build)
                for kind in artefacts:
                    if kind.startswith("disk-"):
                        artefacts[kind]["virtual_bytes"] = disk_bytes
                built_at = _iso(time.time())
                on_phase("writing SBOM")
                bom = _sbom(final, role, build.release, _iso(epoch), artefacts)
                manifest: Manifest = {
                    "role": role.value,
                    "cache_key": key,
                    "built_at": built_at,
                    "source_date_epoch": epoch,
                    "build_seconds": round(time.monotonic() - started, 1),
                    "root_filesystems": root_timings,
                    "disk_assembly_seconds": assembly_seconds,
                    "diskimage_builder": dib.dib_version(),
                    "elements": role_elements(role),
                    "release": build.release,
                    "kernel_flavour": build.kernel,
                    "mirrors": {"main": mirrors.main, "security": mirrors.security},
                    "artefacts": artefacts,
                    "packages": packages,
                    "openstack": _openstack(role, build.release, artefacts, openstack),
                    "sbom": bom,
                }
                _write_manifest(final, manifest)
                shutil.rmtree(work / "dib")
            return Result(manifest, cached=False, log=log)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_roles(
    roles: list[Role],
    build: Build,
    mirrors: Mirrors,
    output: Path,
    force: bool,
    openstack: OpenStack,
    on_phase: Callable[[Role, str], None],
    epochs: Mapping[Role, int] | None = None,
) -> dict[Role, Result]:
    """Build the roles in parallel (dib is mostly I/O and dpkg); the first failure is raised.
    epochs gives a role's SOURCE_DATE_EPOCH (a rebuild's: its first build's); else the mirror's."""
    with ThreadPoolExecutor(max_workers=len(roles)) as pool:
        futures = {
            role: pool.submit(
                build_role,
                role,
                build,
                mirrors,
                output,
                openstack,
                force,
                functools.partial(on_phase, role),
                (epochs or {}).get(role),
            )
            for role in roles
        }
        try:
            return {role: future.result() for role, future in futures.items()}
        except BaseException:
            dib.stop_all()
            raise


def build_with_progress(
    roles: list[Role], cluster: Cluster, mirrors: Mirrors, output: Path, force: bool = False
) -> dict[Role, Result]:
    """build_roles into output/<release>/ with one live progress line per role (imgbuild build, imgbuild verify)."""
    images = release_dir(output, cluster.build.release)
    with ui.progress([r.value for r in roles]) as update:
        return build_roles(
            roles, cluster.build, mirrors, images, force, cluster.openstack, lambda r, status: update(r.value, status)
        )
