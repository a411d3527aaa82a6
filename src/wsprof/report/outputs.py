"""The outputs step: every artifact of a recording is written here, whoever recorded it.

`wsprof scenario`, `wsprof profile` and `wsprof attribute` all end with the
same files beside a py-spy folded recording (an SVG flamegraph coloured by
layer, a speedscope profile); writing them through one function keeps their
names, titles and formats the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wsprof.errors import WsprofError
from wsprof.profiling.flamegraph import write_flamegraph
from wsprof.profiling.folded import Stack
from wsprof.profiling.layers import RuleSet
from wsprof.profiling.speedscope import write_speedscope


@dataclass(frozen=True)
class ProfileArtifacts:
    """Where one recording's files are."""

    folded: Path
    svg: Path
    speedscope: Path

    def as_json(self) -> dict[str, str]:
        return {
            "folded": str(self.folded),
            "svg": str(self.svg),
            "speedscope": str(self.speedscope),
        }


def write_profile_artifacts(
    stacks: Sequence[Stack], folded: Path, *, title: str, rules: RuleSet
) -> ProfileArtifacts:
    """Write the flamegraph SVG and the speedscope JSON beside ``folded`` (py-spy's file)."""
    artifacts = ProfileArtifacts(
        folded=folded,
        svg=folded.with_suffix(".svg"),
        speedscope=folded.with_suffix(".speedscope.json"),
    )
    try:
        write_flamegraph(stacks, artifacts.svg, rules, title=title)
        write_speedscope(stacks, artifacts.speedscope, name=title)
    except OSError as exc:
        raise WsprofError(f"cannot write beside {folded}: {exc.strerror or exc}") from exc
    return artifacts
