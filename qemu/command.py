"""A node's QEMU command line, from what it boots (BootSpec) and what it has (Hardware).

Kept apart from the Machine that runs it, so a boot plan can be read and tested without a VM.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from imgbuild.bootargs import disk_cmdline
from imgbuild.errors import UserError
from imgbuild.qemu.accel import Accel, kernel_args, qemu_args
from imgbuild.run import run

QEMU = "qemu-system-x86_64"
Firmware = Literal["bios", "uefi"]
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot: the firmware built with it (needs SMM) and variables with Microsoft's keys
# enrolled, which trust Debian's shim; Secure Boot is on and enforcing from the first boot.
OVMF_SECBOOT_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_MS_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")


@dataclass(frozen=True)
class BootSpec:
    """What a node boots and how.

    With a kernel: direct kernel boot, root on image (the role's filesystem). Without: the
    firmware boots, from image (a whole disk) or, when there is no image, from the network.
    Images are never written: the node runs on an overlay, disk_size bytes when set (a cloud
    flavour's bigger disk). secure_boot: UEFI with Secure Boot enforcing.
    """

    image: Path | None
    seed: Path | None = None
    kernel: Path | None = None
    initrd: Path | None = None
    firmware: Firmware = "bios"
    disk_size: int | None = None
    secure_boot: bool = False

    def __post_init__(self) -> None:
        if self.secure_boot and self.firmware != "uefi":
            raise ValueError("Secure Boot needs the uefi firmware")


@dataclass(frozen=True)
class Nic:
    """A virtio NIC on a host tap device."""

    tap: str
    mac: str


@dataclass(frozen=True)
class Hardware:
    """Memory, vCPUs and NICs: n0 first (the cluster's segment), then n1, ... in this order."""

    memory_mb: int = 384
    cpus: int = 1
    nics: tuple[Nic, ...] = ()


@dataclass(frozen=True)
class NodeFiles:
    """Where a running node keeps its console log, disk overlay, UEFI variables and QMP socket."""

    console: Path
    overlay: Path
    efi_vars: Path
    qmp: Path

    @classmethod
    def in_dir(cls, workdir: Path, name: str) -> NodeFiles:
        return cls(
            workdir / f"{name}.console.log",
            workdir / f"{name}.qcow2",
            workdir / f"{name}.efivars.fd",
            workdir / f"{name}.qmp",
        )


def backing_format(image: Path) -> str:
    """The image's format, from its name: a role image is .raw or .qcow2 (also .disk.qcow2)."""
    return "raw" if image.suffix == ".raw" else "qcow2"


def prepare_disks(name: str, boot: BootSpec, files: NodeFiles) -> None:
    """A fresh overlay on the image (the image itself stays untouched) and, for UEFI, the
    firmware's writable NVRAM, one per node."""
    files.overlay.unlink(missing_ok=True)
    if boot.image:
        backing = ["-F", backing_format(boot.image), "-b", str(boot.image.resolve())]
        size = [str(boot.disk_size)] if boot.disk_size else []
        run(
            ["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(files.overlay), *size],
            why=f"creating {name}'s overlay",
            hint="install qemu-utils",
        )
    if boot.firmware == "uefi":
        shutil.copyfile(OVMF_MS_VARS if boot.secure_boot else OVMF_VARS, files.efi_vars)


def qemu_command(name: str, boot: BootSpec, hardware: Hardware, files: NodeFiles, accel: Accel) -> list[str]:
    firmware: list[str] = []
    machine = "q35"
    if boot.firmware == "uefi":
        code = OVMF_SECBOOT_CODE if boot.secure_boot else OVMF_CODE
        firmware += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}"]
        firmware += ["-drive", f"if=pflash,format=raw,unit=1,file={files.efi_vars}"]
    if boot.secure_boot:
        # Only code running in SMM may write the variables, so the OS cannot turn Secure Boot off.
        machine = "q35,smm=on"
        firmware += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    if boot.kernel:
        cmdline = " ".join([disk_cmdline(), *kernel_args(accel)])
        firmware += ["-kernel", str(boot.kernel), "-initrd", str(boot.initrd), "-append", cmdline]
    # Explicit devices in this order: the disk is vda and the first thing the firmware boots.
    disks: list[str] = []
    if boot.image:
        disks += ["-drive", f"file={files.overlay},if=none,id=disk0,format=qcow2,discard=unmap"]
        disks += ["-device", "virtio-blk-pci,drive=disk0,bootindex=1"]
    if boot.seed:
        disks += ["-drive", f"file={boot.seed},if=none,id=seed0,format=raw,readonly=on"]
        disks += ["-device", "virtio-blk-pci,drive=seed0"]
    net = [] if hardware.nics else ["-nic", "none"]
    for index, nic in enumerate(hardware.nics):
        # Without a disk or a kernel the first NIC is what the firmware boots (PXE).
        pxe = ",bootindex=1" if index == 0 and not (boot.image or boot.kernel) else ""
        net += ["-netdev", f"tap,id=n{index},ifname={nic.tap},script=no,downscript=no"]
        net += ["-device", f"virtio-net-pci,netdev=n{index},mac={nic.mac}{pxe}"]
    return [
        QEMU,
        *("-name", name, "-machine", machine, *qemu_args(accel)),
        *("-m", str(hardware.memory_mb), "-smp", str(hardware.cpus)),
        *("-display", "none", "-monitor", "none", "-serial", f"file:{files.console}"),
        *("-qmp", f"unix:{files.qmp},server=on,wait=off"),
        *firmware,
        *disks,
        *("-device", "virtio-rng-pci"),
        *net,
    ]


def require_qemu() -> None:
    for tool, package in ((QEMU, "qemu-system-x86"), ("qemu-img", "qemu-utils")):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} not found; install it with: apt-get install {package}")
