"""Issue 13 in `wsprof scenario`: bad scenario files, escaping names, shared run directories,
unwritable outputs, terminal escapes, file modes. Every subprocess has a wall-clock bound."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from rich.console import Console

from wsprof.errors import WsprofError
from wsprof.report.jsonout import check_json_target, write_json
from wsprof.report.scenario import render_scenario
from wsprof.scenario import runner as runner_module
from wsprof.scenario.contention import OtherLoad, _own_pids
from wsprof.scenario.files import ScenarioFileError, file_component, parse_scenario
from wsprof.scenario.runner import ScenarioRunner, claim_run_dir

BASE = """\
name = "tiny"
description = "one stack, tiny windows: a test, not a benchmark"
[load]
connections = 2
warmup_s = 0.1
capacity_window_s = 0.3
latency_window_s = 0.3
profile_window_s = 0.3
profile_rate_hz = 100
repeats = 1
[[variants]]
name = "raw"
stack = "starlette-raw"
options = { loop = "asyncio" }
"""

#: A scenario whose measuring would take minutes: a check that passes the test ran before it.
SLOW = BASE.replace("capacity_window_s = 0.3", "capacity_window_s = 600")


def _servers() -> set[int]:
    """Bundled servers started by this interpreter (not by another checkout's tests)."""
    return {
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if (cmd := p.info["cmdline"] or [])[:1] == [sys.executable]
        and "wsprof.servers.serve" in cmd
    }


def _wsprof(*args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsprof", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsprof: error: "), proc.stderr
    return lines[0]


def _file(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- item 1: NaN, infinity and absurd magnitudes, before any server starts ---------------

BAD_VALUES = [
    ("warmup_s", "nan"),
    ("warmup_s", "inf"),
    ("warmup_s", "-5"),
    ("warmup_s", "1e300"),
    ("capacity_window_s", "nan"),
    ("capacity_window_s", "-inf"),
    ("capacity_window_s", "0"),
    ("capacity_window_s", "86400"),
    ("latency_window_s", "inf"),
    ("profile_window_s", "nan"),
    ("profile_window_s", "1e9"),
    ("latency_rate", "inf"),
    ("latency_rate", "nan"),
    ("latency_rate", "1e300"),
    ("latency_rate", '"fast"'),
    ("latency_load", "nan"),
    ("latency_load", "inf"),
    ("latency_load", "2"),
    ("connections", "100000"),
    ("connections", "9223372036854775807"),
    ("in_flight", "1000000"),
    ("repeats", "1000000000"),
    ("profile_rate_hz", "1000000"),
    ("connections", "2.5"),
]


@pytest.mark.parametrize("table", ["load", "quick"])
@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_every_numeric_key_refuses_nan_infinity_and_absurd_values(table, key, value):
    text = BASE.replace("[[variants]]", f"[{table}]\n{key} = {value}\n[[variants]]")
    if table == "load":
        text = BASE.replace("[load]\n", f"[load]\n{key} = {value}\n")
        text = "\n".join(
            line
            for i, line in enumerate(text.splitlines())
            if not (line.startswith(f"{key} =") and i > 3)
        )
    with pytest.raises(ScenarioFileError) as info:
        parse_scenario(text, "s.toml")
    assert str(info.value).startswith(f"s.toml: key '{table}.{key}': must be")


@pytest.mark.parametrize(("key", "value"), [("warmup_s", "nan"), ("latency_rate", "inf")])
def test_nan_or_inf_in_a_file_is_one_line_before_any_server(tmp_path, key, value):
    before = _servers()
    path = _file(tmp_path, SLOW.replace("repeats = 1", f"repeats = 1\n{key} = {value}"))
    if key == "warmup_s":
        path = _file(tmp_path, SLOW.replace("warmup_s = 0.1", f"warmup_s = {value}"))
    started = time.monotonic()
    line = _one_line_error(_wsprof("scenario", str(path), "--no-profile", "--out", str(tmp_path)))
    assert time.monotonic() - started < 20
    assert f"{path}: key 'load.{key}'" in line and f"not {value}" in line
    assert not (_servers() - before)


def test_limits_are_checked_with_the_files_key_names_before_servers_start(monkeypatch, tmp_path):
    """--repeats past the bound, or too few file descriptors: refused before a server starts."""
    started: list[str] = []

    class NoServer:
        def __init__(self, *args, **kwargs):
            started.append("server")

    monkeypatch.setattr(runner_module, "ServerProcess", NoServer)
    scenario = parse_scenario(BASE, "s.toml")
    with pytest.raises(WsprofError, match=r"--repeats must be at most 100, not 5000"):
        ScenarioRunner(scenario, out_dir=tmp_path, profile=False, repeats=5000).run()
    assert not started


def test_too_few_file_descriptors_name_the_scenario_file(tmp_path):
    path = _file(tmp_path, SLOW.replace("connections = 2", "connections = 5000"))

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    line = _one_line_error(
        _wsprof("scenario", str(path), "--no-profile", "--out", str(tmp_path), preexec_fn=low_limit)
    )
    assert line.startswith(f"wsprof: error: {path}: 5000 connections need")
    assert "--connections" not in line


# -- item 3: names never lead outside --out ------------------------------------------------


@pytest.mark.parametrize(
    ("where", "bad"),
    [
        ("variant", "../../evil"),
        ("variant", "/tmp/evil-abs"),
        ("variant", ".."),
        ("scenario", "../../up"),
        ("scenario", "/etc"),
        ("scenario", "a/b"),
    ],
)
def test_a_name_with_a_path_in_it_is_refused_and_nothing_is_written(tmp_path, where, bad):
    work = tmp_path / "work"
    work.mkdir()
    if where == "variant":
        text = BASE.replace('name = "raw"', f'name = "{bad}"')
        key = "variants[0].name"
    else:
        text = BASE.replace('name = "tiny"', f'name = "{bad}"')
        key = "name"
    path = _file(tmp_path, text)
    line = _one_line_error(
        _wsprof("scenario", str(path), "--quick", "--out", str(work / "out"), cwd=work)
    )
    assert f"key '{key}'" in line and "names files under --out" in line
    assert list(work.iterdir()) == []
    assert not Path("/tmp/evil-abs").exists()


@pytest.mark.parametrize("name", ["../../evil", "/abs/path", "..", ".", "", "a/b", "x\x1b[31m"])
def test_file_component_is_one_safe_path_component(name):
    safe = file_component(name)
    assert safe not in ("", ".", "..")
    assert "/" not in safe and "\x1b" not in safe
    assert not safe.startswith(".")


def test_run_directory_and_files_stay_under_out_even_for_unchecked_names(tmp_path):
    """A Scenario built in code skips the file's checks: the paths are still sanitised."""
    from wsprof.scenario.files import LoadPlan, Scenario, Variant

    scenario = Scenario(
        name="../../up",
        description="",
        question="",
        load=LoadPlan(),
        quick={},
        variants=(Variant("../../evil", "starlette-raw"),),
        source="code",
    )
    out = tmp_path / "out"
    runner = ScenarioRunner(scenario, out_dir=out, profile=False)
    assert runner.out_dir.resolve().is_relative_to(out.resolve())
    claimed = claim_run_dir(out / file_component(scenario.name), runner.run_id)
    assert claimed.resolve().is_relative_to(out.resolve())
    folded = claimed / f"{file_component(scenario.variants[0].name)}.folded"
    assert folded.resolve().parent == claimed.resolve()


# -- item 6: concurrent runs, contention ---------------------------------------------------


def test_run_directories_are_never_shared(tmp_path):
    dirs = [claim_run_dir(tmp_path / "s", "20260101T000000Z") for _ in range(3)]
    assert len({d.name for d in dirs}) == 3
    assert all(d.is_dir() for d in dirs)


def test_two_concurrent_runs_get_their_own_directories_and_see_each_other(tmp_path):
    if not runner_module.fastpath.available("_loadclient"):
        pytest.skip("needs the fast client")
    path = _file(
        tmp_path,
        BASE.replace("capacity_window_s = 0.3", "capacity_window_s = 1.5").replace(
            "latency_window_s = 0.3", "latency_window_s = 1.0"
        ),
    )
    before = _servers()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "wsprof",
                "scenario",
                str(path),
                "--out",
                str(tmp_path / "out"),
                "--json",
                str(tmp_path / f"r{i}.json"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    docs = [json.loads((tmp_path / f"r{i}.json").read_text()) for i in range(2)]
    out_dirs = {d["profiling"]["out_dir"] for d in docs}
    if None in out_dirs:
        pytest.skip("py-spy cannot attach here: no run directories to compare")
    assert len(out_dirs) == 2, "two runs shared a run directory"
    for doc in docs:
        folded = doc["variants"][0]["flamegraphs"]["folded"]
        assert Path(folded).parent == Path(doc["profiling"]["out_dir"])
        assert set(doc["contention"]) >= {"detected", "variants", "threshold_cores"}
        assert doc["variants"][0]["contention"]["windows"] == 3
    # Each run's server and client were the other's "other load".
    assert any(doc["contention"]["detected"] for doc in docs)
    assert any("contention:" in out for out, _ in results)
    assert not (_servers() - before)


def test_other_load_sees_a_busy_process_and_excludes_our_own():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert busy.pid in _own_pids(os.getpid())
        meter = OtherLoad(root=idle.pid).start()  # as seen from a process that is not busy's
        time.sleep(1.0)
        assert meter.stop() >= 0.3
    finally:
        busy.kill()
        idle.kill()
        busy.wait(5)
        idle.wait(5)


def test_contention_is_said_in_the_output():
    doc = {
        "scenario": "tiny",
        "description": "d",
        "question": "",
        "client": "fast",
        "complete": True,
        "profiling": {"enabled": False, "available": False, "note": None},
        "plan": {"connections": 1, "in_flight": 1, "payload": "small", "repeats": 1},
        "latency_rate_msgs_per_s": None,
        "contention": {"detected": True, "variants": ["raw"], "threshold_cores": 0.25},
        "variants": [],
    }
    console = Console(record=True, width=200)
    render_scenario(doc, console)
    assert "contention:" in console.export_text()


def test_text_from_a_file_is_shown_as_text_not_markup_or_escapes():
    doc = {
        "scenario": "tiny",
        "description": "[bold red]not markup[/]",
        "question": "",
        "client": "fast",
        "complete": False,
        "profiling": {"enabled": False, "available": False, "note": None},
        "plan": {"connections": 1, "in_flight": 1, "payload": "small", "repeats": 1},
        "latency_rate_msgs_per_s": None,
        "variants": [
            {"name": "raw", "status": "failed", "error": "stderr: \x1b]0;owned\x07 [red]x[/]"}
        ],
    }
    console = Console(record=True, width=300)
    render_scenario(doc, console)
    text = console.export_text()
    assert "[bold red]not markup[/]" in text
    assert "\x1b" not in text and "\\x1b]0;owned\\x07 [red]x[/]" in text


# -- item 7: unreadable files, unwritable outputs: one line, before measuring ---------------


def test_a_non_utf8_scenario_file_is_one_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(BASE.replace("one stack", "caf\xe9").encode("latin-1"))
    line = _one_line_error(_wsprof("scenario", str(path)))
    assert line == f"wsprof: error: {path}: not UTF-8 text (byte 0xe9 at offset 32)"


def test_an_unreadable_scenario_file_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = _file(tmp_path, BASE)
    path.chmod(0)
    assert "cannot read" in _one_line_error(_wsprof("scenario", str(path)))


@pytest.mark.parametrize("target", ["/proc/x.json", "DIR", "FILE/x.json"])
def test_an_unwritable_json_path_fails_before_measuring(tmp_path, target):
    before = _servers()
    (tmp_path / "FILE").write_text("")
    target = target.replace("DIR", str(tmp_path)).replace("FILE", str(tmp_path / "FILE"))
    path = _file(tmp_path, SLOW)
    started = time.monotonic()
    line = _one_line_error(
        _wsprof("scenario", str(path), "--json", target, "--out", str(tmp_path / "o"))
    )
    assert time.monotonic() - started < 20  # the 600 s window never started
    assert line.startswith(f"wsprof: error: cannot write {target}")
    assert not (_servers() - before)
    assert not (tmp_path / "o").exists()


def test_out_pointing_at_a_file_fails_before_measuring(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    path = _file(tmp_path, SLOW)
    started = time.monotonic()
    for out in (afile, afile / "sub"):
        line = _one_line_error(_wsprof("scenario", str(path), "--no-profile", "--out", str(out)))
        assert "is not a directory" in line
    assert time.monotonic() - started < 40
    assert afile.read_text() == "keep"


def test_check_json_target_accepts_a_new_file_in_a_new_directory(tmp_path):
    check_json_target(tmp_path / "new" / "r.json")
    check_json_target(tmp_path / "r.json")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


# -- item 8: escapes, modes ----------------------------------------------------------------


def test_control_characters_in_a_key_are_escaped_in_the_error(tmp_path):
    path = _file(tmp_path, BASE + '"\\u001b[31mred\\u001b]0;title\\u0007" = 1\n')
    line = _one_line_error(_wsprof("scenario", str(path)))
    assert "\x1b" not in line and "\x07" not in line
    assert "\\x1b[31mred" in line


@pytest.mark.parametrize("key", ["description", "question"])
def test_control_characters_in_printed_text_are_refused(key):
    text = BASE.replace('description = "one', f'{key} = "\\u001b[2J"\ndescription = "one')
    if key == "description":
        text = BASE.replace('description = "one stack', 'description = "\\u001b[2Jone stack')
    with pytest.raises(ScenarioFileError, match=f"key '{key}': must not contain control"):
        parse_scenario(text, "s.toml")


def test_json_results_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600


def test_nan_is_never_written_as_json(tmp_path):
    with pytest.raises(WsprofError, match="cannot write"):
        write_json(tmp_path / "n.json", {"rate": float("nan")})
    assert list(tmp_path.iterdir()) == []
