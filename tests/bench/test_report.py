"""The summary's latency table keeps one cell under each heading, whatever the chat sweep."""

from __future__ import annotations

from bench.harness.report import Layout, latency_table


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
