"""Speedscope JSON ("sampled" profile) from folded stacks.

speedscope (https://www.speedscope.app) gives a time-ordered and a
left-heavy view plus a sandwich (callers/callees) table, which a static
flamegraph lacks. Shape: https://www.speedscope.app/file-format-schema.json
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wsprof import __version__
from wsprof.profiling.folded import Stack, parse_frame

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"


def speedscope_document(stacks: Iterable[Stack], name: str = "wsprof") -> dict[str, Any]:
    """One sampled profile; each folded line is one sample weighted by its count."""
    frames: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack in stacks:
        if stack.count <= 0:
            continue
        ids = []
        for text in stack.frames:
            i = index.get(text)
            if i is None:
                f = parse_frame(text)
                entry: dict[str, Any] = {"name": f.name}
                if f.file is not None:
                    entry["file"] = f.file
                if f.line is not None:
                    entry["line"] = f.line
                i = index[text] = len(frames)
                frames.append(entry)
            ids.append(i)
        samples.append(ids)
        weights.append(stack.count)
    return {
        "$schema": SCHEMA_URL,
        "shared": {"frames": frames},
        "profiles": [
            {
                "type": "sampled",
                "name": name,
                "unit": "none",
                "startValue": 0,
                "endValue": sum(weights),
                "samples": samples,
                "weights": weights,
            }
        ],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": f"wsprof {__version__}",
    }


def write_speedscope(stacks: Iterable[Stack], path: Path | str, name: str = "wsprof") -> Path:
    """Write :func:`speedscope_document` as JSON to ``path``."""
    p = Path(path)
    p.write_text(json.dumps(speedscope_document(stacks, name)), encoding="utf-8")
    return p
