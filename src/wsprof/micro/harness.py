"""Run micro rows under pyperf in subprocesses and turn pyperf's JSON into result dicts.

One pyperf manager process (``wsprof.micro.worker``) runs all selected rows
in order; pyperf gives each row its own calibration and worker processes.
This module imports neither rich nor any benchmark library, so scenarios can
call ``run_rows``/``read_results`` and the orchestrator stays unpatched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from wsprof.errors import MeasurementError, WsprofError
from wsprof.micro.catalog import Row, baseline_variant

SCHEMA_ID = "wsprof.micro/1"
SPREAD_KIND = "mad"  # median absolute deviation: robust, and the natural partner of a median
ROW_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Settings:
    """pyperf options; tuned so a full run fits in ~3 minutes on 2 cores, --quick in 30 s."""

    mode: str
    processes: int
    values: int
    warmups: int
    min_time: float
    jobs: int = 1  # rows measured side by side; >1 only where roughness is accepted
    rounds: int = 1  # passes over all rows; each row's values are spread over the whole run
    loops: int = 0  # 0: pyperf calibrates; later rounds reuse the first round's loops

    def pyperf_args(self) -> list[str]:
        args = [
            "--processes",
            str(self.processes),
            "--values",
            str(self.values),
            "--warmups",
            str(self.warmups),
            "--min-time",
            str(self.min_time),
        ]
        return args + (["--loops", str(self.loops)] if self.loops else [])

    def as_dict(self) -> dict[str, Any]:
        return {"harness": "pyperf", "spread_kind": SPREAD_KIND, **asdict(self)}


# Full: 2 rounds x 2 processes x 5 short values = 20 values per row. Process
# start-up (~0.3 s each, mostly imports) is the main cost, so more, shorter
# values per process buy a steadier median for less time than more processes.
# Two rounds over all rows put each row's values at two moments of the run, so
# a burst of contention on this shared host skews no row alone.
FULL = Settings("full", processes=2, values=5, warmups=1, min_time=0.02, rounds=2)
# Quick: one measured process after pyperf's calibration process; start-up of
# the processes, not the timing, is what costs here, so two rows run side by
# side on a 2-core machine (rough figures, as --quick promises).
QUICK = Settings(
    "quick",
    processes=1,
    values=3,
    warmups=1,
    min_time=0.01,
    jobs=min(2, len(os.sched_getaffinity(0))),
)

# Closure predictions inside a scenario: a handful of rows, one at a time (a
# scenario's figures are compared with them), cheaper than a full run.
CLOSURE = Settings("closure", processes=2, values=5, warmups=1, min_time=0.02)

Progress = Callable[[Row], None]


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """Kill the manager and its pyperf workers (they share its new process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


_EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


def _stderr_tail(text: str) -> str:
    """One line for the user: the first exception raised (the root cause), else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no output on stderr"
    root = next((line for line in lines if _EXC_LINE.match(line)), lines[-1])
    return root[:300]


@dataclass
class Measured:
    """Per-op times (seconds) of one row, gathered over every round."""

    values: list[float] = field(default_factory=list)
    processes: int = 0
    loops: list[int] = field(default_factory=list)

    def add(self, bench: Any) -> None:
        runs = [run for run in bench.get_runs() if run.values]
        self.values.extend(bench.get_values())
        self.processes += len(runs)
        self.loops.extend(run.get_loops() for run in runs)


def _result(row: Row, measured: Measured) -> dict[str, Any]:
    values = sorted(measured.values)
    median = statistics.median(values)
    return {
        "layer": row.layer,
        "case": row.case,
        "variant": row.variant,
        "payload": row.payload,
        "ns_per_op": median * 1e9,
        "spread_ns": statistics.median(abs(v - median) for v in values) * 1e9,
        "spread_kind": SPREAD_KIND,
        "stdev_ns": statistics.stdev(values) * 1e9 if len(values) > 1 else 0.0,
        # The 10th percentile: on a shared host whose CPU alternates between an
        # uncontended and a contended speed, this tracks the uncontended cost.
        "p10_ns": values[int(0.1 * (len(values) - 1))] * 1e9,
        "min_ns": values[0] * 1e9,
        "values": len(values),
        "processes": measured.processes,
        "loops": statistics.median(measured.loops) if measured.loops else 0,
        "ratio_to_baseline": None,
    }


def add_ratios(results: list[dict[str, Any]]) -> None:
    """Set each result's ratio to its (layer, case, payload) baseline variant, when measured."""
    index = {(r["layer"], r["case"], r["variant"], r["payload"]): r for r in results}
    for r in results:
        base = baseline_variant(r["layer"], r["case"])
        baseline = index.get((r["layer"], r["case"], base, r["payload"])) if base else None
        r["ratio_to_baseline"] = r["ns_per_op"] / baseline["ns_per_op"] if baseline else None


def run_rows(
    rows: Sequence[Row],
    settings: Settings,
    progress: Progress | None = None,
    worker_args: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Measure ``rows`` in ``settings.rounds`` passes (``settings.jobs`` shards side by side).

    ``worker_args`` go to every worker (e.g. ``--samples FILE`` for the
    serializer rows). All or nothing: any failing row raises MeasurementError.
    """
    rows = list(rows)
    measured = {row: Measured() for row in rows}
    for row, bench in _run_round(rows, settings, progress, worker_args):
        measured[row].add(bench)
    for _ in range(settings.rounds - 1):
        # Later rounds reuse the first round's calibrated loops (rows grouped by
        # their loop count), which saves a calibration process per row.
        groups: dict[int, list[Row]] = {}
        for row in rows:
            groups.setdefault(int(measured[row].loops[0]), []).append(row)
        for loops, group in groups.items():
            for row, bench in _run_round(
                group, replace(settings, loops=loops), progress, worker_args
            ):
                measured[row].add(bench)
    results = [_result(row, measured[row]) for row in rows]
    add_ratios(results)
    return results


def _run_round(
    rows: list[Row], settings: Settings, progress: Progress | None, worker_args: Sequence[str]
) -> list[tuple[Row, Any]]:
    if settings.jobs <= 1 or len(rows) < 2:
        return _run_shard(rows, settings, progress, worker_args)
    shards = [rows[i :: settings.jobs] for i in range(settings.jobs)]
    lock = threading.Lock()

    def locked_progress(row: Row) -> None:
        if progress is not None:
            with lock:
                progress(row)

    outcomes: list[list[tuple[Row, Any]] | BaseException] = [[] for _ in shards]

    def work(i: int) -> None:
        try:
            outcomes[i] = _run_shard(shards[i], settings, locked_progress, worker_args)
        except BaseException as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(shards))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    merged: list[tuple[Row, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
        merged.extend(outcome)
    return merged


def _run_shard(
    rows: Sequence[Row],
    settings: Settings,
    progress: Progress | None = None,
    worker_args: Sequence[str] = (),
) -> list[tuple[Row, Any]]:
    """Measure ``rows`` in one pyperf manager subprocess; all or nothing.

    Raises MeasurementError naming the failing row (with the root cause from
    stderr) if any worker fails or a row exceeds its time limit; on any
    exception, including KeyboardInterrupt, the process tree is killed first.
    """
    import pyperf

    rows = list(rows)
    with tempfile.TemporaryDirectory(prefix="wsprof-micro-") as tmp:
        output = Path(tmp) / "pyperf.json"
        cmd = [
            sys.executable,
            "-m",
            "wsprof.micro.worker",
            "--rows",
            ",".join(row.id for row in rows),
            "-o",
            str(output),
            "--quiet",
            *worker_args,
            *settings.pyperf_args(),
        ]
        done: list[Row] = []
        timed_out = threading.Event()
        with open(Path(tmp) / "stderr.txt", "w+") as stderr:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True
            )

            def on_timeout() -> None:
                timed_out.set()
                _kill_tree(proc)

            try:
                assert proc.stdout is not None
                while True:
                    watchdog = threading.Timer(ROW_TIMEOUT_S, on_timeout)
                    watchdog.start()
                    try:
                        line = proc.stdout.readline()
                    finally:
                        watchdog.cancel()
                    if not line:
                        break
                    name = line.split(":", 1)[0]
                    if len(done) < len(rows) and name == rows[len(done)].id:
                        done.append(rows[len(done)])
                        if progress is not None:
                            progress(done[-1])
                returncode = proc.wait()
            except BaseException:
                _kill_tree(proc)
                raise
            stderr.seek(0)
            err = stderr.read()
        if timed_out.is_set() or returncode != 0 or len(done) != len(rows):
            failed = rows[len(done)] if len(done) < len(rows) else rows[-1]
            why = (
                f"no result within {ROW_TIMEOUT_S:.0f} s"
                if timed_out.is_set()
                else f"exit code {returncode}: {_stderr_tail(err)}"
            )
            raise MeasurementError(f"micro row {failed.id} failed ({why})")
        suite = pyperf.BenchmarkSuite.load(str(output))
        benches = {bench.get_name(): bench for bench in suite.get_benchmarks()}
    return [(row, benches[row.id]) for row in rows]


def read_results(path: Path) -> list[dict[str, Any]]:
    """Results of a ``wsprof micro --json`` file, for scenarios' predictions."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise WsprofError(f"cannot read micro results {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("schema") != SCHEMA_ID:
        raise WsprofError(f"{path} is not a {SCHEMA_ID} document")
    return list(document["results"])


def lookup(
    results: Sequence[dict[str, Any]],
    layer: str,
    case: str,
    variant: str,
    payload: str | None = None,
) -> dict[str, Any] | None:
    """The result for one row, or None; e.g. ``lookup(r, "json", "dumps", "orjson", "small")``."""
    for r in results:
        if (r["layer"], r["case"], r["variant"], r["payload"]) == (layer, case, variant, payload):
            return r
    return None


def predict_ns(
    results: Sequence[dict[str, Any]], rows: Sequence[tuple[str, str, str, str | None]]
) -> float | None:
    """Sum of the medians of ``rows`` (e.g. one dumps + one loads for an echo); None if any is missing."""
    total = 0.0
    for layer, case, variant, payload in rows:
        r = lookup(results, layer, case, variant, payload)
        if r is None:
            return None
        total += r["ns_per_op"]
    return total
