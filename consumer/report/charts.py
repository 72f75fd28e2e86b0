"""One plotly figure per chart, from the chart's table (build.py). Pure: tables in, figures
out. Every series is a named trace (the browser test reads the names back), and an empty
table gives a figure that says there is no data rather than empty axes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import plotly.graph_objects as go
from plotly.colors import qualitative

from consumer.report.build import Table
from consumer.report.thresholds import DriftThresholds

HEIGHT = 380
STATUS_COLORS = {"Completed": "#2ca02c", "Failed": "#d62728", "Canceled": "#7f7f7f",
                 "Running": "#1f77b4", "CancelRequested": "#bcbd22", "NotResponding": "#8c564b"}
_PALETTE = qualitative.Plotly


def palette(names: list[str]) -> dict[str, str]:
    """A color per name, by sorted order: an experiment keeps its color across charts."""
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(set(names)))}


def plotly_time(value: date | datetime) -> str:
    """Plotly.js reads dates as local wall time and knows no offsets: pass UTC without one."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat()


def _figure(title: str, y_title: str, *, y_format: str | None = None) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white", height=HEIGHT, title={"text": title, "x": 0.01},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        hovermode="closest")
    fig.update_xaxes(title_text="UTC")
    fig.update_yaxes(title_text=y_title, tickformat=y_format, rangemode="tozero")
    return fig


def _no_data(fig: go.Figure, since: date | None) -> go.Figure:
    note = f"No data since {since.isoformat()}" if since else "No data in the warehouse"
    fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 18, "color": "#777"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def durations_figure(table: Table, colors: dict[str, str], since: date | None) -> go.Figure:
    """p50 (solid) and p95 (dotted) per experiment, one legend group per experiment."""
    fig = _figure("Run duration per experiment: p50 (solid) and p95 (dotted)", "seconds")
    if not table.rows:
        return _no_data(fig, since)
    for experiment in table.distinct("experiment"):
        rows = table.where("experiment", experiment)
        days = [plotly_time(d) for d in rows.column("day")]
        for quantile, dash in (("p50", "solid"), ("p95", "dot")):
            fig.add_trace(go.Scatter(
                x=days, y=rows.column(f"{quantile}_s"), name=f"{experiment} {quantile}",
                legendgroup=experiment, mode="lines+markers",
                line={"color": colors[experiment], "dash": dash}, customdata=rows.column("runs"),
                hovertemplate=f"{experiment} {quantile}: %{{y:,.1f}} s<br>%{{x}}, "
                              "%{customdata} run(s)<extra></extra>"))
    return fig


def failure_rate_figure(table: Table, colors: dict[str, str], since: date | None) -> go.Figure:
    fig = _figure("Failure rate per experiment and day (failed / finished)", "failed",
                  y_format=".0%")
    if not table.rows:
        return _no_data(fig, since)
    for experiment in table.distinct("experiment"):
        rows = table.where("experiment", experiment)
        fig.add_trace(go.Scatter(
            x=[plotly_time(d) for d in rows.column("day")], y=rows.column("failure_rate"),
            name=experiment, mode="lines+markers", line={"color": colors[experiment]},
            customdata=list(zip(rows.column("failed"), rows.column("finished"))),
            hovertemplate=f"{experiment}: %{{y:.1%}}<br>%{{x}}: %{{customdata[0]}} of "
                          "%{customdata[1]} failed<extra></extra>"))
    return fig


def status_figure(table: Table, since: date | None) -> go.Figure:
    """Runs created per day, stacked by their current status."""
    fig = _figure("Runs by status, per day created", "runs")
    if not table.rows:
        return _no_data(fig, since)
    known = list(STATUS_COLORS)  # stacked from the bottom: Completed, Failed, Canceled, Running
    statuses = sorted(table.distinct("status"),
                      key=lambda s: (known.index(s) if s in known else len(known), s))
    others = palette([s for s in statuses if s not in STATUS_COLORS])
    for status in statuses:
        rows = table.where("status", status)
        fig.add_trace(go.Bar(
            x=[plotly_time(d) for d in rows.column("day")], y=rows.column("runs"), name=status,
            marker_color=STATUS_COLORS.get(status) or others[status],
            hovertemplate=f"{status}: %{{y}} run(s) created %{{x}}<extra></extra>"))
    fig.update_layout(barmode="stack")
    return fig


def model_activity_figure(table: Table, since: date | None) -> go.Figure:
    fig = _figure("Model registrations and deployments per day", "events")
    if not table.rows:
        return _no_data(fig, since)
    days = [plotly_time(d) for d in table.column("day")]
    for column, name, color in (("registrations", "registrations", "#9467bd"),
                                ("deployments", "deployments", "#ff7f0e")):
        fig.add_trace(go.Bar(x=days, y=table.column(column), name=name, marker_color=color,
                             hovertemplate=f"{name}: %{{y}} on %{{x}}<extra></extra>"))
    fig.update_layout(barmode="group")
    return fig


def drift_figure(table: Table, thresholds: DriftThresholds, since: date | None) -> go.Figure:
    """The coefficient per monitor, and the threshold: one dashed line when every monitor
    shown has the same one, else one per monitor in its color."""
    fig = _figure("Data drift coefficient per monitor, with its threshold", "drift coefficient")
    if not table.rows:
        return _no_data(fig, since)
    monitors = table.distinct("monitor")
    colors = palette(monitors)
    times = table.column("measured_at")
    # a flat line across the points shown, a day wider on each side: one point still has a line
    span = [plotly_time(min(times) - timedelta(days=1)), plotly_time(max(times) + timedelta(days=1))]
    for monitor in monitors:
        rows = table.where("monitor", monitor)
        fig.add_trace(go.Scatter(
            x=[plotly_time(t) for t in rows.column("measured_at")], y=rows.column("coefficient"),
            name=monitor, legendgroup=monitor, mode="lines+markers", line={"color": colors[monitor]},
            hovertemplate=f"{monitor}: %{{y:.3f}}<br>window end %{{x}}<extra></extra>"))
    levels = {thresholds.of(m) for m in monitors}
    if len(levels) == 1:
        level = levels.pop()
        fig.add_trace(go.Scatter(
            x=span, y=[level, level], name=f"threshold {level:g}", mode="lines",
            line={"color": "#444", "dash": "dash"}, hoverinfo="name"))
    else:
        for monitor in monitors:
            level = thresholds.of(monitor)
            fig.add_trace(go.Scatter(
                x=span, y=[level, level], name=f"{monitor} threshold {level:g}",
                legendgroup=monitor, mode="lines", line={"color": colors[monitor], "dash": "dash"},
                hoverinfo="name"))
    return fig
