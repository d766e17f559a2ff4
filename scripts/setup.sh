#!/bin/bash
# Idempotent setup of a Debian 12 machine (as root) for imgbuild: the host
# tools the pipeline calls, and a virtual environment (.venv) with imgbuild.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    python3 python3-venv python3-pip        # imgbuild itself
    debootstrap sudo rsync e2fsprogs mount  # diskimage-builder
    squashfs-tools                          # the PXE root
    qemu-utils qemu-system-x86              # image conversion, booting nodes
    iproute2 openssh-client procps          # verify: namespaces, bridge, ssh
    ovmf dosfstools fdisk mtools            # whole-disk images (UEFI, ESP, partition table)
    grub-pc-bin                             # their BIOS boot loader (images only; the host's stays)
    dnsmasq-base                            # imgbuild pxe --serve: DHCP and TFTP
    ipxe pxelinux syslinux-common           # chain loaders copied into the PXE tree
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]'
echo "setup done: $(.venv/bin/imgbuild --help >/dev/null && echo 'imgbuild ready in .venv/bin/imgbuild')"
