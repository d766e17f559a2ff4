"""The whole disk's ESP: Debian's signed boot chain from the image, at the paths firmware and GRUB use."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from imgbuild.builder import wholedisk
from imgbuild.errors import UserError

IDENTITY = uuid.UUID("0b5a6a0e-0000-4000-8000-000000000001")
EPOCH = 1796253224

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("mkfs.ext4", "debugfs", "mkfs.vfat", "mcopy", "mtype")),
    reason="needs e2fsprogs, dosfstools and mtools (scripts/setup.sh installs them)",
)


def _root_fs(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A small ext4 image holding files, as a role's root filesystem would."""
    tree = tmp_path / "tree"
    for path, data in files.items():
        (tree / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (tree / path.lstrip("/")).write_bytes(data)
    image = tmp_path / "root.ext4"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(tree), str(image), "8M"], check=True)
    return image


def _esp_file(esp: Path, path: str) -> bytes:
    return subprocess.run(["mtype", "-i", str(esp), f"::/{path}"], capture_output=True, check=True).stdout


def test_esp_holds_the_images_signed_shim_grub_and_the_config(tmp_path: Path) -> None:
    signed = {source: f"signed {source}".encode() for source in wholedisk.SIGNED_EFI.values()}
    config = tmp_path / "grub.cfg"
    config.write_text(wholedisk.grub_config())
    esp = tmp_path / "esp.img"
    (tmp_path / "work").mkdir()
    wholedisk._esp(_root_fs(tmp_path, signed), config, tmp_path / "work", esp, IDENTITY, EPOCH)
    assert _esp_file(esp, "EFI/BOOT/BOOTX64.EFI") == b"signed /usr/lib/shim/shimx64.efi.signed"
    assert _esp_file(esp, "EFI/BOOT/grubx64.efi") == b"signed /usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
    assert _esp_file(esp, "EFI/BOOT/mmx64.efi") == b"signed /usr/lib/shim/mmx64.efi.signed"
    # Debian's signed GRUB has /EFI/debian built in as its prefix
    assert _esp_file(esp, "EFI/debian/grub.cfg").decode() == wholedisk.grub_config()


def test_an_image_without_the_signed_packages_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "grub.cfg"
    config.write_text(wholedisk.grub_config())
    root = _root_fs(tmp_path, {"/usr/lib/shim/shimx64.efi.signed": b"shim"})
    with pytest.raises(UserError, match=r"grubx64\.efi\.signed is not in the image.*grub-efi-amd64-signed"):
        wholedisk._esp(root, config, tmp_path, tmp_path / "esp.img", IDENTITY, EPOCH)
    assert not (tmp_path / "esp.img").exists()


def test_the_same_inputs_give_the_same_esp(tmp_path: Path) -> None:
    signed = {source: f"signed {source}".encode() for source in wholedisk.SIGNED_EFI.values()}
    config = tmp_path / "grub.cfg"
    config.write_text(wholedisk.grub_config())
    root = _root_fs(tmp_path, signed)
    digests = []
    for n in (1, 2):
        (tmp_path / f"work{n}").mkdir()
        esp = tmp_path / f"esp{n}.img"
        wholedisk._esp(root, config, tmp_path / f"work{n}", esp, IDENTITY, EPOCH)
        digests.append(hashlib.sha256(esp.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
