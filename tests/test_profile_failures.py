"""Issue 13 for `profile` and `attribute`: refused targets, bounded and orphan-free py-spy,
partial recordings, empty inputs, pathological rule globs, the attribution JSON's env block.

Every test that starts a process has a wall-clock bound, and every kill test checks with
psutil that nothing wsprof started is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from wsprof.errors import WsprofError
from wsprof.profiling.pyspy import (
    ProfilerUnavailable,
    Recorder,
    RecordingFailed,
    check_ptrace,
    partial_path,
    record,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

WSPROF = [sys.executable, "-m", "wsprof"]
BOUND_S = 60  # no test here may hang CI longer than this


def wsprof(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*WSPROF, *args],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def assert_one_line_error(res: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert res.returncode == status, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("wsprof: error: "), res.stderr
    assert res.stderr.count("\n") == 1, res.stderr
    for word in words:
        assert word in res.stderr, (word, res.stderr)


def _gone(pids: list[int], within: float = 5.0) -> list[int]:
    """The PIDs still alive (zombies count as gone) after waiting up to ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def _wait_for_child(parent: psutil.Process, name: str, within: float = 20.0) -> psutil.Process:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for child in parent.children(recursive=True):
            try:
                if name in " ".join(child.cmdline()):
                    return child
            except psutil.Error:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no {name} child of {parent.pid} within {within} s")


@pytest.fixture(scope="module")
def ptrace_ok() -> None:
    try:
        check_ptrace()
    except ProfilerUnavailable as exc:
        pytest.skip(f"py-spy cannot attach here: {exc}")


SPIN = (
    "import sys, time\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    sum(i * i for i in range(500))\n"
)
SPIN_WITH_CHILD = (
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', sys.argv[1]])\n"
    "print('ready', flush=True)\n"
    "while True:\n"
    "    sum(i * i for i in range(500))\n"
)


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen[bytes]]:
    """A busy Python process with one busy Python child (what py-spy --subprocesses follows)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SPIN_WITH_CHILD, SPIN],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield proc
    finally:
        tree = [proc.pid] + [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert _gone(tree) == []


# -- item 4: targets that are not the server's own -------------------------------------------


def test_pid_1_is_refused_in_one_line(tmp_path: Path) -> None:
    res = wsprof("profile", "--pid", "1", "--duration", "1", "--out", str(tmp_path / "o"))
    assert_one_line_error(res, 2, "PID 1", "every Python process")
    assert not (tmp_path / "o").exists()  # refused before anything was written


@pytest.mark.parametrize("pid", ["0", "-5"])
def test_non_positive_pids_are_refused(tmp_path: Path, pid: str) -> None:
    res = wsprof("profile", f"--pid={pid}", "--duration", "1", "--out", str(tmp_path / "o"))
    assert_one_line_error(res, 2, "not a process ID")


def test_wsprof_refuses_to_profile_itself(tmp_path: Path) -> None:
    # `exec` gives wsprof the shell's PID, so --pid $$ names wsprof's own process.
    cmd = " ".join(WSPROF) + f" profile --pid $$ --duration 1 --out {tmp_path / 'o'}"
    res = subprocess.run(
        ["sh", "-c", f"exec {cmd}"], capture_output=True, text=True, timeout=BOUND_S
    )
    assert_one_line_error(res, 2, "this wsprof process")


def test_wsprof_refuses_its_ancestors(tmp_path: Path) -> None:
    # This test process is wsprof's parent: py-spy would follow it down into wsprof itself.
    res = wsprof("profile", "--pid", str(os.getpid()), "--duration", "1", "--out", str(tmp_path))
    assert_one_line_error(res, 2, "ancestor of this wsprof")
    shell = subprocess.run(
        [
            "sh",
            "-c",
            " ".join(WSPROF) + f" profile --pid $$ --duration 1 --out {tmp_path}; exit $?",
        ],
        capture_output=True,
        text=True,
        timeout=BOUND_S,
    )
    assert_one_line_error(shell, 2, "ancestor of this wsprof")


@pytest.mark.parametrize("target", ["dir", "/proc/x.json"])
def test_unwritable_json_fails_before_recording(
    spinner: subprocess.Popen[bytes], tmp_path: Path, target: str
) -> None:
    json_path = str(tmp_path) if target == "dir" else target
    out = tmp_path / "out"
    started = time.monotonic()
    res = wsprof(
        "profile",
        "--pid",
        str(spinner.pid),
        "--duration",
        "30",
        "--out",
        str(out),
        "--json",
        json_path,
    )
    assert_one_line_error(res, 2, "cannot write")
    assert time.monotonic() - started < 20  # not after a 30 s recording
    assert not out.exists()


def test_profile_says_what_it_profiled_and_json_has_env(
    ptrace_ok: None, spinner: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    tree = {spinner.pid} | {c.pid for c in psutil.Process(spinner.pid).children()}
    out = tmp_path / "out"
    res = wsprof(
        "profile",
        "--pid",
        str(spinner.pid),
        "--duration",
        "1",
        "--rate-hz",
        "100",
        "--out",
        str(out),
        "--json",
        str(tmp_path / "a.json"),
    )
    assert res.returncode == 0, res.stderr
    assert f"profiled PID {spinner.pid} and 1 child process" in res.stdout
    assert "import subprocess, sys" in res.stdout  # its command line, control characters escaped
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["schema"] == "wsprof.attribution/1"
    assert {"python", "platform", "packages"} <= set(doc["env"])
    pids = {p["pid"] for p in doc["target"]["processes"]}
    assert pids == tree  # the target and its child: nothing unrelated
    assert doc["target"]["processes"][0]["pid"] == spinner.pid


# -- item 5: py-spy is bounded and dies with wsprof --------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killing_profile_leaves_no_pyspy(
    ptrace_ok: None, spinner: subprocess.Popen[bytes], tmp_path: Path, sig: signal.Signals
) -> None:
    proc = subprocess.Popen(
        [*WSPROF, "profile", "--pid", str(spinner.pid), "--duration", "30", "--out", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        pyspy = _wait_for_child(psutil.Process(proc.pid), "py-spy")
        proc.send_signal(sig)
        proc.wait(timeout=10)
        assert _gone([pyspy.pid]) == [], "py-spy outlived wsprof profile"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert not (tmp_path / f"pid{spinner.pid}.folded").exists()


def test_interrupted_profile_marks_the_recording_partial(
    ptrace_ok: None, spinner: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [*WSPROF, "profile", "--pid", str(spinner.pid), "--duration", "30", "--out", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pyspy = _wait_for_child(psutil.Process(proc.pid), "py-spy")
        time.sleep(1.0)  # some samples
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.count("\n") == 1
    assert _gone([pyspy.pid]) == []
    folded = tmp_path / f"pid{spinner.pid}.folded"
    assert not folded.exists()  # never presented as complete
    assert partial_path(folded).exists()
    assert partial_path(folded).name == f"pid{spinner.pid}.partial.folded"


FAKE_PYSPY = """#!{python}
import os, signal, sys, time
with open(os.environ["FAKE_PYSPY_ARGV"], "a") as f:
    f.write(" ".join(sys.argv[1:]) + "\\n")
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a py-spy that never stops by itself
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def stuck_pyspy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A py-spy on PATH that records its arguments and then hangs, ignoring SIGINT."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "py-spy"
    fake.write_text(FAKE_PYSPY.format(python=sys.executable))
    fake.chmod(0o755)
    argv = tmp_path / "argv.txt"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PYSPY_ARGV", str(argv))
    return argv


def test_fractional_duration_still_bounds_pyspy(tmp_path: Path) -> None:
    recorder = Recorder(os.getpid(), tmp_path / "x.folded", 0.3)
    i = recorder.cmd.index("--duration")
    assert recorder.cmd[i + 1] == "1"  # rounded up, never absent
    assert Recorder(os.getpid(), tmp_path / "x.folded", 2.0).cmd[i + 1] == "2"


def test_a_stuck_pyspy_is_killed_after_its_limit(stuck_pyspy: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    before = {c.pid for c in psutil.Process().children(recursive=True)}
    with pytest.raises(RecordingFailed, match="did not stop within"):
        record(os.getpid(), tmp_path / "x.folded", 0.3, timeout=1.0)
    assert time.monotonic() - started < 15
    assert "--duration 1" in stuck_pyspy.read_text()
    left = {c.pid for c in psutil.Process().children(recursive=True)} - before
    assert _gone(list(left)) == []


def test_ptrace_self_check_children_die_with_wsprof(stuck_pyspy: Path) -> None:
    # check_ptrace starts a throwaway Python child, then `py-spy dump` (here: stuck forever).
    proc = subprocess.Popen(
        [sys.executable, "-c", "from wsprof.profiling.pyspy import check_ptrace; check_ptrace(60)"],
        stdin=subprocess.DEVNULL,
    )
    try:
        parent = psutil.Process(proc.pid)
        dump = _wait_for_child(parent, "py-spy")
        sleeper = _wait_for_child(parent, "time.sleep(30)")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert _gone([dump.pid, sleeper.pid]) == [], "the self-check's children outlived wsprof"
    finally:
        proc.kill()
        proc.wait(timeout=10)


# -- item 8: attribute on nothing, pathological globs -------------------------------------------


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("", ("no samples",)),
        ("\n\n", ("no samples",)),
        ("main (app.py:1) 0\nf (x.py:2) 0\n", ("no samples",)),
        (
            "main (app.py:1);EpollSelector.select (selectors.py:468) 7\n",
            ("all 7 samples are idle", "--idle"),
        ),
    ],
)
def test_attribute_of_nothing_is_one_line(tmp_path: Path, content: str, words: tuple[str]) -> None:
    folded = tmp_path / "x.folded"
    folded.write_text(content)
    res = wsprof("attribute", str(folded))
    assert_one_line_error(res, 2, *words)
    assert res.stdout == ""  # no table of zeros


def test_diff_of_an_empty_recording_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a.folded").write_text("")
    (tmp_path / "b.folded").write_text("main (app.py:1) 3\n")
    res = wsprof("diff", str(tmp_path / "a.folded"), str(tmp_path / "b.folded"))
    assert_one_line_error(res, 2, "a.folded", "no samples")


def test_attribution_json_carries_env(tmp_path: Path) -> None:
    folded = tmp_path / "x.folded"
    folded.write_text("main (app.py:1);dumps (json/encoder.py:200) 3\n")
    res = wsprof("attribute", str(folded), "--json", str(tmp_path / "a.json"))
    assert res.returncode == 0, res.stderr
    doc = json.loads((tmp_path / "a.json").read_text())
    assert doc["total_samples"] == 3
    assert {"wsprof", "python", "platform", "cpu_count", "packages"} <= set(doc["env"])


def test_pathological_rule_globs_finish_fast(tmp_path: Path) -> None:
    stars = "*a" * 12 + "*b"  # naive `.*` per star backtracks exponentially on 'aaaa...'
    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'[[rule]]\nlayer = "json"\nfunction = "{stars}"\n\n'
        f'[[rule]]\nlayer = "json"\npath = "{stars}/"\n'
    )
    long = "a" * 4000
    folded = tmp_path / "x.folded"
    folded.write_text(f"main (app.py:1);{long} ({long}/{long}.py:3) 5\n")
    started = time.monotonic()
    res = wsprof("attribute", str(folded), "--rules", str(rules))
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - started < 10


def test_rule_globs_still_match_like_globs() -> None:
    from wsprof.profiling.folded import parse_frame
    from wsprof.profiling.layers import rules_from_text

    rs = rules_from_text(
        '[[rule]]\nlayer = "json"\nfunction = "*en*de"\n'
        '[[rule]]\nlayer = "kernel-io"\npath = "a?c/*/x*.py"\n',
        "<t>",
    )
    assert rs.layer_of(parse_frame("encode (m.py:1)")) == "json"
    assert rs.layer_of(parse_frame("endecode (m.py:1)")) == "json"
    assert rs.layer_of(parse_frame("encoder (m.py:1)")) != "json"
    assert rs.layer_of(parse_frame("f (abc/q/r/xy.py:1)")) == "kernel-io"
    assert rs.layer_of(parse_frame("f (abd/q/xy.py:1)")) != "kernel-io"


def test_attribute_of_an_endless_device_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wsprof attribute /dev/zero` reads a bounded amount and says why it stopped."""
    from wsprof.profiling import folded

    monkeypatch.setattr(folded, "MAX_FOLDED_BYTES", 1 << 20)
    with pytest.raises(WsprofError, match="larger than 1 MiB"):
        folded.read_folded("/dev/zero")
