"""Glance image properties for a role's whole disk, and the `openstack image create` line for them."""

from __future__ import annotations

import math
import shlex
from typing import TypedDict

from imgbuild.model import OpenStack

RELEASE_VERSION = {"bookworm": "12", "trixie": "13"}
GIB = 1 << 30


class Glance(TypedDict):
    """An image's Glance fields and properties, as `openstack image create` takes them."""

    disk_format: str
    container_format: str
    min_disk: int
    min_ram: int
    properties: dict[str, str]


class GlanceImage(Glance):
    """Glance for the whole disk of a role, as manifest.json records it."""

    name: str
    artefact: str  # kind (paths.SUFFIX) of the disk it describes
    file: str


def image_properties(disk_format: str, virtual_bytes: int, release: str, openstack: OpenStack) -> Glance:
    """What Glance needs to know to boot the disk right: formats, firmware, OS and minimum flavour."""
    properties = {
        "hw_firmware_type": openstack.firmware,
        "hw_disk_bus": "virtio",
        "hw_vif_model": "virtio",
        "os_type": "linux",
        "os_distro": "debian",
        "os_version": RELEASE_VERSION[release],
    }
    if openstack.firmware == "uefi":
        properties["hw_machine_type"] = "q35"
    if openstack.secure_boot:
        properties["os_secure_boot"] = "required"
    return {
        "disk_format": disk_format,
        "container_format": "bare",
        "min_disk": math.ceil(virtual_bytes / GIB),
        "min_ram": openstack.min_ram_mb,
        "properties": properties,
    }


def image_create_args(name: str, file: str, glance: Glance) -> list[str]:
    args = [
        "openstack",
        "image",
        "create",
        "--disk-format",
        glance["disk_format"],
        "--container-format",
        glance["container_format"],
        "--min-disk",
        str(glance["min_disk"]),
        "--min-ram",
        str(glance["min_ram"]),
    ]
    for key, value in glance["properties"].items():
        args += ["--property", f"{key}={value}"]
    return [*args, "--file", file, name]


def image_create_line(name: str, file: str, glance: Glance) -> str:
    return shlex.join(image_create_args(name, file, glance))
