"""`amlwh report` opened in a real browser (headless Chromium) that cannot reach the
network: every chart draws the series the warehouse holds, as SVG, from the file alone.

The warehouse is a synthetic stream (devstack/synth.py) backfilled through the CLI; what
the charts must show is computed from the stream's own record of what it generated, not
from the views. Without Chromium and chromedriver the test fails and says how to get them:
`make browser` (Debian packages chromium and chromium-driver).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from devstack.synth import generate
from tests.consumer.report.browser import missing_browser, requests_made, start_browser
from tests.support.cli import amlwh

pytestmark = pytest.mark.integration

RUNS = 400
SINCE = date(2026, 1, 5)  # the stream spans 2026-01-01 .. 2026-01-07 (synth's default start)
CHARTS = ("run_durations", "failure_rates", "runs_by_status", "model_activity", "drift")
LOCAL = ("file:", "data:", "blob:", "about:")

# Per graph div: the traces plotly was given, and what it drew for each in the SVG (the
# trace groups carry their trace through d3's data binding).
READ_CHARTS = """
const out = {};
for (const div of document.querySelectorAll('.plotly-graph-div')) {
  out[div.id.replace('chart-', '')] = {
    data: div.data.map(t => ({name: t.name, type: t.type, mode: t.mode || null,
                              x: Array.from(t.x || []), y: Array.from(t.y || [])})),
    drawn: Array.from(div.querySelectorAll('g.trace')).map(g => ({
      name: g.__data__ && g.__data__[0] && g.__data__[0].trace.name,
      markers: g.querySelectorAll('path.point').length,
      bars: Array.from(g.querySelectorAll('g.point > path')).filter(p => (p.getAttribute('d') || '').length > 2).length,
      lines: Array.from(g.querySelectorAll('path.js-line')).filter(p => (p.getAttribute('d') || '').length > 2).length,
    })),
    legend: Array.from(div.querySelectorAll('g.legend g.traces text.legendtext')).map(t => t.textContent),
    notes: Array.from(div.querySelectorAll('g.annotation-text-g text')).map(t => t.textContent),
  };
}
out.tables = {};
for (const table of document.querySelectorAll('table[id^="table-"]')) {
  out.tables[table.id.replace('table-', '')] = table.querySelectorAll('tbody tr').length;
}
return out;
"""
CHARTS_DRAWN = """
const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
return document.readyState === 'complete' && divs.length === arguments[0]
    && divs.every(d => d._fullLayout && d.querySelector('svg.main-svg'));
"""


class Truth:
    """What the synthetic stream holds, from its generator's own record and its bodies."""

    def __init__(self, stream) -> None:
        self.runs = stream.runs
        self.models, self.deployments, self.drift = stream.models, stream.deployments, stream.drift
        self.monitors: Counter[str] = Counter()
        for body in stream.bodies:
            event = orjson.loads(body)
            event = event[0] if isinstance(event, list) else event
            if (event.get("eventType") or event.get("type")).endswith("DatasetDriftDetected"):
                self.monitors[event["data"]["dataDriftName"]] += 1

    def finished(self, since: date | None = None):
        return [r for r in self.runs.values() if r.ended_us is not None
                and (since is None or day_of(r.ended_us) >= since)]

    def p50_by_day(self, experiment: str, since: date | None) -> dict[str, float]:
        durations = defaultdict(list)
        for run in self.finished(since):
            if run.experiment == experiment:
                durations[day_of(run.ended_us).isoformat()].append((run.ended_us - run.started_us) / 1e6)
        return {day: median(values) for day, values in sorted(durations.items())}


def day_of(us: int) -> date:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)).date()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


@pytest.fixture(scope="module")
def browser():
    why = missing_browser()
    if why:
        pytest.fail(why, pytrace=False)
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    stream = generate(RUNS, seed=7, payload_bytes=900)
    source = root / "stream.ndjson"
    source.write_bytes(b"\n".join(stream.bodies) + b"\n")
    env = {"AMLWH_WAREHOUSE__PATH": str(root / "warehouse")}
    amlwh("backfill", "files", str(source), "-q", env=env)
    return root, env, Truth(stream)


def report(root: Path, env: dict, name: str, *args: str) -> tuple[Path, dict[str, int]]:
    out = root / name
    printed = amlwh("report", "--out", str(out), *args, env=env).stdout
    match = re.fullmatch(r"report written to (.+) \(table rows: (.+)\)\n", printed)
    assert match, printed
    assert Path(match.group(1)) == out
    rows = {chart: int(n.replace(",", "")) for chart, n in
            (part.rsplit(" ", 1) for part in match.group(2).split(", "))}
    return out, rows


def open_report(browser, path: Path) -> dict:
    requests_made(browser)  # drop what earlier pages logged
    browser.get(path.as_uri())
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 45, poll_frequency=0.2).until(
        lambda d: d.execute_script(CHARTS_DRAWN, len(CHARTS)))
    charts = browser.execute_script(READ_CHARTS)
    urls = requests_made(browser)
    assert path.as_uri() in urls  # the log sees the page's own load...
    assert [u for u in urls if not u.startswith(LOCAL)] == []  # ...and nothing else left
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    return charts


def assert_every_trace_drawn(chart: dict) -> None:
    """Each trace has its SVG group with a marker per point, a line through them, or a bar
    per category; and the legend lists every trace."""
    drawn = {d["name"]: d for d in chart["drawn"]}
    assert sorted(drawn) == sorted(t["name"] for t in chart["data"])
    assert sorted(chart["legend"]) == sorted(t["name"] for t in chart["data"])
    for trace in chart["data"]:
        shapes = drawn[trace["name"]]
        points = sum(y is not None for y in trace["y"])
        assert points > 0, trace["name"]
        if trace["type"] == "bar":
            assert shapes["bars"] == len(trace["x"]), (trace["name"], shapes)
            continue
        if "markers" in trace["mode"]:
            assert shapes["markers"] == points, (trace["name"], shapes)
        if "lines" in trace["mode"] and points > 1:
            assert shapes["lines"] >= 1, (trace["name"], shapes)


def names(chart: dict) -> set[str]:
    return {t["name"] for t in chart["data"]}


def test_every_chart_draws_the_series_of_the_warehouse_offline(browser, warehouse):
    root, env, truth = warehouse
    assert len(truth.monitors) >= 3  # seed 7: enough monitors to tell one threshold from many
    special = sorted(truth.monitors)[0]
    path, rows = report(root, env, "report.html",
                        "--drift-threshold", "0.5", "--drift-threshold", f"{special}=0.9")
    charts = open_report(browser, path)
    for name in CHARTS:
        assert charts[name]["notes"] == [], name  # no "No data" note anywhere
        assert_every_trace_drawn(charts[name])
    assert charts["tables"] == rows  # the tables under the charts hold what the command counted

    experiments = {r.experiment for r in truth.finished()}
    assert names(charts["run_durations"]) == {f"{e} {q}" for e in experiments for q in ("p50", "p95")}
    for trace in charts["run_durations"]["data"]:
        if trace["name"].endswith(" p50"):
            expected = truth.p50_by_day(trace["name"].removesuffix(" p50"), None)
            assert dict(zip(trace["x"], trace["y"])) == pytest.approx(expected)

    assert names(charts["failure_rates"]) == experiments
    finished = Counter((r.experiment, day_of(r.ended_us).isoformat()) for r in truth.finished())
    failed = Counter((r.experiment, day_of(r.ended_us).isoformat()) for r in truth.finished()
                     if r.status == "Failed")
    for trace in charts["failure_rates"]["data"]:
        expected = {day: failed[e, day] / n for (e, day), n in finished.items() if e == trace["name"]}
        assert dict(zip(trace["x"], trace["y"])) == pytest.approx(expected)

    statuses = charts["runs_by_status"]["data"]
    assert {t["name"] for t in statuses} == {r.status for r in truth.runs.values()}
    assert {t["name"]: sum(t["y"]) for t in statuses} == Counter(r.status for r in truth.runs.values())

    activity = {t["name"]: sum(t["y"]) for t in charts["model_activity"]["data"]}
    assert activity == {"registrations": truth.models, "deployments": truth.deployments}

    drift = {t["name"]: t for t in charts["drift"]["data"]}
    thresholds = {m: 0.9 if m == special else 0.5 for m in truth.monitors}
    assert set(drift) == set(truth.monitors) | {f"{m} threshold {v:g}" for m, v in thresholds.items()}
    assert {m: len(drift[m]["y"]) for m in truth.monitors} == dict(truth.monitors)
    for monitor, level in thresholds.items():
        assert drift[f"{monitor} threshold {level:g}"]["y"] == [level, level]


def test_since_limits_every_chart_to_days_on_or_after_it(browser, warehouse):
    root, env, truth = warehouse
    path, rows = report(root, env, "since.html", "--since", SINCE.isoformat())
    charts = open_report(browser, path)
    assert charts["tables"] == rows
    for name in CHARTS:
        assert_every_trace_drawn(charts[name])
        for trace in charts[name]["data"]:
            if not trace["name"].startswith("threshold"):  # the threshold line spans the points
                assert min(trace["x"])[:10] >= SINCE.isoformat(), (name, trace["name"])
    finished = truth.finished(SINCE)
    assert rows["run_durations"] == len({(r.experiment, day_of(r.ended_us)) for r in finished})
    for trace in charts["run_durations"]["data"]:
        if trace["name"].endswith(" p50"):
            expected = truth.p50_by_day(trace["name"].removesuffix(" p50"), SINCE)
            assert dict(zip(trace["x"], trace["y"])) == pytest.approx(expected)
    # one threshold for every monitor (the default): one line
    assert [t["name"] for t in charts["drift"]["data"] if "threshold" in t["name"]] == ["threshold 0.2"]


def test_an_empty_report_says_no_data_in_every_chart(browser, tmp_path):
    env = {"AMLWH_WAREHOUSE__PATH": str(tmp_path / "warehouse")}
    (tmp_path / "warehouse").mkdir()
    path, rows = report(tmp_path, env, "empty.html")
    assert set(rows.values()) == {0}
    charts = open_report(browser, path)
    for name in CHARTS:
        assert charts[name]["data"] == []
        assert charts[name]["notes"] == ["No data in the warehouse"]
