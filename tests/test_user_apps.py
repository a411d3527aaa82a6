"""A user's app as a scenario variant: the real uvicorn / hypercorn / gunicorn, real figures.

The app lives in tests/apps/user_chat: ``/ws`` answers ``"Echo: " + data`` like a
real app; ``/echo`` echoes, so these runs use the default (echo) reply contract.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import jsonschema
import psutil
import pytest

from wsprof.client.base import LoadConfig
from wsprof.client.driver import run_load
from wsprof.errors import WsprofError
from wsprof.scenario.files import ScenarioFileError, parse_scenario
from wsprof.scenario.runner import ScenarioRunner
from wsprof.servers.appcmd import AppSpec, check_installed, command
from wsprof.servers.appserver import AppServerProcess, last_error_line
from wsprof.servers.launcher import ServerFailed

SCHEMA = json.loads(resources.files("wsprof").joinpath("schemas/scenario.schema.json").read_text())
APPS = Path(__file__).parent / "apps"
FASTAPI = "user_chat.fastapi_app:app"
FLASK = "user_chat.flask_app:app"  # Socket.IO: its "echo" event is answered by "echo"
PROCESS = re.compile(r'process (\d+):"')

PLAN = """
name = "mine"
description = "a user's app under three production servers: a test, not a benchmark"
[load]
connections = 8
payload = "small"
warmup_s = 0.2
capacity_window_s = 0.8
latency_window_s = 0.6
profile_window_s = 1.0
profile_rate_hz = 200
repeats = 1
"""


def _toml(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def _variant(name: str, server: str, **keys: object) -> str:
    lines = [f'[[variants]]\nname = "{name}"\napp = "{FASTAPI}"\nserver = "{server}"']
    lines += [f"{key} = {_toml(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def _scenario_dir(tmp_path: Path, variants: str) -> Path:
    """The app package beside a scenario file, as a user keeps them."""
    shutil.copytree(APPS / "user_chat", tmp_path / "user_chat")
    path = tmp_path / "mine.toml"
    path.write_text(PLAN + variants)
    return path


def _app_processes() -> set[int]:
    """Servers of tests/apps started from this interpreter (not another checkout's)."""
    found = set()
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd[:1] == [sys.executable] and any("user_chat." in part for part in cmd):
            found.add(p.pid)
    return found


def _wsprof(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsprof", *args], capture_output=True, text=True, timeout=timeout
    )


# -- the scenario file's keys -------------------------------------------------------


def test_an_app_variant_is_read_from_a_file_with_defaults(tmp_path: Path) -> None:
    path = _scenario_dir(tmp_path, _variant("mine", "uvicorn", options={"loop": "uvloop"}))
    (variant,) = parse_scenario(path.read_text(), str(path)).variants
    spec = variant.app_spec()
    assert spec is not None
    assert (variant.stack, spec.path, spec.mode, spec.directory) == (
        "app:uvicorn",
        "/ws",
        "raw",
        str(tmp_path),
    )
    assert spec.options == {"loop": "uvloop"}


@pytest.mark.parametrize(
    ("keys", "where"),
    [
        ({"server": "daphne"}, "variants[0].server"),
        ({"server": "gunicorn"}, "variants[0].worker"),
        ({"worker": "eventlet"}, "variants[0].worker"),
        ({"workers": 0}, "variants[0].workers"),
        ({"path": "ws"}, "variants[0].path"),
        ({"stack": "starlette-raw"}, "variants[0].stack"),
        ({"app": "no-colon"}, "variants[0].app"),
    ],
)
def test_bad_app_keys_name_the_key(tmp_path: Path, keys: dict[str, object], where: str) -> None:
    text = PLAN + _variant("mine", "uvicorn")
    for key, value in keys.items():
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} "))
        text += f"\n{key} = {json.dumps(value)}\n"
    with pytest.raises(ScenarioFileError, match=re.escape(f"key '{where}'")):
        parse_scenario(text, "mine.toml")


def test_workers_beyond_the_cores_are_a_warning(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    path = _scenario_dir(
        tmp_path, _variant("many", "gunicorn", worker="uvicorn", workers=cores + 1)
    )
    runner = ScenarioRunner(parse_scenario(path.read_text(), str(path)), quick=True)
    (warning,) = runner.worker_warnings()
    assert f"{cores + 1} workers > {cores} cores" in warning


def test_last_error_line_is_the_exception_not_the_log_after_it() -> None:
    stderr = (
        "Traceback...\n  File x\nModuleNotFoundError: No module named 'q'\n[INFO] Worker exiting\n"
    )
    assert last_error_line(stderr) == "ModuleNotFoundError: No module named 'q'"


# -- the errors: one line, nothing left running ------------------------------------------


def test_an_app_that_does_not_import_shows_its_traceback_line() -> None:
    before = _app_processes()
    for server, worker in (("uvicorn", None), ("gunicorn", "uvicorn")):
        spec = AppSpec("user_chat.broken_app:app", server, str(APPS), worker=worker)
        started = time.monotonic()
        with pytest.raises(ServerFailed) as failed:
            AppServerProcess(spec).start()
        assert time.monotonic() - started < 15
        message = str(failed.value)
        assert "\n" not in message
        assert message.endswith("ModuleNotFoundError: No module named 'user_chat.no_such_module'")
    assert _app_processes() <= before


def test_a_path_that_does_not_upgrade_shows_the_status_and_a_path_that_does() -> None:
    spec = AppSpec(FASTAPI, "uvicorn", str(APPS), path="/nope")
    with pytest.raises(ServerFailed) as failed:
        AppServerProcess(spec).start()
    message = str(failed.value)
    assert "did not upgrade GET /nope to a WebSocket (HTTP 403 Forbidden)" in message
    assert 'try path = "/ws"' in message


def test_a_missing_server_program_names_its_package(tmp_path: Path) -> None:
    # gunicorn 24+ no longer ships an eventlet worker: a real "not installed" on this machine.
    spec = AppSpec(FASTAPI, "gunicorn", str(APPS), worker="eventlet")
    try:
        check_installed(spec)
    except WsprofError as exc:
        assert "eventlet worker" in str(exc) or "pip install eventlet" in str(exc)
    # A server program that is not installed: hidden from a child interpreter's imports.
    path = _scenario_dir(tmp_path, _variant("mine", "hypercorn"))
    hide = (
        "import sys, runpy\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'hypercorn':\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Hide())\n"
        f"sys.argv = ['wsprof', 'scenario', {str(path)!r}, '--quick', '--no-profile']\n"
        "runpy.run_module('wsprof', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", hide], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.endswith("pip install hypercorn"), line


# -- real runs ----------------------------------------------------------------------------


def test_both_gunicorn_workers_are_in_the_cpu_accounting() -> None:
    spec = AppSpec(FASTAPI, "gunicorn", str(APPS), worker="uvicorn", workers=2, path="/echo")
    with AppServerProcess(spec) as server:
        workers = server.worker_pids()
        assert len(workers) == 2
        before = server.cpu_seconds_by_pid()
        config = LoadConfig(url=server.url, connections=16, duration=1.0, warmup=0.2)
        result = run_load(config, client="reference")
        after = server.cpu_seconds_by_pid()
        assert result.messages > 0
        for pid in workers:
            assert after[pid] > before.get(pid, 0.0)
        assert server.cpu_seconds() >= sum(after.values()) - 1e-9


def test_a_user_app_scenario_under_each_server_and_the_command_line_form(
    tmp_path: Path,
) -> None:
    before = _app_processes()
    path = _scenario_dir(
        tmp_path,
        _variant("on-hypercorn", "hypercorn", path="/echo")
        + _variant("on-gunicorn", "gunicorn", worker="uvicorn", workers=2, path="/echo")
        + _variant("on-socketio-run", "flask-socketio").replace(FASTAPI, FLASK)
        + _variant("on-gunicorn-gevent", "gunicorn", worker="gevent", path="/socket.io/").replace(
            FASTAPI, "user_chat.flask_gevent_app:app"
        ),
    )
    out = tmp_path / "result.json"
    proc = _wsprof(
        "scenario",
        str(path),
        "--quick",
        "--no-profile",
        "--json",
        str(out),
        "--app",
        f"on-uvicorn={FASTAPI}",
        "--server",
        "uvicorn",
        "--path",
        "/echo",
        "--app-dir",
        str(tmp_path),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    variants = {v["name"]: v for v in doc["variants"]}
    assert set(variants) == {
        "on-hypercorn",
        "on-gunicorn",
        "on-socketio-run",
        "on-gunicorn-gevent",
        "on-uvicorn",
    }
    for v in variants.values():
        assert v["status"] == "ok", v["error"]
        assert v["throughput_msgs_per_s"] > 0
        assert v["server_cpu_us_per_msg"] > 0
    assert variants["on-gunicorn"]["stack"] == "app:gunicorn+uvicorn"
    if doc["env"].get("server_cpu") is not None:  # pinned: two workers on the server's core
        assert any("on-gunicorn: 2 workers share" in w for w in doc["env"]["warnings"])
        assert "warning: variant on-gunicorn" in proc.stderr
    assert _app_processes() <= before


def test_a_profiled_user_app_with_workers_is_recorded_across_its_processes(
    tmp_path: Path,
) -> None:
    path = _scenario_dir(
        tmp_path, _variant("mine", "gunicorn", worker="uvicorn", workers=2, path="/echo")
    )
    out = tmp_path / "result.json"
    proc = _wsprof(
        "scenario",
        str(path),
        "--quick",
        "--json",
        str(out),
        "--out",
        str(tmp_path / "fg"),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    if doc.get("profiler_note"):
        pytest.skip(f"py-spy cannot run here: {doc['profiler_note']}")
    (v,) = doc["variants"]
    assert v["status"] == "ok" and v["throughput_msgs_per_s"] > 0
    assert v["layers"]["server-framework"]["samples"] + v["layers"]["event-loop"]["samples"] > 0
    folded = next((tmp_path / "fg").rglob("mine.folded")).read_text()
    # Each sample's innermost process frame is the process it came from (--subprocesses).
    sampled = {pids[-1] for line in folded.splitlines() if (pids := PROCESS.findall(line))}
    assert len(sampled) >= 2, sampled  # both workers sampled


def _alive(pids: set[int], within: float) -> set[int]:
    deadline = time.monotonic() + within
    while True:
        alive = {pid for pid in pids if psutil.pid_exists(pid) and _not_zombie(pid)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _descendants_once_serving(proc: subprocess.Popen[str], count: int) -> set[int]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        tree = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        if len(tree) >= count:
            return tree
        time.sleep(0.1)
    raise AssertionError("the app's server tree never came up")


def test_ctrl_c_leaves_no_server_worker_behind(tmp_path: Path) -> None:
    path = _scenario_dir(
        tmp_path, _variant("mine", "gunicorn", worker="uvicorn", workers=2, path="/echo")
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsprof", "scenario", str(path), "--no-profile"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Background jobs of a non-interactive shell (CI) ignore SIGINT: restore Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        tree = _descendants_once_serving(proc, 3)  # gunicorn's master and both workers
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert not _alive(tree, within=10), "a server process outlived Ctrl-C"


def test_a_killed_wsprof_takes_its_app_server_tree_with_it() -> None:
    code = (
        "import sys, time\n"
        "from wsprof.servers.appcmd import AppSpec\n"
        "from wsprof.servers.appserver import AppServerProcess\n"
        f"spec = AppSpec({FASTAPI!r}, 'gunicorn', {str(APPS)!r}, worker='uvicorn', workers=2)\n"
        "server = AppServerProcess(spec).start()\n"
        "print(*server.pids(), flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = {int(pid) for pid in parent.stdout.readline().split()}
        assert len(pids) >= 3
        parent.kill()  # no cleanup code runs: only PR_SET_PDEATHSIG can end the server
        parent.wait(timeout=10)
    finally:
        parent.kill()
    assert not _alive(pids, within=15), "the app's server outlived wsprof"


def test_failing_apps_are_one_line_each_through_the_command(tmp_path: Path) -> None:
    before = _app_processes()
    path = _scenario_dir(
        tmp_path,
        _variant("broken", "uvicorn").replace(FASTAPI, "user_chat.broken_app:app")
        + _variant("wrong-path", "hypercorn", path="/chat"),
    )
    proc = _wsprof("scenario", str(path), "--no-profile", timeout=120)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("wsprof: error:")]
    assert len(errors) == 2, proc.stderr
    assert errors[0].endswith("No module named 'user_chat.no_such_module'")
    assert "did not upgrade GET /chat to a WebSocket (HTTP 403 Forbidden)" in errors[1]
    assert 'try path = "/ws"' in errors[1]
    assert _app_processes() <= before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--app", "x=a"], "--app: must be module:attribute"),
        (["--app", "a:b"], "--app must be NAME=MODULE:ATTR"),
        (["--app", "x=a:b", "--server", "gunicorn"], "--worker: gunicorn needs one of"),
        (["--app", "x=a:b", "--path", "ws"], "--path: must be a URL path"),
        (["--app", "x=a:b", "--app-opt", "loop"], "is not of the form key=value"),
        (["--app", "x=a:b", "--app-dir", "/nonexistent"], "is not a directory"),
    ],
)
def test_bad_app_flags_are_one_line_before_anything_starts(
    flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from wsprof import cli

    assert cli.main(["scenario", "socketio-framing", *flags]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line


def test_the_command_lines_are_the_real_programs_from_this_interpreter() -> None:
    def cmd(server: str, **keys: object) -> list[str]:
        spec = AppSpec(FASTAPI, server, str(APPS), **keys)  # type: ignore[arg-type]
        return command(spec, "127.0.0.1", 8000)

    assert cmd("uvicorn", options={"loop": "uvloop"}) == [
        sys.executable, "-m", "uvicorn", FASTAPI, "--host", "127.0.0.1", "--port", "8000",
        "--loop", "uvloop",
    ]  # fmt: skip
    assert cmd("uvicorn", workers=2)[-2:] == ["--workers", "2"]
    hyper = cmd("hypercorn", options={"loop": "uvloop"})
    assert hyper[:4] == [sys.executable, "-m", "hypercorn", FASTAPI]
    assert hyper[hyper.index("--worker-class") + 1] == "uvloop"
    assert hyper[hyper.index("--bind") + 1] == "127.0.0.1:8000"
    gunicorn = cmd("gunicorn", worker="uvicorn", workers=2)
    assert gunicorn[2:4] == ["gunicorn", FASTAPI]
    assert gunicorn[gunicorn.index("--worker-class") + 1] == "uvicorn.workers.UvicornWorker"
    assert gunicorn[gunicorn.index("--workers") + 1] == "2"
    flask = cmd("flask-socketio")
    assert flask[2:4] == ["wsprof.servers.flask_run", FASTAPI]


def test_the_shipped_workers_scenario_warns_that_its_workers_share_cores() -> None:
    from wsprof.scenario.files import load_scenario

    runner = ScenarioRunner(load_scenario("workers"), quick=True)
    warnings = runner.worker_warnings()
    if runner.server_cpu is not None:  # pinned: both workers on the server's one core
        assert any("fastapi-2-workers: 2 workers share" in w for w in warnings), warnings
    assert not any("fastapi-1-worker" in w for w in warnings)


def test_a_users_app_code_is_charged_to_application(tmp_path: Path) -> None:
    """The default rules cannot know the user's files; the scenario names them."""
    from wsprof.profiling.attribute import attribute
    from wsprof.profiling.folded import parse_folded
    from wsprof.profiling.layers import default_rules
    from wsprof.scenario.files import application_globs, load_scenario

    path = _scenario_dir(tmp_path, _variant("mine", "uvicorn", path="/ws"))
    scenario = load_scenario(str(path))
    app_file = (tmp_path / "user_chat" / "fastapi_app.py").resolve()  # copied beside the file
    folded = (
        f"run (uvicorn/server.py:60);chat ({app_file}:16);dumps (json/__init__.py:231) 3\n"
        "run (uvicorn/server.py:60);chat (user_chat/fastapi_app.py:16) 5\n"
        "run (uvicorn/main.py:580) 2\n"
    )
    rules = default_rules().with_application_files(application_globs(scenario.variants))
    layers = attribute(parse_folded(folded), rules).layers
    assert layers["application"].samples == 5  # the json it calls stays json
    assert layers["json"].samples == 3
    assert layers["server-framework"].samples == 2  # uvicorn/main.py is not the user's main
    assert attribute(parse_folded(folded), default_rules()).layers["application"].samples == 0


def test_a_user_app_that_is_not_an_echo_server_runs_with_its_reply_contract(
    tmp_path: Path,
) -> None:
    """The app's /ws answers "Echo: " + data: `reply = "any"` in [load] makes it measurable."""
    path = _scenario_dir(tmp_path, _variant("mine", "uvicorn", path="/ws"))
    path.write_text(
        path.read_text().replace('payload = "small"', 'payload = "small"\nreply = "any"')
    )
    out = tmp_path / "result.json"
    proc = _wsprof(
        "scenario", str(path), "--quick", "--no-profile", "--json", str(out), timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    (v,) = json.loads(out.read_text())["variants"]
    assert v["status"] == "ok" and v["throughput_msgs_per_s"] > 0 and v["errors"] == {}
    echo_only = tmp_path / "echo.toml"
    echo_only.write_text(path.read_text().replace('reply = "any"\n', ""))
    proc = _wsprof("scenario", str(echo_only), "--quick", "--no-profile", timeout=180)
    assert proc.returncode == 1  # the byte-for-byte contract: every reply differs
    assert "try --reply any" in proc.stderr
