"""Per-cluster state that must persist between runs: the authkeys secret and the admin key pair.

Kept outside the images and the repository, each file 0600 in a 0700 directory.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def state_root() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(os.environ.get("IMGBUILD_STATE", Path(base) / "imgbuild"))


def cluster_dir(cluster_name: str) -> Path:
    path = state_root() / cluster_name
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a file that only its owner may read, atomically (never visible half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.rename(path)


def authkeys_secret(cluster_name: str) -> str:
    """The cluster's heartbeat secret: 32 random bytes, made on first use and reused after."""
    path = cluster_dir(cluster_name) / "authkeys.secret"
    if not path.exists():
        write_private(path, secrets.token_hex(32).encode())
    return path.read_text().strip()


def admin_key(cluster_name: str) -> tuple[Path, str]:
    """The generated admin key pair: (private key path, public key line)."""
    path = cluster_dir(cluster_name) / "admin_ed25519"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        write_private(path, private)
        write_private(path.with_suffix(".pub"), public + f" imgbuild-{cluster_name}\n".encode())
    return path, path.with_suffix(".pub").read_text().strip()
