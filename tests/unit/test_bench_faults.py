"""bench/run.py faults folds the rounds of each drill into p50/max figures."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).parents[2] / "bench/run.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def drill(name: str, outage: float, passed: bool, bounded: str = "outage_s", **extra: float) -> dict[str, Any]:
    return {
        "name": name,
        "bound_s": 2.0,
        "bounded": bounded,
        "passed": passed,
        "figures": {"outage_s": outage, "failed": int(outage * 20), "total": 100, **extra},
    }


def test_rounds_fold_into_one_row_per_drill() -> None:
    report = {
        "drills": [
            drill("a-power-loss-active", 1.5, True),
            *(drill(f"b-second-failover-r{i}", o, o <= 2.0) for i, o in enumerate([1.0, 3.0, 1.5], 1)),
            drill("g-hung-webserver-r1", 0.2, True, "out_of_rotation_s", out_of_rotation_s=2.4),
        ]
    }
    matrix = bench.fault_matrix(report)
    assert set(matrix) == {"a-power-loss-active", "b-second-failover", "g-hung-webserver"}
    b = matrix["b-second-failover"]
    assert (b["rounds"], b["passed"], b["outage_p50_s"], b["outage_max_s"]) == (3, 2, 1.5, 3.0)
    assert b["failed_requests"] == ["20/100", "60/100", "30/100"]
    g = matrix["g-hung-webserver"]
    assert (g["bounded_figure"], g["bounded_p50"], g["bounded_max"]) == ("out_of_rotation_s", 2.4, 2.4)


def test_hook_seconds_reads_dib_run_parts_profiling(tmp_path: Path) -> None:
    log = tmp_path / "webserver.build.log"
    log.write_text(
        "2026-12-04 17:33:41.977 | dib-run-parts Script                                     Seconds\n"
        "2026-12-04 17:33:41.977 | dib-run-parts 01-copy-manifests-dir                        0.054\n"
        "2026-12-04 17:33:41.977 | dib-run-parts 96-imgbuild-no-build-paths                    0.004\n"
        "2026-12-04 17:33:41.977 | dib-run-parts 98-imgbuild-no-build-traces                   0.120\n"
    )
    assert bench.hook_seconds(log) == {"96-imgbuild-no-build-paths": 0.004, "98-imgbuild-no-build-traces": 0.12}
