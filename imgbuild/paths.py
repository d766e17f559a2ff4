"""Where every artefact and seed lives: the one place that names files under images/, seeds/ and
pxe/, so the builder, the seed writer, the PXE tree, verify and the tests agree by construction."""

from __future__ import annotations

from pathlib import Path

from imgbuild.model import Cluster, Node, Role

MANIFEST = "manifest.json"
# Every artefact kind and its file suffix; "qcow2"/"raw" are the bare root filesystem (direct
# kernel boot), "disk-*" the partitioned whole disk (firmware boot, OpenStack).
SUFFIX = {
    "kernel": "vmlinuz",
    "initrd": "initrd",
    "squashfs": "squashfs",
    "qcow2": "qcow2",
    "raw": "raw",
    "disk-qcow2": "disk.qcow2",
    "disk-raw": "disk.raw",
}
SBOM_SUFFIX = "spdx.json"  # <role>.spdx.json: the image's SPDX bill of materials
# <release>/<role>.reproducibility.json: `imgbuild build --check-reproducible`'s comparison of a rebuild
REPRODUCIBILITY_SUFFIX = "reproducibility.json"
NOCLOUD_ISO = "nocloud.iso"
CONFIG_DRIVE_ISO = "config-drive.iso"
# A role's boot files in the PXE tree (pxe/<role>/NAME).
PXE_ROLE_FILES = {"kernel": "vmlinuz", "initrd": "initrd", "squashfs": "root.squashfs"}


def release_dir(output: Path, release: str) -> Path:
    """Where one release's role images live under an output directory: images of both releases sit
    side by side, and verify boots those the cluster file names."""
    return output / release


def role_dir(output: Path, role: Role) -> Path:
    return output / role.value


def artefact(output: Path, role: Role, kind: str) -> Path:
    return role_dir(output, role) / f"{role.value}.{SUFFIX[kind]}"


def build_log(output: Path, role: Role) -> Path:
    return output / f"{role.value}.build.log"


def seed_dir(seeds: Path, node: Node) -> Path:
    return seeds / node.name


def pxe_base_url(cluster: Cluster) -> str:
    """The PXE tree's URL, as the nodes fetch it (the HTTP server `imgbuild pxe --serve` runs)."""
    return f"http://{cluster.pxe_server()}:{cluster.pxe.http_port}"
