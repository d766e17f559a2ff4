"""Assemble a firmware-bootable whole disk from a role's root filesystem, without dm, loop or mount.

GPT with three partitions: a BIOS boot partition holding GRUB's i386-pc core image (SeaBIOS
reaches it through boot.img in the protective MBR), an ESP, and the role's ext4 root last, so
growpart can grow it to the disk at first boot. The ESP holds Debian's signed shim at the
removable-media path (EFI/BOOT/BOOTX64.EFI, where OVMF looks), the signed GRUB beside it and its
configuration in EFI/debian/grub.cfg (the prefix built into the signed GRUB): taken from the
image's own shim-signed and grub-efi-amd64-signed, so the disk boots with Secure Boot enforcing
through shim, GRUB and the image's signed kernel, and just as well without. The BIOS core image
carries the same configuration, embedded. Nothing is written into the root filesystem, which is
copied in byte for byte.
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

from imgbuild.bootargs import ROOT_LABEL, disk_cmdline
from imgbuild.builder import imagefs
from imgbuild.errors import UserError
from imgbuild.run import run

SECTOR = 512
MIB = 1 << 20
BIOS_BOOT_BYTES = 1 * MIB
ESP_BYTES = 32 * MIB
GRUB_DIR = Path("/usr/lib/grub")
BIOS_MODULES = ["biosdisk", "part_gpt", "ext2", "search", "linux", "boot", "echo"]
# ESP path -> the signed binary in the role's root filesystem. shim loads grubx64.efi (and the
# MOK manager) from its own directory.
SIGNED_EFI = {
    "EFI/BOOT/BOOTX64.EFI": "/usr/lib/shim/shimx64.efi.signed",
    "EFI/BOOT/grubx64.efi": "/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    "EFI/BOOT/mmx64.efi": "/usr/lib/shim/mmx64.efi.signed",
}
GRUB_CFG = "EFI/debian/grub.cfg"
GPT_TYPE = {
    "bios": "21686148-6449-6E6F-744E-656564454649",
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
}
# GRUB's boot.img: where it reads the LBA of core.img, and its boot drive check (a jmp that
# grub-setup replaces with two nops for hard disks; some BIOSes pass a wrong drive number).
BOOT_KERNEL_SECTOR = 0x5C
BOOT_DRIVE_CHECK = 0x66
MBR_CODE_BYTES = 440  # what follows is the disk signature and the (protective) partition table
# diskboot.img, the first sector of core.img, ends with the blocklist of the rest: start LBA, sectors.
BLOCKLIST = SECTOR - 12


@dataclass(frozen=True)
class Partition:
    start: int  # bytes
    size: int

    @property
    def lba(self) -> int:
        return self.start // SECTOR


@dataclass(frozen=True)
class Layout:
    bios: Partition
    esp: Partition
    root: Partition
    disk_bytes: int


def layout(root_bytes: int) -> Layout:
    """MiB-aligned partitions, the root last; one spare MiB at the end for the backup GPT."""
    bios = Partition(MIB, BIOS_BOOT_BYTES)
    esp = Partition(bios.start + bios.size, ESP_BYTES)
    root = Partition(esp.start + esp.size, -(-root_bytes // MIB) * MIB)
    return Layout(bios, esp, root, root.start + root.size + MIB)


def sfdisk_script(lay: Layout, identity: uuid.UUID) -> str:
    """The GPT, its disk and partition GUIDs derived from identity (sfdisk would pick random ones)."""

    def line(part: Partition, kind: str, name: str) -> str:
        guid = uuid.uuid5(identity, name)
        return f"start={part.lba}, size={part.size // SECTOR}, type={GPT_TYPE[kind]}, uuid={guid}, name={name}\n"

    return (
        f"label: gpt\nlabel-id: {uuid.uuid5(identity, 'gpt')}\nunit: sectors\n"
        + line(lay.bios, "bios", "bios-boot")
        + line(lay.esp, "esp", "esp")
        + line(lay.root, "linux", ROOT_LABEL)
    )


def grub_config() -> str:
    """The embedded configuration: find the root by its label and boot the image's own kernel."""
    return (
        f"search --no-floppy --label {ROOT_LABEL} --set root\n"
        f"linux /vmlinuz {disk_cmdline()}\n"
        "initrd /initrd.img\n"
        "boot\n"
    )


def _run(*cmd: str, epoch: int | None = None) -> None:
    env = None if epoch is None else dict(os.environ, SOURCE_DATE_EPOCH=str(epoch))  # mtools' file times
    run(cmd, why="assembling the whole disk", env=env)


def _grub_image(target: str, modules: list[str], config: Path, out: Path) -> None:
    _run(
        "grub-mkimage",
        "-O",
        target,
        "-d",
        str(GRUB_DIR / target),
        "-c",
        str(config),
        "-p",
        "/boot/grub",
        "-o",
        str(out),
        *modules,
    )


def _write_at(disk: Path, offset: int, data: bytes) -> None:
    with disk.open("r+b") as f:
        f.seek(offset)
        f.write(data)


def _copy_sparse(src: Path, disk: Path, offset: int) -> None:
    """Copy src into disk at offset, data extents only: the root image is mostly holes."""
    with src.open("rb") as s, disk.open("r+b") as d:
        size = os.fstat(s.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                pos = os.lseek(s.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(s.fileno(), pos, os.SEEK_HOLE)
            while pos < end:
                pos += os.copy_file_range(s.fileno(), d.fileno(), end - pos, pos, offset + pos)


def _esp(root_fs: Path, config: Path, work: Path, out: Path, identity: uuid.UUID, epoch: int) -> None:
    """The ESP: the image's signed shim and GRUB, and GRUB's configuration; its volume ID from
    identity and its times epoch's, so the same inputs give the same bytes."""
    files = {GRUB_CFG: config}
    for esp_path, image_path in SIGNED_EFI.items():
        data = imagefs.read(root_fs, image_path)
        if data is None:
            raise UserError(
                f"{image_path} is not in the image; the whole disk boots through Debian's signed shim and GRUB: "
                "keep shim-signed and grub-efi-amd64-signed in elements/imgbuild-common/package-installs.yaml"
            )
        files[esp_path] = work / Path(esp_path).name
        files[esp_path].write_bytes(data)
    volume_id = uuid.uuid5(identity, "esp").hex[:8]
    _run("mkfs.vfat", "--invariant", "-i", volume_id, "-C", "-n", "ESP", str(out), str(ESP_BYTES // 1024))
    _run("mmd", "-i", str(out), "::/EFI", "::/EFI/BOOT", "::/EFI/debian", epoch=epoch)
    for esp_path, source in files.items():
        os.utime(source, (epoch, epoch))
        _run("mcopy", "-m", "-i", str(out), str(source), f"::/{esp_path}", epoch=epoch)


def _bios_boot(core: bytes, lay: Layout) -> tuple[bytes, bytes]:
    """boot.img for the MBR and core.img for the BIOS boot partition, pointed at each other."""
    if len(core) > lay.bios.size:
        raise RuntimeError(f"GRUB core image is {len(core)} bytes, larger than the BIOS boot partition")
    image = bytearray(core)
    sectors = -(-len(image) // SECTOR)
    _start, length = struct.unpack_from("<QH", image, BLOCKLIST)
    assert length == sectors - 1, "grub-mkimage wrote an unexpected diskboot blocklist"
    struct.pack_into("<Q", image, BLOCKLIST, lay.bios.lba + 1)
    boot = bytearray((GRUB_DIR / "i386-pc" / "boot.img").read_bytes())
    struct.pack_into("<Q", boot, BOOT_KERNEL_SECTOR, lay.bios.lba)
    boot[BOOT_DRIVE_CHECK : BOOT_DRIVE_CHECK + 2] = b"\x90\x90"
    return bytes(boot[:MBR_CODE_BYTES]), bytes(image)


def assemble(root_fs: Path, disk: Path, work: Path, identity: uuid.UUID, epoch: int) -> Layout:
    """Write the whole disk (raw) for the ext4 root image root_fs; work holds intermediate files.
    identity and epoch fix the GUIDs, the ESP's volume ID and its file times (a rebuild is the same)."""
    lay = layout(root_fs.stat().st_size)
    with disk.open("wb") as f:
        f.truncate(lay.disk_bytes)
    run(
        ["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk],
        input=sfdisk_script(lay, identity),
        text=True,
        why="partitioning the whole disk",
        hint="install fdisk",
    )
    _copy_sparse(root_fs, disk, lay.root.start)

    config = work / "grub.cfg"
    config.write_text(grub_config())
    core, esp = work / "core.img", work / "esp.img"
    _esp(root_fs, config, work, esp, identity, epoch)
    _copy_sparse(esp, disk, lay.esp.start)

    _grub_image("i386-pc", BIOS_MODULES, config, core)
    mbr_code, core_img = _bios_boot(core.read_bytes(), lay)
    _write_at(disk, 0, mbr_code)
    _write_at(disk, lay.bios.start, core_img)
    return lay
