"""The report as one HTML file: plotly.js inlined once in the head, each chart's figure and
the table behind it, no reference to anything outside the file, so it opens offline and
can be mailed or archived as it is."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import plotly.io as pio
from plotly.offline import get_plotlyjs

from consumer.errors import AmlwhError
from consumer.report.build import Table, load_report_data, report_files
from consumer.report.charts import (durations_figure, drift_figure, failure_rate_figure,
                                    model_activity_figure, palette, status_figure)
from consumer.report.thresholds import DriftThresholds

# no plotly logo link; the camera button saves a PNG in the browser, offline
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True,
                 "toImageButtonOptions": {"format": "png", "scale": 2}}


class ReportWriteError(AmlwhError):
    """The report file cannot be written where --out says."""


@dataclass(frozen=True)
class Section:
    chart: str  # its table in build.report_sql(), and the id of its graph div (chart-<chart>)
    heading: str
    about: str  # what the chart shows and which view feeds it (HTML)


SECTIONS = (
    Section("run_durations", "Run duration",
            "Median (p50) and 95th percentile (p95) of <code>duration_s</code> (Running to the "
            "final status) of the runs that ended each UTC day, per experiment, from the "
            "<code>runs</code> view. Every run type counts together; <code>run_durations</code> "
            "has the figures per run type over all time."),
    Section("failure_rates", "Failure rate",
            "Failed runs / finished runs per experiment and UTC day of <code>ended_at</code> "
            "(canceled runs count as finished, not failed): the <code>failure_rates</code> view."),
    Section("runs_by_status", "Runs by status",
            "Runs per UTC day of their first event (<code>created_at</code>), stacked by the "
            "status they are in now, from the <code>runs</code> view. Runs still Running (or "
            "queued) show which days have unfinished work."),
    Section("model_activity", "Model registrations and deployments",
            "ModelRegistered and ModelDeployed events per UTC day (each event once), from "
            "<code>model_registrations</code> and <code>deployments</code>: Azure Monitor's "
            "Model Register Succeeded and Model Deploy Succeeded, per day."),
    Section("drift", "Data drift",
            "The drift coefficient of each DatasetDriftDetected event, per monitor "
            "(<code>dataDriftName</code>), at the end of the window it measured, from the "
            "<code>drift</code> view. Events do not carry the monitor's threshold: the dashed "
            "line is the one given with <code>--drift-threshold</code>."),
)


def make_report(warehouse: Path, out: Path, *, since: date | None, thresholds: DriftThresholds,
                generated_at: datetime) -> dict[str, int]:
    """Query the warehouse, write the report to `out`; the row count of each chart's table."""
    tables = load_report_data(warehouse, since, thresholds)
    write_report(out, render_report(tables, warehouse=warehouse, since=since,
                                    thresholds=thresholds, generated_at=generated_at))
    return {chart: len(table.rows) for chart, table in tables.items()}


def figures(tables: dict[str, Table], since: date | None, thresholds: DriftThresholds) -> dict:
    """chart -> its plotly figure."""
    experiments = palette(tables["run_durations"].column("experiment")
                          + tables["failure_rates"].column("experiment"))
    return {
        "run_durations": durations_figure(tables["run_durations"], experiments, since),
        "failure_rates": failure_rate_figure(tables["failure_rates"], experiments, since),
        "runs_by_status": status_figure(tables["runs_by_status"], since),
        "model_activity": model_activity_figure(tables["model_activity"], since),
        "drift": drift_figure(tables["drift"], thresholds, since),
    }


def render_report(tables: dict[str, Table], *, warehouse: Path, since: date | None,
                  thresholds: DriftThresholds, generated_at: datetime) -> str:
    drawn = figures(tables, since, thresholds)
    files = report_files()
    sections = []
    for section in SECTIONS:
        graph = pio.to_html(drawn[section.chart], full_html=False, include_plotlyjs=False,
                            div_id=f"chart-{section.chart}", config=PLOTLY_CONFIG)
        sections.append(
            f'<section id="{section.chart}">\n<h2>{html.escape(section.heading)}</h2>\n'
            f'<p class="about">{section.about}</p>\n{graph}\n'
            f'{_table_html(section.chart, tables[section.chart], files[section.chart])}\n</section>')
    period = f"from {since.isoformat()} (UTC) on" if since else "all stored data"
    levels = ", ".join([f"{thresholds.default:g} (default)"]
                       + [f"{html.escape(m)}: {v:g}" for m, v in sorted(thresholds.monitors.items())])
    contents = " · ".join(f'<a href="#{s.chart}">{html.escape(s.heading)}</a>' for s in SECTIONS)
    return _PAGE.format(
        plotlyjs=get_plotlyjs(), css=_CSS, warehouse=html.escape(str(warehouse)), period=period,
        generated=generated_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        levels=levels, contents=contents, sections="\n".join(sections))


def write_report(path: Path, page: str) -> None:
    """Write `page` to `path` whole or not at all: a reader never opens half a report."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, path)
    except OSError as exc:
        try:
            partial.unlink(missing_ok=True)
        except OSError:
            pass
        raise ReportWriteError(f"cannot write the report to {path}: {exc.strerror or exc}. "
                               "Check that its folder exists and is writable, or pass another "
                               "--out.") from None


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return html.escape(str(value))


def _table_html(chart: str, table: Table, sql_file: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                     for row in table.rows)
    rows = f"{len(table.rows):,} row{'' if len(table.rows) == 1 else 's'}"
    return (f'<details class="data"><summary>Table: {rows}, from <code>{sql_file}</code>'
            f'</summary>\n<table id="table-{chart}"><thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{body}\n</tbody></table></details>")


_CSS = """
body { font-family: "Liberation Sans", Arial, Helvetica, sans-serif; margin: 0 auto;
       max-width: 1360px; padding: 0 20px 40px; color: #222; }
header { border-bottom: 1px solid #ddd; margin-bottom: 8px; }
h1 { font-size: 22px; margin: 18px 0 6px; }
h2 { font-size: 17px; margin: 22px 0 4px; }
.meta { color: #555; font-size: 13px; margin: 2px 0; }
.about { color: #444; font-size: 13px; margin: 0 0 4px; max-width: 1100px; }
nav { font-size: 13px; margin: 6px 0 10px; }
section { border-bottom: 1px solid #eee; padding-bottom: 8px; }
details.data { font-size: 12px; margin: 4px 0 8px; }
details.data summary { cursor: pointer; color: #555; }
table { border-collapse: collapse; margin-top: 6px; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f4f4f4; }
td:first-child, th:first-child { text-align: left; }
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="amlwh report">
<title>amlwh report</title>
<style>{css}</style>
<script type="text/javascript">window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>
<script type="text/javascript">{plotlyjs}</script>
</head>
<body>
<header>
<h1>amlwh report</h1>
<p class="meta">Warehouse <code>{warehouse}</code> · {period} · generated {generated}</p>
<p class="meta">Drift thresholds: {levels}</p>
<nav>{contents}</nav>
</header>
{sections}
</body>
</html>
"""
