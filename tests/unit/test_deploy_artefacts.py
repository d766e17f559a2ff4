"""Deployment artefacts without building: whole-disk layout and boot sectors, Glance properties, PXE configs."""

from __future__ import annotations

import shlex
import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest

from imgbuild.builder import openstack, pxe, wholedisk
from imgbuild.errors import ConfigError
from imgbuild.model import Cluster, OpenStack, parse

MIB = 1 << 20


def test_layout_is_aligned_root_last_with_room_for_backup_gpt() -> None:
    lay = wholedisk.layout(1000 * MIB + 5)
    parts = [lay.bios, lay.esp, lay.root]
    assert all(p.start % MIB == 0 and p.size % MIB == 0 for p in parts)
    assert [p.start + p.size for p in parts[:-1]] == [p.start for p in parts[1:]]
    assert lay.root.size >= 1000 * MIB + 5
    assert lay.disk_bytes - (lay.root.start + lay.root.size) >= 33 * 512


def test_bios_boot_sectors_point_at_each_other() -> None:
    lay = wholedisk.layout(100 * MIB)
    core = bytearray(3 * 512 + 7)
    struct.pack_into("<QH", core, wholedisk.BLOCKLIST, 2, 3)  # as grub-mkimage writes it
    if not (wholedisk.GRUB_DIR / "i386-pc" / "boot.img").exists():
        pytest.skip("grub-pc-bin is not installed (scripts/setup.sh installs it)")
    mbr, patched = wholedisk._bios_boot(bytes(core), lay)
    assert len(mbr) == 440
    assert struct.unpack_from("<Q", mbr, wholedisk.BOOT_KERNEL_SECTOR)[0] == lay.bios.lba
    assert struct.unpack_from("<QH", patched, wholedisk.BLOCKLIST) == (lay.bios.lba + 1, 3)
    with pytest.raises(RuntimeError):
        wholedisk._bios_boot(bytes(lay.bios.size + 1), lay)


@pytest.mark.skipif(shutil.which("sfdisk") is None, reason="needs sfdisk")
def test_partition_table_written_into_a_file(tmp_path: Path) -> None:
    lay = wholedisk.layout(64 * MIB)
    disk = tmp_path / "disk.raw"
    with disk.open("wb") as f:
        f.truncate(lay.disk_bytes)
    subprocess.run(
        ["sfdisk", "--quiet", str(disk)], input=wholedisk.sfdisk_script(lay, uuid.UUID(int=1)), text=True, check=True
    )
    table = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True).stdout
    assert "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" in table and "21686148-6449-6E6F-744E-656564454649" in table
    assert f'"start": {lay.root.lba}' in table, table
    assert str(uuid.uuid5(uuid.UUID(int=1), "gpt")).upper() in table, "the disk GUID comes from the identity"


def test_grub_config_boots_the_image_kernel_by_root_label() -> None:
    cfg = wholedisk.grub_config()
    assert "search --no-floppy --label cloudimg-rootfs --set root" in cfg
    assert "linux /vmlinuz root=LABEL=cloudimg-rootfs" in cfg and "console=ttyS0" in cfg
    assert cfg.rstrip().endswith("boot")


def test_glance_properties_and_command_line() -> None:
    glance = openstack.image_properties(
        "qcow2", 2 * (1 << 30) + 1, "bookworm", OpenStack(firmware="uefi", min_ram_mb=768)
    )
    assert glance["min_disk"] == 3 and glance["min_ram"] == 768
    wanted = {"hw_firmware_type": "uefi", "os_distro": "debian", "os_version": "12", "hw_machine_type": "q35"}
    assert glance["properties"].items() >= wanted.items()
    args = shlex.split(openstack.image_create_line("imgbuild-webserver", "/x/webserver.disk.qcow2", glance))
    assert args[:3] == ["openstack", "image", "create"] and args[-1] == "imgbuild-webserver"
    assert args[3:5] == ["--disk-format", "qcow2"] and "hw_firmware_type=uefi" in args
    assert "hw_machine_type" not in openstack.image_properties("raw", 1, "bookworm", OpenStack())["properties"]
    assert "os_secure_boot" not in glance["properties"]


def test_glance_can_require_secure_boot() -> None:
    """What Nova needs to boot the disk only with Secure Boot on: UEFI on q35, os_secure_boot required."""
    required = OpenStack(firmware="uefi", secure_boot=True)
    properties = openstack.image_properties("qcow2", 1, "trixie", required)["properties"]
    assert (
        properties.items()
        >= {"hw_firmware_type": "uefi", "hw_machine_type": "q35", "os_secure_boot": "required"}.items()
    )


def test_pxe_configs_carry_node_identity_root_and_seed_urls() -> None:
    cluster = Cluster()
    node = cluster.node("webserver1")
    assert str(cluster.pxe_server()) == "192.168.0.254"
    script = pxe.ipxe_script(cluster, node)
    assert script.startswith("#!ipxe\n")
    assert "kernel http://192.168.0.254:8080/webserver/vmlinuz initrd=initrd " in script
    assert "httproot=http://192.168.0.254:8080/webserver/root.squashfs" in script
    assert " ds=nocloud;s=http://192.168.0.254:8080/seeds/webserver1/ " in script
    # cloud-init 22.4 fetches a seed over HTTP only for nocloud-net
    assert " ds=nocloud-net;s=http://" in pxe.ipxe_script(cluster.for_release("bookworm"), node)
    assert "ip=192.168.0.101:::255.255.255.0:webserver1:eth0:off" in script
    menu = pxe.ipxe_menu(cluster)
    assert f"iseq ${{net0/mac}} {cluster.mac(node)} && chain --autofree ipxe/webserver1.ipxe ||" in menu
    assert pxe.pxelinux_name(cluster, node) == "01-52-54-c0-a8-00-65"
    assert "APPEND boot=http " in pxe.pxelinux_config(cluster, node)


def test_pxe_server_must_be_a_free_subnet_address() -> None:
    with pytest.raises(ConfigError, match=r"^config: pxe\.server 192\.168\.0\.101 must be a free host address"):
        parse({"pxe": {"server": "192.168.0.101"}})
    assert str(parse({"pxe": {"server": "192.168.0.2"}}).pxe_server()) == "192.168.0.2"
