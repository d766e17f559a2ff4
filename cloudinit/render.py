"""Render a node's cloud-init data (meta-data, network-config, user-data) from the model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
import yaml
from passlib.hash import sha512_crypt

from imgbuild.model import Cluster, Node, Role

MASK = "********"


@dataclass(frozen=True)
class Secrets:
    """What a render needs that must never reach an image or a log."""

    authkeys: str
    admin_keys: list[str]
    password_hash: str | None = None


@dataclass(frozen=True)
class NodeData:
    meta_data: str
    network_config: str
    user_data: str


def yaml_string(value: object) -> str:
    """A YAML double-quoted scalar that reads back as exactly this string.

    Jinja's tojson writes characters beyond the BMP as JSON surrogate pairs, which YAML reads as
    two broken characters; and an unquoted node named "no" or "0" would not stay a string.
    """
    return yaml.safe_dump(str(value), default_style='"', width=float("inf"), allow_unicode=False).strip()


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("imgbuild.cloudinit").joinpath("templates", name).read_text()
    )
    env = jinja2.Environment(
        loader=loader, undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True
    )
    env.filters["yaml"] = yaml_string
    return env


def hash_password(password: str) -> str:
    return str(sha512_crypt.hash(password))


def instance_id(cluster: Cluster, node: Node) -> str:
    return f"iid-{cluster.name}-{node.name}"


def _context(cluster: Cluster, node: Node) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "node": node,
        "net": cluster.network,
        "lb": cluster.balancer,
        "hb": cluster.heartbeat,
        "ka": cluster.keepalived,
        "balancers": cluster.by_role(Role.loadbalancer),
        "webservers": cluster.by_role(Role.webserver),
    }


def node_files(cluster: Cluster, node: Node, secrets: Secrets) -> list[dict[str, str]]:
    """Files the node's user-data writes: path, octal mode, content."""
    env, ctx = _env(), _context(cluster, node)

    def render(template: str, **extra: object) -> str:
        return env.get_template(template).render(**ctx, **extra)

    # lvs-sync-watch restarts a lost sync daemon on either stack (LVSSyncDaemonSwap ensure)
    lvs_sync = {"path": "/etc/default/lvs-sync", "mode": "0644", "content": render("lvs-sync.j2")}
    if node.role == Role.loadbalancer and cluster.ha.stack == "keepalived":
        priority = cluster.keepalived.priorities[ctx["balancers"].index(node)]
        return [
            {
                "path": "/etc/keepalived/keepalived.conf",
                "mode": "0644",
                "content": render("keepalived.conf.j2", priority=priority),
            },
            lvs_sync,
        ]
    if node.role == Role.loadbalancer:
        return [
            {"path": "/etc/ha.d/ha.cf", "mode": "0644", "content": render("ha.cf.j2")},
            {"path": "/etc/ha.d/haresources", "mode": "0644", "content": render("haresources.j2")},
            {"path": "/etc/ha.d/ldirectord.cf", "mode": "0644", "content": render("ldirectord.cf.j2")},
            # The table ldirectord would build, loaded by LVSDirector before ldirectord starts.
            {"path": "/etc/ha.d/ipvs.rules", "mode": "0644", "content": render("ipvs.rules.j2")},
            {"path": "/etc/ha.d/authkeys", "mode": "0600", "content": render("authkeys.j2", secret=secrets.authkeys)},
            lvs_sync,
        ]
    return [
        {"path": "/etc/network/interfaces.d/60-lvs-vip", "mode": "0644", "content": render("lo-vip.j2")},
        {"path": "/var/www/html/index.html", "mode": "0644", "content": render("index.html.j2")},
        # Apache starts after cloud-init has written these (the image's apache2 drop-in)
        {"path": "/etc/apache2/ports.conf", "mode": "0644", "content": render("apache-ports.j2")},
        {"path": "/etc/apache2/sites-available/000-default.conf", "mode": "0644", "content": render("apache-site.j2")},
    ]


def _runcmd(node: Node) -> list[list[str]]:
    # The VIP file lands after networking started on the first boot; later boots bring it up themselves.
    return [["ifup", "lo:0"]] if node.role == Role.webserver else []


def render_node(cluster: Cluster, node: Node, secrets: Secrets) -> NodeData:
    env, ctx = _env(), _context(cluster, node)
    user_data = env.get_template("user-data.j2").render(
        **ctx,
        fqdn=cluster.fqdn(node),
        admin=cluster.admin,
        ssh_keys=secrets.admin_keys,
        password_hash=secrets.password_hash,
        files=node_files(cluster, node, secrets),
        runcmd=_runcmd(node),
    )
    return NodeData(
        meta_data=env.get_template("meta-data.j2").render(**ctx, instance_id=instance_id(cluster, node)),
        network_config=env.get_template("network-config.j2").render(
            **ctx, mac=cluster.mac(node), link_mac=cluster.link_mac(node), link_address=cluster.link_address(node)
        ),
        user_data=user_data,
    )


def masked(text: str, secrets: Secrets) -> str:
    """text with every secret value replaced, for review on a terminal: raw, and as JSON and YAML
    write it (in user-data a secret sits inside a quoted, escaped file content)."""
    for value in (secrets.authkeys, secrets.password_hash):
        if value:
            for form in sorted({value, json.dumps(value)[1:-1], yaml_string(value)[1:-1]}, key=len, reverse=True):
                text = text.replace(form, MASK)
    return text
