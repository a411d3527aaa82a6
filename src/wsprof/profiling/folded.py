"""Parse py-spy's raw ("folded") output: one ``frame;frame;...;leaf COUNT`` per line.

Pure string handling, no I/O beyond :func:`read_folded`, so every rule and
report built on top can be tested with literal strings.

Frame shapes py-spy 0.4 writes (checked against real recordings):

- Python: ``encode (socketio/packet.py:62)``, ``<module> (<frozen abc>:119)``,
  ``Thread.run (threading.py)`` with ``--nolineno``;
- native (``--native``): ``run_forever (loop.c:33192)``,
  ``deflate (libz.so.1.2.13)``, ``0x7fbcee84524a (libc.so.6)`` or a bare name;
- roots: ``process 2437:"/usr/bin/python srv.py"`` with ``--subprocesses``
  and ``thread (2437): MainThread`` (older releases: ``thread (0x7f3a...)``)
  with ``--threads`` or ``--native``.

A process command line is written verbatim: it may contain ``;`` and even
newlines (``python -c "..."``). It is only ever the first frame, so it is
split off (and its lines joined) before the rest of the line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from wsprof.errors import WsprofError

FrameKind = Literal["python", "native", "process", "thread"]

_PROCESS_RE = re.compile(r'process \d+:"')
_CLOSED_TAIL_RE = re.compile(r'" +\d+\s*\Z')
_THREAD_RE = re.compile(r"thread \((?:0x[0-9a-fA-F]+|\d+)\)(?::.*)?\Z", re.DOTALL)
_LINE_RE = re.compile(r"(.*):(\d+)\Z", re.DOTALL)
_MAX_SHOWN = 200
_UNKNOWN = -2


class FoldedParseError(WsprofError, ValueError):
    """A line of a folded file is not ``frames COUNT``; names the line so it can be fixed."""

    def __init__(self, line_no: int, line: str, reason: str, source: str | None = None) -> None:
        self.line_no = line_no
        self.line = line
        self.reason = reason
        self.source = source
        shown = line if len(line) <= _MAX_SHOWN else line[:_MAX_SHOWN] + "..."
        where = f"{source}:{line_no}" if source else f"line {line_no}"
        super().__init__(f"{where}: {reason}: {shown!r}")


class Stack:
    """One folded line: frames from the root to the leaf, and how many samples had them.

    Kept as the joined text and split only when ``frames`` is asked for:
    attribution reads a few leaf frames from the end of the text, which
    keeps a 100k-line file within the time budget.
    """

    __slots__ = ("_end", "_frames", "_rest", "_text", "count")

    def __init__(self, frames: tuple[str, ...], count: int) -> None:
        self._frames: tuple[str, ...] | None = tuple(frames)
        self._text: str | None = None
        self._rest = _UNKNOWN
        self._end = -1  # frames end here in _text (the parser keeps the line whole: no copy)
        self.count = count

    @classmethod
    def from_text(cls, text: str, count: int, rest: int | None = None) -> Stack:
        """A stack from an already validated ``frame;frame;...`` string.

        ``rest``: where the frames after the process roots start, if the caller knows it.
        """
        stack = cls.__new__(cls)
        stack._frames = None
        stack._text = text
        stack._rest = _UNKNOWN if rest is None else rest
        stack._end = len(text)
        stack.count = count
        return stack

    def span(self) -> tuple[str, int, int]:
        """(line, start, end): the frames after the process roots are ``line[start:end]``.

        What attribution reads, without copying the line (start is -1 when
        there are only process frames).
        """
        if self._text is None or self._end < 0:
            text = self.text
            return text, self.rest_start, len(text)
        return self._text, self.rest_start, self._end

    @property
    def rest_start(self) -> int:
        """Offset in :attr:`text` of the first frame after the process roots, -1 if none."""
        if self._rest == _UNKNOWN:
            self._rest = rest_start(self.text)
        return self._rest

    @property
    def frames(self) -> tuple[str, ...]:
        frames = self._frames
        if frames is None:
            frames = self._frames = tuple(_split_frames(self.text))
        return frames

    @property
    def text(self) -> str:
        """The frames joined with ``;`` as in the file."""
        if self._text is None:
            self._text = ";".join(self.frames)
            self._end = len(self._text)
        elif self._end != len(self._text):
            self._text = self._text[: self._end]
        return self._text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stack):
            return NotImplemented
        return self.count == other.count and self.frames == other.frames

    def __hash__(self) -> int:
        return hash((self.frames, self.count))

    def __repr__(self) -> str:
        return f"Stack({self.frames!r}, {self.count})"


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame split into the parts rules match on."""

    name: str
    file: str | None
    line: int | None
    kind: FrameKind


def _is_python_file(file: str) -> bool:
    # ``<frozen abc>``, ``<string>`` and ``<stdin>`` are Python code without a file.
    return file.endswith((".py", ".pyw")) or (file.startswith("<") and file.endswith(">"))


def _split_location(text: str) -> tuple[str, str] | None:
    """Split ``name (location)`` at the parenthesis matching the final ``)``.

    Matching rather than taking the last `` (`` keeps paths such as
    ``proj (copy)/x.py`` and C++ names such as ``f(int) (lib.so)`` intact.
    """
    if not text.endswith(")"):
        return None
    cut = text.rfind(" (")
    if cut >= 0 and "(" not in text[cut + 2 : -1] and ")" not in text[cut + 2 : -1]:
        return text[:cut], text[cut + 2 : -1]
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        c = text[i]
        if c == ")":
            depth += 1
        elif c == "(":
            depth -= 1
            if depth == 0:
                if i == 0 or text[i - 1] != " ":
                    return None
                return text[: i - 1], text[i + 1 : -1]
    return None


@lru_cache(maxsize=65536)
def parse_frame(text: str) -> Frame:
    """Split one frame string; never fails (an unknown shape is a bare native name)."""
    if text.startswith("process ") and _PROCESS_RE.match(text):
        return Frame(text, None, None, "process")
    if text.startswith("thread (") and _THREAD_RE.match(text):
        return Frame(text, None, None, "thread")
    parts = _split_location(text)
    if parts is None:
        return Frame(text, None, None, "native")
    name, location = parts
    m = _LINE_RE.match(location)
    file, line = (m.group(1), int(m.group(2))) if m else (location, None)
    kind: FrameKind = "python" if _is_python_file(file) else "native"
    return Frame(name, file, line, kind)


def _split_frames(stack: str) -> list[str]:
    heads, rest = process_heads(stack)
    return [*heads, *([] if rest is None else rest.split(";"))]


def process_heads(stack: str) -> tuple[list[str], str | None]:
    """Split off the leading ``process N:"cmdline"`` frames: (those frames, the rest).

    With ``--subprocesses`` a child's samples carry its parents' process frames
    first (``process 1:"..";process 2:"..";frames``). The rest is None when
    process frames are the whole stack.
    """
    heads: list[str] = []
    pos = 0
    while stack.startswith("process ", pos) and _PROCESS_RE.match(stack, pos):
        end = stack.find('";', pos)
        if end < 0:
            heads.append(stack[pos:])
            return heads, None
        heads.append(stack[pos : end + 1])
        pos = end + 2
    return heads, stack[pos:] if heads else stack


def rest_start(stack: str) -> int:
    """Where the frames after the leading process frames start; -1 when there are none.

    :func:`process_heads` without building the list: parsing and attribution
    call it once per line, and a 100k-line file must parse in well under a second.
    """
    if not stack.startswith("process "):
        return 0
    pos = 0
    while stack.startswith("process ", pos) and _PROCESS_RE.match(stack, pos):
        end = stack.find('";', pos)
        if end < 0:
            return -1
        pos = end + 2
    return pos


def process_split(stack: str) -> tuple[str | None, str | None]:
    """Split off the leading process frame(s): (them joined by ``;``, or None; the rest).

    The rest is None when the process frames are the whole stack.
    """
    heads, rest = process_heads(stack)
    return (";".join(heads) if heads else None), rest


def parse_folded(text: str, source: str | None = None) -> list[Stack]:
    """Parse folded text into stacks, in file order (duplicates are kept, not merged).

    Blank lines are skipped; a process frame whose command line holds
    newlines is joined back into one line. Anything else that is not ``frames COUNT`` with a
    non-negative decimal count and no empty frame raises
    :class:`FoldedParseError` naming the 1-based line number and the line.
    """
    stacks: list[Stack] = []
    append = stacks.append
    new = object.__new__
    lines = text.split("\n")
    n_lines = len(lines)
    # The process roots repeat on every line of a recording: a line whose first frame is
    # one already seen (and is its only process frame) needs no regex to find its frames.
    heads: set[str] = set()
    i = 0
    while i < n_lines:
        raw = lines[i]
        line_no = i + 1
        i += 1
        if raw.startswith("process "):
            start = raw.find('";') + 2
            if start < 2 or raw[:start] not in heads or raw.startswith("process ", start):
                start = rest_start(raw)
                # py-spy writes the command line verbatim: a `python -c` script
                # spreads the process frame (a child's, after its parent's) over
                # several physical lines.
                while start < 0 and i < n_lines and _CLOSED_TAIL_RE.search(raw) is None:
                    raw = f"{raw}\n{lines[i]}"
                    i += 1
                    start = rest_start(raw)
                if start > 0 and raw.find('";') + 2 == start:
                    heads.add(raw[:start])
        else:
            start = 0
        line = raw.strip()
        if not line:
            continue
        # The frames stay inside `line` (a 100k-line file is ~100 MB: no copy per line).
        end = line.rfind(" ")
        if end < 0:
            raise FoldedParseError(line_no, raw, "expected '<frame;frame;...> <count>'", source)
        count_text = line[end + 1 :]
        if not (count_text.isascii() and count_text.isdigit()):
            raise FoldedParseError(
                line_no, raw, "sample count is not a non-negative integer", source
            )
        if line[end - 1 : end].isspace():
            end = len(line[:end].rstrip())
        if end <= 0:
            raise FoldedParseError(line_no, raw, "no frames before the sample count", source)
        if raw[:1].isspace():  # strip() moved the offsets
            start = rest_start(line)
        if start >= end:
            start = rest_start(line[:end])
        if start >= 0 and (
            start == end
            or line.startswith(";", start)
            or line.endswith(";", start, end)
            or line.find(";;", start, end) >= 0
        ):
            raise FoldedParseError(
                line_no, raw, "empty frame (';;' or a leading/trailing ';')", source
            )
        # Stack.from_text, inlined: a call per line is a tenth of the parse.
        item = new(Stack)
        item._frames = None
        item._text = line
        item._rest = start
        item._end = end
        item.count = int(count_text)
        append(item)
    return stacks


#: py-spy's raw output of a long native recording stays far below this.
MAX_FOLDED_BYTES = 2 << 30


def read_folded(path: Path | str) -> list[Stack]:
    """Read and parse a folded file; errors name the file and the line."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            # Bounded: a device or a runaway file must end in one line, not fill memory.
            data = f.read(MAX_FOLDED_BYTES + 1)
    except OSError as exc:
        raise WsprofError(f"cannot read folded stacks {p}: {exc.strerror or exc}") from exc
    if len(data) > MAX_FOLDED_BYTES:
        raise WsprofError(
            f"{p}: larger than {MAX_FOLDED_BYTES >> 20} MiB; not a py-spy recording wsprof reads"
        )
    return parse_folded(data.decode("utf-8", errors="replace"), source=str(p))


_PROCESS_HEAD_RE = re.compile(r'process (\d+):"(.*)"\Z', re.DOTALL)


def processes(stacks: Iterable[Stack]) -> dict[int, tuple[str, int]]:
    """PID -> (command line, own samples) of every ``process N:"cmdline"`` frame, in file order."""
    found: dict[int, tuple[str, int]] = {}
    for stack in stacks:
        heads, _ = process_heads(stack.text)
        for n, head in enumerate(heads, 1):
            m = _PROCESS_HEAD_RE.match(head)
            if m is None:
                continue
            pid = int(m.group(1))
            cmdline, count = found.get(pid, (m.group(2), 0))
            # The samples are the innermost process's; its parents are listed, not charged.
            found[pid] = (cmdline, count + (stack.count if n == len(heads) else 0))
    return found


def format_folded(stacks: Iterable[Stack]) -> str:
    """Write stacks back in py-spy's raw format (the inverse of :func:`parse_folded`)."""
    return "".join(f"{s.text} {s.count}\n" for s in stacks)


def total_samples(stacks: Iterable[Stack]) -> int:
    """Sum of sample counts."""
    return sum(s.count for s in stacks)
