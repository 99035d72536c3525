"""The summary: one cell under each heading whatever the chat sweep, and a run of some lanes
reports what it measured."""

from __future__ import annotations

from bench.harness.report import Layout, latency_table, target_rows, targets_table


def _rows(lanes: list[str]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for system, added_ms in (("direct", 0.0), ("sidegate", 0.25)):
        for lane in lanes:
            rows.append({"system": system, "lane": lane, "round": 1, "p50_ms": 1 + added_ms})
        rows.append({"system": system, "lane": "paced", "round": 1, "ttfb_p50_ms": 2 + added_ms})
    return rows


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def test_headings_and_cells_line_up_with_one_concurrency_or_many() -> None:
    for lanes in (["chat-c1"], ["chat-c1", "chat-c8", "chat-c64"]):
        layout = Layout(chat=lanes, stream="stream", paced="paced")
        head, rule, *body = latency_table(_rows(lanes), layout)
        headings = _cells(head)
        assert "" not in headings
        assert len(_cells(rule)) == len(headings)
        sidegate = dict(zip(headings, _cells(body[0]), strict=True))
        assert sidegate["system"] == "sidegate"
        assert sidegate["p50 @c1"] == "0.250"
        assert sidegate["TTFB p50"] == "0.250"
        assert [h for h in headings if h.startswith("p50 @")] == [
            f"p50 @{lane.split('-')[-1]}" for lane in lanes
        ]


def test_a_run_of_the_paced_lane_alone_still_reports_sidegate_against_its_targets() -> None:
    layout = Layout(chat=["chat-c1", "chat-c64"], stream="stream", paced="paced")
    rows = [r for r in _rows(["chat-c1"]) if r["lane"] == "paced"]
    _head, _rule, sidegate, _direct = latency_table(rows, layout)
    assert _cells(sidegate)[0] == "sidegate"
    assert _cells(sidegate)[-2] == "0.250"
    checks = {t.name: (t.measured, t.met) for t in target_rows(rows, layout)}
    assert checks["added TTFB ≤ 0.3 ms"] == ("0.250 ms", True)
    assert checks["chat ≥ 0.8x floor"][1] is None


def test_paced_figures_leave_out_the_mock_where_its_stamps_came_through() -> None:
    layout = Layout(chat=["chat-c1"], stream="stream", paced="paced")
    figures = {
        # system: raw TTFB, TTFB less the mock's time, raw gap p99, gap stretch p99
        "direct": (2.0, 1.0, 21.0, 0.5),
        "sidegate": (2.9, 1.2, 21.1, 0.6),
        "litellm": (30.0, None, 25.0, None),  # re-frames events: the comments are gone
    }
    rows: list[dict[str, object]] = [
        {
            "system": system,
            "lane": "paced",
            "round": 1,
            "ttfb_p50_ms": ttfb,
            "ttfb_net_p50_ms": float("nan") if net is None else net,
            "gap_p99_ms": gap,
            "gap_stretch_p99_ms": float("nan") if stretch is None else stretch,
        }
        for system, (ttfb, net, gap, stretch) in figures.items()
    ]
    head, _rule, *body = latency_table(rows, layout)
    table = {_cells(line)[0]: dict(zip(_cells(head), _cells(line), strict=True)) for line in body}
    assert (table["sidegate"]["TTFB p50"], table["sidegate"]["gap p99"]) == ("0.200", "0.100")
    assert (table["litellm"]["TTFB p50"], table["litellm"]["gap p99"]) == ("28.000", "4.000")
    checks = {t.name: (t.measured, t.met) for t in target_rows(rows, layout)}
    assert checks["added TTFB ≤ 0.3 ms"] == ("0.200 ms", True)
    assert checks["added inter-chunk p99 ≤ 0.2 ms"] == ("0.100 ms", True)


def test_each_latency_target_shows_whether_nginx_the_practical_limit_meets_it() -> None:
    layout = Layout(chat=["chat-c1"], stream="stream", paced="paced")
    added = {"direct": (0.0, 0.0), "nginx": (0.05, 0.46), "sidegate": (0.25, 0.78)}
    rows: list[dict[str, object]] = []
    for system, (p50, ttfb) in added.items():
        rows.append({"system": system, "lane": "chat-c1", "round": 1, "p50_ms": 0.1 + p50})
        rows.append({"system": system, "lane": "paced", "round": 1, "ttfb_p50_ms": 1 + ttfb})
    head, _rule, *body = targets_table(rows, layout)
    assert _cells(head)[-1] == "nginx, the practical limit"
    table = {_cells(line)[0]: _cells(line)[1:] for line in body}
    assert table["added TTFB ≤ 0.3 ms"] == ["0.780 ms", "**missed**", "0.460 ms (misses it too)"]
    assert table["added p50 @c1 ≤ 0.45 ms"] == ["0.250 ms", "met", "0.050 ms (meets it)"]
    assert table["added inter-chunk p99 ≤ 0.2 ms"][-1] == "n/a"
    assert table["RSS after load ≤ 100 MB"][-1] == "—"


def test_added_paced_figures_come_from_the_direct_streams_that_took_turns_with_the_system() -> None:
    """Direct's own block of the round drifted with the host; the streams interleaved with the
    system's met the host as the system's did, so they are what the system is compared with."""
    layout = Layout(chat=["chat-c1"], stream="stream", paced="paced")
    rows: list[dict[str, object]] = [
        {"system": "direct", "lane": "paced", "round": 1, "ttfb_net_p50_ms": 0.8},
        {
            "system": "sidegate",
            "lane": "paced",
            "round": 1,
            "ttfb_net_p50_ms": 1.5,
            "direct_ttfb_net_p50_ms": 1.3,
        },
        {"system": "nginx", "lane": "paced", "round": 1, "ttfb_net_p50_ms": 1.05},
    ]
    checks = {t.name: t for t in target_rows(rows, layout)}
    ttfb = checks["added TTFB ≤ 0.3 ms"]
    assert (ttfb.measured, ttfb.met) == ("0.200 ms", True)
    assert ttfb.limit == "0.250 ms (meets it)"  # nginx has no pair: direct's own row
