"""The run report's page: one self-contained HTML file that tells what a job did (report.history).

Drawn with plotly, whose JavaScript is inlined once, so the page opens from a file with no network:
- a shard timeline, one row per worker slot, one bar per attempt coloured by outcome, speculative attempts
  hatched, kills marked with a cross;
- committed records per second over the run;
- the attempts that committed and those that did not (attempt-, CPU- and GPU-seconds, records read);
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
    shown = drawn(history.attempts)
    title = "Shards over time" + (
        f" ({len(shown):,} of {len(history.attempts):,} attempts: every one that did not commit, and an even"
        " sample of those that did)"
        if len(shown) < len(history.attempts)
        else ""
    )
    figures = [
        ("timeline", title, _timeline(history, shown)),
        ("throughput", "Throughput: records per second of the attempts that committed", _throughput(history)),
        ("cost", "Attempts that committed, and those that did not", _cost(history)),
    ]
    data = {
        "job": history.job,
        "attempts": len(history.attempts),
        "drawn": len(shown),
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
        f"<pre>{_e(yaml.safe_dump(redacted(spec or {}), sort_keys=False))}</pre>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        f"<title>DataJob {_e(history.job)}: run report</title>"
        f"<style>{STYLE}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script>'
        f'<script type="application/json" id="datajob-run">{_script_safe(json.dumps(data))}</script>'
        "</head><body>" + "\n".join(body) + "</body></html>\n"
    )


MAX_BARS = 20_000  # attempts drawn one by one; beyond, a browser takes tens of seconds to draw the page
MAX_ROWS = 500  # of the failures table
# Nothing is fetched, whatever a future change puts in the page: no network, no frames, no forms.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data: blob:; font-src data:"
)


def drawn(attempts: list[Attempt]) -> list[Attempt]:
    """What the timeline draws: every attempt up to MAX_BARS; beyond, every attempt that did not commit
    (the story) and an even sample of those that did."""
    if len(attempts) <= MAX_BARS:
        return attempts
    others = [a for a in attempts if a.outcome not in ("committed", "split")]
    won = [a for a in attempts if a.outcome in ("committed", "split")]
    room = max(0, MAX_BARS - len(others))
    step = max(1, -(-len(won) // room)) if room else len(won) + 1
    return sorted([*others[:MAX_BARS], *won[::step][:room]], key=lambda a: a.started)


def redacted(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as a report shows it: env values are left out (they may hold secrets), their names kept."""
    out: dict[str, Any] = json.loads(json.dumps(spec, default=str))
    body = out.get("spec", out)
    if isinstance(body, dict):
        for entry in body.get("env") or []:
            if isinstance(entry, dict) and "value" in entry:
                entry["value"] = "(not shown)"
    return out


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


def _timeline(history: RunHistory, shown: list[Attempt]) -> go.Figure:
    fig = go.Figure()
    rows = sorted({_row(a) for a in shown}, key=_row_order)
    for outcome, colour in COLOURS.items():
        chosen = [a for a in shown if a.outcome == outcome]
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
    kills = [a for a in shown if a.outcome == "killed"]
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
        height=min(max(300, 28 * len(rows) + 120), 4000),  # thousands of slots: thinner rows
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
    labels = ["attempt-seconds", "CPU-seconds", "GPU-seconds (held by attempts)"]
    fig = go.Figure()
    for name, cost, colour in (
        ("committed", useful, COLOURS["committed"]),
        ("did not commit", wasted, COLOURS["failed"]),
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
        ("attempts that committed", _cost_text(useful)),
        (
            "attempts that did not commit",
            _cost_text(wasted) + " (their work up to their last checkpoint was kept by the attempt that"
            " resumed from it; a killed attempt's CPU is not known)",
        ),
        ("records read by attempts that did not commit", f"{wasted.records:,} (killed attempts: not known)"),
    ]
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f'<table id="summary">{cells}</table>'


def _cost_text(cost: Any) -> str:
    gpu = f", {cost.gpu_seconds:,.1f} GPU-s" if cost.gpu_seconds else ""
    return f"{cost.worker_seconds:,.1f} attempt-s, {cost.cpu_seconds:,.1f} CPU-s{gpu}"


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
    more = len(failed) - MAX_ROWS
    failed = failed[:MAX_ROWS]
    rows = "".join(
        f"<tr><td class=n>{a.shard}</td><td class=n>{a.attempt}</td><td>{_e(a.outcome)}</td>"
        f"<td>{_e(a.pod)}</td><td>{_e(a.reason or _unknown(a))}</td></tr>"
        for a in failed
    )
    head = "<tr><th>shard</th><th>attempt</th><th>outcome</th><th>pod</th><th>reason</th></tr>"
    tail = f"<p>... and {more:,} more.</p>" if more > 0 else ""
    return f'<table id="failures">{head}{rows}</table>{tail}'


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
