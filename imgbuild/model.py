"""The cluster description: one typed, validated model that drives every step.

The reference cluster (four nodes, VIP 192.168.0.105) is the default, so every
command works without a file.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import tomllib
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from imgbuild.errors import ConfigError

# Matched whole (fullmatch): with match(), `$` also accepts a trailing newline, which then split
# haresources, user-data and boot.ipxe lines (issue #17).
_HOSTNAME = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOMAIN = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")
# The most a cluster file may hold: generous for a real cluster, small enough that nothing the
# user writes makes imgbuild use memory or time out of proportion.
MAX_FILE_BYTES = 256 * 1024
MAX_NESTING = 16

# Debian releases the images are built from; images of each sit side by side (images/<release>/).
RELEASES = ("trixie", "bookworm")
# IPVS schedulers each release's kernel ships (net/netfilter/ipvs): the loadbalancer image loads
# all of them at boot (elements/imgbuild-loadbalancer/post-install.d/79-imgbuild-ipvs-modules).
# Linux 6.2 added twos, so bookworm's 6.1 lacks it.
_SCHEDULERS_6_1 = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh")
SCHEDULERS = {"bookworm": _SCHEDULERS_6_1, "trixie": (*_SCHEDULERS_6_1, "twos")}
ALL_SCHEDULERS = SCHEDULERS["trixie"]


def ipvs_modules(release: str) -> set[str]:
    """The kernel modules a balancer of the release must have loaded: IPVS, its FTP helper, every scheduler."""
    return {"ip_vs", "ip_vs_ftp"} | {f"ip_vs_{s}" for s in SCHEDULERS[release]}


def valid_hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value):
        raise ValueError("not a valid hostname (lowercase letters, digits and '-', at most 63)")
    return value


def _domain(value: str) -> str:
    if not _DOMAIN.fullmatch(value):
        raise ValueError("not a valid DNS domain")
    return value


def _mac(value: str) -> str:
    value = value.lower()
    if not _MAC.fullmatch(value):
        raise ValueError("not a MAC address like 52:54:00:12:34:56")
    if int(value[:2], 16) & 1 or value == "00:00:00:00:00:00":
        raise ValueError(
            "a broadcast, multicast or all-zero MAC cannot be a NIC's; use a unicast one like 52:54:00:12:34:56"
        )
    return value


def _interface(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9]{0,14}", value):
        raise ValueError("not an interface name (a lowercase letter, then letters and digits, at most 15)")
    return value


def _host_subnet(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    special = (
        value.is_loopback or value.is_multicast or value.is_link_local or value.is_reserved or value.is_unspecified
    )
    if special or value.subnet_of(ipaddress.IPv4Network("0.0.0.0/8")):
        raise ValueError(
            f"{value} is a loopback, link-local, multicast or reserved range; use a private one like 192.168.0.0/24"
        )
    return value


def _node_subnet_size(value: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
    # /16 at most (65k addresses to search for a free one), /29 at least (four nodes, VIP, PXE server)
    if not 16 <= value.prefixlen <= 29:
        raise ValueError(f"{value}: the prefix must be /16 to /29")
    return value


def _plain_text(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("must not contain control characters (newline, tab, carriage return, ...)")
    return value


Hostname = Annotated[str, AfterValidator(valid_hostname)]
Domain = Annotated[str, AfterValidator(_domain)]
Mac = Annotated[str, AfterValidator(_mac)]
Interface = Annotated[str, AfterValidator(_interface)]
NodeSubnet = Annotated[ipaddress.IPv4Network, AfterValidator(_host_subnet), AfterValidator(_node_subnet_size)]


@functools.cache
def served_pages() -> dict[str, str]:
    """The pages the webserver image serves, by path, from the element's static tree."""
    root = resources.files("imgbuild.elements").joinpath("imgbuild-webserver/static/var/www/html")
    return {page.name: page.read_text() for page in root.iterdir() if page.is_file()}


_SYSTEM_USERS = frozenset(
    [
        "root",
        "daemon",
        "bin",
        "sys",
        "sync",
        "games",
        "man",
        "lp",
        "mail",
        "news",
        "uucp",
        "proxy",
        "www-data",
        "backup",
        "list",
        "irc",
        "nobody",
        "systemd-network",
        "systemd-timesync",
        "messagebus",
        "sshd",
        "hacluster",
        "haclient",
        "_apt",
    ]
)


class Role(StrEnum):
    loadbalancer = "loadbalancer"
    webserver = "webserver"


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Node(Strict):
    """One machine of the cluster: one [[nodes]] table per machine, 64 at most."""

    name: Hostname = Field(
        description="Host name (lowercase letters, digits and '-'); the node's FQDN is <name>.<network.domain>."
    )
    role: Role = Field(
        description='"loadbalancer" (exactly two: an active director and its standby) or "webserver" (one or more; '
        "the drills that need a second web server say so and skip)."
    )
    address: ipaddress.IPv4Address = Field(
        description="The node's address: a host address of network.subnet, no other node's nor the VIP."
    )
    mac: Mac | None = Field(
        None,
        description="The NIC's MAC (a unicast one); derived from the address when unset.",
        examples=["52:54:00:12:34:56"],
    )


class Network(Strict):
    """The segment all nodes share: its addresses, the virtual IP and name resolution."""

    subnet: NodeSubnet = Field(
        ipaddress.IPv4Network("192.168.0.0/24"),
        description="The nodes' subnet, /16 to /29: node addresses, the VIP, the gateway and the PXE server lie in it.",
    )
    gateway: ipaddress.IPv4Address | None = Field(
        None,
        description="Default route; with heartbeat the balancers also ping it (a ping node), and ipfail moves the "
        "VIP away from a balancer that loses it while its peer does not.",
        examples=["192.168.0.1"],
    )
    vip: ipaddress.IPv4Address = Field(
        ipaddress.IPv4Address("192.168.0.105"),
        description="Virtual IP held by the active load balancer and, on lo, by every web server.",
    )
    domain: Annotated[Domain, StringConstraints(max_length=253)] = Field(
        "example.com", description="DNS domain of the nodes' FQDNs."
    )
    interface: Interface = Field(
        "eth0", description="Interface name the nodes' NIC gets (matched by MAC, renamed by cloud-init)."
    )
    nameservers: list[ipaddress.IPv4Address] = Field(
        [],
        max_length=3,
        description="DNS servers of the nodes, three at most (resolv.conf reads no more); none when empty.",
    )


class Balancer(Strict):
    """The virtual service: ldirectord.cf (the reference cluster's), or keepalived's virtual_server."""

    port: int = Field(80, ge=1, le=65535, description="The VIP's port; the web servers' Apache listens on it too.")
    scheduler: Literal[ALL_SCHEDULERS] = Field(  # type: ignore[valid-type]
        "rr",
        description=f"IPVS scheduler: {' '.join(SCHEDULERS['bookworm'])}; trixie also twos. verify expects: rr, wrr an "
        "equal share per web server; sh, mh, dh, lblc, lblcr, fo (and any scheduler with persistence) one client on "
        "one server; the others (by active connections) every web server under concurrent connections.",
    )
    check_page: str = Field(
        "ldirector.html",
        description="Health check: GET /<check_page> must contain check_receive. The page must be one the webserver "
        "image serves (elements/imgbuild-webserver/static/var/www/html).",
    )
    check_receive: str = Field(
        "Test Page",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9 _,:;!'-]+$",
        description="Text the check page must contain: plain words on it (ldirectord reads it as a regex and cuts its "
        "lines at '#').",
    )
    # The reference cluster's 2 + 10 left one failing new connections for 12 s. A check of a live
    # server takes 30-80 ms under emulation once ldirectord has loaded LWP's modules (LVSDirector
    # preloads them; the first check used to take over a second).
    check_interval: int = Field(
        1,
        ge=1,
        le=3600,
        description="Seconds between checks. A dead or hung web server leaves rotation after check_interval + "
        "check_timeout seconds and one round of checks of the others (a fraction of a second).",
    )
    check_timeout: int = Field(1, ge=1, le=3600, description="Seconds a check may take.")
    # The reference cluster's quiescent=yes: IPVS reused a dead server's connection entries for
    # clients' recycled ports, and new connections failed for 35 s and more.
    quiescent: bool = Field(
        False,
        description="Keep a failed real server in the table with weight 0 instead of removing it (the reference "
        "cluster's \"yes\"): IPVS then reuses the dead server's connection entries and new connections fail.",
    )
    persistence: int | None = Field(
        None,
        ge=1,
        le=86400,
        description="Sticky sessions: seconds a client stays on the same web server.",
        examples=[300],
    )

    @model_validator(mode="after")
    def _check(self) -> Balancer:
        pages = served_pages()
        if self.check_page not in pages:
            raise ValueError(
                f"check_page {self.check_page!r} is not served by the webserver image; it serves "
                f"{', '.join(sorted(pages))}"
            )
        if self.check_receive not in pages[self.check_page]:
            raise ValueError(
                f"check_receive {self.check_receive!r} is not in {self.check_page}; the web servers would all fail "
                "their check"
            )
        return self


class HeartbeatLink(Strict):
    """A second heartbeat path on a link of its own between the two balancers (a crossover cable or
    a dedicated VLAN on their second NIC), as HA clusters are built: with one path only, losing it
    makes both balancers take the VIP. Each balancer takes the subnet's next host address, in the
    order of [[nodes]]."""

    enabled: bool = Field(
        True, description="Give the balancers the second path; false: heartbeats on network.interface only."
    )
    interface: Interface = Field("eth1", description="The balancers' NIC on the link; not network.interface.")
    subnet: Annotated[ipaddress.IPv4Network, AfterValidator(_host_subnet)] = Field(
        ipaddress.IPv4Network("10.255.255.0/30"),
        description="The link's subnet: two host addresses at least, apart from network.subnet.",
    )


class Heartbeat(Strict):
    """heartbeat (ha.cf) timing and transport. Times in milliseconds; deadtime must exceed 2 x
    keepalive. The defaults declare a peer dead after 1 s (four missed heartbeats); clients saw
    1.2-1.6 s of outage at a balancer's power loss under emulation. Raise deadtime where the
    heartbeat network can stall for a second."""

    keepalive_ms: int = Field(250, ge=100, le=10_000, description="Interval between heartbeats.")
    deadtime_ms: int = Field(
        1000, ge=200, le=300_000, description="Silence after which the peer is dead and its resources are taken over."
    )
    warntime_ms: int = Field(
        500,
        ge=100,
        le=300_000,
        description="Silence after which a late heartbeat is logged; from keepalive_ms to below deadtime_ms.",
    )
    initdead_ms: int = Field(
        10000,
        ge=200,
        le=600_000,
        description="The deadtime at startup, while the network comes up; deadtime_ms at least.",
    )
    transports: list[Literal["bcast", "mcast", "ucast"]] = Field(
        ["bcast"],
        min_length=1,
        max_length=3,
        description='Any of "bcast", "mcast", "ucast", each once: heartbeats go out by every one listed, on every '
        "path.",
    )
    mcast_group: ipaddress.IPv4Address = Field(
        ipaddress.IPv4Address("225.0.0.1"), description="The mcast transport's group."
    )
    udpport: int = Field(694, ge=1, le=65535, description="UDP port of the heartbeats.")
    auto_failback: bool = Field(
        False,
        description="Move the VIP back to the first balancer when it returns; keepalived's preemption follows it too.",
    )
    auth_method: Literal["sha1", "md5", "crc"] = Field(
        "sha1", description='authkeys method: "sha1" (default) or "md5" (the reference cluster\'s, warned about).'
    )
    ipfail: bool = Field(True, description="Run ipfail (needs ping nodes, i.e. network.gateway, to be useful).")
    link: HeartbeatLink = HeartbeatLink()

    @model_validator(mode="after")
    def _timing(self) -> Heartbeat:
        if self.deadtime_ms <= 2 * self.keepalive_ms:
            raise ValueError("deadtime_ms must be more than twice keepalive_ms (heartbeat refuses otherwise)")
        if not self.keepalive_ms <= self.warntime_ms < self.deadtime_ms:
            raise ValueError("warntime_ms must lie between keepalive_ms and deadtime_ms")
        if self.initdead_ms < self.deadtime_ms:
            raise ValueError("initdead_ms must not be below deadtime_ms (heartbeat refuses otherwise)")
        if self.auth_method == "crc":
            raise ValueError("auth_method 'crc' authenticates nothing; use sha1")
        if not self.mcast_group.is_multicast:
            raise ValueError(f"mcast_group {self.mcast_group} is not a multicast address")
        if len(set(self.transports)) != len(self.transports):
            raise ValueError("transports lists a transport twice")
        return self


class Ha(Strict):
    """Which HA stack holds the VIP and drives IPVS. The loadbalancer image carries both; the seed
    configures one and the other stays inert. Both take [balancer] as it is, and preemption follows
    heartbeat.auto_failback."""

    stack: Literal["heartbeat", "keepalived"] = Field(
        "heartbeat",
        description='"heartbeat": the reference cluster\'s heartbeat v1 with ldirectord ([heartbeat]). "keepalived": '
        "VRRPv3 for the VIP, keepalived's own HTTP check of check_page for check_receive, the connection sync "
        "following the VRRP state ([keepalived]).",
    )


class Keepalived(Strict):
    """VRRP of the keepalived stack. VRRPv3, whose adverts may be sub-second (v2 rounds them up to
    whole seconds); the backup takes over after three missed adverts plus a skew of
    (256 - priority) / 256 adverts. Preemption follows heartbeat.auto_failback, and the virtual
    server takes [balancer] as ldirectord does."""

    advert_ms: int = Field(
        200,
        ge=10,
        le=25_500,
        multiple_of=10,
        description="VRRP advert interval (VRRPv3 counts centiseconds: a multiple of 10 ms).",
    )
    virtual_router_id: int = Field(
        51, ge=1, le=255, description="VRRP router id, unique among the VRRP routers of the segment."
    )
    priorities: list[Annotated[int, Field(ge=1, le=254)]] = Field(
        [150, 100],
        min_length=2,
        max_length=2,
        description="The two balancers' VRRP priorities (1-254, different), in the order of [[nodes]].",
    )
    unicast: bool = Field(
        True,
        description="Adverts to the peer's address only (no multicast on the segment; VRRPv3 has no authentication, so "
        "only the peer's address is accepted). false: multicast to 224.0.0.18.",
    )

    @model_validator(mode="after")
    def _priorities(self) -> Keepalived:
        if self.priorities[0] == self.priorities[1]:
            raise ValueError("priorities must differ: with equal ones the higher address wins, not the node order")
        return self


class Admin(Strict):
    """The admin user every node gets, that operators and `imgbuild verify` log in as. Password
    login stays off unless a password is set."""

    user: Hostname = Field(
        "admin", description="Login name; not one of the images' system accounts (root, www-data, ...)."
    )
    ssh_keys: list[Annotated[str, StringConstraints(max_length=16384)]] = Field(
        [],
        max_length=32,
        description="OpenSSH public key lines; without any, imgbuild generates a per-cluster key pair in its state "
        "directory.",
    )
    password: Annotated[str, StringConstraints(min_length=8, max_length=256), AfterValidator(_plain_text)] | None = (
        Field(
            None,
            description="Plain text, 8 characters at least; only its sha512_crypt hash reaches the nodes. Login stays "
            "key-only when unset.",
            examples=["at least 8 characters"],
        )
    )

    @model_validator(mode="after")
    def _keys(self) -> Admin:
        if self.user in _SYSTEM_USERS:
            raise ValueError(f"user {self.user!r} is a system account of the images; choose another name, e.g. admin")
        for key in self.ssh_keys:
            # fullmatch: `$` alone lets a trailing newline through, into authorized_keys
            if not re.fullmatch(
                r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+) [A-Za-z0-9+/=]+( [^\x00-\x1f\x7f]*)?", key
            ):
                raise ValueError(f"ssh_keys: {key[:30]!r}… is not an OpenSSH public key line")
        return self


class Build(Strict):
    """What `imgbuild build` makes: the Debian release and its mirrors, the kernel, the image formats."""

    release: Literal[RELEASES] = Field(  # type: ignore[valid-type]
        "trixie",
        description='Debian release: "trixie" (stable) or "bookworm" (oldstable); images of each sit side by side '
        "(images/<release>/).",
    )
    mirror: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        None,
        description="Debian mirror URL; taken from the host's apt sources when unset.",
        examples=["http://deb.example.org/debian"],
    )
    security_mirror: Annotated[str, StringConstraints(max_length=2048)] | None = Field(
        None,
        description="Debian security mirror URL; taken from the host's apt sources when unset.",
        examples=["http://deb.example.org/debian-security"],
    )
    kernel: Literal["cloud-amd64", "amd64"] = Field(
        "cloud-amd64", description='Kernel flavour: "cloud-amd64" (lean, VMs and clouds) or "amd64" (bare metal).'
    )
    image_size_gb: float | None = Field(
        None,
        gt=0.5,
        le=64,
        description="Root filesystem size in GiB; fitted to the content when unset.",
        examples=[2.0],
    )
    formats: list[Literal["qcow2", "raw"]] = Field(
        ["qcow2", "raw"],
        min_length=1,
        description="Formats of the root filesystem image (<role>.qcow2 is zstd-compressed).",
    )
    disk_formats: list[Literal["qcow2", "raw"]] = Field(
        ["qcow2"],
        min_length=1,
        description="Formats of the whole-disk image (<role>.disk.*: partitioned, boots under BIOS and UEFI) for "
        "OpenStack "
        "and bare metal.",
    )

    @model_validator(mode="after")
    def _urls(self) -> Build:
        for url in (self.mirror, self.security_mirror):
            # RFC 3986 characters only: the URL goes into apt sources and the build's environment
            if url is not None and not re.fullmatch(r"(https?|file)://[A-Za-z0-9._~:/?#@!$&()*+,;=%\[\]-]+", url):
                raise ValueError(f"mirror {url!r} is not an http(s):// or file:// URL")
        return self


class OpenStack(Strict):
    """Glance properties of the whole-disk images (`imgbuild openstack-args`)."""

    firmware: Literal["bios", "uefi"] = Field(
        "bios", description='hw_firmware_type: "bios" or "uefi"; the disk boots under both.'
    )
    min_ram_mb: int = Field(
        512, ge=128, le=1_048_576, description="min_ram: the least RAM, in MiB, a flavour must have to boot them."
    )
    secure_boot: bool = Field(
        False,
        description="Glance's os_secure_boot set to required: Nova boots the disk only with Secure Boot on "
        "(through Debian's signed shim, GRUB and kernel; it boots either way). Needs the uefi firmware.",
    )

    @model_validator(mode="after")
    def _secure_boot_needs_uefi(self) -> OpenStack:
        if self.secure_boot and self.firmware != "uefi":
            raise ValueError('secure_boot needs firmware = "uefi": Secure Boot is a UEFI feature')
        return self


class Pxe(Strict):
    """Where `imgbuild pxe --serve` serves the PXE tree; its URLs go into the boot scripts."""

    server: ipaddress.IPv4Address | None = Field(
        None,
        description="The server's address; the subnet's highest free address when unset.",
        examples=["192.168.0.254"],
    )
    http_port: int = Field(8080, ge=1, le=65535, description="The HTTP port it serves on.")


class Cluster(Strict):
    """The whole cluster description: what `imgbuild init` writes and every command reads."""

    name: Hostname = Field(
        "ultramonkey", description="Cluster name: names the generated secrets in the state directory."
    )
    nodes: list[Node] = Field(
        max_length=64,
        default_factory=lambda: [
            Node(name="webserver1", role=Role.webserver, address=ipaddress.IPv4Address("192.168.0.101")),
            Node(name="webserver2", role=Role.webserver, address=ipaddress.IPv4Address("192.168.0.102")),
            Node(name="loadb1", role=Role.loadbalancer, address=ipaddress.IPv4Address("192.168.0.103")),
            Node(name="loadb2", role=Role.loadbalancer, address=ipaddress.IPv4Address("192.168.0.104")),
        ],
    )
    network: Network = Network()
    balancer: Balancer = Balancer()
    ha: Ha = Ha()
    heartbeat: Heartbeat = Heartbeat()
    keepalived: Keepalived = Keepalived()
    admin: Admin = Admin()
    build: Build = Build()
    openstack: OpenStack = OpenStack()
    pxe: Pxe = Pxe()

    @model_validator(mode="after")
    def _topology(self) -> Cluster:
        net = self.network
        names = [n.name for n in self.nodes]
        addresses = [n.address for n in self.nodes]
        for seen, what in ((names, "name"), ([str(a) for a in addresses], "address")):
            dupes = sorted({str(x) for x in seen if seen.count(x) > 1})
            if dupes:
                raise ValueError(f"duplicate node {what}: {', '.join(dupes)}")
        usable = (net.subnet.network_address, net.subnet.broadcast_address)
        free = (*usable, net.vip, *addresses)
        for node in self.nodes:
            if node.address not in net.subnet or node.address in usable:
                raise ValueError(f"node {node.name}: address {node.address} is not a host address of {net.subnet}")
        if net.vip not in net.subnet or net.vip in usable:
            raise ValueError(f"network.vip {net.vip} is not a host address of {net.subnet}")
        if net.vip in addresses:
            raise ValueError(f"network.vip {net.vip} is also a node address")
        if net.gateway is not None and (net.gateway not in net.subnet or net.gateway in free):
            raise ValueError(
                f"network.gateway {net.gateway} must be a free host address of {net.subnet} (not a node's, the VIP "
                "or the network/broadcast address)"
            )
        if (balancers := len(self.by_role(Role.loadbalancer))) != 2:
            raise ValueError(
                "imgbuild supports exactly two loadbalancer nodes (an active director and its standby), not "
                f"{balancers}"
            )
        if not self.by_role(Role.webserver):
            raise ValueError("the cluster needs at least one webserver node")
        if self.pxe.server is not None and (
            self.pxe.server not in net.subnet or self.pxe.server in (*free, net.gateway)
        ):
            raise ValueError(
                f"pxe.server {self.pxe.server} must be a free host address of {net.subnet} (not a node's, the VIP, "
                "the gateway or the network/broadcast address)"
            )
        link = self.heartbeat.link
        if link.enabled:
            if link.interface == net.interface:
                raise ValueError(
                    f"heartbeat.link.interface {link.interface} is network.interface; the link needs its own NIC"
                )
            if link.subnet.overlaps(net.subnet):
                raise ValueError(f"heartbeat.link.subnet {link.subnet} overlaps network.subnet {net.subnet}")
            if link.subnet.num_addresses < 4:
                raise ValueError(f"heartbeat.link.subnet {link.subnet} has fewer than two host addresses")
        macs = [self.mac(n) for n in self.nodes] + [m for m in map(self.link_mac, self.nodes) if m]
        if len(set(macs)) != len(macs):
            raise ValueError("duplicate node mac")
        return self

    @model_validator(mode="after")
    def _scheduler(self) -> Cluster:
        release, scheduler = self.build.release, self.balancer.scheduler
        if scheduler not in SCHEDULERS[release]:
            needs = [r for r in RELEASES if scheduler in SCHEDULERS[r]]
            raise ValueError(
                f"balancer.scheduler {scheduler!r} is not in {release}'s kernel; use build.release = {needs[0]!r} or "
                f"one of {', '.join(SCHEDULERS[release])}"
            )
        return self

    def for_release(self, release: str) -> Cluster:
        """The same cluster built from another Debian release, validated again (its scheduler may not exist there)."""
        data = self.model_dump(mode="json")
        data["build"]["release"] = release
        return parse(data, f"--release {release}")

    def by_role(self, role: Role) -> list[Node]:
        return [n for n in self.nodes if n.role == role]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ConfigError(f"no node named {name!r}; the cluster has: {', '.join(n.name for n in self.nodes)}")

    def mac(self, node: Node) -> str:
        """The node's MAC: configured, or a stable locally administered one from its address."""
        if node.mac:
            return node.mac
        packed = node.address.packed
        return "52:54:" + ":".join(f"{b:02x}" for b in packed)

    def link_address(self, node: Node) -> ipaddress.IPv4Address | None:
        """The balancer's address on the heartbeat link (None: no link, or not a balancer)."""
        balancers = self.by_role(Role.loadbalancer)
        if not self.heartbeat.link.enabled or node not in balancers:
            return None
        return self.heartbeat.link.subnet.network_address + 1 + balancers.index(node)

    def link_mac(self, node: Node) -> str | None:
        """The MAC of the balancer's heartbeat-link NIC: locally administered, from its link address."""
        address = self.link_address(node)
        return None if address is None else "52:56:" + ":".join(f"{b:02x}" for b in address.packed)

    def free_address(self) -> ipaddress.IPv4Address:
        """The highest host address of the subnet that no node, VIP or gateway uses."""
        taken = {n.address for n in self.nodes} | {self.network.vip, self.network.gateway}
        subnet = self.network.subnet
        for offset in range(2, subnet.num_addresses):
            address = subnet.broadcast_address - offset + 1
            if address not in taken:
                return address
        raise ConfigError(f"no free address left in {subnet}; use a larger network.subnet")

    def pxe_server(self) -> ipaddress.IPv4Address:
        return self.pxe.server or self.free_address()

    def fqdn(self, node: Node) -> str:
        return f"{node.name}.{self.network.domain}"


def _location(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1] = f"{parts[-1]}[{item}]" if parts else f"[{item}]"
        else:
            parts.append(str(item))
    return ".".join(parts)


def _one_line(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = _location(tuple(x for x in first["loc"] if not str(x).startswith(("function-", "literal[", "enum["))))
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    return f"{source}: {where}: {msg}" if where else f"{source}: {msg}"


def _plain(value: object, where: str, source: str, depth: int = 0) -> None:
    """Refuse what JSON cannot carry (TOML dates and times) and nesting deeper than any key needs."""
    if depth > MAX_NESTING:
        raise ConfigError(f"{source}: {where or 'the file'}: nested deeper than {MAX_NESTING} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(item, f"{where}.{key}" if where else key, source, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _plain(item, f"{where}[{i}]", source, depth + 1)
    elif value is not None and not isinstance(value, (str, int, float, bool)):  # None: TOML has none, a dump has
        raise ConfigError(f"{source}: {where}: a date or time is not valid here")


def parse(data: dict[str, Any], source: str = "config") -> Cluster:
    """Validate a decoded description strictly: "80" is not a port and "yes" not a boolean.

    Validated as JSON so that addresses and roles may be written as strings while numbers
    and booleans must be what they say; any problem becomes one ConfigError line.
    """
    _plain(data, "", source)
    try:
        return Cluster.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from None


def load(path: Path | None) -> Cluster:
    """The cluster from a TOML file, or the reference cluster when no file is given."""
    if path is None:
        return Cluster()
    if not str(path) or path.is_dir():
        raise ConfigError(
            f"{path or repr('')}: is a directory, not a cluster file; pass a TOML file, e.g. one from `imgbuild init`"
        )
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; write one with `imgbuild init {path}`") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror}); check the path and its permissions") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; a cluster file is a few KiB of TOML")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); pass the cluster's TOML file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested deeper than {MAX_NESTING} levels") from None
    if not data:
        raise ConfigError(
            f"{path}: holds no settings; omit --config for the reference cluster, or write one with `imgbuild init`"
        )
    return parse(data, str(path))
