"""`imgbuild pxe --serve`: the PXE tree over HTTP, plus DHCP and TFTP (dnsmasq) for a small lab.

DHCP answers only the cluster's own MACs, each with its node's address; iPXE clients get the
HTTP boot script, plain PXE ROMs a chain loader over TFTP first.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, ClassVar

from imgbuild import ui
from imgbuild.errors import UserError
from imgbuild.model import Cluster
from imgbuild.paths import pxe_base_url
from imgbuild.run import start


class TreeHandler(SimpleHTTPRequestHandler):
    """The PXE tree, file by file: no directory listings, and a node's seed (its user-data holds
    the heartbeat secret and the password hash) only to that node's own address."""

    seed_owners: ClassVar[dict[str, str]] = {}  # node name -> the only client address its seed goes to

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(HTTPStatus.NOT_FOUND, "no directory listings")
        return None

    def send_head(self) -> io.BytesIO | BinaryIO | None:
        # decided on the file the request resolves to: "//seeds", "%73eeds" and "./" lead there too
        parts = Path(os.path.relpath(self.translate_path(self.path), self.directory)).parts
        if parts[:1] == ("seeds",) and (len(parts) < 2 or self.seed_owners.get(parts[1]) != self.client_address[0]):
            self.send_error(HTTPStatus.FORBIDDEN, "a seed goes only to its own node's address")
            return None
        return super().send_head()

    def log_message(self, format: str, *args: object) -> None:
        ui.err.print(f"http {self.client_address[0]} {format % args}", highlight=False)


def handler_for(cluster: Cluster) -> type[TreeHandler]:
    owners = {node.name: str(node.address) for node in cluster.nodes}
    return type("ClusterTreeHandler", (TreeHandler,), {"seed_owners": owners})


def dnsmasq_command(cluster: Cluster, tree: Path, interface: str) -> list[str]:
    net = cluster.network
    cmd = [
        # As root, so the tree may sit below a private directory; root's dnsmasq serves only
        # world-readable files over TFTP, which leaves out the seeds (0600).
        "dnsmasq",
        "--keep-in-foreground",
        "--log-facility=-",
        "--user=root",
        "--port=0",
        "--no-resolv",
        "--no-hosts",
        f"--interface={interface}",
        "--bind-interfaces",
        "--leasefile-ro",
        f"--dhcp-range={net.subnet.network_address},static,{net.subnet.netmask}",
        "--enable-tftp",
        f"--tftp-root={tree}",
        "--dhcp-match=set:ipxe,175",
        "--dhcp-match=set:efi64,option:client-arch,7",
        f"--dhcp-boot=tag:ipxe,{pxe_base_url(cluster)}/boot.ipxe",
        "--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
        "--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
    ]
    if net.gateway:
        cmd.append(f"--dhcp-option=option:router,{net.gateway}")
    for node in cluster.nodes:
        cmd.append(f"--dhcp-host={cluster.mac(node)},{node.address},{node.name}")
    return cmd


@contextmanager
def serving(cluster: Cluster, tree: Path, interface: str | None) -> Iterator[str]:
    """HTTP on the PXE server address (and dnsmasq on interface, when given) until the block ends."""
    if not (tree / "boot.ipxe").is_file():
        raise UserError(f"{tree} is not a PXE tree; write it with `imgbuild pxe --tree {tree}`")
    address = str(cluster.pxe_server())
    handler = functools.partial(handler_for(cluster), directory=str(tree))
    try:
        httpd = ThreadingHTTPServer((address, cluster.pxe.http_port), handler)
    except OSError as err:
        raise UserError(
            f"cannot serve on {address}:{cluster.pxe.http_port} ({err.strerror}); give this host that address "
            f"(ip addr add {address}/{cluster.network.subnet.prefixlen} dev IFACE) or set pxe.server"
        ) from None
    dnsmasq = None
    try:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        if interface:
            if shutil.which("dnsmasq") is None:
                raise UserError(
                    "dnsmasq not found; install it with: apt-get install dnsmasq-base (or serve without --interface)"
                )
            dnsmasq = start(dnsmasq_command(cluster, tree, interface), stdin=subprocess.DEVNULL)
            time.sleep(1)
            if dnsmasq.poll() is not None:
                raise UserError(f"dnsmasq exited ({dnsmasq.returncode}); its message is above")
        yield pxe_base_url(cluster)
    finally:
        httpd.shutdown()
        httpd.server_close()
        if dnsmasq is not None:
            dnsmasq.terminate()
            dnsmasq.wait(timeout=10)
