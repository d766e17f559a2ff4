"""Choose KVM only where guests really run under it; TCG (software emulation) otherwise."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from imgbuild.errors import UserError

Accel = Literal["kvm", "tcg"]


def kvm_usable(cpuinfo: str | None = None, dev: Path = Path("/dev/kvm")) -> bool:
    """KVM needs hardware virtualisation flags: a paravirtual /dev/kvm without vmx/svm hangs stock guests."""
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    has_flags = re.search(r"^flags\s*:.*\b(vmx|svm)\b", cpuinfo, re.M) is not None
    return has_flags and dev.exists() and os.access(dev, os.R_OK | os.W_OK)


def choose(requested: str = "auto") -> tuple[Accel, str]:
    """The accelerator and why it was chosen."""
    if requested == "tcg":
        return "tcg", "forced by --accel tcg"
    usable = kvm_usable()
    if requested == "kvm":
        if not usable:
            raise UserError("--accel kvm: /dev/kvm is missing or the CPU has no vmx/svm flag; use --accel tcg")
        return "kvm", "forced by --accel kvm"
    if requested != "auto":
        raise UserError(f"unknown accelerator {requested!r}; choose auto, kvm or tcg")
    if usable:
        return "kvm", "CPU has vmx/svm and /dev/kvm is usable"
    return "tcg", "no vmx/svm CPU flag or no usable /dev/kvm: software emulation"


def qemu_args(accel: Accel) -> list[str]:
    if accel == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    # Bound the translation cache (1 GiB per VM by default) so four nodes fit in memory. The
    # baseline CPU keeps glibc and Python off AVX code paths, which TCG emulates slowly: a node
    # was ready in 112-119 s against 139 s with -cpu max (measured here, one node at a time).
    return ["-accel", "tcg,tb-size=512", "-cpu", "qemu64"]


def kernel_args(accel: Accel) -> list[str]:
    """What a directly booted kernel gets on top of the image's own arguments."""
    if accel == "kvm":
        return []
    # TCG translates guest code per virtual address, and address-space randomisation maps libc,
    # libpython and the rest somewhere new in every process: each start translated them again.
    # A web server's first boot, alone, made 1.3 million translation blocks (the cache filled
    # and was flushed) in 50 s; with norandmaps 0.46 million in 35 s. The images' own boots
    # (grub, PXE) keep randomisation; only emulated direct kernel boots go without.
    return ["norandmaps"]
