"""report.html: rendered from a real tiny scenario run, then opened in headless Chromium."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wsprof.profiling.attribute import attribute
from wsprof.profiling.folded import parse_folded
from wsprof.profiling.layers import default_rules
from wsprof.report.html import answer, profile_html, scenario_html
from wsprof.report.html_flame import diff_data, flame_data
from wsprof.report.outputs import write_scenario_outputs

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

TINY = """
name = "tiny-html"
description = "two stacks, tiny windows: a test, not a benchmark"
question = "What does <Socket.IO> cost over a raw WebSocket?"
[load]
connections = 4
in_flight = 1
payload = "small"
warmup_s = 0.2
capacity_window_s = 0.6
latency_window_s = 0.6
profile_window_s = 2.0
profile_rate_hz = 200
repeats = 1
[[variants]]
name = "starlette-raw"
stack = "starlette-raw"
options = { loop = "uvloop" }
[[variants]]
name = "socketio-asgi"
stack = "socketio-asgi"
options = { loop = "uvloop", serializer = "json" }
"""
VARIANTS = ("starlette-raw", "socketio-asgi")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real quick scenario run (real servers, real py-spy); its result and report."""
    tmp = tmp_path_factory.mktemp("html")
    (tmp / "tiny.toml").write_text(TINY)
    result = tmp / "result.json"
    proc = _wsprof(
        *("scenario", str(tmp / "tiny.toml"), "--quick"),
        *("--out", str(tmp / "out"), "--json", str(result)),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(result.read_text())
    if not doc["profiling"]["available"]:
        pytest.skip(f"py-spy cannot attach here: {doc['profiling']['note']}")
    return doc


def test_every_scenario_run_directory_has_a_report(run: dict[str, Any]) -> None:
    page = Path(run["report_html"])
    assert page.parent == Path(run["profiling"]["out_dir"]) and page.name == "report.html"
    text = page.read_text(encoding="utf-8")
    # Self-contained: nothing fetched from anywhere, the question escaped, the answer on top.
    for outside in (" src=", "<link", "url(", "@import"):
        assert outside not in text
    assert "default-src 'none'" in text  # and the page's policy forbids any fetch
    assert "&lt;Socket.IO&gt;" in text and "<Socket.IO>" not in text
    assert text.index('id="answer"') < text.index('id="results"')
    assert answer(run).startswith("Against starlette-raw used ")


def test_flamegraph_roots_are_the_attributed_cpu_per_message(run: dict[str, Any]) -> None:
    """A graph's width is the variant's server CPU µs/message: the layer table's total."""
    rules = default_rules()
    a, b = run["variants"]
    stacks = {v["name"]: _stacks(v) for v in run["variants"]}
    per = {v["name"]: v["server_cpu_us_per_msg"] / v["profile_samples"] for v in (a, b)}
    for v in (a, b):
        data = flame_data(stacks[v["name"]], rules, per[v["name"]], "µs/msg")
        assert data["root"][1] == pytest.approx(v["server_cpu_us_per_msg"], rel=1e-3)
    diff = diff_data(
        stacks[a["name"]], stacks[b["name"]], rules, (per[a["name"]], per[b["name"]]), "µs/msg"
    )
    assert diff["root"][1] == pytest.approx(a["server_cpu_us_per_msg"], rel=1e-3)
    assert diff["root"][2] == pytest.approx(b["server_cpu_us_per_msg"], rel=1e-3)


def _stacks(v: dict[str, Any]) -> list[Any]:
    return parse_folded(Path(v["flamegraphs"]["folded"]).read_text())


def test_text_from_files_cannot_close_a_script_or_open_a_tag(run: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(run))
    doc["variants"][1]["name"] = "</script><img src=x onerror=alert(1)>"
    hostile = parse_folded("evil (</script><b>x</b>.py:1);f (a.py:2) 5\n")
    stacks = {doc["variants"][0]["name"]: hostile, doc["variants"][1]["name"]: hostile}
    text = scenario_html(doc, stacks, default_rules())
    assert "<img" not in text and "<b>" not in text
    assert text.count("</script>") == text.count("<script")


def test_report_renders_again_from_the_result_file(run: dict[str, Any], tmp_path: Path) -> None:
    result = tmp_path / "r.json"
    doc = json.loads(json.dumps(run))
    gone = doc["variants"][1]["flamegraphs"]
    gone["folded"] = str(tmp_path / "moved.folded")
    result.write_text(json.dumps(doc))
    out = tmp_path / "again.html"
    proc = _wsprof("report", str(result), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text(encoding="utf-8")
    assert "no flamegraph for socketio-asgi" in text and "moved.folded" in text
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    proc = _wsprof("report", str(bad))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not JSON" in proc.stderr
    bad.write_text('{"schema": "wsprof.scenario/1", "variants": [{"status": "ok"}]}')
    proc = _wsprof("report", str(bad))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


def test_without_a_run_directory_the_report_goes_beside_the_json(
    run: dict[str, Any], tmp_path: Path
) -> None:
    """--no-profile makes no run directory: the page goes beside the result instead."""
    doc = json.loads(json.dumps(run))
    doc["profiling"]["out_dir"] = None
    for v in doc["variants"]:
        for key in ("flamegraphs", "layers", "closure", "latency_budget"):
            v.pop(key, None)
    files = write_scenario_outputs(doc, {}, rules=default_rules(), json_path=tmp_path / "r.json")
    assert files.html == tmp_path / "r.html" and doc["report_html"] == str(files.html)
    text = files.html.read_text(encoding="utf-8")
    assert "starlette-raw" in text and 'id="flamegraphs"' not in text


def _wsprof(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsprof", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium with a fresh profile and nothing that reaches the network."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"no browser to render the report in: {', '.join(missing)} not installed")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="wsprof-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1300,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_the_report_renders_in_chromium(run: dict[str, Any], browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.get(Path(run["report_html"]).as_uri())
    css = browser.find_elements
    results = css(By.CSS_SELECTOR, "table.results")[0].text
    layers = css(By.CSS_SELECTOR, "table.layers")[0].text
    for name in VARIANTS:
        assert name in results and name in layers
    for layer in ("websocket-protocol", "event-loop", "socketio-dispatch", "json"):
        assert layer in layers
    assert len(css(By.CSS_SELECTOR, "polyline.curve")) == 2 * len(VARIANTS)  # open loop, capacity
    curve = css(By.CSS_SELECTOR, "polyline.curve")[0].get_attribute("points") or ""
    assert len(curve.split()) >= 13  # the full HDR curve, not five summary points
    assert len(css(By.CSS_SELECTOR, "rect.seg")) >= len(VARIANTS)
    graphs = css(By.CSS_SELECTOR, ".fg")
    assert len(graphs) == len(VARIANTS) + 1  # one per variant and the differential one
    assert all(g.get_attribute("data-rendered") == "1" for g in graphs)
    first = graphs[0]
    frames = [f for f in first.find_elements(By.CSS_SELECTOR, ".fg-frame") if f.is_displayed()]
    assert len(frames) > 10
    # Search, hover and zoom all act on the drawn graph.
    first.find_element(By.CSS_SELECTOR, ".fg-search").send_keys("websocket")
    assert "µs/msg" in first.find_element(By.CSS_SELECTOR, ".fg-matched").text
    assert first.find_elements(By.CSS_SELECTOR, ".fg-frame.fg-hit")
    browser.execute_script("arguments[0].dispatchEvent(new MouseEvent('mouseenter'))", frames[-1])
    assert "µs/msg" in first.find_element(By.CSS_SELECTOR, ".fg-details").text
    deep = max(frames, key=lambda f: int(f.value_of_css_property("bottom").rstrip("px")))
    browser.execute_script("arguments[0].click()", deep)
    assert first.find_element(By.CSS_SELECTOR, ".fg-reset").is_displayed()
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    png = browser.get_screenshot_as_base64()
    assert _colours(browser, png) > 20


def _colours(browser: Any, png_base64: str) -> int:
    """Distinct colours on a grid of the screenshot, decoded by the browser itself."""
    assert base64.b64decode(png_base64)[:8] == b"\x89PNG\r\n\x1a\n"
    browser.get("about:blank")
    count: int = browser.execute_async_script(
        """
        var done = arguments[1], img = new Image();
        img.onload = function () {
          var c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
          var g = c.getContext("2d"); g.drawImage(img, 0, 0);
          var d = g.getImageData(0, 0, c.width, c.height).data, seen = {};
          for (var i = 0; i < d.length; i += 4 * 97) seen[d[i] + "," + d[i+1] + "," + d[i+2]] = 1;
          done(Object.keys(seen).length);
        };
        img.onerror = function () { done(0); };
        img.src = "data:image/png;base64," + arguments[0];
        """,
        png_base64,
    )
    return count


def test_the_profile_report_renders_in_chromium(browser: Any, tmp_path: Path) -> None:
    """`wsprof profile`'s page: shares of samples, one flamegraph, the same scripts."""
    from selenium.webdriver.common.by import By

    fixture = Path(__file__).parent / "fixtures" / "folded" / "layers.folded"
    stacks = parse_folded(fixture.read_text())
    rules = default_rules()
    doc = {**attribute(stacks, rules).to_json(), "env": {"python": "3.11"}}
    page = tmp_path / "pid1.report.html"
    page.write_text(profile_html(doc, stacks, rules, "wsprof: PID 1"), encoding="utf-8")
    browser.get(page.as_uri())
    layers = browser.find_elements(By.CSS_SELECTOR, "table.layers")[0].text
    assert "json" in layers and "websocket-protocol" in layers
    graph = browser.find_elements(By.CSS_SELECTOR, ".fg")
    assert len(graph) == 1 and graph[0].get_attribute("data-rendered") == "1"
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
