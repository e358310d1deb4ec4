"""Reports of a scored suite: `results.json`, `summary.md` and a self-contained `report.html`.

The HTML page needs no script and no external asset: tables, a legend, and one inline SVG
timeline per scenario (user turns, expected windows with their grace, silence bands, and the
assistant's replies), with `<title>` tooltips.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from ._metrics import FORMULAS, Metrics, ScenarioScore, WindowResult, aggregate

__all__ = ["write_reports"]

_DASH = "–"
_WIDTH = 960  # px, every timeline whatever its length
_LEFT = 78  # px for the row names
_RIGHT = 14
_COLOURS = {
    "ok": "#2e9d4f", "content_failed": "#e0a100", "missed": "#d63b3b",
    "matched": "#2e9d4f", "extra": "#5b7fb8", "false_alarm": "#d63b3b",
    "silence": "#d9d9d9", "turn": "#6b4fa0",
}
_TAG_COLUMNS = (
    ("translation_coverage", "coverage"),
    ("count_running_accuracy", "running"),
    ("count_final_accuracy", "final"),
    ("memory_accuracy", "memory"),
)


def fmt(value: float | int | None) -> str:
    """A number as the reports show it: 2 decimals, integers as they are, "–" for none."""
    if value is None:
        return _DASH
    if isinstance(value, int):
        return str(value)
    return f"{value:.2f}"


def _accuracy(m: Metrics, *, overall: bool = False) -> str:
    """The row's own accuracy: its tag metrics where defined, else content accuracy (the
    overall row: content accuracy first, then the tag metrics)."""
    parts = [f"{name} {fmt(getattr(m, field))}" for field, name in _TAG_COLUMNS
             if getattr(m, field) is not None]
    if (overall or not parts) and m.content_accuracy is not None:
        parts.insert(0, f"content {fmt(m.content_accuracy)}")
    return " · ".join(parts) or _DASH


_CAP_HEAD = ("capability", "scenarios", "windows", "P", "R", "F1", "delay med s",
             "delay p95 s", "false alarms/min", "time score", "accuracy")
_SCEN_HEAD = ("scenario", "capability", "windows", "matched", "replies", "false alarms",
              "extra", "P", "R", "F1", "delay med s", "time score", "content", "lag p95 s",
              "errors")


def _cap_row(name: str, m: Metrics, *, overall: bool = False) -> list[str]:
    return [name, fmt(m.scenarios), fmt(m.windows), fmt(m.precision), fmt(m.recall),
            fmt(m.f1), fmt(m.delay_median_s), fmt(m.delay_p95_s),
            fmt(m.false_alarms_per_min), fmt(m.time_score), _accuracy(m, overall=overall)]


def _scen_row(s: ScenarioScore) -> list[str]:
    m = s.metrics
    return [s.name, s.capability, fmt(m.windows), fmt(m.matched), fmt(m.replies),
            fmt(m.false_alarms), fmt(m.extra), fmt(m.precision), fmt(m.recall),
            fmt(m.f1), fmt(m.delay_median_s), fmt(m.time_score),
            fmt(m.content_accuracy), fmt(m.lag_p95_s), fmt(m.errors)]


_HOW_TO_READ = [
    "A reply (a `speak` or `delegate` decision) matches a window when its action is the "
    "window's and its publish time `t` lies in `[t0, t1 + grace]`. Windows are taken in "
    "order of `t0`; each takes the earliest unused candidate whose content checks pass, "
    "else the earliest unused candidate. A reply serves at most one window.",
    "Unmatched replies inside a silence window are **false alarms**; other unmatched "
    "replies are **extra** (they lower precision but not false alarms/min).",
    "**P** = matched replies / replies, **R** = matched windows / windows, **delay** = reply "
    "`t` - window `t0`, **time score** = mean over windows of max(0, 1 - delay / window "
    "length), a missed window scoring 0.",
    "**accuracy**: translation coverage (`subtitle` windows), running / final count "
    "(`count`, `final_count`), memory (`memory`), each over all such windows with runnable "
    "checks (a miss counts as a failure); otherwise content accuracy over matched windows.",
    "All rows pool their windows, replies and decisions (micro averages). Formulas: "
    "`results.json` → `formulas`. `–` means undefined.",
]


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def _markdown(scores: Sequence[ScenarioScore], caps: dict[str, Metrics],
              meta: dict[str, Any]) -> str:
    lines = ["# Evaluation summary", ""]
    described = [f"{k}: {v}" for k, v in meta.items() if isinstance(v, str | int | float)]
    if described:
        lines += ["; ".join(described), ""]
    lines += ["## By capability", ""]
    rows = [_cap_row(name, m) for name, m in caps.items() if name != "overall"]
    rows.append(_cap_row("**overall**", caps["overall"], overall=True))
    lines += [*_md_table(_CAP_HEAD, rows), ""]
    o = caps["overall"]
    lines += [
        f"System: model latency p50/p95 {fmt(o.model_latency_p50_s)}/"
        f"{fmt(o.model_latency_p95_s)} s, added delay p50/p95/max "
        f"{fmt(o.added_delay_p50_s)}/{fmt(o.added_delay_p95_s)}/{fmt(o.added_delay_max_s)} "
        f"s, lag p95 {fmt(o.lag_p95_s)} s, drift {fmt(o.drift_ms_per_min)} ms/min, "
        f"ticks {o.ticks}, errors {o.errors}.", "",
        "## By scenario", "",
        *_md_table(_SCEN_HEAD, [_scen_row(s) for s in scores]), "",
        "## How to read this", "",
        *[f"- {line}" for line in _HOW_TO_READ], "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML


_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1000px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; }
h3 { font-size: 15px; margin: 22px 0 4px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.overall td { font-weight: 600; background: #f4f4f4; }
.legend span.item { display: inline-flex; align-items: center; margin: 0 14px 4px 0; }
.sw { display: inline-block; width: 22px; height: 10px; margin-right: 5px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
       margin-right: 5px; }
.dia { display: inline-block; width: 8px; height: 8px; transform: rotate(45deg);
       margin: 0 6px 0 2px; }
.meta { color: #555; font-size: 12px; }
svg.timeline { display: block; background: #fff; border: 1px solid #e3e3e3; }
details { margin: 4px 0 10px; } summary { cursor: pointer; color: #444; }
.err { color: #b00020; }
"""


def _legend() -> str:
    c = _COLOURS
    items = [
        f'<span class="sw" style="background:{c["ok"]}"></span>window matched, content ok',
        f'<span class="sw" style="background:{c["content_failed"]}"></span>'
        "matched, content failed",
        f'<span class="sw" style="background:{c["missed"]}"></span>window missed',
        f'<span class="sw" style="background:{c["ok"]};opacity:.35"></span>grace period',
        '<span class="sw" style="border:2px dashed #333;height:6px;width:18px"></span>'
        "delegate window (hatched)",
        f'<span class="sw" style="background:{c["silence"]}"></span>silence (reply = false '
        "alarm)",
        '<span class="dot" style="background:#777"></span>reply: speak',
        '<span class="dia" style="background:#777"></span>reply: delegate',
        f'<span class="dot" style="background:{c["matched"]}"></span>matched',
        f'<span class="dot" style="background:{c["extra"]}"></span>extra',
        f'<span class="dot" style="background:{c["false_alarm"]}"></span>false alarm',
        f'<span class="dia" style="background:{c["turn"]}"></span>user turn',
    ]
    spans = "".join(f'<span class="item">{i}</span>' for i in items)
    return f'<div class="legend">{spans}</div>'


def _html_table(head: Sequence[str], rows: Sequence[tuple[Sequence[str], str]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        f'<tr class="{cls}">' + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
        for row, cls in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _tick_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 300, 600, 900, 1800, 3600):
        if span / step <= 12:
            return step
    return 10 ** math.ceil(math.log10(span / 12))


def _window_colour(w: WindowResult) -> str:
    if not w.matched:
        return _COLOURS["missed"]
    return _COLOURS["content_failed"] if w.content_passed is False else _COLOURS["ok"]


def _window_title(w: WindowResult, grace: float) -> str:
    name = w.label or w.tag
    lines = [f"{name} ({w.action}) {w.t0:g}–{w.t1:g} s, +{grace:g} s grace"]
    if w.matched:
        lines.append(f"matched reply #{w.reply_seq} at {w.reply_t:.2f} s "
                     f"(delay {w.delay:.2f} s)")
        if w.content_passed is not None:
            lines.append("content ok" if w.content_passed
                         else "content failed: " + ", ".join(w.failed))
        if w.reply_text:
            lines.append(w.reply_text)
    else:
        lines.append("missed")
    lines += [f"skipped: {s}" for s in w.skipped]
    return "\n".join(lines)


def _svg(s: ScenarioScore, uid: int) -> str:
    ends = [s.media_duration, *(w.t1 + s.grace_s for w in s.windows),
            *(sp.t1 for sp in s.silence), *(u.t for u in s.turns), *(r.t for r in s.replies)]
    span = max(1.0, *ends)
    plot = _WIDTH - _LEFT - _RIGHT

    def x(t: float) -> float:
        return round(_LEFT + plot * min(max(t, 0.0), span) / span, 1)

    y_turn, y_win, h_win, y_reply, y_axis = 16, 30, 20, 66, 84
    height = 104
    out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" '
           f'height="{height}" viewBox="0 0 {_WIDTH} {height}" font-family="sans-serif" '
           f'role="img" '
           f'aria-label="timeline of {escape(s.name)}">',
           f'<defs><pattern id="hatch{uid}" width="6" height="6" '
           'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
           '<rect width="3" height="6" fill="#fff" fill-opacity="0.55"/></pattern></defs>']
    for sp in s.silence:
        out.append(f'<rect x="{x(sp.t0)}" y="6" width="{round(max(0.5, x(sp.t1) - x(sp.t0)), 1)}" '
                   f'height="{y_axis - 6}" fill="{_COLOURS["silence"]}">'
                   f"<title>{escape(f'silence {sp.t0:g}–{sp.t1:g} s')}</title></rect>")
    for label, y in (("user", y_turn), ("expected", y_win + h_win / 2),
                     ("assistant", y_reply)):
        out.append(f'<text x="6" y="{y + 4}" font-size="11" fill="#444">{label}</text>')
    step = _tick_step(span)
    out.append(f'<line x1="{_LEFT}" y1="{y_axis}" x2="{_LEFT + plot}" y2="{y_axis}" '
               'stroke="#888"/>')
    k = 0
    while k * step <= span + 1e-9:
        t = k * step
        out.append(f'<line x1="{x(t)}" y1="{y_axis}" x2="{x(t)}" y2="{y_axis + 4}" '
                   'stroke="#888"/>'
                   f'<text x="{x(t)}" y="{y_axis + 15}" font-size="10" fill="#555" '
                   f'text-anchor="middle">{t:g}</text>')
        k += 1
    out.append(f'<text x="6" y="{y_axis + 15}" font-size="10" fill="#555">seconds</text>')
    for u in s.turns:
        cx = x(u.t)
        title = escape(f"{u.t:g} s, user {u.kind}: {u.text}")
        out.append(f'<polygon points="{cx},{y_turn - 6} {cx + 6},{y_turn} {cx},{y_turn + 6} '
                   f'{cx - 6},{y_turn}" fill="{_COLOURS["turn"]}"><title>{title}</title>'
                   "</polygon>")
    for w in s.windows:
        colour = _window_colour(w)
        title = f"<title>{escape(_window_title(w, s.grace_s))}</title>"
        x0, x1, xg = x(w.t0), x(w.t1), x(w.t1 + s.grace_s)
        width = max(1.0, x1 - x0)
        dashed = ' stroke="#222" stroke-width="1.2" stroke-dasharray="3 2"'
        stroke = dashed if w.action == "delegate" else ""
        out.append(f"<g>{title}")
        if xg > x1:
            out.append(f'<rect x="{x1}" y="{y_win}" width="{round(xg - x1, 1)}" '
                       f'height="{h_win}" fill="{colour}" fill-opacity="0.35"/>')
        out.append(f'<rect x="{x0}" y="{y_win}" width="{round(width, 1)}" height="{h_win}" '
                   f'fill="{colour}"{stroke}/>')
        if w.action == "delegate":
            out.append(f'<rect x="{x0}" y="{y_win}" width="{round(width, 1)}" '
                       f'height="{h_win}" fill="url(#hatch{uid})"/>')
        name = w.label or ""
        if name and len(name) * 6 + 6 < width:
            out.append(f'<text x="{x0 + 3}" y="{y_win + 14}" font-size="10" fill="#fff">'
                       f"{escape(name)}</text>")
        out.append("</g>")
    for r in s.replies:
        cx, colour = x(r.t), _COLOURS[r.outcome]
        said = r.text or ""
        if r.question:
            said = f"{said} [delegated: {r.question}]".strip()
        title = escape(f"#{r.seq} {r.action} at {r.t:.2f} s ({r.outcome.replace('_', ' ')}"
                       + (f", window {r.window}" if r.window is not None else "")
                       + f"): {said}")
        if r.action == "delegate":
            out.append(f'<polygon points="{cx},{y_reply - 7} {cx + 7},{y_reply} '
                       f'{cx},{y_reply + 7} {cx - 7},{y_reply}" fill="{colour}" '
                       f'stroke="#fff" stroke-width="0.8"><title>{title}</title></polygon>')
        else:
            out.append(f'<circle cx="{cx}" cy="{y_reply}" r="5" fill="{colour}" '
                       f'stroke="#fff" stroke-width="0.8"><title>{title}</title></circle>')
    out.append("</svg>")
    return "".join(out)


def _details(s: ScenarioScore) -> str:
    rows = []
    for w in s.windows:
        got = (f"#{w.reply_seq} at {w.reply_t:.2f} s (+{w.delay:.2f} s)" if w.matched
               else "missed")
        content = (_DASH if w.content_passed is None else "ok" if w.content_passed
                   else "failed: " + ", ".join(w.failed))
        rows.append(([f"{w.t0:g}–{w.t1:g}", w.action, w.label or w.tag, got, content,
                      w.reply_text or ""], ""))
    table = _html_table(("window s", "action", "label", "reply", "content", "text"), rows)
    unmatched = [r for r in s.replies if r.outcome != "matched"]
    extra = ""
    if unmatched:
        extra = _html_table(("reply", "t s", "outcome", "text"), [
            ([f"#{r.seq} {r.action}", f"{r.t:.2f}", r.outcome.replace("_", " "),
              " ".join(p for p in (r.text, r.question) if p)], "") for r in unmatched])
    return f"<details><summary>windows and replies</summary>{table}{extra}</details>"


def _html(scores: Sequence[ScenarioScore], caps: dict[str, Metrics],
          meta: dict[str, Any]) -> str:
    meta_line = "; ".join(f"{k}: {v}" for k, v in meta.items()
                          if isinstance(v, str | int | float))
    rows = [(_cap_row(name, m), "") for name, m in caps.items() if name != "overall"]
    rows.append((_cap_row("overall", caps["overall"], overall=True), "overall"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>joyvl-agent evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>joyvl-agent evaluation</h1>",
        f'<p class="meta">{escape(meta_line)}</p>' if meta_line else "",
        "<h2>By capability</h2>",
        _html_table(_CAP_HEAD, rows),
        "<h2>By scenario</h2>",
        _html_table(_SCEN_HEAD, [(_scen_row(s), "") for s in scores]),
        "<h2>Timelines</h2>",
        _legend(),
    ]
    for uid, s in enumerate(scores):
        m = s.metrics
        parts.append(
            f'<h3 id="{escape(s.name)}">{escape(s.name)} '
            f'<span class="meta">({escape(s.capability)}; P {fmt(m.precision)}, '
            f"R {fmt(m.recall)}, time score {fmt(m.time_score)}, "
            f"{m.false_alarms} false alarms, {m.extra} extra)</span></h3>")
        parts.append(_svg(s, uid))
        for err in s.errors:
            parts.append(f'<p class="err">{escape(err)}</p>')
        parts.append(_details(s))
    parts.append("<h2>How to read this</h2><ul>")
    parts += [f"<li>{escape(line.replace('**', '').replace('`', ''))}</li>"
              for line in _HOW_TO_READ]
    parts.append("</ul></body></html>\n")
    return "\n".join(p for p in parts if p)


def write_reports(out_dir: str | Path, scores: Sequence[ScenarioScore], *,
                  meta: dict[str, Any], metrics: dict[str, Metrics] | None = None
                  ) -> dict[str, Path]:
    """Write `results.json`, `summary.md` and `report.html` into `out_dir` (created).

    Args:
        out_dir: The folder to write into.
        scores: One score per scenario, in report order.
        meta: What the run was (backend, clock, suite, timestamps...), written as given.
        metrics: `aggregate(scores)`, when the caller has it already.

    Returns:
        The paths written, keyed `results`, `summary` and `report`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    caps = metrics if metrics is not None else aggregate(scores)
    results = {
        "meta": meta,
        "formulas": FORMULAS,
        "capabilities": {k: m.model_dump(mode="json") for k, m in caps.items()
                         if k != "overall"},
        "overall": caps["overall"].model_dump(mode="json"),
        "scenarios": [s.model_dump(mode="json") for s in scores],
    }
    paths = {"results": out / "results.json", "summary": out / "summary.md",
             "report": out / "report.html"}
    paths["results"].write_text(
        json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    paths["summary"].write_text(_markdown(scores, caps, meta), encoding="utf-8")
    paths["report"].write_text(_html(scores, caps, meta), encoding="utf-8")
    return paths
