"""The outputs step: every artifact of a recording is written here, whoever recorded it.

`wsprof scenario`, `wsprof profile` and `wsprof attribute` all end with the
same files beside a py-spy folded recording (an SVG flamegraph coloured by
layer, a speedscope profile); writing them through one function keeps their
names, titles and formats the same everywhere. A scenario adds differential
flamegraphs, its report.html and its JSON result (:func:`write_scenario_outputs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsprof.errors import WsprofError
from wsprof.profiling.flamegraph import write_diff_flamegraph, write_flamegraph
from wsprof.profiling.folded import Stack
from wsprof.profiling.layers import RuleSet
from wsprof.profiling.speedscope import write_speedscope
from wsprof.report.html import profile_html, scenario_html
from wsprof.report.jsonout import write_json
from wsprof.scenario.files import file_component


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


def write_profile_report(
    doc: dict[str, Any], stacks: Sequence[Stack], folded: Path, *, title: str, rules: RuleSet
) -> Path:
    """``wsprof profile``'s report.html (an attribution/1 document) beside its recording."""
    path = folded.with_suffix(".report.html")
    write_report(path, profile_html(doc, stacks, rules, title))
    return path


@dataclass(frozen=True)
class ScenarioArtifacts:
    """Every file one scenario run wrote, by variant name where it is a variant's."""

    profiles: dict[str, ProfileArtifacts]
    diffs: dict[str, Path]  # each profiled variant against the first one
    json: Path | None
    html: Path | None


def write_report(path: Path, text: str) -> None:
    """Write a report page whole or not at all (a half-written page would look complete)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WsprofError(f"cannot write {path}: {exc.strerror or exc}") from exc


def report_path(result: dict[str, Any], json_path: Path | None) -> Path | None:
    """report.html in the run directory; beside the JSON when no run directory was made."""
    out_dir = result["profiling"].get("out_dir")
    if out_dir:
        return Path(out_dir) / "report.html"
    return None if json_path is None else json_path.with_suffix(".html")


def write_scenario_outputs(
    result: dict[str, Any],
    stacks: Mapping[str, Sequence[Stack]],
    *,
    rules: RuleSet,
    json_path: Path | None = None,
) -> ScenarioArtifacts:
    """Write a scenario's flamegraphs, speedscope profiles, diffs and report.html, then its JSON.

    ``result`` is analysis' wsprof.scenario/1 document; each profiled variant's
    ``flamegraphs`` entry (its folded file) gains the paths written here and
    ``report_html`` names the page, so the JSON written last names every file.
    """
    scenario = result["scenario"]
    profiles: dict[str, ProfileArtifacts] = {}
    for v in result["variants"]:
        if "flamegraphs" not in v:
            continue
        artifacts = write_profile_artifacts(
            stacks[v["name"]],
            Path(v["flamegraphs"]["folded"]),
            title=f"{scenario}: {v['name']}",
            rules=rules,
        )
        v["flamegraphs"].update(artifacts.as_json())
        profiles[v["name"]] = artifacts
    diffs: dict[str, Path] = {}
    base, *others = result["variants"]
    for v in others:
        if "flamegraphs" not in v or "flamegraphs" not in base:
            continue
        # File names from sanitised names: a variant name never leads outside the run directory.
        name = f"{file_component(v['name'])}.vs.{file_component(base['name'])}.diff.svg"
        out = profiles[base["name"]].folded.parent / name
        try:
            write_diff_flamegraph(
                stacks[base["name"]],
                stacks[v["name"]],
                out,
                messages_a=base["profiled_messages"],
                messages_b=v["profiled_messages"],
                title=f"{scenario}: {v['name']} vs {base['name']} (per message)",
            )
        except OSError as exc:
            raise WsprofError(f"cannot write {out}: {exc.strerror or exc}") from exc
        v["flamegraphs"]["diff_svg"] = str(out)
        diffs[v["name"]] = out
    html = report_path(result, json_path)
    if html is not None:
        result["report_html"] = str(html)
        write_report(html, scenario_html(result, stacks, rules))
    if json_path is not None:
        write_json(json_path, result)
    return ScenarioArtifacts(profiles, diffs, json_path, html)
