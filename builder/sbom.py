"""An SPDX 2.3 software bill of materials for a role image: every installed Debian package, the
image's artefacts with their checksums, and what contains what.

Read from the built root filesystem (dpkg's status and each package's copyright file), never
from the build host. Licences come from machine-readable (DEP-5) copyright files only; Debian's
short names map to SPDX identifiers where one exists and become LicenseRef-Debian-* otherwise.
"""

from __future__ import annotations

import re
import tempfile
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

from imgbuild.builder import imagefs
from imgbuild.builder.imagefs import DebPackage

DEP5 = re.compile(r"^Format:\s*https?://www\.debian\.org/doc/packaging-manuals/copyright-format/1\.0/?\s*$", re.M)
NOASSERTION = "NOASSERTION"
# Debian short names (copyright-format 1.0, "License specification") whose SPDX identifier
# differs from the name or its case; the GPL family is worked out below.
SPDX_NAMES = {
    "expat": "MIT",
    "mit": "MIT",
    "x11": "X11",
    "isc": "ISC",
    "zlib": "Zlib",
    "curl": "curl",
    "0bsd": "0BSD",
    "bsd-2-clause": "BSD-2-Clause",
    "bsd-3-clause": "BSD-3-Clause",
    "bsd-4-clause": "BSD-4-Clause",
    "apache-2": "Apache-2.0",
    "apache-2.0": "Apache-2.0",
    "artistic": "Artistic-1.0-Perl",
    "artistic-2.0": "Artistic-2.0",
    "cc0-1.0": "CC0-1.0",
    "mpl-1.1": "MPL-1.1",
    "mpl-2.0": "MPL-2.0",
    "psf-2": "PSF-2.0",
    "python-2.0": "Python-2.0",
    "openldap-2.8": "OLDAP-2.8",
    "fsfap": "FSFAP",
    "fsfullr": "FSFULLR",
    "unicode-dfs-2016": "Unicode-DFS-2016",
    "openssl": "OpenSSL",
    "bsl-1.0": "BSL-1.0",
    "wtfpl": "WTFPL",
}
GPL = re.compile(r"(?P<family>[AL]?GPL)v?-?(?P<version>[123](?:\.[01])?)(?:\.0)?(?P<later>\+)?", re.I)


def _paragraphs(text: str) -> list[dict[str, str]]:
    """The paragraphs of a deb822 file: field name (lower case) -> first line of its value."""
    paragraphs: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                paragraphs.append(current)
            current = {}
        elif not line[0].isspace() and (field := re.match(r"([A-Za-z][\w-]*):\s*(.*)$", line)):
            current[field.group(1).lower()] = field.group(2).strip()
    if current:
        paragraphs.append(current)
    return paragraphs


def spdx_id(name: str) -> str:
    """The SPDX identifier of a Debian licence short name, or a LicenseRef-Debian-* of our own."""
    if gpl := GPL.fullmatch(name):
        version = gpl["version"] if "." in gpl["version"] else f"{gpl['version']}.0"
        if gpl["family"].upper() == "LGPL" and version == "1.0":
            version = "2.0"
        return f"{gpl['family'].upper()}-{version}-{'or-later' if gpl['later'] else 'only'}"
    if known := SPDX_NAMES.get(name.lower()):
        return known
    readable = re.sub(r"[^A-Za-z0-9.-]+", "-", name.replace("+", "-or-later"))
    return "LicenseRef-Debian-" + re.sub(r"-{2,}", "-", readable).strip("-")


def _term(name: str) -> str | None:
    """One licence of an expression; None for text that is no short name (a malformed file)."""
    name = name.strip()
    if not name or not re.fullmatch(r"[A-Za-z0-9][\w.+~-]*(?: with [\w.+~-]+ exception)?", name):
        return None
    return spdx_id(name.replace(" with ", "-with-").replace(" exception", "-exception"))


def licence_expression(copyright_text: str) -> str | None:
    """The SPDX expression of every Files paragraph's licence, ANDed, or None when the file is not
    machine-readable or names nothing usable. "A or B" stays a choice; "A, and B" a conjunction."""
    if not DEP5.search(copyright_text):
        return None
    parts: set[str] = set()
    for paragraph in _paragraphs(copyright_text):
        if "files" not in paragraph or "license" not in paragraph:
            continue
        choices: list[str] = []
        for choice in re.split(r"\s+or\s+", paragraph["license"]):
            terms = [_term(t) for t in re.split(r"\s*,?\s+and\s+|\s*,\s*", choice)]
            if None in terms or not terms:
                choices = []
                break
            choices.append(" AND ".join(sorted({t for t in terms if t})))
        if choices:
            expression = " OR ".join(sorted(set(choices)))
            parts.add(f"({expression})" if len(choices) > 1 or " AND " in expression else expression)
    return " AND ".join(sorted(parts)) or None


def purl(package: DebPackage, release: str) -> str:
    version = urllib.parse.quote(package.version, safe="")
    return f"pkg:deb/debian/{package.name}@{version}?arch={package.architecture}&distro={release}"


def _ref(kind: str, index: int, name: str) -> str:
    return f"SPDXRef-{kind}-{index}-{re.sub(r'[^A-Za-z0-9.-]+', '-', name)}"


def document(
    *,
    image_name: str,
    release: str,
    created: str,
    packages: list[DebPackage],
    licences: dict[str, str],
    artefacts: dict[str, tuple[str, str, str]],
    namespace_seed: str,
) -> dict[str, Any]:
    """The SPDX 2.3 JSON document. licences: package name -> SPDX expression; artefacts:
    kind -> (file name, sha256, sha1). namespace_seed makes the document's namespace (a UUID URN) and
    is the same for the same inputs."""
    image = "SPDXRef-Image"
    deb_entries = []
    relationships = [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": image}
    ]
    refs: set[str] = set()
    for index, package in enumerate(packages):
        ref = _ref("Package", index, package.name)
        licence = licences.get(package.name, NOASSERTION)
        refs.update(re.findall(r"LicenseRef-[A-Za-z0-9.-]+", licence))
        deb_entries.append(
            {
                "SPDXID": ref,
                "name": package.name,
                "versionInfo": package.version,
                "supplier": "Organization: Debian",
                "downloadLocation": NOASSERTION,
                "filesAnalyzed": False,
                "licenseConcluded": NOASSERTION,
                "licenseDeclared": licence,
                "copyrightText": NOASSERTION,
                "sourceInfo": f"built from Debian source package {package.source} {package.source_version}",
                "summary": f"{package.name} {package.version} ({package.architecture})",
                "externalRefs": [
                    {
                        "referenceCategory": "PACKAGE-MANAGER",
                        "referenceType": "purl",
                        "referenceLocator": purl(package, release),
                    }
                ],
            }
        )
        relationships.append({"spdxElementId": image, "relationshipType": "CONTAINS", "relatedSpdxElement": ref})
    files = []
    for index, (kind, (file_name, sha256, sha1)) in enumerate(sorted(artefacts.items())):
        ref = _ref("File", index, kind)
        files.append(
            {
                "SPDXID": ref,
                "fileName": f"./{file_name}",
                "checksums": [
                    {"algorithm": "SHA256", "checksumValue": sha256},
                    {"algorithm": "SHA1", "checksumValue": sha1},
                ],
                "licenseConcluded": NOASSERTION,
                "copyrightText": NOASSERTION,
            }
        )
        relationships.append({"spdxElementId": ref, "relationshipType": "GENERATED_FROM", "relatedSpdxElement": image})
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image_name,
        "documentNamespace": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, namespace_seed)}",
        "creationInfo": {"created": created, "creators": ["Tool: imgbuild"]},
        "documentDescribes": [image],
        "packages": [
            {
                "SPDXID": image,
                "name": image_name,
                "versionInfo": release,
                "downloadLocation": NOASSERTION,
                "filesAnalyzed": False,
                "licenseConcluded": NOASSERTION,
                "licenseDeclared": NOASSERTION,
                "copyrightText": NOASSERTION,
                "primaryPackagePurpose": "OPERATING-SYSTEM",
            },
            *deb_entries,
        ],
        "files": files,
        "hasExtractedLicensingInfos": [
            {
                "licenseId": ref,
                "name": ref.removeprefix("LicenseRef-Debian-"),
                "extractedText": f"The licence Debian's copyright files call {ref.removeprefix('LicenseRef-Debian-')}.",
            }
            for ref in sorted(refs)
        ],
        "relationships": relationships,
    }


def image_licences(image: Path, packages: list[DebPackage]) -> dict[str, str]:
    """Each package's licence expression, from the copyright files under /usr/share/doc (one
    debugfs dump of the folder into a private scratch directory)."""
    with tempfile.TemporaryDirectory(prefix="imgbuild-doc.") as scratch:
        docs = imagefs.dump_dir(image, "/usr/share/doc", Path(scratch))
        found = {}
        for package in packages:
            copyright_file = docs / package.name / "copyright"
            # Never through a link: a doc folder that is one (to a sibling package's) is skipped.
            if copyright_file.parent.is_symlink() or copyright_file.is_symlink() or not copyright_file.is_file():
                continue
            if expression := licence_expression(copyright_file.read_text(errors="replace")):
                found[package.name] = expression
    return found
