"""The report files: results.json, summary.md and the self-contained report.html."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from joyvl_agent.eval import DecisionRecord, Recording, Scenario
from joyvl_agent.eval._metrics import FORMULAS, ScenarioScore, score_scenario
from joyvl_agent.eval._report import write_reports

pytestmark = pytest.mark.anyio


async def _scores() -> list[ScenarioScore]:
    short = Scenario.model_validate({
        "name": "oven-watch", "capability": "monitoring", "media": {"synth": {"kind": "fall"}},
        "turns": [{"t": 0, "task": "Tell me if the <oven> is on & hot"}],
        "expect": [
            {"t0": 5, "t1": 10, "label": "oven on", "keywords": ["oven"]},
            {"t0": 20, "t1": 25, "label": "second", "keywords": ["oven"]},
            {"t0": 40, "t1": 45, "action": "delegate", "label": "look up"},
        ],
        "silence": [{"t0": 30, "t1": 38}],
        "solver": {"answer": "42"},
    })
    short_rec = Recording(scenario="oven-watch", backend="oracle", clock="virtual",
                          media_duration=50, errors=["model_error: <boom>"], decisions=[
        DecisionRecord(seq=0, t=1, frame_t=0.5, action="silent", latency_ms=100),
        DecisionRecord(seq=1, t=6, frame_t=5.5, action="speak",
                       text="<script>alert(1)</script> the oven is on", latency_ms=100),
        DecisionRecord(seq=2, t=21, frame_t=20.5, action="speak", text="hot stuff",
                       latency_ms=100),
        DecisionRecord(seq=3, t=33, frame_t=32.5, action="speak", text="false & alarm",
                       latency_ms=100),
        DecisionRecord(seq=4, t=41, frame_t=40.5, action="delegate", question="look it up?",
                       latency_ms=100),
        DecisionRecord(seq=5, t=48, frame_t=47.5, action="speak", text="extra",
                       latency_ms=100),
    ])
    long = Scenario.model_validate({
        "name": "count-long", "capability": "counting", "media": {"synth": {"kind": "count"}},
        "expect": [{"t0": 60 * k, "t1": 60 * k + 10, "tag": "count", "numbers": [k]}
                   for k in range(1, 15)] + [{"t0": 880, "t1": 895, "tag": "final_count",
                                             "numbers": [14]}],
    })
    long_rec = Recording(scenario="count-long", backend="oracle", clock="virtual",
                         media_duration=900, decisions=[
        DecisionRecord(seq=k, t=60 * k + 2, frame_t=60 * k + 1.5, action="speak",
                       text=f"{k} so far", latency_ms=200) for k in range(1, 15)])
    return [await score_scenario(short, short_rec), await score_scenario(long, long_rec)]


async def test_reports_written(tmp_path: Path):
    scores = await _scores()
    meta = {"backend": "oracle", "clock": "virtual", "suite": "smoke", "started": "now"}
    paths = write_reports(tmp_path / "out", scores, meta=meta)
    assert set(paths) == {"results", "summary", "report"}
    assert all(p.is_file() and p.parent == tmp_path / "out" for p in paths.values())

    data = json.loads(paths["results"].read_text(encoding="utf-8"))
    assert data["meta"] == meta
    assert data["formulas"] == FORMULAS
    assert list(data["capabilities"]) == ["monitoring", "counting"]
    assert data["overall"]["windows"] == 18 and data["overall"]["scenarios"] == 2
    assert [s["name"] for s in data["scenarios"]] == ["oven-watch", "count-long"]
    restored = ScenarioScore.model_validate(data["scenarios"][0])
    assert restored == scores[0]

    md = paths["summary"].read_text(encoding="utf-8")
    assert "| capability | scenarios | windows | P | R | F1 |" in md
    assert "| **overall** | 2 | 18 |" in md
    assert "| counting | 1 | 15 | 1.00 | 0.93 | 0.97 |" in md
    assert "running 1.00 · final 0.00" in md
    assert "## By scenario" in md and "## How to read this" in md
    assert "t1 + grace" in md


async def test_html_is_self_contained_escaped_and_one_svg_per_scenario(tmp_path: Path):
    scores = await _scores()
    html = write_reports(tmp_path, scores, meta={"backend": "<b>"})["report"].read_text(
        encoding="utf-8")
    assert html.count("<svg") == len(scores)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;oven&gt; is on &amp; hot" in html and "&lt;boom&gt;" in html
    assert "&lt;b&gt;" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "<link" not in html
    svgs = re.findall(r"<svg.*?</svg>", html, re.DOTALL)
    assert len(svgs) == 2
    for svg in svgs:
        root = ET.fromstring(svg)  # well-formed
        assert root.get("width") == "960"
        xs = [float(v) for v in re.findall(r' (?:x|cx|x1|x2)="([\d.]+)"', svg)]
        assert xs and max(xs) <= 960
    oven, long = svgs
    assert "url(#hatch0)" in oven  # the delegate window is hatched
    assert oven.count("<circle") == 4 and oven.count("<polygon") == 2  # turn + delegation
    assert "#d63b3b" in oven  # the false alarm
    assert "false alarm" in oven and "content failed" in oven
    ticks = re.findall(r'text-anchor="middle">(\d+)</text>', long)
    assert ticks[:3] == ["0", "120", "240"] and ticks[-1] == "840"
    assert long.count("<circle") == 14


async def test_empty_suite_still_writes(tmp_path: Path):
    paths = write_reports(tmp_path, [], meta={})
    data = json.loads(paths["results"].read_text(encoding="utf-8"))
    assert data["capabilities"] == {} and data["overall"]["windows"] == 0
    assert "<svg" not in paths["report"].read_text(encoding="utf-8")
