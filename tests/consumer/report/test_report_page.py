"""The report page without a browser: an empty warehouse still gives a whole report, the
file references nothing outside itself, text from events cannot break out of the page, and
the options and mistakes of `amlwh report`."""

from __future__ import annotations

import json
import os
import re
from datetime import date, datetime, timezone
from html.parser import HTMLParser

import pytest

from consumer.cli import main
from consumer.report.build import Table, load_report_data
from consumer.report.page import SECTIONS, ReportWriteError, make_report, render_report, write_report
from consumer.report.thresholds import DEFAULT_DRIFT_THRESHOLD, DriftThresholds, parse_threshold

GENERATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
# a tag that loads something: its URL attribute
LOADING = re.compile(r"<(?:script|link|img|iframe|embed|object|source|audio|video)\b[^>]*?"
                     r"\b(?:src|href|data)\s*=\s*[\"']?([^\"' >]+)", re.IGNORECASE)


class Outline(HTMLParser):
    """The page's elements that matter here: graph divs, their figures, tables and rows."""

    def __init__(self) -> None:
        super().__init__()
        self.graph_divs: list[str] = []
        self.table_rows: dict[str, int] = {}
        self.scripts = 0
        self._table: str | None = None
        self._in_body = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "plotly-graph-div" in (attrs.get("class") or ""):
            self.graph_divs.append(attrs["id"])
        elif tag == "table":
            self._table = attrs["id"]
            self.table_rows[self._table] = 0
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.table_rows[self._table] += 1
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False


def outline(page: str) -> Outline:
    parser = Outline()
    parser.feed(page)
    parser.close()
    return parser


def figure_json(page: str, chart: str) -> dict:
    """The data and layout passed to Plotly.newPlot for the chart's div."""
    match = re.search(r'Plotly\.newPlot\(\s*"chart-' + chart + r'",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{',
                      page, re.DOTALL)
    assert match, f"no Plotly.newPlot call for chart-{chart}"
    return {"data": json.loads(match.group(1)), "layout": json.loads(match.group(2))}


def test_an_empty_warehouse_gives_a_report_whose_charts_say_no_data(tmp_path):
    (tmp_path / "warehouse").mkdir()
    out = tmp_path / "report.html"
    rows = make_report(tmp_path / "warehouse", out, since=None, thresholds=DriftThresholds(),
                       generated_at=GENERATED)
    assert rows == {s.chart: 0 for s in SECTIONS}
    page = out.read_text(encoding="utf-8")
    shape = outline(page)
    assert shape.graph_divs == [f"chart-{s.chart}" for s in SECTIONS]
    assert shape.table_rows == {f"table-{s.chart}": 0 for s in SECTIONS}
    for section in SECTIONS:
        figure = figure_json(page, section.chart)
        assert figure["data"] == []
        assert [a["text"] for a in figure["layout"]["annotations"]] == ["No data in the warehouse"]
    assert "generated 2026-01-02 03:04:05 UTC" in page
    assert "all stored data" in page


def test_no_data_since_a_date_says_so(tmp_path):
    tables = load_report_data(tmp_path / "nothing_here", date(2026, 5, 1), DriftThresholds())
    page = render_report(tables, warehouse=tmp_path, since=date(2026, 5, 1),
                         thresholds=DriftThresholds(), generated_at=GENERATED)
    for section in SECTIONS:
        notes = [a["text"] for a in figure_json(page, section.chart)["layout"]["annotations"]]
        assert notes == ["No data since 2026-05-01"]
    assert "from 2026-05-01 (UTC) on" in page


def test_the_page_loads_nothing_from_outside_and_carries_plotly_itself(tmp_path):
    (tmp_path / "warehouse").mkdir()
    make_report(tmp_path / "warehouse", tmp_path / "r.html", since=None,
                thresholds=DriftThresholds(), generated_at=GENERATED)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert LOADING.findall(page) == []  # no src/href to load: not a CDN, not a local file
    assert re.findall(r"@import|url\(\s*['\"]?https?:", page[: page.index("<script")]) == []
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in page
    assert page.count(get_plotlyjs()) == 1  # once, not once per chart
    # the regex finds a loading tag when there is one
    assert LOADING.findall('<script src="https://cdn.plot.ly/plotly.min.js"></script>') == [
        "https://cdn.plot.ly/plotly.min.js"]


def test_text_from_events_cannot_break_out_of_the_page():
    hostile = '</script><script>alert("x")</script><b>'
    tables = {
        "run_durations": Table(("experiment", "day", "runs", "p50_s", "p95_s"),
                               ((hostile, date(2026, 1, 1), 2, 10.0, 20.0),)),
        "failure_rates": Table(("experiment", "day", "finished", "failed", "canceled", "completed",
                                "failure_rate"), ((hostile, date(2026, 1, 1), 2, 1, 0, 1, 0.5),)),
        "runs_by_status": Table(("day", "status", "runs"), ((date(2026, 1, 1), hostile, 2),)),
        "model_activity": Table(("day", "registrations", "deployments"), ((date(2026, 1, 1), 1, 0),)),
        "drift": Table(("monitor", "measured_at", "coefficient", "threshold", "above_threshold"),
                       ((hostile, datetime(2026, 1, 1, tzinfo=timezone.utc), 0.5, 0.2, True),)),
    }
    page = render_report(tables, warehouse="wh<i>", since=None,
                         thresholds=DriftThresholds(0.2, {hostile: 0.3}), generated_at=GENERATED)
    assert hostile not in page
    assert "<script>alert" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;b&gt;" in page  # tables
    names = [t["name"] for t in figure_json(page, "run_durations")["data"]]
    assert names == [f"{hostile} p50", f"{hostile} p95"]  # the figure still has the real name
    assert outline(page).table_rows == {f"table-{s.chart}": 1 for s in SECTIONS}


def test_drift_thresholds_give_one_line_or_one_per_monitor(tmp_path):
    drift = Table(("monitor", "measured_at", "coefficient", "threshold", "above_threshold"), (
        ("a", datetime(2026, 1, 1, tzinfo=timezone.utc), 0.5, 0.2, True),
        ("b", datetime(2026, 1, 2, tzinfo=timezone.utc), 0.1, 0.2, False)))
    empty = load_report_data(tmp_path / "nothing_here", None, DriftThresholds())

    def traces(thresholds):
        page = render_report({**empty, "drift": drift}, warehouse="wh", since=None,
                             thresholds=thresholds, generated_at=GENERATED)
        return [(t["name"], t["y"]) for t in figure_json(page, "drift")["data"]]

    assert traces(DriftThresholds()) == [("a", [0.5]), ("b", [0.1]), ("threshold 0.2", [0.2, 0.2])]
    assert traces(DriftThresholds(0.4, {"b": 0.4, "c": 0.9})) == [
        ("a", [0.5]), ("b", [0.1]), ("threshold 0.4", [0.4, 0.4])]
    assert traces(DriftThresholds(0.3, {"b": 0.6})) == [
        ("a", [0.5]), ("b", [0.1]), ("a threshold 0.3", [0.3, 0.3]), ("b threshold 0.6", [0.6, 0.6])]


@pytest.mark.parametrize("text, parsed", [
    ("0.3", (None, 0.3)), ("churn-monitor=0.45", ("churn-monitor", 0.45)),
    ("a=b=1", ("a=b", 1.0)), (" m = 0 ", ("m", 0.0))])
def test_threshold_options(text, parsed):
    assert parse_threshold(text) == parsed


@pytest.mark.parametrize("text, message", [
    ("high", "'high' is not a number"), ("m=", "'' is not a number"), ("=0.3", "names no monitor"),
    ("1.5", "between 0 and 1"), ("m=-0.1", "between 0 and 1")])
def test_threshold_mistakes(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_threshold(text)


def test_thresholds_default_to_azure_ml_s_and_the_last_value_wins():
    assert DriftThresholds().of("any") == DEFAULT_DRIFT_THRESHOLD == 0.2
    chosen = DriftThresholds.from_options([(None, 0.3), ("m", 0.5), (None, 0.4), ("m", 0.6)])
    assert (chosen.of("m"), chosen.of("other")) == (0.6, 0.4)


def test_an_unwritable_output_is_an_operator_error(tmp_path):
    with pytest.raises(ReportWriteError, match="cannot write the report to .*no-such-folder.*--out"):
        write_report(tmp_path / "no-such-folder" / "r.html", "<html></html>")
    write_report(tmp_path / "r.html", "first")
    write_report(tmp_path / "r.html", "second")  # replaced whole, no partial file left
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert (tmp_path / "r.html").read_text() == "second"


@pytest.fixture
def cli_env(monkeypatch):
    """main() in this process sets process defaults (consumer/tuning.py): undone after."""
    for name in ("OPENBLAS_NUM_THREADS", "ARROW_DEFAULT_MEMORY_POOL"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_command_reports_its_mistakes(tmp_path, capsys, cli_env):
    monkeypatch = cli_env
    monkeypatch.setenv("AMLWH_WAREHOUSE__PATH", str(tmp_path / "wh"))
    with pytest.raises(SystemExit) as stop:
        main(["report", "--drift-threshold", "high"])
    assert stop.value.code == 2
    assert "'high' is not a number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--since", "2026-13-01"])
    assert "'2026-13-01' is not a date (YYYY-MM-DD)" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "missing" / "r.html")]) == 1
    err = capsys.readouterr().err
    assert f"no warehouse at {tmp_path / 'wh'}" in err
    assert "amlwh: cannot write the report to" in err


def test_the_command_writes_the_report_and_says_where(tmp_path, capsys, cli_env):
    monkeypatch = cli_env
    (tmp_path / "wh").mkdir()
    monkeypatch.setenv("AMLWH_WAREHOUSE__PATH", str(tmp_path / "wh"))
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--since", "2026-01-01", "--drift-threshold", "m=0.5"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith(f"report written to {tmp_path / 'report.html'} (table rows: run_durations 0,")
    assert out.err == ""
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "from 2026-01-01 (UTC) on" in page
    assert "Drift thresholds: 0.2 (default), m: 0.5" in page
