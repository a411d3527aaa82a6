"""The CLI: one dispatch table, choices and defaults from the code's tables, one error policy."""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsprof import cli
from wsprof.client.base import CLIENTS, MODES, SERIALIZERS, LoadConfig
from wsprof.errors import MeasurementError, WsprofError
from wsprof.micro.catalog import LAYERS as MICRO_LAYERS
from wsprof.payloads import payload_names
from wsprof.profiling.layers import LAYER_INFO, LAYERS
from wsprof.profiling.pyspy import DEFAULT_RATE_HZ


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _option(command: str, dest: str) -> argparse.Action:
    sub = _subparsers(cli.build_parser())[command]
    (action,) = (a for a in sub._actions if a.dest == dest)
    return action


def _signature(parser: argparse.ArgumentParser) -> list[tuple[object, ...]]:
    """Every option's name, flags, default, type and choices (nested subcommands compared too)."""

    def choices(action: argparse.Action) -> object:
        if isinstance(action, argparse._SubParsersAction):
            return {name: _signature(p) for name, p in action.choices.items()}
        return action.choices

    return [
        (a.dest, tuple(a.option_strings), a.default, a.type, choices(a)) for a in parser._actions
    ]


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_the_parser_built_for_one_command_is_that_part_of_the_whole(command: str) -> None:
    """main builds only the command it runs: that part must parse exactly as the whole would."""
    alone = _subparsers(cli.build_parser(command))
    assert command in alone
    assert _signature(alone[command]) == _signature(_subparsers(cli.build_parser())[command])


def test_the_dispatch_table_covers_every_subcommand() -> None:
    assert set(_subparsers(cli.build_parser())) == set(cli.COMMANDS)
    for module, function in cli.COMMANDS.values():
        assert module.startswith("wsprof.commands.") and function in ("run", "run_list")


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_resolves_to_a_function(name: str) -> None:
    """Needs every command module: scenario (helper C1) and client_bench (helper A) included."""
    assert callable(cli.command_function(name))


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_help_of_each_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([name, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: wsprof {name}" in capsys.readouterr().out


def test_load_choices_are_the_client_tables() -> None:
    assert tuple(_option("load", "mode").choices or ()) == MODES
    assert tuple(_option("load", "serializer").choices or ()) == SERIALIZERS
    assert tuple(_option("load", "client").choices or ()) == CLIENTS


def test_load_defaults_are_load_configs() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(LoadConfig)}
    for dest, field in [
        ("mode", "mode"),
        ("in_flight", "in_flight"),
        ("rate", "rate"),
        ("duration", "duration"),
        ("messages", "max_messages"),
        ("warmup", "warmup"),
        ("payload", "payload"),
        ("serializer", "serializer"),
        ("connect_timeout", "connect_timeout"),
    ]:
        assert _option("load", dest).default == fields[field], dest
    # --connections defaults per workload: unset on the command line, the config's own default.
    assert _option("load", "connections").default is None
    assert f"echo: default {fields['connections']}" in (_option("load", "connections").help or "")


def test_names_in_help_come_from_their_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert ", ".join(MICRO_LAYERS) in (_option("micro", "layer").help or "")
    for command in ("micro", "load"):
        assert ", ".join(payload_names()) in (_option(command, "payload").help or "")
    for command in ("attribute", "profile", "scenario"):
        assert ", ".join(LAYERS) in (_option(command, "rules").help or "")
    with pytest.raises(SystemExit):
        cli.main(["attribute", "--help"])
    out = capsys.readouterr().out
    for layer in LAYER_INFO:
        assert layer.name in out and layer.description in out


def test_one_py_spy_default_rate() -> None:
    # None: the command picks DEFAULT_RATE_HZ, or NATIVE_RATE_HZ with --native
    assert _option("profile", "rate_hz").default is None
    assert str(DEFAULT_RATE_HZ) in (_option("profile", "rate_hz").help or "")
    assert str(DEFAULT_RATE_HZ) in (_option("scenario", "rate_hz").help or "")


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf"])
def test_durations_must_be_positive_and_finite(text: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["load", "ws://127.0.0.1:9/", "--duration", text])
    assert exit_info.value.code == 2


# Commands for the error-policy tests, reached through the real dispatch table.
def _user_error(args: argparse.Namespace) -> int:
    raise WsprofError("bad input\nwith a second line from some library")


def _run_failed(args: argparse.Namespace) -> int:
    raise MeasurementError("server died")


def _interrupted(args: argparse.Namespace) -> int:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("function", "code", "message"),
    [
        ("_user_error", 2, "wsprof: error: bad input with a second line from some library\n"),
        ("_run_failed", 1, "wsprof: error: server died\n"),
        ("_interrupted", 130, "wsprof: interrupted; nothing was written as complete\n"),
    ],
)
def test_one_error_policy(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    function: str,
    code: int,
    message: str,
) -> None:
    monkeypatch.setitem(cli.COMMANDS, "compare", (__name__, function))
    assert cli.main(["compare", "a.json", "b.json"]) == code
    assert capsys.readouterr().err == message


def test_a_real_command_error_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["compare", str(tmp_path / "nope.json"), str(tmp_path / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"wsprof: error: {tmp_path / 'nope.json'}: no such file\n"


def test_importing_the_cli_and_building_the_parser_stay_light() -> None:
    code = (
        "import sys\n"
        "import wsprof.cli\n"
        "light = set(sys.modules)\n"
        "wsprof.cli.build_parser()\n"
        "heavy = ('rich', 'pyperf', 'psutil', 'websockets', 'wsprof.commands', 'wsprof._')\n"
        "print(sorted(m for m in light if m.startswith('wsprof.') and m not in ('wsprof.errors', 'wsprof.argtypes', 'wsprof.cli_load')))\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['wsprof.cli']", "[]"]


@pytest.mark.parametrize(
    "argv",
    [
        ["micro", "--quick", "--layer", "json", "--json", "/proc/x.json"],
        ["client-bench", "--quick", "--json", "/proc/x.json"],
    ],
)
def test_long_commands_check_the_json_path_before_measuring(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    assert cli.main(argv) == 2
    assert time.monotonic() - started < 5  # refused before any measuring
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["wsprof: error: cannot write /proc/x.json: No such file or directory"]
