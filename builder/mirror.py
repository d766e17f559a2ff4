"""The Debian mirrors the host's apt already uses, so images build from the same place."""

from __future__ import annotations

import email.utils
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from imgbuild.errors import UserError

APT_ETC = Path("/etc/apt")


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


@dataclass(frozen=True)
class Mirrors:
    main: str
    security: str


def _one_line_sources(text: str) -> list[Source]:
    sources = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = _drop_options(words[1:])
        if len(words) < 3:
            continue
        sources.append(Source(words[0], (words[1],), tuple(words[2:])))
    return sources


def _drop_options(words: list[str]) -> list[str]:
    """Remove a `[ key=value ... ]` block from a one-line source."""
    out, inside = [], False
    for word in words:
        if word.startswith("["):
            inside = True
        if not inside:
            out.append(word)
        if word.endswith("]"):
            inside = False
    return out


def _deb822_sources(text: str) -> list[Source]:
    sources = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        for uri in fields.get("uris", "").split():
            sources.append(
                Source(uri, tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split()))
            )
    return sources


def host_sources(apt_etc: Path = APT_ETC) -> list[Source]:
    """Every `deb` source configured in the host's apt, in apt's reading order."""
    sources = []
    main_list = apt_etc / "sources.list"
    if main_list.exists():
        sources += _one_line_sources(main_list.read_text())
    parts = apt_etc / "sources.list.d"
    if parts.is_dir():
        for path in sorted(parts.iterdir()):
            if path.suffix == ".list":
                sources += _one_line_sources(path.read_text())
            elif path.suffix == ".sources":
                sources += _deb822_sources(path.read_text())
    return sources


def _find(sources: list[Source], suite: str) -> str | None:
    """The source listing suite; else the one the host uses for its own release (or its security
    suite): a Debian archive serves every release, so a bookworm host's mirror builds trixie
    (release_epoch asks it for the release first)."""
    security = suite.endswith("-security")

    def same_kind(name: str) -> bool:
        return name.endswith("-security") if security else "-" not in name

    exact = [s for s in sources if suite in s.suites and "main" in s.components]
    kin = [s for s in sources if "main" in s.components and any(same_kind(name) for name in s.suites)]
    return next((s.uri.rstrip("/") for s in exact + kin), None)


def resolve(release: str, main: str | None = None, security: str | None = None, apt_etc: Path = APT_ETC) -> Mirrors:
    """Mirrors from flags or config, then IMGBUILD_MIRROR/IMGBUILD_SECURITY_MIRROR, then host apt."""
    main = main or os.environ.get("IMGBUILD_MIRROR")
    security = security or os.environ.get("IMGBUILD_SECURITY_MIRROR")
    if main and security:
        return Mirrors(main.rstrip("/"), security.rstrip("/"))
    sources = host_sources(apt_etc)
    main = main or _find(sources, release)
    if not main:
        raise UserError(
            f"no Debian mirror for {release} in the host's apt sources ({apt_etc}); "
            "pass --mirror URL or set IMGBUILD_MIRROR"
        )
    security = security or _find(sources, f"{release}-security")
    if not security:
        raise UserError(
            f"no Debian security mirror for {release}-security in the host's apt sources; "
            "pass --security-mirror URL or set IMGBUILD_SECURITY_MIRROR"
        )
    return Mirrors(main.rstrip("/"), security.rstrip("/"))


def _release_date(text: str, url: str) -> int:
    """The Date: of a Release file, in seconds since the epoch."""
    match = re.search(r"^Date: (.+)$", text, re.M)
    try:
        if match is None:
            raise ValueError("no Date field")
        return int(email.utils.parsedate_to_datetime(match.group(1)).timestamp())
    except (TypeError, ValueError) as err:
        raise UserError(f"{url} is not a Debian Release file ({err}); check --mirror") from None


def release_epoch(mirrors: Mirrors, release: str, timeout: float = 15) -> int:
    """The mirror state a build starts from, as SOURCE_DATE_EPOCH: the newest Date of the release's
    and its security suite's Release files. Fails early, in one line, when a mirror does not serve
    the release."""
    dates = []
    for url in (f"{mirrors.main}/dists/{release}/Release", f"{mirrors.security}/dists/{release}-security/Release"):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                text = response.read(1 << 16).decode(errors="replace")  # the Date is in the first lines
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise UserError(f"mirror unreachable: {url}: {reason}; check the network or pass --mirror URL") from None
        dates.append(_release_date(text, url))
    return max(dates)
