"""The SBOM of a role image: dpkg's status and copyright files to a valid SPDX 2.3 document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from imgbuild.builder import imagefs, sbom

STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.41-12

Package: libc6
Status: install ok installed
Architecture: i386
Source: glibc
Version: 2.41-12

Package: gzip
Status: install ok installed
Architecture: amd64
Version: 1.13-1+deb13u1

Package: libtasn1-6
Status: hold ok installed
Architecture: amd64
Source: libtasn1-6 (4.20.0-2)
Version: 4.20.0-2+b1

Package: oldconf
Status: deinstall ok config-files
Architecture: all
Version: 1.0

Package: kept
Status: install ok half-configured
Architecture: all
Version: 1.0
"""

DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: lib/*
Copyright: 2021 Someone Else
License: LGPL-2.1+ or Artistic

Files: doc/*
License: GFDL-1.3+ no invariant
 The text is here, spread over
 several lines.

Files: contrib/*
License: Expat, and BSD-3-clause

License: GPL-2+
 This program is free software; you can redistribute it and/or modify
 it under the terms of the GNU General Public License.
"""


def test_installed_packages_as_dpkg_query_lists_them() -> None:
    """Installed (held too) instances, one per architecture; not removed or half-configured ones."""
    packages = imagefs.parse_status(STATUS)
    assert [(p.name, p.architecture) for p in packages] == [
        ("gzip", "amd64"),
        ("libc6", "amd64"),
        ("libc6", "i386"),
        ("libtasn1-6", "amd64"),
    ]
    gzip, libc6, _, tasn = packages
    assert (gzip.source, gzip.source_version) == ("gzip", "1.13-1+deb13u1")
    assert (libc6.source, libc6.source_version) == ("glibc", "2.41-12")
    assert (tasn.source, tasn.source_version, tasn.version) == ("libtasn1-6", "4.20.0-2", "4.20.0-2+b1")


@pytest.mark.parametrize(
    ("debian", "spdx"),
    [
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("GPL-2.0+", "GPL-2.0-or-later"),
        ("GPLv3+", "GPL-3.0-or-later"),
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("LGPL-2+", "LGPL-2.0-or-later"),
        ("AGPL-3+", "AGPL-3.0-or-later"),
        ("Expat", "MIT"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("Artistic", "Artistic-1.0-Perl"),
        ("Apache-2", "Apache-2.0"),
        ("OpenLDAP-2.8", "OLDAP-2.8"),
        ("public-domain", "LicenseRef-Debian-public-domain"),
        ("GPL", "LicenseRef-Debian-GPL"),  # no version: no guess
        ("LGPL-2.1+-with-link-exception", "LicenseRef-Debian-LGPL-2.1-or-later-with-link-exception"),
    ],
)
def test_debian_short_names_map_to_spdx(debian: str, spdx: str) -> None:
    assert sbom.spdx_id(debian) == spdx


def test_licence_expression_of_a_machine_readable_copyright_file() -> None:
    """Every Files paragraph's licence, ANDed; "or" stays a choice; standalone texts add nothing."""
    assert sbom.licence_expression(DEP5) == (
        "(Artistic-1.0-Perl OR LGPL-2.1-or-later) AND (BSD-3-Clause AND MIT) AND GPL-2.0-or-later"
    )


def test_no_licence_from_free_text_or_a_file_that_is_not_machine_readable() -> None:
    assert sbom.licence_expression("This is the Debian prepackaged version of demo.\nGPL-2+\n") is None
    malformed = DEP5.replace("License: GPL-2+\n\nFiles: lib", "License: Permission is granted to anyone\n\nFiles: lib")
    assert "GPL-2.0-or-later" not in (sbom.licence_expression(malformed) or "")


def _document(packages: list[imagefs.DebPackage]) -> dict[str, Any]:
    return sbom.document(
        image_name="imgbuild-webserver",
        release="trixie",
        created="2026-12-04T10:00:00Z",
        packages=packages,
        licences={"libc6": "LGPL-2.1-or-later AND LicenseRef-Debian-public-domain", "gzip": "GPL-3.0-or-later"},
        artefacts={"raw": ("webserver.raw", "a" * 64, "b" * 40), "kernel": ("webserver.vmlinuz", "c" * 64, "d" * 40)},
        namespace_seed="imgbuild/webserver/trixie/" + "a" * 64,
    )


def test_document_is_valid_spdx_with_every_package_and_artefact(tmp_path: Path) -> None:
    packages = imagefs.parse_status(STATUS)
    path = tmp_path / "webserver.spdx.json"
    path.write_text(json.dumps(_document(packages)))
    parsed = parse_file(str(path))
    assert [m.validation_message for m in validate_full_spdx_document(parsed)] == []
    image, *debs = parsed.packages
    assert image.name == "imgbuild-webserver" and len(debs) == len(packages) == 4
    purls = sorted(ref.locator for p in debs for ref in p.external_references)
    assert "pkg:deb/debian/gzip@1.13-1%2Bdeb13u1?arch=amd64&distro=trixie" in purls
    assert "pkg:deb/debian/libc6@2.41-12?arch=i386&distro=trixie" in purls
    assert {str(f.name): {c.value for c in f.checksums} for f in parsed.files} == {
        "./webserver.raw": {"a" * 64, "b" * 40},
        "./webserver.vmlinuz": {"c" * 64, "d" * 40},
    }
    contained = {r.related_spdx_element_id for r in parsed.relationships if r.relationship_type.name == "CONTAINS"}
    assert contained == {p.spdx_id for p in debs}
    assert [e.license_id for e in parsed.extracted_licensing_info] == ["LicenseRef-Debian-public-domain"]


def test_same_inputs_same_document() -> None:
    """Its namespace comes from the inputs, not a random UUID, so a rebuild of the same image says the same."""
    packages = imagefs.parse_status(STATUS)
    first, again = _document(packages), _document(packages)
    assert json.dumps(first) == json.dumps(again)
    other = sbom.document(
        image_name="imgbuild-webserver",
        release="trixie",
        created="2026-12-04T10:00:00Z",
        packages=packages,
        licences={},
        artefacts={},
        namespace_seed="imgbuild/webserver/trixie/" + "e" * 64,
    )
    assert other["documentNamespace"] != first["documentNamespace"]
