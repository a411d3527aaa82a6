"""The contract of the idle and connect workloads, whichever client runs them.

What each workload takes (IdleConfig, ConnectConfig) and returns (IdleResult,
ConnectResult), the OS limits a run can hit (ConnectionLimit) and the small helpers
both clients share. wsprof.client.connections runs them.
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wsprof.client.base import (
    CLIENT_BOUND_SHARE,
    CLIENTS,
    MAX_DURATION_S,
    MODES,
    SERIALIZERS,
    LoadError,
    _check_count,
    _check_range,
    is_loopback,
    parse_url,
)
from wsprof.errors import WsprofError
from wsprof.protocol.engineio import socketio_path

#: Idle connections one run may hold: one destination has at most ~64k ephemeral ports.
MAX_IDLE_CONNECTIONS = 60_000
MAX_CONCURRENCY = 10_000
# The defaults: the CLI and every caller take them from here.
DEFAULT_IDLE_CONNECTIONS = 1000
DEFAULT_IDLE_WINDOW_S = 5.0
DEFAULT_OPEN_CONCURRENCY = 100
DEFAULT_CONNECT_CONCURRENCY = 50
#: How long one connection may take to open before it counts as failed (``timeout``).
OPEN_TIMEOUT_S = 10.0
#: How long closing may take at the end of a run (idle: at least 1 s per 1,000 connections).
CLOSE_TIMEOUT_S = 2.0
PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


class ConnectionLimit(LoadError):
    """The OS refused more connections (EMFILE/ENFILE: ``ulimit -n``; EADDRNOTAVAIL: the
    ephemeral port range net.ipv4.ip_local_port_range). The message is one line naming the
    limit and what to change. ``opened`` = how many were open when it was hit (sockets:
    those in set-up and closing too, which is what an fd or port limit counts)."""

    def __init__(self, message: str, opened: int) -> None:
        super().__init__(message)
        self.opened = opened


def limit_error(exc: OSError, opened: int) -> ConnectionLimit | None:
    """The ConnectionLimit an OS refusal stands for, or None when it is no limit."""
    head = f"the OS refused a connection after {opened:,} were open"
    if exc.errno in (errno.EMFILE, errno.ENFILE):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        which = "this process's" if exc.errno == errno.EMFILE else "the system's"
        return ConnectionLimit(
            f"{head}: {which} file descriptors ran out ({os.strerror(exc.errno)}); "
            f"ulimit -n is {soft} (hard limit {hard}): raise it (ulimit -n N) "
            "or use fewer connections",
            opened,
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        try:
            low, high = (int(v) for v in PORT_RANGE.read_text().split())
            span = f"{low}-{high} ({high - low + 1:,} ports)"
        except (OSError, ValueError):
            span = "unknown"
        return ConnectionLimit(
            f"{head}: no ephemeral port left for one more connection to this address; "
            f"net.ipv4.ip_local_port_range is {span}: widen it "
            "(sysctl -w net.ipv4.ip_local_port_range='1024 65535') or use fewer connections "
            "(ports in TIME_WAIT free up within 60 s)",
            opened,
        )
    return None


def _check_target(url: str, mode: str, serializer: str) -> None:
    if not isinstance(url, str):
        raise WsprofError(f"URL must be ws://HOST:PORT/PATH, not {url!r}")
    host, _, _ = parse_url(url)
    if not is_loopback(host):
        raise WsprofError(
            f"{host!r} is not a loopback address: wsprof drives servers on this "
            "machine only (127.0.0.0/8, ::1, localhost)"
        )
    if mode not in MODES:
        raise WsprofError(f"unknown mode {mode!r} (valid: {', '.join(MODES)})")
    if serializer not in SERIALIZERS:
        raise WsprofError(f"unknown packet format {serializer!r} (valid: {', '.join(SERIALIZERS)})")


def check_client(client: str) -> None:
    if client not in CLIENTS:
        raise WsprofError(f"unknown client {client!r} (valid: {', '.join(CLIENTS)})")


@dataclass(frozen=True)
class IdleConfig:
    url: str
    mode: str = "raw"
    serializer: str = "json"
    connections: int = DEFAULT_IDLE_CONNECTIONS
    duration: float = DEFAULT_IDLE_WINDOW_S  # the idle window (after every connection is open)
    open_concurrency: int = (
        DEFAULT_OPEN_CONCURRENCY  # connection handshakes in progress at once while opening
    )
    # "start" once all are open, then "end"
    on_window: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_target(self.url, self.mode, self.serializer)
        _check_count("--connections", self.connections, MAX_IDLE_CONNECTIONS)
        _check_count("--concurrency", self.open_concurrency, MAX_CONCURRENCY)
        _check_range("--idle-window", self.duration, 0, MAX_DURATION_S, low_ok=False)


@dataclass(frozen=True)
class IdleResult:
    connections: int  # open for the whole window
    failed: int  # could not be opened or dropped during the window
    heartbeats: int  # Engine.IO pings received during the window (0 in raw mode)
    # answered later than 1 s after arrival (an upper bound: after the client could
    # last have seen it)
    heartbeats_late: int
    open_s: float  # time to open all of them
    elapsed_s: float
    client_cpu_s: float  # the load thread's CPU over the window
    # errors of the set-up and the window (the close afterwards is not measured: a server
    # that has not closed by idle_close_timeout gets resets)
    errors: dict[str, int]

    def summary(self) -> dict[str, Any]:
        """The fields of the JSON result."""
        return {
            "connections": self.connections,
            "failed": self.failed,
            "heartbeats": self.heartbeats,
            "heartbeats_late": self.heartbeats_late,
            "open_s": self.open_s,
            "elapsed_s": self.elapsed_s,
            "client_cpu_s": self.client_cpu_s,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class ConnectConfig:
    url: str
    mode: str = "raw"
    serializer: str = "json"
    concurrency: int = DEFAULT_CONNECT_CONCURRENCY  # connects in progress at once (closed loop)
    duration: float = 3.0
    warmup: float = 0.5
    on_window: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_target(self.url, self.mode, self.serializer)
        _check_count("--concurrency", self.concurrency, MAX_CONCURRENCY)
        _check_range("--duration", self.duration, 0, MAX_DURATION_S, low_ok=False)
        _check_range("--warmup", self.warmup, 0, MAX_DURATION_S, low_ok=True)


@dataclass(frozen=True)
class ConnectResult:
    connects: int  # completed in the window: TCP + upgrade (+ EIO open + SIO connect)
    elapsed_s: float
    client_cpu_s: float
    client_bound: bool
    errors: dict[str, int]
    histogram: dict[str, Any]  # connect latency (ns), the client's histogram dict form

    @property
    def connects_per_s(self) -> float:
        return self.connects / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_us(self) -> dict[str, float]:
        from wsprof.client.histogram import PyHistogram, latency_summary_us

        hist = PyHistogram()
        hist.merge(self.histogram)
        return latency_summary_us(hist)

    def summary(self) -> dict[str, Any]:
        """The fields of the JSON result."""
        return {
            "connects": self.connects,
            "connects_per_s": self.connects_per_s,
            "connect_latency_us": self.latency_us(),
            "elapsed_s": self.elapsed_s,
            "client_cpu_s": self.client_cpu_s,
            "client_bound": self.client_bound,
            "errors": self.errors,
        }


def idle_close_timeout(connections: int) -> float:
    """The close wait after an idle window: a server closes about a thousand a second."""
    return max(CLOSE_TIMEOUT_S, connections / 1000)


def client_bound(cpu_s: float, elapsed_s: float) -> bool:
    return elapsed_s > 0 and cpu_s / elapsed_s >= CLIENT_BOUND_SHARE


def endpoint(url: str, mode: str) -> tuple[str, int, str]:
    """(host, port, path) to connect to; Socket.IO goes to its Engine.IO endpoint."""
    host, port, path = parse_url(url)
    return host, port, socketio_path(path) if mode == "socketio" else path


def nothing_opened(url: str, what: str, errors: dict[str, int], first: dict[str, str]) -> LoadError:
    detail = "; ".join(f"{k} x{errors.get(k, 0)}: {v}" for k, v in first.items()) or "no errors"
    return LoadError(f"{what} to {url} ({detail})")
