"""`wsprof compare` on small fixed documents: scenario and micro results, significance, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wsprof.cli import main
from wsprof.errors import WsprofError
from wsprof.report.compare import (
    check_document,
    check_pair,
    compare_micro,
    compare_scenarios,
    micro_table,
    regressions,
    scenario_table,
    significant,
)


def spread(median: float, mad: float, n: int = 5) -> dict[str, Any]:
    return {"median": median, "mad": mad, "n": n}


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
    return {"schema": "wsprof.scenario/1", "scenario": "tiny", "variants": list(variants)}


def micro_row(
    layer: str, case: str, variant: str, payload: str | None, ns: float
) -> dict[str, Any]:
    return {"layer": layer, "case": case, "variant": variant, "payload": payload, "ns_per_op": ns}


def micro(*rows: dict[str, Any]) -> dict[str, Any]:
    return {"schema": "wsprof.micro/1", "results": list(rows)}


BASELINE = scenario(
    variant("json", 100.0, 2.0, 10_000),
    variant("orjson", 80.0, 2.0, 12_000),
    variant("msgpack", 90.0, 2.0, 11_000),
    variant("gone", 50.0, 1.0, 9_000),
    variant("broken", 70.0, 1.0, 9_000, status="failed"),
)
CANDIDATE = scenario(
    variant("json", 103.0, 2.0, 9_800),  # +3 %, inside 3 x (2 + 2) MAD: same
    variant("orjson", 100.0, 2.0, 9_600),  # +25 %: slower
    variant("msgpack", 60.0, 2.0, 16_500),  # -33 %: faster
    variant("new", 40.0, 1.0, 20_000),  # not in the baseline
    variant("broken", 70.0, 1.0, 9_000),  # failed in the baseline
)


def test_significance_needs_more_than_both_spreads_and_repeats() -> None:
    assert not significant(spread(100, 2), spread(111, 2))  # 11 < 3 x 4 = 12
    assert significant(spread(100, 2), spread(113, 2))  # 13 > 12
    assert significant(spread(100, 2), spread(87, 2))  # either direction
    assert not significant(spread(100, 0, n=1), spread(200, 0, n=5))  # one window: no spread
    assert not significant(spread(100, 0, n=5), spread(200, 0, n=1))


def test_scenario_variants_are_flagged() -> None:
    changes = compare_scenarios(BASELINE, CANDIDATE)
    assert [c.name for c in changes] == ["json", "orjson", "msgpack", "new", "broken"]
    verdicts = {c.name: c.verdict for c in changes}
    assert verdicts == {
        "json": "same (within spread)",
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
    for bad in ([], {"schema": "wsprof.load/1"}, {"variants": []}):
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
