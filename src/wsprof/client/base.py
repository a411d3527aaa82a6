"""What every load client takes and returns, whichever implementation runs it."""

from __future__ import annotations

import ipaddress
import math
import resource
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from wsprof.client.histogram import PyHistogram, latency_summary_us
from wsprof.errors import MeasurementError, WsprofError
from wsprof.protocol.websocket import MAX_MESSAGE_SIZE

MODES = ("raw", "socketio")
SERIALIZERS = ("json", "msgpack")  # Socket.IO packet formats a client can speak
CLIENTS = ("fast", "reference")
# The load defaults: the CLI and every caller take them from here.
DEFAULT_DURATION_S = 10.0
DEFAULT_WARMUP_S = 1.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
#: File descriptors a process needs besides one per connection (epoll, timerfd, stdio...).
FD_HEADROOM = 64
# A process whose CPU time is at least this share of the window's wall time was
# saturated: its throughput figure describes the client, not the server.
CLIENT_BOUND_SHARE = 0.85
# Bounds of every numeric load setting: beyond them a run would hang, overflow a C integer
# or exhaust memory, so they are refused before anything starts.
MAX_CONNECTIONS = 10_000
MAX_IN_FLIGHT = 10_000
MAX_MESSAGES = 10**12
MAX_RATE = 10_000_000.0
MAX_DURATION_S = 3600.0
MAX_CONNECT_TIMEOUT_S = 600.0


def is_loopback(host: str) -> bool:
    """Load is only ever sent to this machine: a benchmark must not flood a network."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ensure_fd_limit(connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE to fit every connection, or say why it cannot."""
    need = connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            raise WsprofError(
                f"{connections} connections need {need} file descriptors but the hard limit "
                f"is {hard}: raise it (ulimit -Hn) or use fewer connections or more workers"
            )
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def _check_range(option: str, value: float, low: float, high: float, *, low_ok: bool) -> None:
    """NaN or infinity would hang a run: each float option must be finite and in range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WsprofError(f"{option} must be a number, not {value!r}")
    above_low = low <= value if low_ok else low < value
    if not (math.isfinite(value) and above_low and value <= high):
        span = (
            f"between {low:g} and {high:.15g}"
            if low_ok
            else f"above {low:g} and at most {high:.15g}"
        )
        raise WsprofError(f"{option} must be {span}, not {value!r}")


def _check_count(option: str, value: int, high: int) -> None:
    """A count is a whole number from 1 to ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise WsprofError(f"{option} must be a whole number from 1 to {high}, not {value!r}")


def parse_url(url: str) -> tuple[str, int, str]:
    """(host, port, path with query) of a ws:// or http:// URL, or one WsprofError line.

    The port is explicit or the scheme's 80; 0 and anything outside 1-65535 are refused
    (urlsplit raises on some of them and lets 0 through).
    """
    usage = f"URL must be ws://HOST:PORT/PATH, not {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WsprofError(f"{usage} ({exc})") from None
    if parts.scheme not in ("ws", "http") or not parts.hostname:
        raise WsprofError(usage)
    if port is None:
        if parts.netloc.endswith(":"):
            raise WsprofError(f"{usage} (empty port)")
        port = 80
    if not 1 <= port <= 65535:
        raise WsprofError(f"{usage} (the port must be from 1 to 65535)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, port, path


class LoadError(MeasurementError):
    """A load run that cannot go on: refused connection, rejected handshake, bad frames."""


@dataclass(frozen=True)
class LoadConfig:
    url: str
    mode: str = "raw"  # raw: frames as they are; socketio: Engine.IO v4 + Socket.IO v5
    connections: int = 1
    in_flight: int = 1  # closed loop: messages each connection keeps outstanding
    rate: float | None = None  # open loop: total messages/s over all connections
    duration: float = DEFAULT_DURATION_S  # seconds of measurement after warm-up
    max_messages: int | None = None  # stop after this many round trips
    payload: str = "small"
    serializer: str = "json"  # Socket.IO packet format: json | msgpack
    warmup: float = DEFAULT_WARMUP_S  # seconds run before measuring (not recorded)
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    max_message_size: int = MAX_MESSAGE_SIZE
    # Called with "start" and "end" around the measurement window (after warm-up),
    # so a caller can read the server's CPU clock for exactly that window.
    on_window: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def window_mark(self, mark: str) -> None:
        if self.on_window is not None:
            self.on_window(mark)

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise WsprofError(f"URL must be ws://HOST:PORT/PATH, not {self.url!r}")
        hostname, _, _ = parse_url(self.url)
        if not is_loopback(hostname):
            raise WsprofError(
                f"{hostname!r} is not a loopback address: wsprof drives servers on this "
                "machine only (127.0.0.0/8, ::1, localhost)"
            )
        if self.mode not in MODES:
            raise WsprofError(f"unknown mode {self.mode!r} (valid: {', '.join(MODES)})")
        if self.serializer not in SERIALIZERS:
            raise WsprofError(
                f"unknown packet format {self.serializer!r} (valid: {', '.join(SERIALIZERS)})"
            )
        _check_count("--connections", self.connections, MAX_CONNECTIONS)
        _check_count("--in-flight", self.in_flight, MAX_IN_FLIGHT)
        _check_range("--duration", self.duration, 0, MAX_DURATION_S, low_ok=False)
        _check_range("--warmup", self.warmup, 0, MAX_DURATION_S, low_ok=True)
        _check_range(
            "--connect-timeout", self.connect_timeout, 0, MAX_CONNECT_TIMEOUT_S, low_ok=False
        )
        if self.rate is not None:
            _check_range("--rate", self.rate, 0, MAX_RATE, low_ok=False)
            if self.rate * self.duration < 1:
                raise WsprofError(
                    f"--rate {self.rate:g} msgs/s over a --duration {self.duration:g} s window "
                    "is less than one message: raise one of them"
                )
        if self.max_messages is not None:
            _check_count("--messages", self.max_messages, MAX_MESSAGES)

    @property
    def host(self) -> str:
        return parse_url(self.url)[0]

    @property
    def port(self) -> int:
        return parse_url(self.url)[1]

    @property
    def path(self) -> str:
        return parse_url(self.url)[2]

    @property
    def open_loop(self) -> bool:
        return self.rate is not None


@dataclass
class LoadResult:
    """What one load run measured; both clients obey the same contract.

    A run that ends without one good round trip, or in which every connection
    is lost before the window ends, raises LoadError instead of returning.
    """

    #: "fast" | "reference"
    client: str
    #: Round trips completed inside the measurement window whose reply passed the reply
    #: check (byte-for-byte echo). A reply that fails it is not a message: it is counted
    #: in ``errors["echo_mismatch"]`` and its latency is not recorded.
    messages: int
    #: The measurement window's wall time (with several workers, the longest window).
    elapsed_s: float
    #: CPU time (user + system) of the thread that runs the load loop over exactly the
    #: measurement window (CLOCK_THREAD_CPUTIME_ID), summed over worker processes: no
    #: start-up, warm-up or close, and no other thread of the process.
    client_cpu_s: float
    #: PyHistogram/Histogram.to_dict() of the round-trip latencies (ns) of ``messages``.
    histogram: dict[str, Any]
    #: Counts by kind (echo_mismatch, closed_by_server, protocol_error, ...) over the whole
    #: run: warm-up, window and close.
    errors: dict[str, int] = field(default_factory=dict)
    #: Client processes that ran side by side.
    workers: int = 1
    #: Highest client_cpu_s / elapsed_s of any one worker: near 1, the client was the limit.
    worker_busy_max: float = 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def client_cpu_us_per_msg(self) -> float:
        return self.client_cpu_s * 1e6 / self.messages if self.messages else 0.0

    @property
    def client_bound(self) -> bool:
        return self.worker_busy_max >= CLIENT_BOUND_SHARE

    def latency_us(self) -> dict[str, float]:
        hist = PyHistogram()
        hist.merge(self.histogram)
        return latency_summary_us(hist)

    def merge(self, other: LoadResult) -> LoadResult:
        """Combine results of worker processes that ran side by side."""
        hist = PyHistogram()
        hist.merge(self.histogram)
        hist.merge(other.histogram)
        errors = dict(self.errors)
        for k, n in other.errors.items():
            errors[k] = errors.get(k, 0) + n
        return LoadResult(
            client=self.client,
            messages=self.messages + other.messages,
            elapsed_s=max(self.elapsed_s, other.elapsed_s),
            client_cpu_s=self.client_cpu_s + other.client_cpu_s,
            histogram=hist.to_dict(),
            errors=errors,
            workers=self.workers + other.workers,
            worker_busy_max=max(self.worker_busy_max, other.worker_busy_max),
        )

    def summary(self) -> dict[str, Any]:
        """The fields of the wsprof.load/1 JSON result (without schema and env)."""
        return {
            "client": self.client,
            "messages": self.messages,
            "elapsed_s": self.elapsed_s,
            "msgs_per_s": self.msgs_per_s,
            "client_cpu_us_per_msg": self.client_cpu_us_per_msg,
            "latency_us": self.latency_us(),
            "errors": self.errors,
            "client_bound": self.client_bound,
            "workers": self.workers,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
