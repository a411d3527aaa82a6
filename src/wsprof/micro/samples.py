"""The messages ``wsprof tune serialization`` measures: a user's file, or the shipped payloads.

A samples file is either one JSON array whose elements are the messages, or
JSON lines (one message per non-blank line). A file holding a single array is
read as the array's elements; to tune a single array-valued message, write
it as JSON lines with the message on its line next to another. Python's json
reads the file, so ``NaN``, ``Infinity`` and integers of any size arrive as
the values a handler would hold: the fidelity check needs them intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError

MAX_SAMPLES = 100_000  # more than enough for a mix; keeps every pyperf worker's set small
MAX_BYTES = (
    64 * 1024 * 1024
)  # a bounded read: /dev/zero or a huge log must not hang or exhaust memory


@dataclass(frozen=True)
class Sample:
    """One message, and the name reports use for it (``#3 (line 3)``, ``small``)."""

    label: str
    value: Any


def _decode(text: str) -> Any:
    """json.loads whose every failure is a ValueError (deep nesting raises RecursionError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def parse_samples(text: str, source: str = "samples") -> list[Sample]:
    """The messages in ``text``; a malformed file is one WsprofError naming the line."""
    stripped = text.strip()
    if not stripped:
        raise WsprofError(f"{source}: no samples (expected a JSON array or JSON lines)")
    if stripped.startswith("["):
        try:
            whole = _decode(stripped)
        except ValueError:
            whole = None
        if isinstance(whole, list):
            if not whole:
                raise WsprofError(f"{source}: the JSON array holds no samples")
            return _bounded(source, [Sample(f"#{i + 1}", v) for i, v in enumerate(whole)])
    samples: list[Sample] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = _decode(line)
        except ValueError as exc:
            raise WsprofError(
                f"{source}: line {number} is not JSON ({exc}); "
                "expected a JSON array or one JSON message per line"
            ) from None
        samples.append(Sample(f"#{len(samples) + 1} (line {number})", value))
    return _bounded(source, samples)


def _bounded(source: str, samples: list[Sample]) -> list[Sample]:
    if len(samples) > MAX_SAMPLES:
        raise WsprofError(f"{source}: {len(samples)} samples, more than {MAX_SAMPLES}")
    return samples


def load_samples(path: Path) -> list[Sample]:
    """Read and parse a samples file; an unreadable file is one WsprofError line."""
    try:
        with Path(path).open("rb") as f:
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise WsprofError(f"samples {path}: larger than {MAX_BYTES // 2**20} MiB")
        text = data.decode("utf-8-sig")  # an editor's BOM is not part of the JSON
    except (OSError, UnicodeDecodeError) as exc:
        raise WsprofError(f"cannot read samples {path}: {exc}") from None
    return parse_samples(text, str(path))


def shipped_samples() -> list[Sample]:
    """The shipped JSON payloads, one message each (the binary one's bytes travel as
    attachments under the JSON serializers, so it is not a serializer's message)."""
    from wsprof.payloads import all_payloads

    return [Sample(p.name, p.value) for p in all_payloads().values() if p.kind == "json"]


def samples_text(samples: list[Sample]) -> str:
    """One JSON array of ``samples``, for the pyperf workers (Python's json: NaN and big ints survive)."""
    return json.dumps([s.value for s in samples])
