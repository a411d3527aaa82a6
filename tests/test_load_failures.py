"""Issue 13, `wsprof load`: every bad input is one line, every signal ends the whole tree.

Each probe runs the CLI as a user does (a subprocess with a wall-clock bound), against
the cheap C echo server, and checks exactly one ``wsprof: error:`` line on stderr, the
exit code, no traceback, and after a signal that no process of the run is left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from servers import closed_port, wait_gone

from wsprof import argtypes, cli
from wsprof.client.base import LoadConfig, parse_url
from wsprof.client.bench import echo_server
from wsprof.client.driver import split_config
from wsprof.errors import WsprofError

BOUND_S = 30  # no probe may take longer than this, whatever it does
SIGNAL_EXIT_S = 1.0  # a signalled run ends within this


def _wsprof(*args: str, timeout: float = BOUND_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsprof", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], code: int, *phrases: str) -> str:
    """Exactly one ``wsprof: error:`` line on stderr, the exit code, and no traceback."""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("wsprof: error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.returncode == code, proc.stderr
    for phrase in phrases:
        assert phrase in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    with echo_server(None, max_seconds=300) as port:
        yield f"ws://127.0.0.1:{port}/ws"


# --- item 1 / 8: numbers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rate", "inf"),
        ("--rate", "nan"),
        ("--rate", "1e-300"),
        ("--rate", "-inf"),
        ("--warmup", "nan"),
        ("--warmup", "inf"),
        ("--warmup", "-5"),
        ("--duration", "1e400"),
        ("--duration", "nan"),
        ("--connect-timeout", "inf"),
        ("--connections", "1e9"),
        ("--connections", "99999999999999999999"),
        ("--in-flight", "99999999999"),
        ("--messages", "0"),
        ("--workers", "99999999999999999999"),
    ],
)
def test_load_refuses_bad_numbers_in_one_line(option: str, value: str) -> None:
    """Before the fix `--rate 1e-300` and `--warmup nan` hung; `--rate nan` ran closed loop."""
    started = time.monotonic()
    proc = _wsprof("load", f"ws://127.0.0.1:{closed_port()}/ws", "--duration", "1", option, value)
    assert_one_line(proc, 2, option)
    assert time.monotonic() - started < 10


def _float_and_int_options() -> Iterator[tuple[str, str, list[str]]]:
    """(command, option, the other arguments it needs) for every numeric option of the CLI."""
    parser = cli.build_parser()
    (subs,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        needed: list[str] = []
        for action in sub._actions:
            if not action.option_strings and action.dest != "help":
                needed.append("x")
            elif action.required:
                needed += [action.option_strings[0], "12345"]
        for action in sub._actions:
            if action.option_strings and action.type not in (None, Path, str):
                if action.required:
                    continue
                yield name, action.option_strings[0], needed


NUMERIC_OPTIONS = list(_float_and_int_options())


def test_every_numeric_option_has_a_checked_type() -> None:
    """No option parses with bare float() (NaN, inf) or int() (no bound)."""
    checked = (argtypes.positive_float, argtypes.non_negative_float, argtypes.positive_int)
    parser = cli.build_parser()
    (subs,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    loose = [
        f"{name} {action.option_strings[0]}"
        for name, sub in subs.choices.items()
        for action in sub._actions
        if action.option_strings
        and action.type not in (None, Path, str, *checked)
        and not action.required
    ]
    assert loose == []
    assert len(NUMERIC_OPTIONS) >= 8


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1e400", "abc", "99999999999999999999"])
@pytest.mark.parametrize(("command", "option", "needed"), NUMERIC_OPTIONS)
def test_every_numeric_option_refuses_bad_numbers(
    command: str, option: str, needed: list[str], bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main([command, *needed, option, bad])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"wsprof: error: argument {option}: "), err


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({"rate": 1e-300}, "less than one message"),
        ({"rate": 0.5, "duration": 1.0}, "less than one message"),
        ({"in_flight": 10**9}, "--in-flight"),
        ({"in_flight": 0}, "--in-flight"),
        ({"connections": 10**9}, "--connections"),
        ({"max_messages": 10**30}, "--messages"),
        ({"duration": "1"}, "--duration must be a number"),
        ({"warmup": True}, "--warmup must be a number"),
        ({"connections": 2.5}, "--connections"),
    ],
)
def test_load_config_refuses_absurd_values(fields: dict[str, object], phrase: str) -> None:
    with pytest.raises(WsprofError) as info:
        LoadConfig("ws://127.0.0.1:9/", **fields)  # type: ignore[arg-type]
    assert phrase in str(info.value) and "\n" not in str(info.value)


def test_a_worker_share_below_one_message_is_refused() -> None:
    config = LoadConfig("ws://127.0.0.1:9/", connections=4, rate=3, duration=1)
    with pytest.raises(WsprofError, match="less than one message per worker"):
        split_config(config, 4)


# --- item 7: URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ws://127.0.0.1:99999/ws",
        "ws://127.0.0.1:abc/ws",
        "ws://[::1/",
        "ws://127.0.0.1:0/ws",
        "ws://127.0.0.1:/ws",
        "ws://127.0.0.1:-1/ws",
    ],
)
def test_bad_urls_are_one_line(url: str) -> None:
    """Before the fix the first three were tracebacks and port 0 silently became port 80."""
    proc = _wsprof("load", url, "--duration", "1")
    assert_one_line(proc, 2, "URL must be ws://HOST:PORT/PATH")


def test_urls_give_their_parts() -> None:
    assert parse_url("ws://127.0.0.1:8000/ws?a=1") == ("127.0.0.1", 8000, "/ws?a=1")
    assert parse_url("ws://[::1]:9/") == ("::1", 9, "/")
    assert parse_url("ws://localhost") == ("localhost", 80, "/")


# --- item 7: --json checked before the run ------------------------------------------------------


@pytest.mark.parametrize("where", ["/proc/x.json", "DIR", "FILE/x.json"])
def test_unwritable_json_fails_before_the_run(tmp_path: Path, where: str) -> None:
    """A closed port would fail the run with exit 1: exit 2 and "cannot write" mean before it."""
    (tmp_path / "FILE").write_text("a file\n")
    target = where.replace("DIR", str(tmp_path)).replace("FILE", str(tmp_path / "FILE"))
    before = sorted(tmp_path.iterdir())
    proc = _wsprof("load", f"ws://127.0.0.1:{closed_port()}/ws", "--json", target)
    assert_one_line(proc, 2, f"cannot write {target}")
    assert sorted(tmp_path.iterdir()) == before  # the probe file is gone


def test_json_in_a_new_directory_is_still_written(tmp_path: Path, echo_url: str) -> None:
    target = tmp_path / "new" / "dir" / "load.json"
    args = ("--duration", "0.3", "--warmup", "0", "--json", str(target))
    proc = _wsprof("load", echo_url, *args)
    assert proc.returncode == 0, proc.stderr
    assert target.is_file()


# --- item 2 / 5: signals and kills ---------------------------------------------------------------


def _start_load(echo_url: str, client: str, workers: int, json_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "wsprof", "load", echo_url),
            *("--client", client, "--workers", str(workers), "--connections", "2"),
            *("--duration", "20", "--warmup", "0", "--json", str(json_path)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell job
    )


def _loading_tree(proc: subprocess.Popen[str], port: int, timeout: float = 20) -> list[int]:
    """Wait until the run has its connections open; return the pids of its whole tree."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            conns = [
                c
                for p in tree
                for c in p.net_connections("tcp")
                if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
            ]
        except psutil.NoSuchProcess:
            continue
        if len(conns) >= 2:
            time.sleep(0.3)  # past connect: inside the load loop
            return [p.pid for p in [psutil.Process(proc.pid), *tree[1:]] if p.is_running()]
        time.sleep(0.05)
    raise AssertionError("the load did not open its connections")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Whatever a test saw, leave nothing of the run's process group behind."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(BOUND_S)


def _port(url: str) -> int:
    return parse_url(url)[1]


CASES = [("fast", 1), ("fast", 2), ("reference", 1), ("reference", 2)]


@pytest.mark.parametrize(("client", "workers"), CASES)
def test_ctrl_c_ends_the_run_within_a_second(
    tmp_path: Path, echo_url: str, client: str, workers: int
) -> None:
    """SIGINT to the process group (Ctrl-C in a shell): exit 130 fast, nothing written."""
    out = tmp_path / "load.json"
    proc = _start_load(echo_url, client, workers, out)
    try:
        tree = _loading_tree(proc, _port(echo_url))
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=BOUND_S)
        took = time.monotonic() - sent
    finally:
        _kill_group(proc)
    assert proc.returncode == 130, stderr
    assert took < SIGNAL_EXIT_S, f"exit {took:.2f} s after SIGINT"
    assert stderr.splitlines() == ["wsprof: interrupted; nothing was written as complete"]
    assert "Traceback" not in stderr + stdout
    assert not out.exists()
    assert wait_gone(tree, timeout=5) == []


@pytest.mark.parametrize(("client", "workers"), CASES)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_leaves_no_process(
    tmp_path: Path, echo_url: str, client: str, workers: int, sig: signal.Signals
) -> None:
    """Before the fix SIGKILL left both workers (and the resource tracker) loading."""
    out = tmp_path / "load.json"
    proc = _start_load(echo_url, client, workers, out)
    try:
        tree = _loading_tree(proc, _port(echo_url))
        assert len(tree) >= workers  # the workers are in the tree
        sent = time.monotonic()
        os.kill(proc.pid, sig)  # the main process only, as `kill PID`
        proc.communicate(timeout=BOUND_S)
        took = time.monotonic() - sent
        left = wait_gone(tree, timeout=5)
    finally:
        _kill_group(proc)
    assert proc.returncode != 0
    assert took < SIGNAL_EXIT_S
    assert left == [], [psutil.Process(p).cmdline() for p in left if psutil.pid_exists(p)]
    assert not out.exists()


def test_a_worker_that_dies_ends_the_run_in_one_line(tmp_path: Path, echo_url: str) -> None:
    """A worker killed mid-run: the parent says so instead of waiting forever."""
    proc = _start_load(echo_url, "fast", 2, tmp_path / "load.json")
    try:
        tree = _loading_tree(proc, _port(echo_url))
        worker = next(
            p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline())
        )
        worker.kill()
        stdout, stderr = proc.communicate(timeout=BOUND_S)
    finally:
        _kill_group(proc)
    assert proc.returncode == 1, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsprof: error: load worker"), stderr
    assert "ended without a result" in lines[0] and "Traceback" not in stderr + stdout
    assert wait_gone(tree, timeout=5) == []


def test_non_finite_floats_never_reach_the_json(tmp_path: Path) -> None:
    """`--rate nan` used to run closed loop labelled open loop and write "rate": NaN."""
    out = tmp_path / "x.json"
    proc = _wsprof(
        "load", f"ws://127.0.0.1:{closed_port()}/ws", "--rate", "nan", "--json", str(out)
    )
    assert_one_line(proc, 2, "--rate")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("after", [0.0, 0.1, 0.2, 0.3, 0.4])
def test_ctrl_c_while_the_workers_start(tmp_path: Path, echo_url: str, after: float) -> None:
    """Ctrl-C while the workers import wsprof: one line, no worker traceback (there was one)."""
    proc = _start_load(echo_url, "reference", 2, tmp_path / "load.json")
    try:
        deadline = time.monotonic() + BOUND_S
        workers: list[psutil.Process] = []
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = [
                p
                for p in psutil.Process(proc.pid).children()
                if "spawn_main" in " ".join(p.cmdline())
            ]
        tree = [proc.pid, *(p.pid for p in workers)]
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=BOUND_S)
    finally:
        _kill_group(proc)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == ["wsprof: interrupted; nothing was written as complete"]
    assert "Traceback" not in stdout + stderr
    assert wait_gone(tree, timeout=5) == []
