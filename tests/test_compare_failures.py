"""Issue 13 for `compare`: unusable results are one line and exit 2; one window is undecided."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wsprof.cli import main

WSPROF = [sys.executable, "-m", "wsprof"]


def spread(median: float, mad: float, n: int) -> dict[str, Any]:
    return {"median": median, "mad": mad, "n": n, "values": [median] * n}


def variant(name: str, cpu: float, msgs: float, n: int = 5, mad: float = 1.0) -> dict[str, Any]:
    return {
        "name": name,
        "status": "ok",
        "server_cpu_us_per_msg": cpu,
        "server_cpu": spread(cpu, mad, n),
        "throughput_msgs_per_s": msgs,
    }


def scenario(*variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "wsprof.scenario/1",
        "scenario": "tiny",
        "env": {},
        "variants": list(variants),
    }


GOOD = scenario(variant("raw", 20.0, 30_000), variant("socketio", 40.0, 15_000))


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WSPROF, *args], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )


def _assert_one_line(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("wsprof: error: ") and res.stderr.count("\n") == 1, res.stderr
    for word in words:
        assert word in res.stderr, (word, res.stderr)


def _broken(edit: str) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    v = doc["variants"][1]
    if edit == "no variants key":
        del doc["variants"]
    elif edit == "variants not a list":
        doc["variants"] = {"raw": 1}
    elif edit == "empty variants":
        doc["variants"] = []
    elif edit == "variant not an object":
        doc["variants"][1] = "socketio"
    elif edit == "no name":
        del v["name"]
    elif edit == "no status":
        del v["status"]
    elif edit == "no cpu":
        del v["server_cpu_us_per_msg"]
    elif edit == "cpu is text":
        v["server_cpu_us_per_msg"] = "40"
    elif edit == "cpu is bool":
        v["server_cpu_us_per_msg"] = True
    elif edit == "cpu is zero":
        v["server_cpu_us_per_msg"] = 0
    elif edit == "throughput is zero":
        v["throughput_msgs_per_s"] = 0.0
    elif edit == "throughput negative":
        v["throughput_msgs_per_s"] = -3
    elif edit == "cpu huge int":
        v["server_cpu_us_per_msg"] = 10**400
    elif edit == "no spread":
        del v["server_cpu"]
    elif edit == "spread n zero":
        v["server_cpu"]["n"] = 0
    elif edit == "spread n float":
        v["server_cpu"]["n"] = 2.5
    elif edit == "spread mad missing":
        del v["server_cpu"]["mad"]
    elif edit == "values short":
        v["server_cpu"]["values"] = [40.0]
    elif edit == "value text":
        v["server_cpu"]["values"][2] = "40"
    elif edit == "samples above total":
        v["profile_samples"], v["layers"] = 10, {"json": {"samples": 11, "us_per_msg": 1.0}}
    elif edit == "no scenario name":
        del doc["scenario"]
    return doc


EDITS = [
    ("no variants key", "variants: missing"),
    ("variants not a list", "variants: wrong type dict"),
    ("empty variants", "variants: empty"),
    ("variant not an object", "variants[1]: expected an object"),
    ("no name", "variants[1].name: missing"),
    ("no status", "variants[1].status: missing"),
    ("no cpu", "variants[1].server_cpu_us_per_msg: missing"),
    ("cpu is text", "variants[1].server_cpu_us_per_msg: wrong type str"),
    ("cpu is bool", "variants[1].server_cpu_us_per_msg: wrong type bool"),
    ("cpu is zero", "server_cpu_us_per_msg: expected a positive finite number"),
    ("throughput is zero", "throughput_msgs_per_s: expected a positive finite number"),
    ("throughput negative", "throughput_msgs_per_s: expected a positive finite number"),
    ("cpu huge int", "server_cpu_us_per_msg: expected a positive finite number"),
    ("no spread", "variants[1].server_cpu: missing"),
    ("spread n zero", "server_cpu.n: expected a count >= 1"),
    ("spread n float", "server_cpu.n: wrong type float"),
    ("spread mad missing", "server_cpu.mad: missing"),
    ("values short", "server_cpu.values: expected 5 values (n), not 1"),
    ("value text", "server_cpu.values[2]: expected a number"),
    ("samples above total", "layers.json.samples: expected 0 to profile_samples (10), not 11"),
    ("no scenario name", "scenario: missing"),
]


@pytest.mark.parametrize(("edit", "message"), EDITS, ids=[e for e, _ in EDITS])
@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_damaged_results_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: str, message: str, side: str
) -> None:
    good = _write(tmp_path / "good.json", GOOD)
    bad = _write(tmp_path / "bad.json", _broken(edit))
    args = [str(good), str(bad)] if side == "candidate" else [str(bad), str(good)]
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsprof: error: ") and err.count("\n") == 1, err
    assert "bad.json" in err and message in err, err


def test_nan_in_a_result_is_refused(tmp_path: Path) -> None:
    text = json.dumps(GOOD).replace("40.0", "NaN", 1)  # Python's json reads NaN
    bad = tmp_path / "nan.json"
    bad.write_text(text)
    _assert_one_line(_run("compare", str(_write(tmp_path / "a.json", GOOD)), str(bad)), "nan")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"schema": "wsprof.micro/1", "env": {}}, "results: missing"),
        ({"schema": "wsprof.micro/1", "results": [{"layer": "json"}]}, "results[0].case: missing"),
        (
            {
                "schema": "wsprof.micro/1",
                "results": [
                    {"layer": "j", "case": "c", "variant": "v", "payload": 3, "ns_per_op": 1.0}
                ],
            },
            "results[0].payload: wrong type int",
        ),
        (
            {
                "schema": "wsprof.micro/1",
                "results": [
                    {"layer": "j", "case": "c", "variant": "v", "payload": None, "ns_per_op": 0}
                ],
            },
            "ns_per_op: expected a positive finite number",
        ),
    ],
)
def test_damaged_micro_results_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], doc: dict[str, Any], message: str
) -> None:
    good = {"schema": "wsprof.micro/1", "env": {}, "results": []}
    assert (
        main(
            [
                "compare",
                str(_write(tmp_path / "a.json", good)),
                str(_write(tmp_path / "b.json", doc)),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_binary_file_is_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" * 64)
    res = _run("compare", str(_write(tmp_path / "a.json", GOOD)), str(binary))
    _assert_one_line(res, "b.json", "not JSON")


def test_directory_is_one_line(tmp_path: Path) -> None:
    res = _run("compare", str(tmp_path), str(_write(tmp_path / "a.json", GOOD)))
    _assert_one_line(res, "is a directory")


def test_deeply_nested_json_is_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    res = _run("compare", str(deep), str(_write(tmp_path / "a.json", GOOD)))
    _assert_one_line(res, "deep.json")


def test_an_endless_file_is_bounded(tmp_path: Path) -> None:
    res = _run("compare", "/dev/zero", str(_write(tmp_path / "a.json", GOOD)))
    _assert_one_line(res, "/dev/zero")


def test_markup_in_a_variant_name_is_printed_not_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = scenario(variant("[/bold]raw[red]", 20.0, 30_000))
    a = _write(tmp_path / "a.json", doc)
    assert main(["compare", str(a), str(a)]) == 0
    assert "[/bold]raw[red]" in capsys.readouterr().out


def test_one_window_cannot_show_significance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The probe: one --quick window each, +16.5 % CPU was shown as "same".
    a = _write(tmp_path / "a.json", scenario(variant("socketio", 40.0, 15_000, n=1, mad=0.0)))
    b = _write(tmp_path / "b.json", scenario(variant("socketio", 46.6, 13_000, n=1, mad=0.0)))
    assert main(["compare", str(a), str(b)]) == 3
    captured = capsys.readouterr()
    assert "+16.5%" in captured.out
    assert "unknown (1 window)" in captured.out and "same" not in captured.out
    assert captured.err.startswith("wsprof: note: too few measurement windows")
    assert "to show significance" in captured.err


def test_one_window_in_either_run_is_undecided_but_a_regression_still_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write(
        tmp_path / "a.json",
        scenario(variant("raw", 20.0, 30_000, n=5), variant("sio", 40.0, 15_000, n=5)),
    )
    b = _write(
        tmp_path / "b.json",
        scenario(variant("raw", 30.0, 20_000, n=5), variant("sio", 40.0, 15_000, n=1)),
    )
    assert main(["compare", str(a), str(b)]) == 1
    out = capsys.readouterr().out
    assert "slower" in out and "unknown (1 window)" in out
    assert main(["compare", str(a), str(a)]) == 0  # five windows each: decided, same
