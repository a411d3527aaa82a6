"""wsprof tune serialization: the samples parser, fidelity, advice, and one real quick run."""

from __future__ import annotations

import json
import math
import time
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsprof.cli import main
from wsprof.errors import WsprofError
from wsprof.micro.catalog import Row, all_rows
from wsprof.micro.samples import (
    MAX_BYTES,
    Sample,
    load_samples,
    parse_samples,
    shipped_samples,
)
from wsprof.micro.serializers import CODECS
from wsprof.tune import advice, fidelity

SCHEMA = json.loads(resources.files("wsprof").joinpath("schemas/tune.schema.json").read_text())
BIG = 2**70

# JSON values as Python's json reads them: any int, any float (NaN, inf), str, nesting.
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _same(a: list[Any], b: list[Any]) -> bool:
    return fidelity.difference(a, b) is None


@given(st.lists(json_values, min_size=1, max_size=6))
def test_a_json_array_is_its_elements(values: list[Any]) -> None:
    samples = parse_samples(json.dumps(values))
    assert _same([s.value for s in samples], values)
    assert [s.label for s in samples] == [f"#{i + 1}" for i in range(len(values))]


@given(
    st.lists(st.dictionaries(st.text(max_size=8), json_values, max_size=4), min_size=1)
    | st.lists(json_values, min_size=2, max_size=6),
    st.sampled_from(["\n", "\r\n", "\n\n"]),
)
def test_json_lines_are_one_message_each(values: list[Any], newline: str) -> None:
    text = newline.join(json.dumps(v) for v in values) + newline
    samples = parse_samples(text)
    assert _same([s.value for s in samples], values)
    assert samples[0].label.startswith("#1 (line 1")


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_any_text_parses_or_is_one_wsprof_error(text: str) -> None:
    try:
        samples = parse_samples(text)
    except WsprofError as exc:
        assert "\n" not in str(exc)
    else:
        assert samples and all(isinstance(s, Sample) for s in samples)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no samples"),
        ("  \n\n", "no samples"),
        ("[]", "holds no samples"),
        ('{"a": 1}\n{"a": \n', "line 2 is not JSON"),
        ("[1, 2", "line 1 is not JSON"),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(WsprofError, match=message):
        parse_samples(text, "f.json")


def test_the_default_samples_are_the_shipped_json_payloads() -> None:
    assert [s.label for s in shipped_samples()] == ["small", "medium", "large"]


def test_serializer_rows_are_not_in_wsprof_micro() -> None:
    assert not [r for r in all_rows() if r.layer == "serializer"]
    assert Row.parse("serializer/dumps/msgspec/samples") == Row(
        "serializer", "dumps", "msgspec", "samples"
    )


@pytest.mark.parametrize("name", list(CODECS))
def test_codecs_write_what_python_socketio_writes(name: str) -> None:
    """The timed calls are python-socketio's own: same bytes as its Packet classes."""
    import engineio.json
    import ujson
    from socketio import msgpack_packet, packet

    from wsprof.micro.serializers import encode_input, wire_bytes
    from wsprof.servers import orjson_shim

    codec = CODECS[name]
    dumps, _ = codec.build()
    for sample in shipped_samples():
        wire = dumps(encode_input(codec, sample.value))
        if name == "msgpack":
            ours = msgpack_packet.MsgPackPacket(
                packet.EVENT, data=["message", sample.value], namespace="/"
            ).encode()
            assert wire == ours and wire_bytes(codec, wire) == len(ours)
            continue
        module = {"orjson-shim": orjson_shim, "ujson": ujson}.get(name, engineio.json)
        klass = type("P", (packet.Packet,), {"json": module})
        ours = "4" + klass(packet.EVENT, data=["message", sample.value], namespace="/").encode()
        assert json.loads(wire) == json.loads(ours[2:])
        assert wire_bytes(codec, wire) == len(ours.encode())


def _problems(name: str, *values: Any) -> list[str]:
    return fidelity.check(CODECS[name], [Sample(f"s{i}", v) for i, v in enumerate(values)])


def test_a_2_pow_70_integer_is_flagged_where_it_breaks() -> None:
    sample = {"id": BIG, "text": "hi"}
    assert _problems("json", sample) == []
    assert _problems("ujson", sample) == []
    (orjson_problem,) = _problems("orjson-shim", sample)
    assert (
        orjson_problem.startswith("sample s0: dumps raises")
        and "$.id: int beyond 64 bits" in orjson_problem
    )
    assert "$.id" in _problems("msgpack", sample)[0]


def test_integers_javascript_rounds_are_a_client_note() -> None:
    samples = [Sample("a", {"ok": 2**53 - 1}), Sample("b", {"xs": [1, -(2**60)]}), Sample("c", BIG)]
    (note,) = fidelity.client_notes(samples)
    assert note.startswith("sample b (and 1 more samples): $.xs[1] is an integer beyond 2^53")
    assert fidelity.client_notes(samples[:1]) == []


def test_a_byte_order_mark_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf[{"a": 1}]')
    assert [s.value for s in load_samples(path)] == [{"a": 1}]


@pytest.mark.parametrize("constant", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_break_every_json_wire(constant: float) -> None:
    for name, codec in CODECS.items():
        problems = _problems(name, {"x": constant})
        if codec.wire == "msgpack":
            assert problems == []
        else:
            assert len(problems) == 1, name


def test_type_changes_are_changes() -> None:
    assert "tuple (1, 2) came back as list" in _problems("json", {"t": (1, 2)})[0]
    assert "bytes b'x' came back as str" in _problems("msgspec", {"b": b"x"})[0]
    assert _problems("msgpack", {"b": b"x"}) == []
    assert "key 1 (int) is missing" in _problems("orjson-shim", {1: "a"})[0]
    assert "float -0.0" not in "".join(_problems("json", [-0.0, 1.0, True]))
    assert fidelity.difference(True, 1) is not None
    assert fidelity.difference(1.0, 1) is not None
    assert fidelity.difference(-0.0, 0.0) is not None


def test_problems_are_capped_and_counted() -> None:
    problems = _problems("orjson-shim", *([BIG] * (fidelity.MAX_PROBLEMS + 5)))
    assert len(problems) == fidelity.MAX_PROBLEMS + 1
    assert problems[-1] == "... and 5 more samples"


def _result(name: str, dumps: float, loads: float, compatible: bool = True) -> dict[str, Any]:
    return {
        "serializer": name,
        "wire": CODECS[name].wire,
        "dumps_ns": dumps,
        "loads_ns": loads,
        "compatible": compatible,
    }


def test_the_recommendation_is_the_cheapest_compatible_with_its_client_change() -> None:
    results = [
        _result("json", 3000, 3000),
        _result("orjson-shim", 300, 300, compatible=False),
        _result("ujson", 1000, 1000),
        _result("msgpack", 800, 800),
    ]
    rec = advice.recommendation(results)
    assert rec is not None and rec["serializer"] == "msgpack"
    assert rec["speedup_vs_json"] == pytest.approx(6000 / 1600)
    assert 'serializer="msgpack"' in rec["server"] and "socket.io-msgpack-parser" in rec["client"]
    assert rec["without_client_change"]["serializer"] == "ujson"
    assert rec["within_noise"] == []
    results[2] |= {"dumps_spread_ns": 200, "loads_spread_ns": 200}
    assert advice.recommendation(results)["within_noise"] == ["ujson"]
    assert "json=ujson" in rec["without_client_change"]["server"]


def test_the_projection_scales_the_attributed_json_layer() -> None:
    scenario = {
        "scenario": "json-encoding",
        "plan": {"payload": "small"},
        "variants": [
            {
                "name": "a",
                "options": {"serializer": "json"},
                "server_cpu_us_per_msg": 100.0,
                "layers": {"json": {"us_per_msg": 10.0}},
            },
            {"name": "raw", "options": {}, "server_cpu_us_per_msg": 50.0, "layers": {}},
        ],
    }
    projected = advice.projection(
        scenario, [_result("json", 4000, 4000), _result("ujson", 1000, 1000)]
    )
    a, raw = projected["variants"]
    assert projected["to"] == "ujson"
    assert a["saving_us_per_msg"] == pytest.approx(7.5)
    assert a["saving_share_of_cpu"] == pytest.approx(0.075)
    assert raw["saving_us_per_msg"] is None
    assert any("'small'" in line for line in projected["assumptions"])


def test_a_quick_run_on_user_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    samples = tmp_path / "samples.jsonl"
    samples.write_text(f'{{"type": "chat", "text": "hello", "n": 1}}\n{{"id": {BIG}}}\n')
    scenario = tmp_path / "scenario.json"
    scenario.write_text(
        json.dumps(
            {
                "schema": "wsprof.scenario/1",
                "scenario": "t",
                "plan": {"payload": "small"},
                "variants": [
                    {
                        "name": "j",
                        "options": {"serializer": "json"},
                        "server_cpu_us_per_msg": 80.0,
                        "layers": {"json": {"us_per_msg": 8.0}},
                    }
                ],
            }
        )
    )
    out = tmp_path / "tune.json"
    started = time.monotonic()
    code = main(
        [
            "tune",
            "serialization",
            "--samples",
            str(samples),
            "--quick",
            "--scenario-result",
            str(scenario),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    assert time.monotonic() - started < 240
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    by_name = {r["serializer"]: r for r in doc["results"]}
    assert list(by_name) == list(CODECS)
    for r in doc["results"]:
        assert r["dumps_ns"] > 0 and r["loads_ns"] > 0 and r["bytes"] > 0
    assert by_name["json"]["compatible"]
    for name in ("orjson-shim", "msgpack"):
        assert not by_name[name]["compatible"]
        assert by_name[name]["problems"][0].startswith("sample #2 (line 2): dumps raises")
        assert by_name[name]["samples_timed"] == 1
    assert doc["recommendation"]["serializer"] not in ("orjson-shim", "msgpack")
    assert doc["projection"]["variants"][0]["saving_us_per_msg"] is not None
    printed = capsys.readouterr().out
    assert "best compatible choice" in printed and "int beyond 64 bits" in printed
    assert doc["client_notes"] and "$.id is an integer beyond 2^53" in doc["client_notes"][0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--samples", "/nonexistent.json"], "cannot read samples /nonexistent.json"),
        (["--samples", "/dev/zero"], f"larger than {MAX_BYTES // 2**20} MiB"),
        (["--scenario-result", "/dev/null"], "cannot read scenario result /dev/null"),
        (["--json", "/proc/x.json"], "cannot write /proc/x.json"),
    ],
)
def test_bad_input_is_one_line_before_measuring(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert main(["tune", "serialization", *args]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_a_wrong_schema_scenario_result_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "micro.json"
    other.write_text(json.dumps({"schema": "wsprof.micro/1", "results": []}))
    assert main(["tune", "serialization", "--scenario-result", str(other)]) == 2
    assert "is not a wsprof.scenario/1 result" in capsys.readouterr().err
