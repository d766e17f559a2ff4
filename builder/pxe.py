"""The PXE tree: role kernels, initrds and squashfs roots, per-node boot scripts and network seeds.

Served as it is by any TFTP/HTTP server (or `imgbuild pxe --serve`):

    boot.ipxe                      iPXE entry: picks the node's script by its MAC
    ipxe/<node>.ipxe               kernel, initrd and arguments of one node
    pxelinux.cfg/01-<mac>          the same for pxelinux (TFTP)
    <role>/vmlinuz, initrd, root.squashfs
    seeds/<node>/meta-data, user-data, vendor-data, network-config   (NoCloud network seed)
    undionly.kpxe, ipxe.efi, pxelinux.0, ldlinux.c32    chain loaders, when the host has them

The node fetches its root into RAM (elements/imgbuild-common, scripts/http) and its identity
from its seed; its address comes from the kernel's ip= argument, which cloud-init adopts.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from imgbuild.bootargs import pxe_cmdline
from imgbuild.cloudinit.seeds import NOCLOUD_FILES
from imgbuild.errors import UserError
from imgbuild.model import Cluster, Node
from imgbuild.paths import PXE_ROLE_FILES, artefact, pxe_base_url, release_dir, seed_dir
from imgbuild.publish import output_dir, staged
from imgbuild.state import write_private

# Chain loaders for firmware whose PXE ROM is not iPXE (Debian packages ipxe, pxelinux, syslinux-common).
LOADERS = {
    "undionly.kpxe": Path("/usr/lib/ipxe/undionly.kpxe"),
    "ipxe.efi": Path("/usr/lib/ipxe/ipxe.efi"),
    "pxelinux.0": Path("/usr/lib/PXELINUX/pxelinux.0"),
    "ldlinux.c32": Path("/usr/lib/syslinux/modules/bios/ldlinux.c32"),
}


def ip_arg(cluster: Cluster, node: Node) -> str:
    """The kernel's ip= (klibc ipconfig): static, so the node has its own address from the first packet."""
    net = cluster.network
    gateway = net.gateway or ""
    return f"{node.address}::{gateway}:{net.subnet.netmask}:{node.name}:{net.interface}:off"


def node_cmdline(cluster: Cluster, node: Node) -> str:
    url = pxe_base_url(cluster)
    return pxe_cmdline(
        f"{url}/{node.role.value}/{PXE_ROLE_FILES['squashfs']}",
        f"{url}/seeds/{node.name}/",
        ip_arg(cluster, node),
        cluster.build.release,
    )


def ipxe_script(cluster: Cluster, node: Node) -> str:
    url = f"{pxe_base_url(cluster)}/{node.role.value}"
    # initrd=initrd names the image for the EFI stub; BIOS kernels ignore it.
    return (
        "#!ipxe\n"
        f"kernel {url}/{PXE_ROLE_FILES['kernel']} initrd=initrd {node_cmdline(cluster, node)}\n"
        f"initrd --name initrd {url}/{PXE_ROLE_FILES['initrd']}\n"
        "boot\n"
    )


def ipxe_menu(cluster: Cluster) -> str:
    lines = ["#!ipxe", "# Boot the node whose MAC this is; anything else stops here."]
    for node in cluster.nodes:
        lines.append(f"iseq ${{net0/mac}} {cluster.mac(node)} && chain --autofree ipxe/{node.name}.ipxe ||")
    lines.append("echo ${net0/mac} is not a node of this cluster")
    lines.append("exit 1")
    return "\n".join(lines) + "\n"


def pxelinux_config(cluster: Cluster, node: Node) -> str:
    role = node.role.value
    return (
        f"DEFAULT {node.name}\n"
        f"LABEL {node.name}\n"
        f"  KERNEL {role}/{PXE_ROLE_FILES['kernel']}\n"
        f"  INITRD {role}/{PXE_ROLE_FILES['initrd']}\n"
        f"  APPEND {node_cmdline(cluster, node)}\n"
    )


def pxelinux_name(cluster: Cluster, node: Node) -> str:
    return "01-" + cluster.mac(node).replace(":", "-")


def _place(src: Path, dest: Path) -> None:
    """Hard link when on the same filesystem (the tree costs no space), copy otherwise."""
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _write(path: Path, text: str) -> None:
    """A file of the world-readable part of the tree (boot scripts and configs: no secrets)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_tree(cluster: Cluster, output: Path, seeds: Path, out: Path) -> dict[str, Any]:
    """Write the tree to out (published atomically) from the images of the cluster's release under
    output; what it holds, for --json."""
    images = release_dir(output, cluster.build.release)
    roles = sorted({n.role for n in cluster.nodes}, key=lambda r: r.value)
    for role in roles:
        for kind in PXE_ROLE_FILES:
            if not artefact(images, role, kind).is_file():
                raise UserError(
                    f"{artefact(images, role, kind)} is missing; run `imgbuild build --output {output}` first"
                )
    for node in cluster.nodes:
        if not (seed_dir(seeds, node) / "user-data").is_file():
            raise UserError(f"no seed for {node.name} in {seeds}; run `imgbuild seed --seeds {seeds}` first")

    output_dir(out.parent)
    # World-readable, so any TFTP/HTTP server can serve it, except the seeds: they hold the
    # cluster's secrets (root's dnsmasq serves only world-readable files over TFTP).
    with staged(out, mode=0o755) as work:
        (work / "seeds").mkdir(mode=0o700)
        for role in roles:
            (work / role.value).mkdir()
            for kind, name in PXE_ROLE_FILES.items():
                _place(artefact(images, role, kind), work / role.value / name)
        for node in cluster.nodes:
            (work / "seeds" / node.name).mkdir(mode=0o700)
            for name in NOCLOUD_FILES:
                write_private(work / "seeds" / node.name / name, (seed_dir(seeds, node) / name).read_bytes())
            # cloud-init asks for it too, and retries ten times on a 404.
            write_private(work / "seeds" / node.name / "vendor-data", b"")
            _write(work / "ipxe" / f"{node.name}.ipxe", ipxe_script(cluster, node))
            _write(work / "pxelinux.cfg" / pxelinux_name(cluster, node), pxelinux_config(cluster, node))
        _write(work / "boot.ipxe", ipxe_menu(cluster))
        loaders = [name for name, src in LOADERS.items() if src.is_file()]
        for name in loaders:
            shutil.copy2(LOADERS[name], work / name)
    return {
        "tree": str(out),
        "url": pxe_base_url(cluster),
        "nodes": {n.name: {"mac": cluster.mac(n), "cmdline": node_cmdline(cluster, n)} for n in cluster.nodes},
        "loaders": loaders,
    }
