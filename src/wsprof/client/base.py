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
from wsprof.payloads import Payload, get_payload, payload_from_file
from wsprof.protocol.websocket import MAX_MESSAGE_SIZE

MODES = ("raw", "socketio")
SERIALIZERS = ("json", "msgpack")  # Socket.IO packet formats a client can speak
CLIENTS = ("fast", "reference")
#: What ``wsprof load --workload`` (and a scenario's [load] workload) can run.
WORKLOADS = ("echo", "broadcast", "idle", "connect")
#: What completes a round trip: "echo" a byte-for-byte echo of the message (in Socket.IO
#: mode: the reply event carrying the same arguments); "any" any data message (any
#: arguments of the reply event), matched FIFO to the connection's oldest request.
REPLIES = ("echo", "any")
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


def raise_fd_limit(connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards what ``connections`` need, as far as the hard
    limit allows; returns the soft limit now in force."""
    need = connections + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return need if soft == resource.RLIM_INFINITY else soft
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(target, soft)


def ensure_fd_limit(connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE to fit every connection, or say why it cannot.

    Round-trip workloads refuse up front; the idle and connect workloads only
    raise it (:func:`raise_fd_limit`) and meet a limit mid-ramp, with the count
    that did open (a sweep keeps its partial curve).
    """
    need = connections + FD_HEADROOM
    if raise_fd_limit(connections) < need:
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        raise WsprofError(
            f"{connections} connections need {need} file descriptors but the hard limit "
            f"is {hard}: raise it (ulimit -Hn) or use fewer connections or more workers"
        )


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


def unanswered(
    config: LoadConfig, where: str, errors: dict[str, int], seen: dict[str, int]
) -> LoadError:
    """The one line of a run whose requests all stayed unanswered: what did arrive instead.

    ``seen`` counts what arrived and did not satisfy the contract: "event:NAME" (events
    other than the reply event), "ack", "mismatch" (replies that failed the echo check or
    carried another ack id), "frame" (anything else).
    """
    head = f"no round trip completed against {where}"
    seen = {k: n for k, n in seen.items() if n > 0}
    if errors.get("echo_mismatch"):
        seen["mismatch"] = errors["echo_mismatch"]
    if not seen:
        kinds = ", ".join(f"{k}={n}" for k, n in sorted(errors.items())) or "no errors"
        if config.mode == "raw":
            return LoadError(f"{head}: nothing came back ({kinds})")
        return LoadError(
            f"{head}: nothing came back for the '{config.event}' events sent ({kinds}); "
            "try --event NAME with the event the server's handler takes"
            + ("" if config.ack else ", or --ack if its handler answers with a return value")
        )
    key = max(seen, key=lambda k: seen[k])
    count = seen[key]
    expected = config.expected_reply()
    if key.startswith("event:"):
        name = key[len("event:") :]
        what = f"'{name}' events"
        hint = f"try --reply-event {name}" + (" without --ack" if config.ack else "")
    elif key == "ack":
        what, hint = "acks", "try --ack"
    elif key == "mismatch" and config.ack:
        what, hint = "acks with unexpected ids", "the server's acks do not match the ids sent"
    elif key == "mismatch":
        what = (
            "replies that differ from the message sent"
            if config.mode == "raw"
            else f"'{config.expected_event}' events whose data differ from the message sent"
        )
        hint = "try --reply any"
    else:
        what, hint = "other messages", "check --mode and the URL's path"
    return LoadError(f"{head}: received {count:,} {what} and no {expected}; {hint}")


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
    # The reply contract. None: "echo", except "any" when the reply event differs from the
    # event sent (a server that answers ``message`` with ``response`` re-encodes the data).
    reply: str | None = None
    event: str = "echo"  # Socket.IO: the event the client emits
    reply_event: str | None = None  # Socket.IO: the event that completes it (default: event)
    ack: bool = False  # Socket.IO: emit with an ack id; the matching ack completes it
    payload_file: str | None = None  # a JSON value, or raw bytes, instead of ``payload``
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
        self._check_contract()
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

    def _check_contract(self) -> None:
        """A reply contract both clients can keep, or one line saying which option is wrong."""
        if self.reply is not None and self.reply not in REPLIES:
            raise WsprofError(f"unknown --reply {self.reply!r} (valid: {', '.join(REPLIES)})")
        for option, name in (("--event", self.event), ("--reply-event", self.reply_event)):
            if name is not None and (not isinstance(name, str) or not name):
                raise WsprofError(f"{option} must be a non-empty event name, not {name!r}")
        socketio_only = self.ack or self.reply_event is not None or self.event != "echo"
        if self.mode == "raw" and socketio_only:
            raise WsprofError("--event, --reply-event and --ack need --mode socketio")
        if self.ack and self.reply_event is not None:
            raise WsprofError("--ack ends each round trip at its ack: drop --reply-event")
        if self.serializer == "msgpack" and (socketio_only or self.reply == "any"):
            raise WsprofError("with --serializer msgpack only the default echo contract runs")
        if self.payload_file is not None:
            payload_from_file(self.payload_file)

    @property
    def reply_contract(self) -> str:
        """ "echo" or "any" (see REPLIES); an ack's arguments are never checked."""
        if self.reply is not None:
            return self.reply
        if self.ack or self.expected_event != self.event:
            return "any"
        return "echo"

    @property
    def expected_event(self) -> str:
        return self.reply_event if self.reply_event is not None else self.event

    def message_payload(self) -> Payload:
        """The body of every message: ``payload_file`` if given, else the named payload."""
        if self.payload_file is not None:
            return payload_from_file(self.payload_file)
        return get_payload(self.payload)

    def expected_reply(self) -> str:
        """What completes a round trip, in words."""
        if self.mode == "raw":
            return "echo" if self.reply_contract == "echo" else "reply"
        if self.ack:
            return f"ack to '{self.event}'"
        return f"'{self.expected_event}' event"

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
    #: Round trips completed inside the measurement window by a reply that satisfies the
    #: reply contract (LoadConfig.reply_contract: a byte-for-byte echo, any data message,
    #: the reply event, or the ack with the request's id), matched FIFO per connection.
    #: A reply that fails the check is not a message: it is counted in
    #: ``errors["echo_mismatch"]`` (for acks: an id no request carries) and not timed.
    #: Events other than the reply event count in ``errors["unexpected_event"]``, acks
    #: nobody asked for in ``errors["unexpected_ack"]``; neither completes a request.
    messages: int
    #: The measurement window's wall time (with several workers, the longest window).
    elapsed_s: float
    #: CPU time (user + system) of the thread that runs the load loop over exactly the
    #: measurement window (CLOCK_THREAD_CPUTIME_ID), summed over worker processes: no
    #: start-up, warm-up or close, and no other thread of the process.
    client_cpu_s: float
    #: PyHistogram/Histogram.to_dict() of the round-trip latencies (ns) of ``messages``.
    histogram: dict[str, Any]
    #: Counts by kind (echo_mismatch, unexpected_event, closed_by_server, ...) over the whole
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
