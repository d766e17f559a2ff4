"""Per-cluster state that must persist between runs: the authkeys secret and the admin key pair.

Kept outside the images and the repository, each file 0600 in a 0700 directory that belongs to
the user running imgbuild: root deploys whatever is here, so nobody else may have put it there.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from imgbuild.errors import UserError

SECRET_BYTES = 32


def state_root() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(os.environ.get("IMGBUILD_STATE", Path(base) / "imgbuild"))


def private_dir(path: Path) -> Path:
    """path as a directory only its owner can use: made 0700 whatever the umask, refused when it
    is a symlink, someone else's, or writable by others."""
    try:
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)  # mkdir's mode is cut by the umask, never widened
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UserError(f"{path} is a symlink or not a directory; remove it so imgbuild can make its own")
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise UserError(
            f"{path} belongs to uid {info.st_uid} or is writable by others; remove it, or chown it to yourself and "
            "chmod 700"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours: tighten, as every run always has
    return path


def cluster_dir(cluster_name: str) -> Path:
    root = state_root()
    root.parent.mkdir(parents=True, exist_ok=True)
    return private_dir(private_dir(root) / cluster_name)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold the directory's lock: concurrent runs agree on one secret and one key pair."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Write a file that only its owner may read, atomically (never visible half-written).

    The temporary file is created exclusively and never through a symlink.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.rename(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> str:
    """A state file's text; never through a symlink, never someone else's file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror}); remove it and run again to make a new one") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise UserError(f"{path} is not a private file of yours (0600); remove it and run again to make a new one")
        return f.read(65536).decode("utf-8", "replace")


def authkeys_secret(cluster_name: str) -> str:
    """The cluster's heartbeat secret: 32 random bytes as hex, made on first use and reused after."""
    directory = cluster_dir(cluster_name)
    path = directory / "authkeys.secret"
    with locked(directory):
        if not path.exists() and not path.is_symlink():
            write_private(path, secrets.token_hex(SECRET_BYTES).encode())
        secret = read_private(path).strip()
    if not re.fullmatch(f"[0-9a-f]{{{2 * SECRET_BYTES},}}", secret):
        raise UserError(
            f"{path} is not a secret of {SECRET_BYTES} hex bytes or more; delete it to make a new one, then re-seed "
            "every balancer"
        )
    return secret


def admin_key(cluster_name: str) -> tuple[Path, str]:
    """The generated admin key pair: (private key path, public key line)."""
    directory = cluster_dir(cluster_name)
    path = directory / "admin_ed25519"
    public = path.with_suffix(".pub")
    with locked(directory):
        if not path.exists() and not path.is_symlink():
            key = Ed25519PrivateKey.generate()
            private = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
            openssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            write_private(public, openssh + f" imgbuild-{cluster_name}\n".encode())
            write_private(path, private)  # last: a key file present means its .pub is too
        line = read_private(public).strip()
        read_private(path)  # the private key is ours and private as well
    return path, line
