"""Can a role image be rebuilt bit for bit: rebuild it from the same inputs elsewhere and compare.

The root filesystem's content (path, type, mode, owner, size, sha256, symlink target, extended
attributes) must be the same; each artefact is compared by its sha256, and one that differs says
why, as far as the tools on the host can tell (ext4 and squashfs superblocks, the files it holds).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypedDict

from imgbuild.builder import rootfs
from imgbuild.builder.build import Manifest, build_roles
from imgbuild.builder.mirror import Mirrors
from imgbuild.errors import UserError
from imgbuild.model import Build, OpenStack, Role
from imgbuild.paths import REPRODUCIBILITY_SUFFIX, role_dir
from imgbuild.publish import write_json
from imgbuild.run import run

# Shown in full up to here; the count says how many more.
MAX_LISTED = 50


@dataclass(frozen=True)
class Entry:
    kind: str  # file, dir, symlink, char, block, fifo, socket
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    size: int  # regular files only; 0 otherwise
    sha256: str  # regular files only
    target: str  # symlinks only
    xattrs: str  # name=hex value, sorted (file capabilities, ACLs)


class TreeDifference(TypedDict):
    path: str
    differs: list[str]  # Entry fields, or "only in the first/rebuilt image"


class ArtefactResult(TypedDict):
    identical: bool
    sha256: list[str]  # the published build's, the rebuild's
    why: str  # empty when identical


class Report(TypedDict):
    role: str
    source_date_epoch: int
    rebuild_seconds: float
    files: int
    tree_identical: bool
    tree_differences: list[TreeDifference]  # the first MAX_LISTED
    tree_differences_count: int
    packages_identical: bool
    artefacts: dict[str, ArtefactResult]


_KINDS = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "char",
    stat.S_IFBLK: "block",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def entry(path: Path) -> Entry:
    """What the comparison looks at of one path (never following a symlink)."""
    st = path.lstat()
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "unknown")
    return Entry(
        kind,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_size if kind == "file" else 0,
        _sha256(path) if kind == "file" else "",
        os.readlink(path) if kind == "symlink" else "",
        " ".join(
            f"{name}={os.getxattr(path, name, follow_symlinks=False).hex()}"
            for name in sorted(os.listxattr(path, follow_symlinks=False))
        ),
    )


def tree(root: Path) -> dict[str, Entry]:
    """Every path below root (root itself as "/"), by its path inside the tree."""
    found = {"/": entry(root)}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory, name)
            found["/" + str(path.relative_to(root))] = entry(path)
    return found


def compare_trees(first: dict[str, Entry], second: dict[str, Entry]) -> list[TreeDifference]:
    """The paths whose entries differ, with the fields that do, in path order."""
    differences: list[TreeDifference] = []
    for path in sorted(first.keys() | second.keys()):
        a, b = first.get(path), second.get(path)
        if a is None:
            differences.append({"path": path, "differs": ["only in the rebuilt image"]})
        elif b is None:
            differences.append({"path": path, "differs": ["only in the first image"]})
        elif a != b:
            fields = [k for k, v in asdict(a).items() if asdict(b)[k] != v]
            differences.append({"path": path, "differs": fields})
    return differences


def _header_fields(text: str) -> dict[str, str]:
    """`Key: value` lines of dumpe2fs -h or unsquashfs -s output."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


def differing_fields(first: str, second: str) -> list[str]:
    """The header fields (superblock) whose values differ between two tools' outputs."""
    a, b = _header_fields(first), _header_fields(second)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def _superblock(tool: list[str], image: Path) -> str:
    out: str = run([*tool, image], text=True, check=False).stdout
    return out


def why_differs(kind: str, first: Path, second: Path, tree_identical: bool, raw_identical: bool) -> str:
    """One line on why an artefact's bytes differ between the two builds."""
    if kind == "raw":
        fields = differing_fields(_superblock(["dumpe2fs", "-h"], first), _superblock(["dumpe2fs", "-h"], second))
        files = "same files" if tree_identical else "the files differ (see tree_differences)"
        return f"{files}; ext4 metadata differs: {', '.join(fields) or 'block layout'}"
    if kind in ("qcow2", "disk-raw", "disk-qcow2") and not raw_identical:
        return "made from the raw root filesystem, which differs"
    if kind == "squashfs":
        fields = differing_fields(_superblock(["unsquashfs", "-s"], first), _superblock(["unsquashfs", "-s"], second))
        files = "same files" if tree_identical else "the files differ (see tree_differences)"
        return f"{files}; squashfs superblock differs: {', '.join(fields) or 'none (file order or data)'}"
    return "differs; compare the two with diffoscope for details"


def compare(role: Role, first_dir: Path, first: Manifest, second_dir: Path, second: Manifest) -> Report:
    """The two builds of a role, side by side: their root filesystems' content, then every artefact."""
    raw = first["artefacts"]["raw"]["file"]
    with rootfs.mounted(first_dir / raw) as a, rootfs.mounted(second_dir / raw) as b:
        first_tree, second_tree = tree(a), tree(b)
    differences = compare_trees(first_tree, second_tree)
    same = {
        kind: artefact["sha256"] == second["artefacts"][kind]["sha256"] for kind, artefact in first["artefacts"].items()
    }
    artefacts: dict[str, ArtefactResult] = {
        kind: {
            "identical": same[kind],
            "sha256": [artefact["sha256"], second["artefacts"][kind]["sha256"]],
            "why": ""
            if same[kind]
            else why_differs(
                kind, first_dir / artefact["file"], second_dir / artefact["file"], not differences, same["raw"]
            ),
        }
        for kind, artefact in first["artefacts"].items()
    }
    return {
        "role": role.value,
        "source_date_epoch": first["source_date_epoch"],
        "rebuild_seconds": second["build_seconds"],
        "files": len(first_tree),
        "tree_identical": not differences,
        "tree_differences": differences[:MAX_LISTED],
        "tree_differences_count": len(differences),
        "packages_identical": first["packages"] == second["packages"],
        "artefacts": artefacts,
    }


def check(
    roles: list[Role],
    published: dict[Role, Manifest],
    build: Build,
    mirrors: Mirrors,
    output: Path,
    openstack: OpenStack,
    on_phase: Callable[[Role, str], None],
) -> dict[Role, Report]:
    """Rebuild each published role image (output/<role>/) from the same inputs and SOURCE_DATE_EPOCH
    in a scratch directory of its own, compare, write output/<role>.reproducibility.json and remove
    the rebuild."""
    for role in roles:
        if "source_date_epoch" not in published[role]:
            raise UserError(
                f"{role.value}: built before imgbuild recorded its SOURCE_DATE_EPOCH; rebuild it with --force"
            )
    scratch = Path(tempfile.mkdtemp(prefix=".rebuild.", suffix=".tmp", dir=output))
    try:
        epochs = {role: published[role]["source_date_epoch"] for role in roles}
        rebuilt = build_roles(roles, build, mirrors, scratch, True, openstack, on_phase, epochs)
        reports = {}
        for role in roles:
            on_phase(role, "comparing the two builds")
            report = compare(
                role, role_dir(output, role), published[role], role_dir(scratch, role), rebuilt[role].manifest
            )
            write_json(output / f"{role.value}.{REPRODUCIBILITY_SUFFIX}", report)
            reports[role] = report
        return reports
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
