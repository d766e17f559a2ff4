"""Drill pictures and the HTML report, from synthetic drills: a failover, an empty drill, no recovery."""

from __future__ import annotations

import html
import math
import pathlib
from typing import Any

from imgbuild.verify import timeline
from imgbuild.verify.run import Report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _traffic(until: float, down: tuple[float, float], recover: bool = True) -> list[list[Any]]:
    """New connections every 0.05 s and four keep-alive channels every 0.25 s, failing inside `down`."""
    servers = ["webserver1", "webserver2", "webserver3"]
    requests: list[list[Any]] = []
    for i in range(int(until / 0.05)):
        t = i * 0.05
        ok = not (down[0] <= t < down[1]) and (recover or t < down[0])
        requests.append([t, 0.004 if ok else 1.0, ok, servers[i % 3] if ok else None, "new"])
    for channel in range(4):
        for i in range(int(until / 0.25)):
            t = i * 0.25 + channel * 0.05
            ok = not (down[0] <= t < down[1] + 0.6) and (recover or t < down[0])
            requests.append([t, 0.003, ok, servers[channel % 3] if ok else None, f"keepalive-{channel}"])
    return requests


def failover_drill() -> dict[str, Any]:
    return {
        "name": "a-power-loss-active",
        "title": "Power loss of the active balancer",
        "bound_s": 2.0,
        "passed": True,
        "fault_at": 3.0,
        "heal_at": 14.0,
        "figures": {"outage_s": 1.45, "failed": 29, "total": 410, "keepalive_broken": 0, "note": "ok", "x": None},
        "requests": _traffic(20.0, (3.05, 4.5)),
        "vip": [[i * 0.25, "loadb1" if i * 0.25 < 3.0 else None if i * 0.25 < 4.3 else "loadb2"] for i in range(80)],
        "download": [[1.0 + i * 0.05, 4096 if not 3.0 <= 1.0 + i * 0.05 < 4.6 else 0] for i in range(360)],
        "events": [
            [3.0, "power off loadb1"],
            [3.2, "heartbeat: loadb2 takes over"],
            [4.3, "loadb2 gratuitous ARP"],
            [14.0, "loadb1 boots again"],
        ],
    }


def empty_drill() -> dict[str, Any]:
    """A drill whose traffic never started: only the required keys."""
    return {"name": "b-never-started", "title": "Traffic never started"}


def unrecovered_drill() -> dict[str, Any]:
    return {
        "name": "c-no-recovery",
        "title": "Partition that never heals",
        "bound_s": 5.0,
        "passed": False,
        "fault_at": 2.0,
        "heal_at": None,
        "figures": {"failed": 160},
        "requests": _traffic(10.0, (2.1, math.inf), recover=False),
        "vip": [[0.0, "loadb1"], [2.5, None]],
        "download": [],
        "events": [[2.0, "iptables drop on loadb1"]],
    }


def report() -> Report:
    return {
        "accel": "tcg",
        "total_seconds": 170.2,
        "exit_code": 1,
        "measurements": {"boot_s": 35.0},
        "checks": [
            {"check": "test_identity[loadb1]", "outcome": "passed", "seconds": 0.4, "detail": ""},
            {"check": "test_vip[<script>x()</script>]", "outcome": "failed", "seconds": 1.2, "detail": "a < b & c"},
            {"check": "test_path[/x]", "outcome": "skipped", "seconds": 0.0, "detail": None},
        ],
        "drills": [failover_drill(), empty_drill(), unrecovered_drill()],
        "step_log": {"file": "steps.jsonl", "commands": 12},
    }


def drills_only(*drills: dict[str, Any]) -> Report:
    return {
        "exit_code": 0,
        "checks": [],
        "measurements": {},
        "drills": list(drills),
        "step_log": {"file": "", "commands": 0},
    }


def test_draw_writes_plausible_pngs(tmp_path: pathlib.Path) -> None:
    for drill in (failover_drill(), empty_drill(), unrecovered_drill()):
        path = tmp_path / f"{drill['name']}.png"
        timeline.draw(drill, path)
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        assert 5_000 < len(data) < 1_000_000, (drill["name"], len(data))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a-power-loss-active.png",
        "b-never-started.png",
        "c-no-recovery.png",
    ]


def test_report_html_escapes_links_and_leaves_no_temp_files(tmp_path: pathlib.Path) -> None:
    path = timeline.report_html(report(), tmp_path)
    assert path == tmp_path / "report.html"
    page = path.read_text()
    for check in report()["checks"]:
        assert html.escape(check["check"]) in page
    assert "<script>" not in page
    assert "test_path[/x]" in page
    assert "a &lt; b &amp; c" in page
    for name in ("a-power-loss-active", "b-never-started", "c-no-recovery"):
        assert f'<img src="drill-{name}.png"' in page
        assert (tmp_path / f"drill-{name}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "1.45 / 2.00" in page  # outage against its bound
    assert "<a href='steps.jsonl'>12 commands</a>" in page
    assert "∞ / 5.00" in page  # no outage_s in its figures: read from its requests, never recovered
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "drill-a-power-loss-active.png",
        "drill-b-never-started.png",
        "drill-c-no-recovery.png",
        "report.html",
    ]


def test_outage_over_its_bound_is_highlighted(tmp_path: pathlib.Path) -> None:
    drill = failover_drill()
    drill["figures"]["outage_s"] = 2.5
    page = timeline.report_html(drills_only(drill), tmp_path).read_text()
    assert "<tr class='over'><th>outage (s) / bound (s)</th><td class='num'>2.50 / 2.00</td></tr>" in page


def test_a_drill_bounded_on_another_figure_shows_that_one(tmp_path: pathlib.Path) -> None:
    drill = failover_drill()
    drill.update(bounded="out_of_rotation_s", bound_s=2.5)
    drill["figures"]["out_of_rotation_s"] = 2.9
    page = timeline.report_html(drills_only(drill), tmp_path).read_text()
    assert "<tr class='over'><th>out of rotation (s) / bound (s)</th><td class='num'>2.90 / 2.50</td></tr>" in page
    assert "<th>outage_s</th><td class='num'>1.45</td>" in page  # the outage is still shown, unbounded
    assert timeline._title(drill).endswith("out of rotation 2.90 s (bound 2.50 s) — PASSED")
