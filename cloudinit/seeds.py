"""Write every seed format a node can boot with: NoCloud ISO, config drive, plain and network-seed files."""

from __future__ import annotations

import json
from pathlib import Path

from imgbuild.cloudinit.credentials import for_cluster
from imgbuild.cloudinit.render import NodeData, Secrets, instance_id, render_node
from imgbuild.cloudinit.seedfs import write_iso
from imgbuild.model import Cluster, Node
from imgbuild.paths import CONFIG_DRIVE_ISO, NOCLOUD_ISO, seed_dir
from imgbuild.publish import output_dir, staged
from imgbuild.state import write_private

NOCLOUD_FILES = ("user-data", "meta-data", "network-config")  # also served as the network seed


def config_drive_files(cluster: Cluster, node: Node, data: NodeData) -> dict[str, bytes]:
    """OpenStack config drive v2 contents: meta_data.json, user_data, network_data.json."""
    net = cluster.network
    meta = {
        "uuid": instance_id(cluster, node),
        "name": node.name,
        "hostname": node.name,
        "availability_zone": "nova",
        "launch_index": 0,
    }
    network = {
        "links": [{"id": net.interface, "type": "phy", "ethernet_mac_address": cluster.mac(node), "mtu": 1500}],
        "networks": [
            {
                "id": "network0",
                "type": "ipv4",
                "link": net.interface,
                "ip_address": str(node.address),
                "netmask": str(net.subnet.netmask),
                "routes": (
                    [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": str(net.gateway)}] if net.gateway else []
                ),
            }
        ],
        "services": [{"type": "dns", "address": str(a)} for a in net.nameservers],
    }
    return {
        "openstack/latest/meta_data.json": json.dumps(meta, indent=2).encode(),
        "openstack/latest/user_data": data.user_data.encode(),
        "openstack/latest/network_data.json": json.dumps(network, indent=2).encode(),
    }


def nocloud_files(data: NodeData) -> dict[str, bytes]:
    contents = (data.user_data, data.meta_data, data.network_config)
    return {name: text.encode() for name, text in zip(NOCLOUD_FILES, contents, strict=True)}


def write_node_seed(cluster: Cluster, node: Node, secrets: Secrets, seeds: Path) -> Path:
    """seeds/<node>/ with both ISOs and the plain files, all 0600 in a 0700 directory, published atomically."""
    output_dir(seeds, private=True)
    data = render_node(cluster, node, secrets)
    final = seed_dir(seeds, node)
    with staged(final) as work:
        plain = nocloud_files(data)
        for name, content in plain.items():
            write_private(work / name, content)
        write_iso(work / NOCLOUD_ISO, "cidata", plain)
        write_iso(work / CONFIG_DRIVE_ISO, "config-2", config_drive_files(cluster, node, data))
    return final


def write_seeds(cluster: Cluster, seeds: Path, nodes: list[Node] | None = None) -> dict[str, Path]:
    """Every (or the given) node's seed, rendered with the cluster's secrets."""
    secrets = for_cluster(cluster)
    return {node.name: write_node_seed(cluster, node, secrets, seeds) for node in nodes or cluster.nodes}
