"""`wsprof compare` on small fixed documents: scenario and micro results, significance, exit codes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from wsprof.cli import main
from wsprof.errors import WsprofError
from wsprof.report.compare import (
    check_document,
    check_pair,
    compare_layers,
    compare_micro,
    compare_scenarios,
    layer_table,
    micro_table,
    regressions,
    scenario_table,
)
from wsprof.significance import (
    holm,
    mann_whitney_p,
    min_p_value,
    two_proportion_p,
    wilson_interval,
)

ENV = {"python": "3.11.7", "cpu_count": 2, "server_cpu": 1, "packages": {"orjson": "3.10.0"}}


def spread(median: float, mad: float, n: int = 5) -> dict[str, Any]:
    """Windows spread evenly around ``median``: n values, MAD about ``mad``."""
    values = [median + mad * (i - (n - 1) / 2) for i in range(n)]
    return {"median": median, "mad": mad, "n": n, "values": values}


def variant(
    name: str, cpu: float, mad: float, msgs: float, n: int = 5, status: str = "ok"
) -> dict[str, Any]:
    return {
        "name": name,
        "status": status,
        "server_cpu_us_per_msg": cpu,
        "server_cpu": spread(cpu, mad, n),
        "throughput_msgs_per_s": msgs,
    }


def scenario(*variants: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "wsprof.scenario/1",
        "scenario": "tiny",
        "env": ENV,
        "variants": list(variants),
    }


def micro_row(
    layer: str, case: str, variant: str, payload: str | None, ns: float
) -> dict[str, Any]:
    return {"layer": layer, "case": case, "variant": variant, "payload": payload, "ns_per_op": ns}


def micro(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "wsprof.micro/1", "env": ENV, "results": list(rows)}


BASELINE = scenario(
    variant("json", 100.0, 2.0, 10_000),
    variant("orjson", 80.0, 2.0, 12_000),
    variant("msgpack", 90.0, 2.0, 11_000),
    variant("gone", 50.0, 1.0, 9_000),
    variant("broken", 70.0, 1.0, 9_000, status="failed"),
)
CANDIDATE = scenario(
    variant("json", 101.0, 2.0, 9_800),  # +1 %, windows overlap: not significant
    variant("orjson", 100.0, 2.0, 9_600),  # +25 %: slower
    variant("msgpack", 60.0, 2.0, 16_500),  # -33 %: faster
    variant("new", 40.0, 1.0, 20_000),  # not in the baseline
    variant("broken", 70.0, 1.0, 9_000),  # failed in the baseline
)


def test_scenario_variants_are_flagged() -> None:
    changes = compare_scenarios(BASELINE, CANDIDATE)
    assert [c.name for c in changes] == ["json", "orjson", "msgpack", "new", "broken"]
    verdicts = {c.name: c.verdict for c in changes}
    assert verdicts == {
        "json": "not significant",
        "orjson": "slower",
        "msgpack": "faster",
        "new": "not comparable",
        "broken": "not comparable",
    }
    by_name = {c.name: c for c in changes}
    assert by_name["orjson"].cpu_change_pct == pytest.approx(25.0)
    assert by_name["orjson"].throughput_change_pct == pytest.approx(-20.0)
    assert by_name["msgpack"].cpu_change_pct == pytest.approx(-100 / 3)
    assert regressions(changes) == 1


def test_a_variant_that_failed_in_the_candidate_is_not_comparable() -> None:
    failed = scenario(variant("json", 500.0, 1.0, 1_000, status="failed"))
    (change,) = compare_scenarios(BASELINE, failed)
    assert change.verdict == "not comparable" and regressions([change]) == 0


def test_scenario_table_shows_every_variant() -> None:
    console = Console(record=True, width=200)
    console.print(scenario_table(compare_scenarios(BASELINE, CANDIDATE), "t"))
    text = console.export_text()
    assert "80.0 → 100.0" in text and "+25.0%" in text and "-20.0%" in text
    assert "12,000 → 9,600" in text
    assert text.count("not comparable") == 2


def test_micro_rows_compare_where_both_measured() -> None:
    a = micro(
        micro_row("json", "dumps", "json", "small", 2000.0),
        micro_row("json", "dumps", "orjson", "small", 400.0),
        micro_row("greenlet", "switch", "greenlet", None, 100.0),
    )
    b = micro(
        micro_row("greenlet", "switch", "greenlet", None, 90.0),
        micro_row("json", "dumps", "orjson", "small", 500.0),
        micro_row("json", "loads", "orjson", "small", 700.0),  # only in B
    )
    changes = compare_micro(a, b)
    assert [(c.after["case"], c.after["variant"]) for c in changes] == [
        ("switch", "greenlet"),
        ("dumps", "orjson"),
    ]
    assert [c.change_pct for c in changes] == [pytest.approx(-10.0), pytest.approx(25.0)]
    console = Console(record=True, width=200)
    console.print(micro_table(changes, "t"))
    text = console.export_text()
    assert "-10.0%" in text and "+25.0%" in text and "loads" not in text


def test_documents_are_checked() -> None:
    assert check_document(BASELINE, "a.json") is BASELINE
    bad_docs: list[Any] = [[], {"schema": "wsprof.load/1"}, {"variants": []}]
    for bad in bad_docs:
        with pytest.raises(WsprofError, match=r"a\.json: not a wsprof result"):
            check_document(bad, "a.json")
    with pytest.raises(WsprofError, match=r"cannot compare a wsprof\.scenario/1 result with"):
        check_pair(BASELINE, micro())


def _write(path: Path, doc: Any) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_the_command_exits_1_on_a_regression_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write(tmp_path / "a.json", BASELINE)
    assert main(["compare", a, _write(tmp_path / "b.json", CANDIDATE)]) == 1
    assert "slower" in capsys.readouterr().out
    assert main(["compare", a, a]) == 0
    m = _write(tmp_path / "m.json", micro(micro_row("json", "dumps", "json", "small", 1.0)))
    assert main(["compare", m, m]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"schema": "other"}), "not a wsprof result"),
        (json.dumps(micro()), "cannot compare"),
    ],
)
def test_the_command_refuses_bad_input_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    a = _write(tmp_path / "a.json", BASELINE)
    bad = tmp_path / "b.json"
    bad.write_text(content)
    assert main(["compare", a, str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsprof: error: ") and err.count("\n") == 1 and message in err


def _brute_p(a: list[float], b: list[float]) -> float:
    """The permutation p of the rank sum by listing every split: what the exact test counts."""
    pooled = [*a, *b]
    ranks = [sum(x < y for x in pooled) + (sum(x == y for x in pooled) + 1) / 2 for y in pooled]
    mean = len(a) * (len(pooled) + 1) / 2
    observed = abs(sum(ranks[: len(a)]) - mean)
    splits = list(itertools.combinations(range(len(pooled)), len(a)))
    hits = sum(abs(sum(ranks[i] for i in s) - mean) >= observed - 1e-9 for s in splits)
    return hits / len(splits)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=6),
    st.lists(st.integers(0, 6), min_size=1, max_size=6),
)
def test_the_exact_rank_test_counts_every_split(a: list[int], b: list[int]) -> None:
    fa, fb = [float(x) for x in a], [float(x) for x in b]
    assert mann_whitney_p(fa, fb) == pytest.approx(_brute_p(fa, fb))


def test_rank_test_known_values() -> None:
    assert mann_whitney_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    assert mann_whitney_p([1.1, 2.3, 3.2, 4.5, 2.2], [2.5, 6, 3.7, 8, 5.5]) == pytest.approx(
        14 / 252  # scipy.stats.mannwhitneyu(..., method="exact"): 0.0556
    )
    assert mann_whitney_p([5.0] * 4, [5.0] * 4) == 1.0
    assert min_p_value(3, 3) == pytest.approx(0.1) and min_p_value(4, 4) < 0.05


def test_share_helpers() -> None:
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.404, abs=0.001) and hi == pytest.approx(0.596, abs=0.001)
    assert wilson_interval(0, 600)[0] == 0.0 and two_proportion_p(0, 10, 0, 10) == 1.0
    assert two_proportion_p(300, 600, 200, 600) < 1e-6
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_three_windows_each_cannot_reach_significance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _write(tmp_path / "a.json", scenario(variant("sio", 40.0, 1.0, 15_000, n=3)))
    b = _write(tmp_path / "b.json", scenario(variant("sio", 80.0, 1.0, 8_000, n=3)))
    assert main(["compare", a, b]) == 3
    out = capsys.readouterr().out
    assert "unknown (3+3 windows)" in out and "+100.0%" in out


def test_fail_above_gates_only_significant_regressions_beyond_it(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", BASELINE)
    b = _write(tmp_path / "b.json", CANDIDATE)  # orjson +25 %, significant
    assert main(["compare", a, b, "--fail-above", "30"]) == 0
    assert main(["compare", a, b, "--fail-above", "20"]) == 1
    assert main(["compare", a, b, "--fail-above", "0"]) == 1
    assert main(["compare", b, a, "--fail-above", "0"]) == 1  # b → a: msgpack +50 % back


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"python": "3.12.1"}, "python '3.11.7' vs '3.12.1'"),
        ({"cpu_count": 8}, "cpu_count 2 vs 8"),
        ({"server_cpu": None}, "server_cpu 1 vs None"),
        ({"packages": {"orjson": "3.11.0"}}, "orjson 3.10.0 vs 3.11.0"),
    ],
)
def test_different_environments_are_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: dict[str, Any], named: str
) -> None:
    a = _write(tmp_path / "a.json", BASELINE)
    b = _write(tmp_path / "b.json", {**BASELINE, "env": {**ENV, **edit}})
    assert main(["compare", a, b]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsprof: error: the results come from different environments")
    assert err.count("\n") == 1 and named in err and "--force" in err
    assert main(["compare", a, b, "--force"]) == 0
    assert named in capsys.readouterr().err
    no_env = {k: v for k, v in BASELINE.items() if k != "env"}
    assert main(["compare", a, _write(tmp_path / "c.json", no_env)]) == 2
    assert "no env block in B" in capsys.readouterr().err


def _profiled(cpu: float, samples: dict[str, int]) -> dict[str, Any]:
    v = variant("sio", cpu, 1.0, 10_000)
    total = sum(samples.values())
    v["profile_samples"] = total
    v["layers"] = {
        k: {"share": n / total, "samples": n, "us_per_msg": cpu * n / total}
        for k, n in samples.items()
    }
    return v


def test_layers_are_tested_by_their_samples(capsys: pytest.CaptureFixture[str]) -> None:
    a = scenario(_profiled(100.0, {"json": 300, "event-loop": 500, "other": 200}))
    b = scenario(_profiled(100.0, {"json": 150, "event-loop": 640, "other": 210}))
    layers = {c.layer: c for c in compare_layers(compare_scenarios(a, b))}
    assert layers["json"].verdict == "smaller share"
    assert layers["event-loop"].verdict == "larger share"
    assert layers["other"].verdict == "not significant"  # 20 % → 21 % of 1,000 samples
    lo, hi = layers["json"].interval(1)
    assert lo < 0.15 < hi
    console = Console(record=True, width=200)
    console.print(layer_table(list(layers.values()), "t"))
    text = console.export_text()
    assert "30.0% [" in text and "15.0% [" in text and "smaller share" in text


def test_throughput_is_tested_where_both_results_list_its_windows() -> None:
    a, b = variant("sio", 40.0, 1.0, 15_000), variant("sio", 40.0, 1.0, 9_000)
    (change,) = compare_scenarios(scenario(a), scenario(b))
    assert change.throughput_p is None and change.verdict == "not significant"
    a["throughput"], b["throughput"] = spread(15_000, 100), spread(9_000, 100)
    (change,) = compare_scenarios(scenario(a), scenario(b))
    assert change.throughput_p == pytest.approx(2 / 252)
    assert change.verdict == "not significant"  # the verdict is server CPU per message


def test_a_contended_run_is_noted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    busy = {**BASELINE, "contention": {"detected": True, "variants": ["orjson"]}}
    a, b = _write(tmp_path / "a.json", BASELINE), _write(tmp_path / "b.json", busy)
    assert main(["compare", a, b]) == 0
    err = capsys.readouterr().err
    assert "b.json: other processes shared the machine during orjson" in err
    assert "a.json" not in err
