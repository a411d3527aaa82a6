"""What both broadcast clients take and return, and the result step they share (the contract
is described in wsprof.client.broadcast)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from wsprof.client.base import (
    CLIENT_BOUND_SHARE,
    MAX_CONNECTIONS,
    MAX_DURATION_S,
    MAX_RATE,
    MODES,
    LoadError,
    _check_count,
    _check_range,
    is_loopback,
    parse_url,
)
from wsprof.client.histogram import PyHistogram, latency_summary_us
from wsprof.errors import WsprofError
from wsprof.protocol.broadcast import MIN_PAYLOAD_BYTES
from wsprof.protocol.websocket import MAX_MESSAGE_SIZE

#: Error kinds both clients count (a key appears in ``errors`` only when non-zero).
ERROR_KINDS = (
    "closed_by_server",
    "connection_reset",
    "protocol_error",
    "malformed_body",
    "unknown_id",
    "unexpected_message",
    "unexpected_event",
    "send_backlog",
    "schedule_backlog",
    "close_timeout",
)
MAX_IN_FLIGHT = 1000
MAX_DRAIN_S = 60.0
CONNECT_TIMEOUT_S = 10.0
#: Set-up time allowed per connection on top of CONNECT_TIMEOUT_S: a Socket.IO server on a
#: busy 2-core machine opens fewer than 100 sessions/s.
CONNECT_S_PER_CONNECTION = 0.03
CLOSE_TIMEOUT_S = 2.0
#: Closing handshake time allowed per connection on top of CLOSE_TIMEOUT_S.
CLOSE_S_PER_CONNECTION = 0.005


@dataclass(frozen=True)
class BroadcastConfig:
    """One broadcast run; checked on construction so that a bad value fails before I/O."""

    url: str
    mode: str = "raw"
    serializer: str = "json"
    recipients: int = 100
    senders: int = 1
    in_flight: int = 1
    rate: float | None = None
    duration: float = 3.0
    warmup: float = 1.0
    payload_bytes: int = 64
    drain_s: float = 2.0
    extra_urls: tuple[str, ...] = ()
    on_window: Callable[[str], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise WsprofError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.serializer not in ("json", "msgpack"):
            raise WsprofError(f"serializer must be json or msgpack, not {self.serializer!r}")
        for url in self.urls:
            host, _, _ = parse_url(url)
            if not is_loopback(host):
                raise WsprofError(f"load goes to this machine only (loopback), not {host!r}")
        _check_count("recipients", self.recipients, MAX_CONNECTIONS)
        _check_count("senders", self.senders, self.recipients)
        _check_count("in_flight", self.in_flight, MAX_IN_FLIGHT)
        if self.rate is not None:
            _check_range("rate", self.rate, 0.0, MAX_RATE, low_ok=False)
        _check_range("duration", self.duration, 0.0, MAX_DURATION_S, low_ok=False)
        _check_range("warmup", self.warmup, 0.0, MAX_DURATION_S, low_ok=True)
        _check_range("drain_s", self.drain_s, 0.0, MAX_DRAIN_S, low_ok=True)
        _check_count("payload_bytes", self.payload_bytes, MAX_MESSAGE_SIZE // 2)
        if self.payload_bytes < MIN_PAYLOAD_BYTES:
            raise WsprofError(
                f"payload_bytes must be at least {MIN_PAYLOAD_BYTES} (the broadcast id)"
            )

    @property
    def urls(self) -> tuple[str, ...]:
        """Every server process, in the order connections are dealt to them."""
        return (self.url, *self.extra_urls)

    @property
    def connect_timeout(self) -> float:
        """How long opening every connection may take before the run fails."""
        return CONNECT_TIMEOUT_S + CONNECT_S_PER_CONNECTION * self.recipients

    @property
    def close_timeout(self) -> float:
        """How long the closing handshakes may take before they count as close_timeout."""
        return CLOSE_TIMEOUT_S + CLOSE_S_PER_CONNECTION * self.recipients

    def window_mark(self, mark: str) -> None:
        if self.on_window is not None:
            self.on_window(mark)


@dataclass(frozen=True)
class BroadcastResult:
    """What a broadcast run measured; the same fields from either client."""

    broadcasts: int
    deliveries: int
    missing: int
    duplicates: int
    elapsed_s: float
    client_cpu_s: float
    client_busy: float
    client_bound: bool
    errors: dict[str, int]
    histogram: dict[str, Any]
    cross_histogram: dict[str, Any]

    @property
    def deliveries_per_s(self) -> float:
        return self.deliveries / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def broadcasts_per_s(self) -> float:
        return self.broadcasts / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_us(self, cross: bool = False) -> dict[str, float]:
        hist = PyHistogram()
        hist.merge(self.cross_histogram if cross else self.histogram)
        return latency_summary_us(hist)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every field plus the derived rates and latency percentiles."""
        out = asdict(self)
        out["deliveries_per_s"] = self.deliveries_per_s
        out["broadcasts_per_s"] = self.broadcasts_per_s
        out["latency_us"] = self.latency_us()
        out["cross_latency_us"] = self.latency_us(cross=True)
        return out


def finish(
    config: BroadcastConfig, out: dict[str, Any], histogram: Any, cross: Any
) -> BroadcastResult:
    """Turn a client's raw figures into the result, or one line when nothing valid arrived."""
    errors = {k: int(v) for k, v in out["errors"].items() if v}
    if out["deliveries"] == 0:
        where = ", ".join(config.urls)
        seen = {k: int(v) for k, v in out.get("seen", {}).items() if v}
        what = ", ".join(f"{n:,} {k}" for k, n in seen.items()) or "no broadcast"
        raise LoadError(
            f"no broadcast was delivered by {where}: {out['broadcasts']:,} sent in the window, "
            f"received {what} ({_kinds(errors)}); is handler=broadcast set and --mode right?"
        )
    elapsed = float(out["elapsed_s"])
    busy = out["cpu_s"] / elapsed if elapsed > 0 else 0.0
    return BroadcastResult(
        broadcasts=int(out["broadcasts"]),
        deliveries=int(out["deliveries"]),
        missing=int(out["broadcasts"]) * config.recipients - int(out["deliveries"]),
        duplicates=int(out["duplicates"]),
        elapsed_s=elapsed,
        client_cpu_s=float(out["cpu_s"]),
        client_busy=busy,
        client_bound=busy >= CLIENT_BOUND_SHARE,
        errors=errors,
        histogram=histogram.to_dict(),
        cross_histogram=cross.to_dict(),
    )


def _kinds(errors: dict[str, int]) -> str:
    return ", ".join(f"{k}={n}" for k, n in sorted(errors.items())) or "no errors"
