"""The fleet page (training_src/stream/fleet_page.py, `predmaint fleet --html`): one self-contained HTML file,
every input value escaped, checked in a real headless browser (Debian's chromium driven by playwright,
`make browser-setup`): it renders, logs no console error, fetches nothing, and its ranking is the state's."""

from __future__ import annotations

import io
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

from predmaint.cli import main
from training_src.stream import fleet_page

CHROMIUM = Path("/usr/bin/chromium")
PAGE_UNITS = (1, 2, 3, 4, 5, 6, 7, 8, 20, 31, 34, 42, 68, 76, 81)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def expected_order(rows):
    """The ranking the page must show, from the state alone: at risk first, then P(failure) (high first),
    then RUL (low first)."""
    def key(r):
        p, rul = r.get("failure_probability"), r.get("rul")
        return (not r["at_risk"], p is None, -(p or 0), rul is None, rul or 0, r["asset_id"])
    return [r["asset_id"] for r in sorted(rows, key=key)]


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.assets, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        d = dict(attrs)
        if tag == "tr" and "asset" in (d.get("class") or "").split():
            self.assets.append(d["data-asset"])

    def handle_data(self, data):
        self.text.append(data)


def test_every_value_is_escaped_and_nothing_is_fetched():
    evil = "<script>alert(1)</script>'\"&"
    rows = [{"asset_id": evil, "readings": 3, "last": 9, "rul": 5.0, "rul_lower": 1.0, "rul_upper": 9.0,
             "failure_probability": 0.9, "model_version": "<b>v1</b>", "with_summary": True, "at_risk": True,
             "risk_since": 7},
            {"asset_id": "calm", "readings": 3, "last": 9, "rul": 90.0, "rul_lower": 60.0, "rul_upper": 120.0,
             "failure_probability": 0.01, "model_version": "1", "with_summary": True, "at_risk": False,
             "risk_since": None},
            {"asset_id": "broken", "error": "state row: <not JSON>"}]
    history = {evil: [{"time": t, "rul": 20.0 - t, "rul_lower": 10.0 - t, "rul_upper": 30.0 - t} for t in range(10)]}
    page = fleet_page.render_fleet_page(rows, history, {"<v>": {"rmse": 1.5, "coverage": 0.8, "failures": 2}},
                                        {"drift": True, "drifted": [{"column": "<s1>"}], "tests": 3},
                                        title="<t>", generated="<now>")
    p = _Collect()
    p.feed(page)
    assert "script" not in p.tags and "b" not in p.tags  # no tag came from the inputs
    assert p.assets == [evil, "calm", "broken"]  # the parser reads the escaped id back as it was
    text = "".join(p.text)
    for value in ("<t>", "<now>", "<v>", "<s1>", "<b>v1</b>", "state row: <not JSON>"):
        assert value in text
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert "<polygon class='band'" in page and page.count("<svg") == 1  # one sparkline: the only history


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, fd001_refit, fd001_units):
    """FD001 test engines 1-8 and seven whose true RUL is at most 16 (the decision rule puts some of them at
    risk) streamed 10 readings a record, one record per asset per batch, engine 1 failed at its last reading; the page of `predmaint fleet --html`."""
    home = tmp_path_factory.mktemp("page") / "home"
    lines = [json.dumps({"asset_id": str(u), "readings": fd001_units[u][i:i + 10]})  # assets interleaved
             for i in range(0, 400, 10) for u in PAGE_UNITS if i < len(fd001_units[u])]
    mp = pytest.MonkeyPatch()
    mp.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    try:
        # one record per asset per batch: an answer every 10 readings (the sparklines' points)
        assert main(["stream", "--home", str(home), "--model-dir", str(fd001_refit), "--input", "-",
                     "--batch", str(len(PAGE_UNITS))]) == 0
    finally:
        mp.undo()
    assert main(["outcome", "add", "--home", str(home), "--model-dir", str(fd001_refit), "--asset", "1",
                 "--event", "failure", "--time", str(fd001_units[1][-1]["cycle"])]) == 0
    page = home / "fleet.html"
    assert main(["fleet", "--home", str(home), "--json", "--html", str(page)]) == 0
    return home, page


def test_fleet_html_ranks_the_state(fleet, capsys):
    home, page = fleet
    capsys.readouterr()
    assert main(["fleet", "--home", str(home), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert any(r["at_risk"] for r in rows) and not all(r["at_risk"] for r in rows)
    p = _Collect()
    p.feed(page.read_text())
    assert p.assets == expected_order(rows)


def test_bad_options_are_one_line(fleet, tmp_path, capsys):
    home, _ = fleet
    capsys.readouterr()
    assert main(["fleet", "--home", str(home), "--drift-result", str(tmp_path / "d.json")]) == 2
    assert capsys.readouterr().err.splitlines() == ["predmaint fleet: error: --drift-result goes with --html"]
    bad = tmp_path / "d.json"
    bad.write_text("{}")
    assert main(["fleet", "--home", str(home), "--html", str(tmp_path / "p.html"), "--drift-result", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == f"predmaint fleet: error: --drift-result {bad}: not a drift result (no 'drift' field)"
    assert not (tmp_path / "p.html").exists()


@pytest.mark.environment
@pytest.mark.skipif(not CHROMIUM.exists() or shutil.which("chromium") is None,
                    reason="no chromium: run `make browser-setup` (part of `make test`)")
def test_the_page_renders_in_a_real_browser_without_errors_and_ranks_by_risk(fleet, capsys):
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright: run `make browser-setup`")
    home, page = fleet
    capsys.readouterr()
    assert main(["fleet", "--home", str(home), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            problems, requests = [], []
            tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            tab.on("request", lambda r: requests.append(r.url))
            tab.goto(page.as_uri(), wait_until="load")
            assert problems == []
            assert requests == [page.as_uri()]  # self-contained: nothing else is fetched
            assert tab.title().startswith("Fleet")
            dom = tab.eval_on_selector_all("#fleet tr.asset", "rs => rs.map(r => r.dataset.asset)")
            assert dom == expected_order(rows)
            risky = tab.eval_on_selector_all("#fleet tr.asset", "rs => rs.map(r => r.dataset.atRisk === 'true')")
            assert risky == sorted(risky, reverse=True) and any(risky)
            sparks = tab.eval_on_selector_all("#fleet tr.asset svg.spark polyline", "ps => ps.length")
            # every asset with readings in its current life has answers to draw (engine 1 failed: a new life)
            assert sparks == sum(1 for r in rows if r["readings"]) == len(rows) - 1
            box = tab.locator("#fleet").bounding_box()
            assert box is not None and box["width"] > 600 and box["height"] > 12 * 30  # laid out, not collapsed
            quality = tab.inner_text("#quality")
            assert "RMSE" in quality and "coverage" in quality
        finally:
            browser.close()
