"""Gather a cluster's secrets for rendering: authkeys secret, admin keys, password hash."""

from __future__ import annotations

from imgbuild import state
from imgbuild.cloudinit.render import Secrets, hash_password
from imgbuild.model import Cluster


def for_cluster(cluster: Cluster) -> Secrets:
    keys = list(cluster.admin.ssh_keys)
    if not keys:
        keys = [state.admin_key(cluster.name)[1]]
    password = cluster.admin.password
    return Secrets(
        authkeys=state.authkeys_secret(cluster.name),
        admin_keys=keys,
        password_hash=hash_password(password) if password else None,
    )


def warnings(cluster: Cluster) -> list[str]:
    """Choices that work but that an operator should know are weak."""
    if cluster.heartbeat.auth_method == "md5":
        return ["heartbeat.auth_method md5 (the reference cluster's choice) is weak; sha1 is the default"]
    return []
