"""The run report's page: one self-contained HTML file that tells what a job did (report.history).

Drawn with plotly, whose JavaScript is inlined once, so the page opens from a file with no network:
- a shard timeline, one row per worker slot, one bar per attempt coloured by outcome, speculative attempts
  hatched, kills marked with a cross;
- committed records per second over the run;
- useful and wasted work (worker-, CPU- and GPU-seconds, records re-read);
- rates per worker and per hardware profile, the failures with their reasons, the spec and summary.

Why plotly: interactive (hover names the shard, attempt, pod, node and reason; zoom into a long run) and
self-contained with one call, where matplotlib gives a static picture and Vega-Lite needs a JavaScript
engine (vl-convert) beside it. The cost is size: the inlined plotly.js is about 4.7 MB per report.
"""

from __future__ import annotations

import html
import json
from typing import Any

import plotly.graph_objects as go
import yaml
from plotly.offline import get_plotlyjs

from datajob_core.report.history import Attempt, RunHistory

COLOURS = {
    "committed": "#2e7d32",
    "split": "#00897b",
    "running": "#1e88e5",
    "failed": "#c62828",
    "killed": "#6d1b1b",
    "interrupted": "#ef6c00",
    "stopped": "#9e9e9e",
    "lost": "#bdbdbd",
}


def render(history: RunHistory, spec: dict[str, Any] | None = None) -> str:
    figures = [
        ("timeline", "Shards over time", _timeline(history)),
        ("throughput", "Throughput: records per second of the attempts that committed", _throughput(history)),
        ("cost", "Useful and wasted work", _cost(history)),
    ]
    data = {
        "job": history.job,
        "attempts": len(history.attempts),
        "kills": len(history.kills),
        "outcomes": _outcome_counts(history),
    }
    body = [
        f"<h1>DataJob <code>{_e(history.job)}</code></h1>",
        _summary(history),
        *(
            f'<h2>{_e(title)}</h2><div class="figure" id="{name}">{_plot(fig, name)}</div>'
            for name, title, fig in figures
        ),
        "<h2>Workers</h2>",
        _rates_table(history, "pod", "worker pod"),
        "<h2>Hardware profiles</h2>",
        _rates_table(history, "profile", "profile"),
        "<h2>Failures</h2>",
        _failures(history),
        "<h2>Spec</h2>",
        f"<pre>{_e(yaml.safe_dump(spec or {}, sort_keys=False))}</pre>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>DataJob {_e(history.job)}: run report</title>"
        f"<style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        f'<script type="application/json" id="datajob-run">{_script_safe(json.dumps(data))}</script>'
        "</head><body>" + "\n".join(body) + "</body></html>\n"
    )


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #212121; max-width: 1400px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f5f5f5; padding: 1em; overflow: auto; }
.figure { min-height: 300px; }
"""


def _plot(fig: go.Figure, name: str) -> str:
    fig.update_layout(margin={"l": 80, "r": 20, "t": 20, "b": 50}, template="plotly_white")
    return str(fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"{name}-plot"))


def _row(a: Attempt) -> str:
    # plotly reads tick labels as a little HTML: a pod's name is text.
    return f"slot {a.slot}" if a.slot is not None else _e(a.pod)


def _timeline(history: RunHistory) -> go.Figure:
    fig = go.Figure()
    rows = sorted({_row(a) for a in history.attempts}, key=_row_order)
    for outcome, colour in COLOURS.items():
        chosen = [a for a in history.attempts if a.outcome == outcome]
        if not chosen:
            continue
        fig.add_trace(
            go.Bar(
                name=outcome,
                orientation="h",
                y=[_row(a) for a in chosen],
                base=[a.started - history.started for a in chosen],
                x=[max(a.seconds, 1e-3) for a in chosen],
                marker={
                    "color": colour,
                    "line": {"color": "white", "width": 0.5},
                    "pattern": {"shape": ["/" if a.speculative else "" for a in chosen]},
                },
                hovertext=[_hover(a) for a in chosen],
                hoverinfo="text",
            )
        )
    kills = history.kills
    if kills:
        fig.add_trace(
            go.Scatter(
                name="kill",
                mode="markers",
                y=[_row(a) for a in kills],
                x=[a.ended - history.started for a in kills],
                marker={"symbol": "x", "size": 11, "color": "black"},
                hovertext=[f"killed: shard {a.shard} attempt {a.attempt} on {_e(a.pod)}" for a in kills],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        barmode="overlay",
        height=max(300, 28 * len(rows) + 120),
        xaxis_title="seconds since the first attempt",
        yaxis={"categoryorder": "array", "categoryarray": rows[::-1]},
        legend={"orientation": "h", "y": -0.2},
    )
    return fig


def _row_order(row: str) -> tuple[int, str]:
    slot = row.removeprefix("slot ")
    return (int(slot), "") if slot.isdigit() else (1 << 30, row)


def _hover(a: Attempt) -> str:
    lines = [
        f"shard {a.shard} attempt {a.attempt}: {a.outcome}" + (" (speculative)" if a.speculative else ""),
        f"{a.pod}" + (f" on {a.node}" if a.node else "") + (f" ({a.profile})" if a.profile else ""),
        f"{a.seconds:.2f} s, {a.records:,} records"
        + (f", resumed at {a.resumed_records:,}" if a.resumed_records else ""),
    ]
    if a.reason:
        lines.append(_e(a.reason[:200]))
    return "<br>".join(_e(line) if i < 3 else line for i, line in enumerate(lines))


def _throughput(history: RunHistory) -> go.Figure:
    points = history.throughput()
    fig = go.Figure(
        go.Scatter(
            x=[t for t, _ in points], y=[r for _, r in points], mode="lines", fill="tozeroy", name="records/s"
        )
    )
    fig.update_layout(height=280, xaxis_title="seconds since the first attempt", yaxis_title="records/s")
    return fig


def _cost(history: RunHistory) -> go.Figure:
    useful, wasted = history.cost(wasted=False), history.cost(wasted=True)
    labels = ["worker-seconds", "CPU-seconds", "GPU-seconds"]
    fig = go.Figure()
    for name, cost, colour in (
        ("useful", useful, COLOURS["committed"]),
        ("wasted", wasted, COLOURS["failed"]),
    ):
        fig.add_trace(
            go.Bar(
                name=name,
                x=labels,
                y=[cost.worker_seconds, cost.cpu_seconds, cost.gpu_seconds],
                marker_color=colour,
            )
        )
    fig.update_layout(barmode="stack", height=280)
    return fig


def _outcome_counts(history: RunHistory) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in history.attempts:
        counts[a.outcome] = counts.get(a.outcome, 0) + 1
    return counts


def _summary(history: RunHistory) -> str:
    useful, wasted = history.cost(wasted=False), history.cost(wasted=True)
    speculative = sum(1 for a in history.attempts if a.speculative)
    rows = [
        *((str(k), str(v)) for k, v in history.summary.items()),
        ("duration of the attempts", f"{history.ended - history.started:.1f} s"),
        (
            "attempts",
            f"{len(history.attempts)} ({', '.join(f'{n} {o}' for o, n in _outcome_counts(history).items())})",
        ),
        ("speculative attempts", str(speculative)),
        ("kills", str(len(history.kills))),
        ("useful work", _cost_text(useful)),
        ("wasted work", _cost_text(wasted)),
        (
            "records re-read by attempts that did not commit",
            f"{wasted.records:,} (killed attempts: not known)",
        ),
    ]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table id="summary">{cells}</table>'


def _cost_text(cost: Any) -> str:
    gpu = f", {cost.gpu_seconds:,.1f} GPU-s" if cost.gpu_seconds else ""
    return f"{cost.worker_seconds:,.1f} worker-s, {cost.cpu_seconds:,.1f} CPU-s{gpu}"


def _rates_table(history: RunHistory, key: str, title: str) -> str:
    rows = "".join(
        f"<tr><td>{_e(name)}</td><td class=n>{records:,}</td><td class=n>{busy:,.1f}</td>"
        f"<td class=n>{rate:,.0f}</td></tr>"
        for name, records, busy, rate in history.rates(key)
    )
    head = f"<tr><th>{_e(title)}</th><th>records committed</th><th>busy seconds</th><th>records/s</th></tr>"
    return f'<table class="rates" id="rates-{key}">{head}{rows}</table>'


def _failures(history: RunHistory) -> str:
    failed = [a for a in history.attempts if a.outcome in ("failed", "killed", "interrupted")]
    if not failed:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr><td class=n>{a.shard}</td><td class=n>{a.attempt}</td><td>{_e(a.outcome)}</td>"
        f"<td>{_e(a.pod)}</td><td>{_e(a.reason or _unknown(a))}</td></tr>"
        for a in failed
    )
    head = "<tr><th>shard</th><th>attempt</th><th>outcome</th><th>pod</th><th>reason</th></tr>"
    return f'<table id="failures">{head}{rows}</table>'


def _unknown(a: Attempt) -> str:
    if a.outcome == "killed":
        return "the worker died without a word (SIGKILL, out of memory or a lost node): see the job's events"
    return ""


def _script_safe(text: str) -> str:
    # JSON inside a script element: no "<" at all, so neither "</script" nor "<!--" can change how the
    # HTML parser reads it; "\u003c" is the same character to JSON.
    return text.replace("<", "\\u003c")


def _e(text: str) -> str:
    return html.escape(text, quote=True)
