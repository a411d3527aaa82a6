"""Folded parsing, layer rules, attribution, flamegraph and speedscope output."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsprof.cli import main
from wsprof.errors import WsprofError
from wsprof.profiling.attribute import attribute, layer_us_per_msg
from wsprof.profiling.flamegraph import diff_flamegraph_svg, flamegraph_svg
from wsprof.profiling.folded import (
    FoldedParseError,
    Stack,
    format_folded,
    parse_folded,
    parse_frame,
    read_folded,
)
from wsprof.profiling.layers import LAYERS, RulesError, load_rules, rules_from_text
from wsprof.profiling.speedscope import speedscope_document

FIXTURES = Path(__file__).parent / "fixtures" / "folded"
SVG = "{http://www.w3.org/2000/svg}"


def samples(attribution, layer: str) -> int:
    return attribution.layers[layer].samples


# --- folded parsing ---------------------------------------------------------


def test_parse_frame_shapes_seen_in_real_recordings() -> None:
    f = parse_frame("encode (socketio/packet.py:62)")
    assert (f.name, f.file, f.line, f.kind) == ("encode", "socketio/packet.py", 62, "python")
    assert parse_frame("ABCMeta.__instancecheck__ (<frozen abc>:119)").kind == "python"
    assert parse_frame("Thread.run (threading.py)").line is None
    assert parse_frame("run_forever (loop.c:33192)").kind == "native"
    assert parse_frame("0x7fbcee84524a (libc.so.6)").file == "libc.so.6"
    assert parse_frame('process 12:"python -m x"').kind == "process"
    assert parse_frame("thread (2437): MainThread").kind == "thread"
    assert parse_frame("thread (0x7f3a2b4c5740)").kind == "thread"
    odd = parse_frame("f (/home/me/proj (copy)/x.py:3)")
    assert (odd.name, odd.file, odd.line) == ("f", "/home/me/proj (copy)/x.py", 3)


def test_process_cmdline_with_semicolon_stays_one_frame() -> None:
    stacks = read_folded(FIXTURES / "native.folded")
    assert stacks[0].frames[0] == 'process 2437:"/tmp/venv/bin/python -c import a; a.run()"'
    assert stacks[0].frames[1] == "thread (2437): MainThread"
    assert [s.count for s in stacks] == [5, 3, 2, 7, 1]


def test_malformed_line_names_file_line_number_and_line() -> None:
    with pytest.raises(FoldedParseError) as err:
        read_folded(FIXTURES / "malformed.folded")
    assert err.value.line_no == 3
    assert "malformed.folded:3" in str(err.value)
    assert "a (x.py:1);c (z.py:3) three" in str(err.value)


@pytest.mark.parametrize(
    "text",
    ["nocount", "a;b -3", "a;;b 3", ";a 1", " 5", "a;b 1.5", "a;b ²"],
)
def test_bad_lines_raise_the_parse_error(text: str) -> None:
    with pytest.raises(FoldedParseError, match="line 1"):
        parse_folded(text)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_random_text_parses_or_raises_the_clear_error(text: str) -> None:
    try:
        stacks = parse_folded(text)
    except FoldedParseError as exc:
        assert exc.line_no >= 1
        assert str(exc).startswith(f"line {exc.line_no}: ")
    else:
        assert all(s.frames and s.count >= 0 for s in stacks)


_frame = st.text(alphabet="abcdefgXYZ_.<>/: ()0123456789", min_size=1, max_size=20).filter(
    lambda s: s == s.strip()
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(_frame, min_size=1, max_size=8), st.integers(0, 10**9)), max_size=20
    )
)
def test_format_then_parse_round_trips(raw: list[tuple[list[str], int]]) -> None:
    stacks = [Stack(tuple(frames), count) for frames, count in raw]
    assert parse_folded(format_folded(stacks)) == stacks
    for s in stacks:
        for frame in s.frames:
            parse_frame(frame)


# --- layers and attribution -------------------------------------------------


def test_every_default_layer_from_hand_written_stacks() -> None:
    a = attribute(read_folded(FIXTURES / "layers.folded"))
    expected = {
        "json": 3 + 47,
        "socketio-framing": 5,
        "socketio-dispatch": 7,
        "broker": 53,
        "websocket-protocol": 11 + 13,
        "server-framework": 17,
        "event-loop": 19,
        "greenlet-hub": 53,
        "greenlet-switching": 23,
        "kernel-io": 29 + 31,
        "application": 37,
        "other": 41,
    }
    assert {k: v.samples for k, v in a.layers.items()} == expected
    assert a.idle_samples == 43
    assert a.total_samples == sum(expected.values())
    assert sum(ls.share for ls in a.layers.values()) == pytest.approx(1.0)


def test_idle_is_included_only_when_asked() -> None:
    stacks = read_folded(FIXTURES / "layers.folded")
    with_idle = attribute(stacks, idle=True)
    assert samples(with_idle, "idle") == 43
    assert with_idle.total_samples == attribute(stacks).total_samples + 43


def test_native_frames_pass_time_to_the_caller_unless_a_rule_claims_them() -> None:
    a = attribute(read_folded(FIXTURES / "native.folded"))
    assert a.idle_samples == 5  # epoll_pwait
    assert samples(a, "kernel-io") == 3  # write (libc.so.6)
    assert samples(a, "json") == 2 + 1  # malloc under orjson; _json.c
    assert samples(a, "websocket-protocol") == 7  # Py_DECREF -> <frozen abc> -> websockets


def test_user_rules_take_precedence_and_may_add_layers() -> None:
    stacks = read_folded(FIXTURES / "precedence.folded")
    default = attribute(stacks)
    assert samples(default, "socketio-framing") == 7
    assert samples(default, "other") == 4
    user = attribute(stacks, load_rules(FIXTURES / "precedence_rules.toml"))
    assert samples(user, "json") == 5
    assert samples(user, "socketio-framing") == 2
    assert samples(user, "auth") == 4
    assert list(user.layers)[-2:] == ["auth", "other"]


def test_a_layer_only_a_user_rule_names_is_announced() -> None:
    user = load_rules(FIXTURES / "precedence_rules.toml")
    assert user.new_layers == ("auth",)
    notice = user.new_layers_notice()
    assert notice is not None
    assert "'auth'" in notice and "precedence_rules.toml" in notice and "\n" not in notice
    assert load_rules(None).new_layers == () and load_rules(None).new_layers_notice() is None


def test_attribute_command_says_when_rules_add_a_layer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rules = FIXTURES / "precedence_rules.toml"
    assert main(["attribute", str(FIXTURES / "precedence.folded"), "--rules", str(rules)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("wsprof: note: ") and captured.err.count("\n") == 1
    assert "'auth'" in captured.err
    assert "auth" in captured.out  # and the table lists it


def test_the_layer_list_is_read_from_layers_toml() -> None:
    from wsprof.profiling.layers import IDLE, LAYER_INFO, OTHER, layer_colour

    names = [layer.name for layer in LAYER_INFO]
    assert list(LAYERS) == [n for n in names if n != IDLE]
    assert LAYERS[-1] == OTHER and IDLE in names
    assert load_rules(None).layers == LAYERS
    for layer in LAYER_INFO:
        assert layer.description
        assert layer_colour(layer.name) == layer.colour
    colours = [layer.colour for layer in LAYER_INFO]
    assert len(set(colours)) == len(colours)
    # A new layer gets a colour of its own, the same on every run.
    assert layer_colour("auth") == layer_colour("auth") not in colours


def test_replacing_the_defaults() -> None:
    rs = rules_from_text('extends_defaults = false\n[[rule]]\nlayer = "x"\npath = "a.py"\n')
    a = attribute(parse_folded("f (a.py:1) 2\ng (uvicorn/server.py:1) 3\n"), rs)
    assert samples(a, "x") == 2 and samples(a, "other") == 3


def test_path_globs_anchor_at_directory_boundaries() -> None:
    rs = rules_from_text('extends_defaults = false\n[[rule]]\nlayer = "j"\npath = "json/"\n')
    a = attribute(
        parse_folded(
            "f (json/encoder.py:1) 1\nf (lib/python3.11/json/x.py:2) 2\nf (orjson/x.py:1) 4\n"
        ),
        rs,
    )
    assert samples(a, "j") == 3 and samples(a, "other") == 4


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[[rule]]\nlayer = 'json'\n", "rule[0]: a rule needs"),
        (
            "[[rule]]\nlayer = 'json'\npath = 'a.py'\ncolour = 'red'\n",
            "rule[0].colour: unknown key",
        ),
        ("[[rule]]\npath = 'a.py'\n", "rule[0].layer"),
        ("[[rule]]\nlayer = 'json'\npath = 'a.py'\nline = '9-3'\n", "rule[0].line"),
        ("[[rule]]\nlayer = 'json'\nfunction = 'f'\nline = 3\n", "rule[0].line"),
        ("[[rule]]\nlayer = 'json'\npath = 3\n", "rule[0].path"),
        ("[[rule]]\nlayer = 'json'\npath = 'a.py'\nframe = 'c'\n", "rule[0].frame"),
        ("rules = 1\n", "rules: unknown top-level key"),
        ("[[rule]\n", "invalid TOML"),
    ],
)
def test_malformed_rules_name_the_file_and_key(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as err:
        load_rules(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_attribution_json_shape() -> None:
    doc = attribute(read_folded(FIXTURES / "precedence.folded")).to_json()
    assert doc["schema"] == "wsprof.attribution/1"
    assert doc["total_samples"] == 11
    assert list(doc["layers"]) == list(LAYERS)
    assert doc["layers"]["json"] == {
        "samples": 0,
        "share": 0.0,
        "share_ci95": [0.0, pytest.approx(0.2588, abs=1e-4)],
    }
    assert doc["idle"] == {"samples": 0, "included": False}
    json.dumps(doc)


def test_layer_us_per_msg_applies_shares_to_clean_cpu() -> None:
    a = attribute(parse_folded("f (json/x.py:1) 1\ng (websockets/y.py:1) 3\n"))
    us = layer_us_per_msg(a, 40.0)
    assert us["json"] == pytest.approx(10.0)
    assert us["websocket-protocol"] == pytest.approx(30.0)
    assert sum(us.values()) == pytest.approx(40.0)


def test_empty_input_has_zero_shares() -> None:
    a = attribute([])
    assert a.total_samples == 0 and all(ls.share == 0.0 for ls in a.layers.values())


# --- outputs ------------------------------------------------------------------


def test_flamegraph_svg_is_xml_with_frames_tooltips_and_legend() -> None:
    stacks = read_folded(FIXTURES / "layers.folded") + parse_folded('weird <&"\x01> (a&b.py:1) 2\n')
    root = ET.fromstring(flamegraph_svg(stacks))
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert any(t.startswith("Packet.encode (socketio/packet.py:64)") for t in titles)
    assert any(t.startswith('weird <&"') for t in titles)
    assert any("layer: json" in t for t in titles)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"json", "kernel-io", "idle", "Reset zoom"} <= texts
    assert root.find(f"{SVG}script") is not None


def test_diff_flamegraph_colours_growth_red_and_shrink_blue() -> None:
    a = parse_folded("main (app.py:1);grow (app.py:2) 10\nmain (app.py:1);shrink (app.py:3) 30\n")
    b = parse_folded("main (app.py:1);grow (app.py:2) 60\nmain (app.py:1);shrink (app.py:3) 30\n")
    root = ET.fromstring(diff_flamegraph_svg(a, b, messages_a=1000, messages_b=1000))
    fills = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("class") == "f":
            title = g.find(f"{SVG}title")
            assert title is not None and "A: " in (title.text or "") and "B: " in (title.text or "")
            fills[g.get("data-n")] = g.find(f"{SVG}rect").get("fill")
    assert fills["grow (app.py:2)"].startswith("#ff")
    assert fills["shrink (app.py:3)"] == "#ebebeb"
    # Per sample, "shrink" fell from 75% to 33% of the samples: blue.
    root = ET.fromstring(diff_flamegraph_svg(a, b))
    for g in root.iter(f"{SVG}g"):
        if g.get("data-n") == "shrink (app.py:3)":
            assert g.find(f"{SVG}rect").get("fill").endswith("ff")


def test_speedscope_document_shape() -> None:
    stacks = read_folded(FIXTURES / "native.folded")
    doc = speedscope_document(stacks, name="t")
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    (profile,) = doc["profiles"]
    assert profile["type"] == "sampled"
    assert len(profile["samples"]) == len(profile["weights"]) == len(stacks)
    assert profile["endValue"] == sum(profile["weights"]) == 18
    frames = doc["shared"]["frames"]
    assert all(0 <= i < len(frames) for s in profile["samples"] for i in s)
    first = frames[profile["samples"][0][-1]]
    assert first == {"name": "epoll_pwait", "file": "libc.so.6"}
    json.dumps(doc)


# --- commands -------------------------------------------------------------------


def test_attribute_command_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.json"
    assert main(["attribute", str(FIXTURES / "layers.folded"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["layers"]["json"]["samples"] == 50
    assert "websocket-protocol" in capsys.readouterr().out


def test_attribute_command_bad_input_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attribute", str(FIXTURES / "malformed.folded")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wsprof: error: ") and err.count("\n") == 1


def test_diff_command_default_output_next_to_b(tmp_path: Path) -> None:
    a, b = tmp_path / "a.folded", tmp_path / "b.folded"
    a.write_text("f (json/x.py:1) 4\n")
    b.write_text("f (json/x.py:1) 2\ng (websockets/y.py:1) 2\n")
    assert main(["diff", str(a), str(b)]) == 0
    ET.parse(tmp_path / "b.diff.svg")
    with pytest.raises(SystemExit) as exit_info:
        main(["diff", str(a), str(b), "--messages-a", "0", "--messages-b", "5"])
    assert exit_info.value.code == 2


def test_wsprof_error_base() -> None:
    assert issubclass(FoldedParseError, WsprofError) and issubclass(RulesError, WsprofError)


def test_process_cmdline_spanning_lines_is_one_stack() -> None:
    # What py-spy --subprocesses writes for a `python -c` server (seen for real).
    text = (
        'process 7:"python -c \nimport x\nx.run()";<module> (<string>:3);f (websockets/a.py:1) 4\n'
    )
    (stack,) = parse_folded(text)
    assert stack.frames[0] == 'process 7:"python -c \nimport x\nx.run()"'
    assert stack.count == 4
    assert parse_folded(format_folded([stack])) == [stack]
    assert attribute([stack]).layers["websocket-protocol"].samples == 4


def test_diff_lines_up_two_processes_of_different_variants():
    """Each variant runs as its own process: the diff must compare frames, not PIDs."""
    from wsprof.profiling.flamegraph import diff_flamegraph_svg
    from wsprof.profiling.folded import parse_folded

    a = parse_folded(
        'process 11:"python -m serve --stack a";main (srv.py:1);send (socket.py:5) 10\n'
    )
    b = parse_folded(
        'process 22:"python -m serve --stack b";main (srv.py:1);send (socket.py:5) 30\n'
    )
    svg = diff_flamegraph_svg(a, b, messages_a=10, messages_b=10)
    assert svg.count('data-n="main (srv.py:1)"') == 1
    assert svg.count('data-n="process"') == 1
    assert "process 11" not in svg and "process 22" not in svg
    # 10 vs 30 samples over 10 messages each: 1000 vs 3000 samples per 1k messages.
    assert (
        "A: 1000 samples per 1k messages&#10;B: 3000 samples per 1k messages&#10;delta: +2000"
        in svg
    )
