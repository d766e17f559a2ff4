"""The probe's arithmetic on synthetic samples: outage windows and a drill's figures; and
what a failed request says about itself, against loopback sockets."""

from __future__ import annotations

import math
import socket

import pytest

from imgbuild.verify.client import _get, failure_windows, failures_after, figures, outage


def probe(
    pattern: str, start: float = 0.0, step: float = 0.05, channel: str = "new"
) -> list[tuple[float, float, bool, str | None, str]]:
    """Rows every step seconds: '.' a success, 'x' a failure."""
    return [
        (start + i * step, 0.01, c == ".", "webserver1" if c == "." else None, channel) for i, c in enumerate(pattern)
    ]


def test_no_failure_is_no_outage() -> None:
    assert failure_windows(probe("....")) == []
    assert outage(probe("....")) == 0.0


def test_outage_runs_from_first_failure_to_first_success_after_it() -> None:
    rows = probe("..xxxx..")
    assert failure_windows(rows) == [(0.1, 0.30000000000000004)]
    assert math.isclose(outage(rows), 0.2)


def test_separate_windows_and_the_first_is_the_outage() -> None:
    rows = probe(".xx..x.")
    windows = failure_windows(rows)
    assert len(windows) == 2
    assert math.isclose(outage(rows), 0.1)


def test_no_recovery_is_an_infinite_outage() -> None:
    assert failure_windows(probe("..xx")) == [(0.1, math.inf)]
    assert outage(probe("..xx")) == math.inf


@pytest.mark.parametrize(
    ("pattern", "windows"),
    [
        ("x", [(0.0, math.inf)]),
        (".x.", [(0.05, 0.1)]),  # one failed request: one step of outage
        ("xx..", [(0.0, 0.1)]),  # failing from the first request on: counted from it
        ("...x", [(0.15, math.inf)]),  # only the last failed: no recovery seen
        ("x.x.x", [(0.0, 0.05), (0.1, 0.15), (0.2, math.inf)]),
        ("x.xx...xxx.", [(0.0, 0.05), (0.1, 0.2), (0.35, 0.5)]),
    ],
)
def test_windows_and_outage_of_a_series(pattern: str, windows: list[tuple[float, float]]) -> None:
    """Each failure window, from its first failed request's start to the next success's start;
    the outage is the first window's length, the total every window's."""
    rows = probe(pattern)
    assert [edge for w in failure_windows(rows) for edge in w] == pytest.approx([edge for w in windows for edge in w])
    assert outage(rows) == pytest.approx(windows[0][1] - windows[0][0])
    seen = figures(rows, [], broken=0, download_error=None, since=0.0)
    assert seen.windows == len(windows) and seen.failed == pattern.count("x") and seen.total == len(pattern)
    assert seen.outage_total_s == pytest.approx(sum(end - start for start, end in windows))


def test_outage_is_time_between_request_starts_not_a_count_of_failures() -> None:
    """A client that stalled between requests: the outage is the clock's, however few requests failed."""
    rows = [
        (0.0, 0.01, True, "web1", "new"),
        (1.0, 0.25, False, None, "new"),
        (1.05, 0.25, False, None, "new"),
        (2.5, 0.01, True, "web2", "new"),
        (2.55, 0.25, False, None, "new"),
        (4.0, 0.01, True, "web1", "new"),
    ]
    assert outage(rows) == pytest.approx(1.5)
    assert figures(rows, [], broken=0, download_error=None, since=0.0).outage_total_s == pytest.approx(1.5 + 1.45)


def test_outage_of_another_channel() -> None:
    rows = probe("....") + probe(".xx.", channel="keepalive-2")
    assert outage(rows) == 0.0
    assert outage(rows, channel="keepalive-2") == pytest.approx(0.1)


def test_rows_in_any_order_and_other_channels_ignored() -> None:
    rows = probe("..xx..")[::-1] + probe("xxxxxx", channel="keepalive-0")
    assert math.isclose(outage(rows), 0.1)


def test_figures_count_from_the_fault_on() -> None:
    rows = probe("x..xxx..") + probe(".x.", channel="keepalive-1")
    download = [(0.0, 100), (0.2, 100), (0.4, 100), (0.9, 50)]
    seen = figures(rows, download, broken=1, download_error=None, since=0.05)
    assert (seen.failed, seen.total, seen.windows) == (3, 7, 1)  # the failure before the fault is not counted
    assert math.isclose(seen.outage_s, 0.15)
    assert (seen.keepalive_requests, seen.keepalive_failed, seen.keepalive_broken) == (2, 1, 1)
    assert seen.download_bytes_after_recovery == 150  # after 0.3 s, when new connections succeeded again
    assert seen.as_dict()["outage_s"] == 0.15


def test_figures_of_a_drill_that_never_recovered() -> None:
    seen = figures(probe(".xx"), [(0.01, 10)], broken=0, download_error="reset", since=0.0)
    assert seen.outage_s == math.inf and seen.as_dict()["outage_s"] == math.inf
    assert seen.download_error == "reset"


def test_failures_after_lists_each_failed_new_connection_with_its_reason() -> None:
    rows = [
        (1.0, 0.25, False, "connect timeout (port 40000)", "new"),
        (1.5, 0.01, True, "web1", "new"),
        (2.0, 0.25, False, "response timeout (port 40002)", "new"),
        (2.1, 0.3, False, None, "keepalive-0"),
        (0.5, 0.25, False, "connect timeout (port 39998)", "new"),
    ]
    assert failures_after(rows, 0.8) == [
        "+0.20 s: connect timeout (port 40000)",
        "+1.20 s: response timeout (port 40002)",
    ]
    assert failures_after(rows, 0.8, until=1.9) == ["+0.20 s: connect timeout (port 40000)"]


def test_get_says_why_a_new_connection_failed() -> None:
    with socket.socket() as silent:  # accepts TCP, never answers: a hung server
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        ok, why = _get("127.0.0.1", silent.getsockname()[1], "/", 0.1)
        assert not ok and why.startswith("response timeout (port ")
        closed = silent.getsockname()[1]
    ok, why = _get("127.0.0.1", closed, "/", 0.1)
    assert not ok and why.startswith("connect Connection refused (port ")
