"""The News view's charts: Plotly figures built from query rows, drawn by plotly.js.

Each function returns a figure as plain JSON-ready data (`{"data": [...], "layout": {...}}`);
the page embeds it in a `<script type="application/json">` element (escaped by Jinja's
`tojson`) and static/charts.js hands it to Plotly.newPlot. No figure carries HTML: titles
and names from feeds are set as text, and Plotly renders them as SVG text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

FEED_FUNNEL = (("fetched", "fetched", "#2e7d32"), ("not_modified", "not modified", "#90a4ae"),
               ("failed", "failed", "#c62828"))
ENTRY_FUNNEL = (("new", "new", "#1565c0"), ("updated", "updated", "#6a1b9a"),
                ("duplicates", "duplicate", "#90a4ae"), ("quarantined", "quarantined", "#ef6c00"))
LAYOUT = {"template": "plotly_white", "height": 300, "margin": {"l": 50, "r": 20, "t": 40, "b": 60},
          "legend": {"orientation": "h", "y": -0.25}, "barmode": "stack"}


def _figure(traces: Sequence[Any], title: str, **layout: Any) -> dict[str, Any]:
    import plotly.graph_objects as go

    fig = go.Figure(data=list(traces), layout={**LAYOUT, "title": {"text": title}, **layout})
    return dict(json.loads(fig.to_json()))


def run_funnel(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two stacked bar charts over the runs, oldest left: feeds by outcome, entries by decision."""
    import plotly.graph_objects as go

    ordered = list(reversed(runs))
    labels = [r["started_at"].strftime("%m-%d %H:%M") if r.get("started_at") else r["run_id"] for r in ordered]
    hover = [r["run_id"] for r in ordered]

    def bars(series: Sequence[tuple[str, str, str]]) -> list[Any]:
        return [go.Bar(name=name, x=labels, y=[r[key] for r in ordered], marker_color=color,
                       customdata=hover, hovertemplate="%{customdata}<br>" + name + ": %{y}<extra></extra>")
                for key, name, color in series]

    return [_figure(bars(FEED_FUNNEL), "Feeds per run", xaxis={"type": "category"}),
            _figure(bars(ENTRY_FUNNEL), "Entries per run", xaxis={"type": "category"})]


def entries_per_day(days: Sequence[dict[str, Any]]) -> dict[str, Any]:
    import plotly.graph_objects as go

    x = [d["day"].isoformat() for d in days]
    return _figure([go.Bar(name="entries", x=x, y=[d["entries"] for d in days], marker_color="#90a4ae"),
                    go.Scatter(name="new", x=x, y=[d["new"] for d in days], mode="lines+markers",
                               line={"color": "#1565c0"})],
                   "Entries per day (fetched)", barmode="overlay")


def stories_per_day(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One line per source: the stories it told an article of, per day (zero-filled)."""
    import plotly.graph_objects as go

    sources: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        sources.setdefault(row["source"], []).append(row)
    traces = [go.Scatter(name=source, x=[r["day"].isoformat() for r in points], y=[r["stories"] for r in points],
                         mode="lines+markers") for source, points in sources.items()]
    return _figure(traces, "Stories per day per source", yaxis={"rangemode": "tozero", "dtick": 1})
