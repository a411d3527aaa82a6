"""`--hgrm`: HdrHistogram's percentile-distribution text, parsed back as its plotter reads it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import stack

from wsprof.cli import main
from wsprof.client.histogram import NBUCKETS, PyHistogram, bucket_bounds
from wsprof.report.hgrm import hgrm_text, write_scenario_hgrm

HEADER = "       Value     Percentile TotalCount 1/(1-Percentile)"
ROW = re.compile(r"^ *(\d+\.\d{3}) (\d\.\d{12}) +(\d+)(?: +(\d+\.\d{2}|Infinity))?$")
MEAN = re.compile(r"^#\[Mean    = +(\d+\.\d{3}), StdDeviation   = +(\d+\.\d{3})\]$")
MAX = re.compile(r"^#\[Max     = +(\d+\.\d{3}), Total count    = +(\d+)\]$")
# The line pattern of hdr-plot (a common plotter of wrk2 and HdrHistogram output).
HDR_PLOT = re.compile(r"\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)")
BUCKETS = re.compile(r"^#\[Buckets = +(\d+), SubBuckets     = +(\d+)\]$")


def parse_hgrm(text: str) -> dict[str, Any]:
    """Read .hgrm as HdrHistogram's plotter does: header, value rows, bracketed footer."""
    lines = text.splitlines()
    assert lines[0] == HEADER and lines[1] == "", lines[:2]
    rows = []
    for line in lines[2:-3]:
        m = ROW.match(line)
        assert m, line
        rows.append((float(m[1]), float(m[2]), int(m[3]), m[4]))
    mean, maximum, buckets = (
        p.match(line) for p, line in zip((MEAN, MAX, BUCKETS), lines[-3:], strict=True)
    )
    assert mean and maximum and buckets, lines[-3:]
    return {
        "rows": rows,
        "mean_ms": float(mean[1]),
        "max_ms": float(maximum[1]),
        "total": int(maximum[2]),
    }


def _check(text: str, hist: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_hgrm(text)
    total = hist["total"]
    rows = parsed["rows"]
    assert parsed["total"] == total
    assert parsed["max_ms"] == pytest.approx(hist["max_ns"] / 1e6, abs=0.0006)
    if not total:
        assert rows == []
        return parsed
    values, levels, counts = ([r[i] for r in rows] for i in range(3))
    assert values == sorted(values) and levels == sorted(levels) and counts == sorted(counts)
    assert levels[0] == 0.0 and levels[-1] == 1.0 and counts[-1] == total
    assert rows[-1][3] is None  # the 100 % line has no 1/(1-Percentile)
    plotted = [m.groups() for m in map(HDR_PLOT.match, text.splitlines()) if m]
    assert [float(g[1]) for g in plotted] == levels[:-1]
    for _, level, count, inverse in rows[:-1]:
        assert count / total >= level - 1e-12  # a level is reported once the count reaches it
        assert float(inverse) == pytest.approx(1 / (1 - level), rel=1e-5, abs=0.006)
    highs = {round((lo + w - 1) / 1e6, 3) for lo, w in map(bucket_bounds, hist["counts"])}
    highs.add(round(hist["max_ns"] / 1e6, 3))
    assert set(values) <= highs
    return parsed


@st.composite
def histograms(draw: st.DrawFn) -> dict[str, Any]:
    counts = draw(
        st.dictionaries(
            st.integers(0, NBUCKETS - 1), st.integers(1, 10**6), min_size=1, max_size=40
        )
    )
    hist = PyHistogram()
    for idx, n in counts.items():
        lower, width = bucket_bounds(idx)
        hist.counts[idx] = n
        hist.total += n
        hist.min_ns = min(hist.min_ns, lower)
        hist.max_ns = max(hist.max_ns, lower + draw(st.integers(0, width - 1)))
    return hist.to_dict()


@settings(max_examples=150, deadline=None)
@given(histograms())
def test_any_histogram_parses_back(hist: dict[str, Any]) -> None:
    parsed = _check(hgrm_text(hist), hist)
    low = min(bucket_bounds(i)[0] for i in hist["counts"]) / 1e6
    assert low - 0.001 <= parsed["mean_ms"] <= parsed["max_ms"] + 0.001


def test_the_percentile_steps_are_hdrhistograms() -> None:
    hist = PyHistogram()
    for v in range(1, 201):  # 200 exact values: 1..200 ns
        hist.record(v * 1000)
    rows = parse_hgrm(hgrm_text(hist.to_dict()))["rows"]
    levels = [r[1] for r in rows]
    # 5 ticks per half distance: 0, 0.1 .. 0.5, then 0.55 .. 0.75, then 0.775 ..
    assert levels[:9] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65])
    median = next(r for r in rows if r[1] == 0.5)
    assert median[2] == 100 and median[0] == pytest.approx(0.100, abs=0.001)


def test_an_empty_histogram_is_header_and_footer() -> None:
    parsed = _check(hgrm_text(PyHistogram().to_dict()), PyHistogram().to_dict())
    assert parsed["total"] == 0 and parsed["rows"] == []


def test_a_real_load_writes_its_hgrm(tmp_path: Path) -> None:
    out, doc = tmp_path / "sub" / "run.hgrm", tmp_path / "load.json"
    with stack("starlette-raw", loop="asyncio") as server:
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "wsprof", "load", server.url, "--mode", server.mode),
                *("--connections", "2", "--duration", "0.5", "--warmup", "0.1"),
                *("--hgrm", str(out), "--json", str(doc)),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(doc.read_text())
    parsed = parse_hgrm(out.read_text())
    assert parsed["total"] == result["messages"] > 0
    p50 = next(v for v, level, _, _ in parsed["rows"] if level >= 0.5)
    assert p50 * 1000 == pytest.approx(result["latency_us"]["p50"], rel=0.02, abs=1)


def test_a_scenario_hgrm_target_that_is_a_file_fails_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    assert main(["scenario", "socketio-framing", "--quick", "--hgrm", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsprof: error: --hgrm") and err.count("\n") == 1, err


def test_a_scenario_writes_one_open_loop_and_one_capacity_file_per_variant(tmp_path: Path) -> None:
    from test_analysis import _record  # the hand-made record analysis is tested on

    written = write_scenario_hgrm(tmp_path / "h", _record())
    assert sorted(p.name for p in written) == [
        "raw-capacity.hgrm",
        "raw.hgrm",
        "sio-capacity.hgrm",
        "sio.hgrm",
    ]  # the variant that failed to start has no windows, so no file
    raw = parse_hgrm((tmp_path / "h" / "raw.hgrm").read_text())
    assert raw["total"] == 40 and raw["max_ms"] == pytest.approx(0.080)
    assert parse_hgrm((tmp_path / "h" / "raw-capacity.hgrm").read_text())["total"] == 50
    assert parse_hgrm((tmp_path / "h" / "sio-capacity.hgrm").read_text())["total"] == 0
