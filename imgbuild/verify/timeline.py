"""A picture per fault drill and an HTML page over the run's report.

An operator judges a failover faster from a timeline than from numbers: which web server
answered when, where the requests failed, who held the VIP and whether the long download
stalled. matplotlib is used through `Figure` and `FigureCanvasAgg` only, never pyplot, so
drawing touches no global state and no GUI and may run in any thread.
"""

from __future__ import annotations

import html
import math
import pathlib
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from imgbuild.publish import write_file
from imgbuild.verify.client import NEW, failure_windows, outage

if TYPE_CHECKING:  # run.py reaches pytest and the checks; the page needs only the report's shape
    from imgbuild.verify.run import Report

# Web servers and balancers share one legend, so their palettes must not overlap; red means
# failure and grey means "nobody holds the VIP".
_SERVER_COLOURS = ("tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
_HOLDER_COLOURS = ("tab:blue", "#9ecae1", "#08306b", "#6baed6")
_DARK = ("tab:blue", "#08306b")
_FAILED = "tab:red"
_NOBODY = "#bbbbbb"
_BIN_S = 0.5
_EVENT_LEVELS = 3


def _number(value: Any) -> str:
    """A figure as text: two decimals for fractions, "∞" for a never-ending outage, "—" for none."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.2f}"
    return str(value)


def _outage(drill: dict[str, Any]) -> float | None:
    """The drill's own measured outage, else the client's reading of its requests; None without traffic."""
    measured = drill.get("figures", {}).get("outage_s")
    if measured is not None:
        return float(measured)
    requests = drill.get("requests", [])
    return outage(requests) if any(r[4] == NEW for r in requests) else None


def _bounded(drill: dict[str, Any]) -> tuple[str, str, float | None]:
    """The figure the drill's bound is for: (key, label, value); the outage unless the drill says."""
    key = str(drill.get("bounded") or "outage_s")
    value = _outage(drill) if key == "outage_s" else drill.get("figures", {}).get(key)
    return key, key.removesuffix("_s").replace("_", " "), None if value is None else float(value)


def _title(drill: dict[str, Any]) -> str:
    parts = [str(drill.get("title") or drill.get("name", "drill"))]
    bound = drill.get("bound_s")
    _, label, measured = _bounded(drill)
    parts.append("no traffic" if measured is None else f"{label} {_number(measured)} s")
    if bound is not None:
        parts[-1] += f" (bound {_number(float(bound))} s)"
    if drill.get("passed") is not None:
        parts.append("PASSED" if drill["passed"] else "FAILED")
    return " — ".join(parts)


def _palette(names: Iterable[str], colours: Sequence[str]) -> dict[str, str]:
    """Stable colours: the same name gets the same colour in every drill of a run."""
    return {name: colours[i % len(colours)] for i, name in enumerate(sorted(set(names)))}


def _span(drill: dict[str, Any]) -> tuple[float, float]:
    """The x range covering every sample, moment and request end of the drill."""
    times = [t for r in drill.get("requests", []) for t in (r[0], r[0] + (r[1] or 0))]
    times += [t for t, _ in drill.get("vip", [])] + [t for t, _ in drill.get("download", [])]
    times += [t for t, _ in drill.get("events", [])]
    times += [drill[key] for key in ("fault_at", "heal_at") if drill.get(key) is not None]
    if not times:
        return 0.0, 1.0
    low, high = min(0.0, *times), max(times)
    margin = max(0.5, (high - low) * 0.02)
    return low - margin, high + margin


def _rows(ax: Axes, labels: Sequence[str]) -> None:
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(-0.7, len(labels) - 0.3)


def _new_connections(ax: Axes, drill: dict[str, Any], servers: dict[str, str], span: tuple[float, float]) -> None:
    """One row per answering web server and one for failures, with outage windows shaded and measured."""
    requests = [r for r in drill.get("requests", []) if r[4] == NEW]
    labels = ["failed", *servers]
    ok_rows = {server: row for row, server in enumerate(labels)}
    failed = [r[0] for r in requests if not r[2]]
    ax.plot(failed, [0] * len(failed), "|", color=_FAILED, ms=9, mew=1.2)
    for server, colour in servers.items():
        times = [r[0] for r in requests if r[2] and r[3] == server]
        ax.plot(times, [ok_rows[server]] * len(times), "|", color=colour, ms=9, mew=1.2)
    _rows(ax, labels)
    for start, end in failure_windows(requests):
        shown_end = min(end, span[1])
        last = max(r[0] for r in requests)  # an open window lasted at least until the last request
        label = f"{end - start:.2f} s" if math.isfinite(end) else f"no recovery (≥ {last - start:.1f} s)"
        ax.text((start + shown_end) / 2, 0.5, label, ha="center", va="center", fontsize=8, color=_FAILED, weight="bold")
    if not requests:
        ax.text(0.5, 0.5, "no requests on new connections", transform=ax.transAxes, ha="center", color="grey")
    ax.set_ylabel("new\nconnections", fontsize=8)


def _events(ax: Axes, drill: dict[str, Any], span: tuple[float, float]) -> None:
    """Event notes above the request rows, each on the first level where it overlaps no earlier note."""
    # At 7 pt a character is about 4.3 px wide; the axes is about 780 px wide.
    char = (span[1] - span[0]) / 780 * 4.3
    free_from = [-math.inf] * _EVENT_LEVELS
    placed = []
    for t, text in sorted(drill.get("events", []), key=lambda e: e[0]):
        # When every level is taken, the one that frees first.
        fallback = min(range(_EVENT_LEVELS), key=free_from.__getitem__)
        level = next((i for i, f in enumerate(free_from) if f < t), fallback)
        placed.append((t, str(text), level))
        free_from[level] = t + char * (len(str(text)) + 3)
    levels = 1 + max((level for *_, level in placed), default=-1)
    bottom, top = ax.get_ylim()
    top += 0.85 * levels
    ax.set_ylim(bottom, top)
    for t, text, level in placed:
        y = top - 0.45 - 0.85 * level
        ax.plot([t], [y], marker="v", color="black", ms=4)
        ax.text(t + char, y, text, fontsize=7, va="center", ha="left")


def _keepalive(ax: Axes, drill: dict[str, Any], servers: dict[str, str]) -> None:
    """One row per persistent connection: a dot per request, by answering server, red when it failed."""
    requests = [r for r in drill.get("requests", []) if r[4] != NEW]
    channels = sorted({r[4] for r in requests})
    for row, channel in enumerate(channels):
        mine = [r for r in requests if r[4] == channel]
        colours = [servers.get(r[3], "black") if r[2] else _FAILED for r in mine]
        ax.scatter([r[0] for r in mine], [row] * len(mine), c=colours, s=[6 if r[2] else 18 for r in mine], lw=0)
    _rows(ax, [c.removeprefix("keepalive-") for c in channels])
    if not channels:
        ax.text(0.5, 0.5, "no keep-alive requests", transform=ax.transAxes, ha="center", color="grey")
    ax.set_ylabel("keep-alive\nconnection", fontsize=8)


def _vip(ax: Axes, drill: dict[str, Any], holders: dict[str, str], span: tuple[float, float]) -> None:
    """Each VIP sample holds until the next one; the last until the end of the drill."""
    runs: list[list[Any]] = []  # [start, end, holder] of consecutive samples with one holder
    for t, holder in sorted(drill.get("vip", []), key=lambda s: s[0]):
        if runs:
            runs[-1][1] = t
        if not runs or runs[-1][2] != holder:
            runs.append([t, t, holder])
    if runs:
        runs[-1][1] = span[1]
    for start, end, holder in runs:
        ax.broken_barh([(start, end - start)], (0, 1), color=holders.get(holder, _NOBODY), lw=0)
        if end - start > (span[1] - span[0]) * 0.06:  # name the holder where the band can carry it
            colour = "white" if holders.get(holder) in _DARK else "black"
            ax.text((start + end) / 2, 0.5, holder or "nobody", ha="center", va="center", fontsize=8, color=colour)
    if not runs:
        ax.text(0.5, 0.5, "no VIP samples", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("VIP\nholder", fontsize=8)


def _download(ax: Axes, drill: dict[str, Any]) -> None:
    """Bytes received per half second: a stall shows as a gap, a reset as a line that never rises again."""
    chunks = drill.get("download", [])
    if chunks:
        times = np.array([t for t, _ in chunks], dtype=float)
        first, last = math.floor(times.min() / _BIN_S), math.ceil(times.max() / _BIN_S) + 1
        edges = np.arange(first, last + 1) * _BIN_S
        sums, _ = np.histogram(times, bins=edges, weights=[n for _, n in chunks])
        ax.stairs(sums / 1024, edges, fill=True, color="tab:blue", alpha=0.35)
        ax.stairs(sums / 1024, edges, color="tab:blue", lw=1)
    else:
        ax.text(0.5, 0.5, "no download data", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_yticks([])
    ax.set_ylabel(f"download\nKiB/{_BIN_S} s", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)


def _tick(colour: str, label: str) -> Line2D:
    return Line2D([], [], ls="", marker="|", ms=9, mew=1.5, color=colour, label=label)


def draw(drill: dict[str, Any], path: pathlib.Path) -> None:
    """Write the drill's timeline as a PNG: new connections, keep-alive, VIP holder and download."""
    fig = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[3.2, 1.6, 0.6, 1.4])
    span = _span(drill)
    requests = drill.get("requests", [])
    servers = _palette((r[3] for r in requests if r[2] and r[3]), _SERVER_COLOURS)
    holders = _palette((h for _, h in drill.get("vip", []) if h), _HOLDER_COLOURS)

    _new_connections(axes[0], drill, servers, span)
    _events(axes[0], drill, span)
    _keepalive(axes[1], drill, servers)
    _vip(axes[2], drill, holders, span)
    _download(axes[3], drill)

    for start, end in failure_windows(requests):
        for ax in (axes[0], axes[1], axes[3]):  # the VIP band keeps its holder's colour
            ax.axvspan(start, min(end, span[1]), color=_FAILED, alpha=0.12, lw=0)
    for key, label in (("fault_at", "fault"), ("heal_at", "heal")):
        if drill.get(key) is not None:
            for ax in axes:
                ax.axvline(drill[key], color="black", ls="--", lw=1)
            axes[0].text(drill[key], 1.01, label, transform=axes[0].get_xaxis_transform(), ha="center", fontsize=8)
    for ax in axes:
        ax.grid(axis="x", color="#dddddd", lw=0.6)
        ax.set_axisbelow(True)
    axes[0].set_xlim(*span)
    axes[3].set_xlabel("seconds since traffic started", fontsize=8)
    axes[3].tick_params(axis="x", labelsize=8)

    # One legend outside the panels for both request panels and the VIP band: it never covers data.
    handles: list[Artist] = [_tick(c, s) for s, c in servers.items()]
    if any(not r[2] for r in requests):
        handles.append(_tick(_FAILED, "failed"))
    handles += [Patch(color=c, label=f"VIP: {h}") for h, c in holders.items()]
    if any(h is None for _, h in drill.get("vip", [])):
        handles.append(Patch(color=_NOBODY, label="VIP: nobody"))
    if handles:
        fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle(_title(drill), fontsize=11)
    write_file(path, lambda out: fig.savefig(out, format="png"))


def _slug(drill: dict[str, Any], index: int) -> str:
    """A file name part even if the drill's name breaks its contract."""
    return re.sub(r"[^a-z0-9-]+", "-", str(drill.get("name") or index).lower())


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1060px; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
td, th { border: 1px solid #ccc; padding: .2em .6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.passed { color: #17692a; font-weight: bold; }
.failed { color: #b00020; font-weight: bold; }
.skipped { color: #777; }
tr.over td { background: #fde2e2; }
.detail { font-family: monospace; font-size: 12px; white-space: pre-wrap; max-width: 600px; }
img { max-width: 100%; border: 1px solid #ddd; }
section { margin-top: 2em; }
"""


def _check_rows(checks: Sequence[dict[str, Any]]) -> str:
    e = html.escape
    rows = []
    for check in checks:
        outcome = str(check.get("outcome", ""))
        seconds = check.get("seconds")
        rows.append(
            f"<tr><td>{e(str(check.get('check', '')))}</td><td class='{e(outcome)}'>{e(outcome)}</td>"
            f"<td class='num'>{'' if seconds is None else f'{float(seconds):.1f}'}</td>"
            f"<td class='detail'>{e(str(check.get('detail') or ''))}</td></tr>"
        )
    return "\n".join(rows)


def _drill_section(drill: dict[str, Any], image: str) -> str:
    """Title, figures with the outage against its bound, and the picture."""
    e = html.escape
    bound = None if drill.get("bound_s") is None else float(drill["bound_s"])
    bounded, label, measured = _bounded(drill)
    over = bound is not None and measured is not None and measured > bound
    verdict: dict[object, str] = {
        True: "<span class='passed'>PASSED</span>",
        False: "<span class='failed'>FAILED</span>",
    }
    marked = " class='over'" if over else ""
    rows = [
        f"<tr{marked}><th>{e(label)} (s) / bound (s)</th>"
        f"<td class='num'>{e(_number(measured))} / {e(_number(bound))}</td></tr>"
    ]
    rows += [
        f"<tr><th>{e(str(key))}</th><td class='num'>{e(_number(value))}</td></tr>"
        for key, value in drill.get("figures", {}).items()
        if key != bounded
    ]
    title = e(str(drill.get("title") or drill.get("name", "")))
    table = "\n".join(rows)
    return (
        f"<section><h2>{title} {verdict.get(drill.get('passed'), '')}</h2>\n<table>\n{table}\n</table>\n"
        f'<img src="{e(image)}" alt="timeline: {title}" width="1000" height="600"></section>'
    )


def report_html(report: Report, report_dir: pathlib.Path) -> pathlib.Path:
    """Draw every drill beside the report and write report.html, a static page with no outside references."""
    e = html.escape
    sections = []
    for index, drill in enumerate(report.get("drills", [])):
        image = f"drill-{_slug(drill, index)}.png"
        draw(drill, report_dir / image)
        sections.append(_drill_section(drill, image))
    checks = report.get("checks", [])
    counts = {o: sum(c.get("outcome") == o for c in checks) for o in ("passed", "failed", "skipped")}
    total = report.get("total_seconds")
    summary = (
        f"accel <b>{e(str(report.get('accel', '?')))}</b>, "
        f"{'?' if total is None else f'{float(total):.0f}'} s; checks: "
        f"<span class='passed'>{counts['passed']} passed</span>, "
        f"<span class='failed'>{counts['failed']} failed</span>, "
        f"<span class='skipped'>{counts['skipped']} skipped</span>"
    )
    if (steps := report.get("step_log")) and steps["file"]:  # every command the checks ran, one JSON object per line
        summary += f"; <a href='{e(steps['file'])}'>{int(steps['commands'])} commands</a> on the nodes"
    drills = "\n".join(sections)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>imgbuild verify report</title>
<style>{_CSS}</style></head><body>
<h1>imgbuild verify</h1>
<p>{summary}</p>
<table><tr><th>check</th><th>outcome</th><th>s</th><th>detail</th></tr>
{_check_rows(checks)}
</table>
{drills}
</body></html>
"""
    path = report_dir / "report.html"
    write_file(path, lambda out: out.write(page.encode()))
    return path
