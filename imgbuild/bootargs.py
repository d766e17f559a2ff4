"""Kernel arguments the role images boot with, wherever the kernel comes from."""

from __future__ import annotations

ROOT_LABEL = "cloudimg-rootfs"  # the label diskimage-builder gives the root filesystem
# Serial console last, so it is /dev/console: under emulation and in `openstack console log`.
# quiet: every console line is slow on an emulated UART.
COMMON = "console=tty0 console=ttyS0,115200 net.ifnames=0 quiet"


def disk_cmdline() -> str:
    """Root on the image's own filesystem (direct kernel boot and the whole disk)."""
    return f"root=LABEL={ROOT_LABEL} ro {COMMON}"


# How the kernel command line names a seed fetched over HTTP: cloud-init 22.4 (bookworm) only
# fetches one for `nocloud-net`; 24.1 and later read `nocloud` for both and deprecate `nocloud-net`.
NETWORK_SEED_DATASOURCE = {"bookworm": "nocloud-net", "trixie": "nocloud"}


def pxe_cmdline(root_url: str, seed_url: str, ip: str, release: str) -> str:
    """Root fetched over HTTP into RAM (elements/imgbuild-common scripts/http), seed from the network."""
    return f"boot=http httproot={root_url} ip={ip} ds={NETWORK_SEED_DATASOURCE[release]};s={seed_url} {COMMON}"
