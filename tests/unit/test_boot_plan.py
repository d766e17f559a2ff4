"""How `imgbuild verify` and the boot tests start nodes: schedule and QEMU command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbuild.bootargs import disk_cmdline
from imgbuild.model import Cluster, Role
from imgbuild.qemu.accel import Accel
from imgbuild.qemu.command import BootSpec, Hardware, Nic, NodeFiles, qemu_command
from imgbuild.verify.cluster import boot_order, boot_slots


def command(tmp_path: Path, boot: BootSpec, accel: Accel = "tcg", hardware: Hardware = Hardware()) -> list[str]:
    return qemu_command("n", boot, hardware, NodeFiles.in_dir(tmp_path, "n"), accel)


def test_web_servers_boot_first() -> None:
    order = boot_order(Cluster())
    roles = [n.role for n in order]
    assert roles == sorted(roles, key=lambda r: r != Role.webserver)
    assert {n.name for n in order} == {n.name for n in Cluster().nodes}


@pytest.mark.parametrize(
    ("accel", "cores", "cpus", "slots"),
    [("kvm", 2, 1, 4), ("tcg", 2, 1, 2), ("tcg", 2, 2, 1), ("tcg", 1, 2, 1), ("tcg", 8, 1, 8)],
)
def test_boot_slots(monkeypatch: pytest.MonkeyPatch, accel: Accel, cores: int, cpus: int, slots: int) -> None:
    """Under TCG one vCPU per host core boots at a time; KVM boots every node at once."""
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert boot_slots(Cluster(), accel, cpus) == slots


@pytest.mark.parametrize(("accel", "randomised"), [("tcg", False), ("kvm", True)])
def test_emulated_direct_kernel_boots_go_without_address_randomisation(
    tmp_path: Path, accel: Accel, randomised: bool
) -> None:
    """Under TCG it made every process start translate its libraries again (qemu/accel.py)."""
    kernel = BootSpec(image=tmp_path / "r.raw", kernel=tmp_path / "k", initrd=tmp_path / "i")
    argv = command(tmp_path, kernel, accel)
    cmdline = argv[argv.index("-append") + 1].split()
    assert ("norandmaps" not in cmdline) == randomised
    assert cmdline[: len(disk_cmdline().split())] == disk_cmdline().split()


def test_firmware_boots_keep_the_images_own_arguments(tmp_path: Path) -> None:
    """Whole disk and PXE boot as deployed: the bootloader's arguments, nothing added."""
    assert "-append" not in command(tmp_path, BootSpec(image=tmp_path / "d.qcow2"))


def _devices(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]


NICS = Hardware(512, 2, (Nic("tap0", "52:54:00:00:00:01"), Nic("tap0l", "52:54:00:00:01:01")))


@pytest.mark.parametrize(
    ("boot", "first_boot"),
    [
        (BootSpec(image=Path("d.qcow2")), "virtio-blk-pci,drive=disk0,bootindex=1"),
        (BootSpec(image=Path("r.raw"), kernel=Path("k"), initrd=Path("i")), "virtio-blk-pci,drive=disk0,bootindex=1"),
        (BootSpec(image=None), "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,bootindex=1"),
    ],
)
def test_one_boot_device_the_disk_or_else_the_first_nic(tmp_path: Path, boot: BootSpec, first_boot: str) -> None:
    """The firmware boots the disk; a node without one boots from the cluster's segment (PXE)."""
    devices = _devices(command(tmp_path, boot, hardware=NICS))
    assert [d for d in devices if "bootindex" in d] == [first_boot]


def test_nics_in_order_on_their_taps(tmp_path: Path) -> None:
    """n0 on the cluster's segment, n1 the heartbeat link: the guest's eth0 and eth1."""
    argv = command(tmp_path, BootSpec(image=Path("d.qcow2")), hardware=NICS)
    netdevs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-netdev"]
    assert netdevs == [
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "tap,id=n1,ifname=tap0l,script=no,downscript=no",
    ]
    assert [d for d in _devices(argv) if d.startswith("virtio-net")] == [
        "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01",
        "virtio-net-pci,netdev=n1,mac=52:54:00:00:01:01",
    ]
    assert argv[argv.index("-m") + 1] == "512" and argv[argv.index("-smp") + 1] == "2"
    assert "-nic" not in argv
    assert command(tmp_path, BootSpec(image=None))[-2:] == ["-nic", "none"]


def test_uefi_gets_its_own_writable_variables(tmp_path: Path) -> None:
    argv = command(tmp_path, BootSpec(image=Path("d.qcow2"), firmware="uefi"))
    pflash = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-drive" and "pflash" in argv[i + 1]]
    assert len(pflash) == 2 and "readonly=on" in pflash[0]
    assert pflash[1].endswith(f"file={tmp_path / 'n.efivars.fd'}")
    assert not [a for a in command(tmp_path, BootSpec(image=Path("d.qcow2"))) if "pflash" in a]


def test_secure_boot_firmware_with_microsofts_keys_and_smm(tmp_path: Path) -> None:
    """OVMF built with Secure Boot, its variables locked to SMM, the keys that trust Debian's shim."""
    argv = command(tmp_path, BootSpec(image=Path("d.qcow2"), firmware="uefi", secure_boot=True))
    assert argv[argv.index("-machine") + 1] == "q35,smm=on"
    assert "driver=cfi.pflash01,property=secure,value=on" in argv
    assert any(a.endswith("file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd") for a in argv)
    plain = command(tmp_path, BootSpec(image=Path("d.qcow2"), firmware="uefi"))
    assert plain[plain.index("-machine") + 1] == "q35" and not any("secboot" in a for a in plain)
    with pytest.raises(ValueError, match="uefi"):
        BootSpec(image=Path("d.qcow2"), secure_boot=True)
