"""Seed volumes written with pycdlib: NoCloud (`cidata`) and OpenStack config drive (`config-2`)."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib

from imgbuild.state import write_private


def write_iso(target: Path, label: str, files: dict[str, bytes]) -> None:
    """Write an ISO volume labelled `label` holding files (relative paths, '/'-separated), 0600:
    a seed carries the cluster's secrets."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=label)
    made_dirs: set[str] = set()
    for index, (name, data) in enumerate(sorted(files.items())):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in made_dirs:
                made_dirs.add(directory)
                iso_dir = "/" + "/".join(_short(p) for p in parts[:depth])
                iso.add_directory(iso_dir, rr_name=parts[depth - 1], joliet_path="/" + directory)
        iso_path = "/" + "/".join(_short(p) for p in [*parts[:-1], f"F{index:07d}"]) + ".;1"
        iso.add_fp(io.BytesIO(data), len(data), iso_path, rr_name=parts[-1], joliet_path="/" + name)
    volume = io.BytesIO()
    iso.write_fp(volume)
    iso.close()
    write_private(target, volume.getvalue())


def _short(name: str) -> str:
    """An ISO 9660 directory identifier: upper-case, [A-Z0-9_], at most 8 characters."""
    cleaned = "".join(c if c.isalnum() else "_" for c in name.upper())
    return cleaned[:8] or "_"


def read_iso(path: Path) -> tuple[str, dict[str, bytes]]:
    """Label and files (by their Rock Ridge names) of a seed volume: for tests and review."""
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    label = iso.pvd.volume_identifier.decode().strip()
    files: dict[str, bytes] = {}
    for root, _dirs, names in iso.walk(rr_path="/"):
        for name in names:
            rr = f"{root.rstrip('/')}/{name}"
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, rr_path=rr)
            files[rr.lstrip("/")] = buf.getvalue()
    iso.close()
    return label, files
