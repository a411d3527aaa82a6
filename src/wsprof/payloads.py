"""The payloads every wsprof measurement uses, defined once as data (payloads.toml)."""

from __future__ import annotations

import json
import random
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError


@dataclass(frozen=True)
class Payload:
    """One named message body, the same for every client, server and microbenchmark."""

    name: str
    description: str
    kind: str  # "json" or "binary"
    value: Any  # what an event carries; bytes inside it for "binary"

    @property
    def is_binary(self) -> bool:
        return self.kind == "binary"

    def json_text(self) -> str:
        """Compact JSON of the value (bytes fields excluded), as python-socketio writes it."""
        return json.dumps(_without_bytes(self.value), separators=(",", ":"))

    def json_size(self) -> int:
        return len(self.json_text().encode())

    def raw_message(self) -> str | bytes:
        """What a raw WebSocket client sends: the JSON text, or the attachment bytes."""
        if self.is_binary:
            return next(v for v in self.value.values() if isinstance(v, bytes))
        return self.json_text()


def _without_bytes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_bytes(v) for k, v in value.items() if not isinstance(v, bytes)}
    return value


def _build(name: str, spec: dict[str, Any]) -> Payload:
    kind = spec.get("kind", "json")
    if kind not in ("json", "binary"):
        raise WsprofError(f"payload {name!r}: kind must be 'json' or 'binary', not {kind!r}")
    value: Any = spec.get("value")
    if "item" in spec:
        items = [{**spec["item"], "i": i} for i in range(int(spec["count"]))]
        value = {**(value or {}), spec["list_field"]: items} if "list_field" in spec else items
    if value is None:
        raise WsprofError(f"payload {name!r}: needs 'value' or 'item' and 'count'")
    if kind == "binary":
        # Deterministic bytes so runs are comparable and echoes checkable.
        blob = random.Random(name).randbytes(int(spec["attachment_bytes"]))
        value = {**value, spec.get("attachment_field", "data"): blob}
    return Payload(name, spec.get("description", ""), kind, value)


@cache
def all_payloads() -> dict[str, Payload]:
    """Every payload of payloads.toml by name, in file order (built once per process)."""
    text = resources.files("wsprof").joinpath("payloads.toml").read_text()
    return {name: _build(name, spec) for name, spec in tomllib.loads(text).items()}


def payload_names(kind: str | None = None) -> list[str]:
    """The payload names (of one ``kind``, "json" or "binary", if given), in file order."""
    return [p.name for p in all_payloads().values() if kind is None or p.kind == kind]


def get_payload(name: str) -> Payload:
    """One payload; an unknown name is a one-line error that lists the valid ones."""
    try:
        return all_payloads()[name]
    except KeyError:
        raise WsprofError(
            f"unknown payload {name!r} (valid: {', '.join(payload_names())})"
        ) from None


def payload_from_file(path: str) -> Payload:
    """A user's message body: the file's JSON value, or (not UTF-8 JSON) its raw bytes.

    Bytes travel as a raw binary frame, or as a Socket.IO event ``{"data": <bytes>}``
    with one binary attachment, exactly as a named binary payload does.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise WsprofError(f"cannot read --payload-file {path}: {exc.strerror}") from None
    if not data:
        raise WsprofError(f"--payload-file {path} is empty")
    try:
        value = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return Payload(path, f"raw bytes of {path}", "binary", {"data": data})
    return Payload(path, f"the JSON value in {path}", "json", value)
