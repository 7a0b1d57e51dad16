"""The ``tailguard`` CLI starts without torch and the other heavy libraries.

Every CLI call builds the whole command tree, so a command module that imports torch at
module level makes ``tailguard load`` (spawned by benchmarks next to a server under test) pay
over a second of CPU. Each check runs in a fresh interpreter: the test process itself has
long since imported torch.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from tailguard.cli import COMMAND_MODULES, app

HEAVY = ("torch", "transformers", "pyarrow", "sklearn", "matplotlib")

# Runs one command line through typer's CliRunner, then reports which heavy modules it loaded.
_CHILD = """
import json, sys
from typer.testing import CliRunner
from tailguard.cli import COMMAND_MODULES, app
args, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
result = CliRunner().invoke(app, args)
print(json.dumps({"exit_code": result.exit_code, "output": result.output,
                  "loaded": [m for m in heavy if m in sys.modules],
                  "commands": sorted(m.rpartition(".")[2] for m in sys.modules
                                     if m.startswith("tailguard.commands."))}))
"""


def _run_fresh(args: list[str], cwd: Path,
               watch: tuple[str, ...] = HEAVY) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args), json.dumps(watch)],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


@pytest.fixture()
def refused_url() -> Iterator[str]:
    """A local port that refuses connections: bound, never listening, held for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("args", [
    ["--help"], ["load", "--help"], ["status", "--help"], ["serve", "--help"],
], ids=" ".join)
def test_help_does_not_import_heavy_libraries(args: list[str], tmp_path: Path) -> None:
    out = _run_fresh(args, tmp_path)
    assert out["exit_code"] == 0, out["output"]
    assert "Usage" in str(out["output"])
    assert out["loaded"] == []
    # The root's help lists every command; a command's help builds only that command.
    assert out["commands"] == (sorted(set(COMMAND_MODULES.values())) if args == ["--help"]
                               else [args[0]])


def test_status_run_does_not_import_heavy_libraries(refused_url: str, tmp_path: Path) -> None:
    out = _run_fresh(["status", refused_url], tmp_path)
    assert out["exit_code"] == 1
    assert "cannot reach" in str(out["output"])
    assert out["loaded"] == []


def test_load_run_does_not_import_heavy_libraries(refused_url: str, tmp_path: Path) -> None:
    # Nor the autoscaling controller (pydantic models, ~0.14 s): a load run needs only the
    # traces of tailguard.autoscale, whose package loads the rest on first use.
    with socket.socket() as sock:  # listens, never answers: every request times out
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        silent = f"http://127.0.0.1:{sock.getsockname()[1]}"
        out = _run_fresh(["load", silent, "-m", "echo", "-c", "1", "-d", "0.2",
                          "--timeout", "0.2", "--json"],
                         tmp_path, (*HEAVY, "tailguard.autoscale.controller"))
    # The run completes, reports the errors and exits 1.
    assert out["exit_code"] == 1, out["output"]
    assert '"timeout"' in str(out["output"])
    assert out["loaded"] == []


def test_load_against_a_server_that_is_down_fails_at_once(refused_url: str) -> None:
    """Issue 19: it used to spend the whole --duration counting connect errors."""
    started = time.monotonic()
    result = CliRunner().invoke(app, ["load", refused_url, "-m", "echo", "-c", "1",
                                      "-d", "30"])
    assert result.exit_code == 2
    assert "cannot connect to 127.0.0.1" in result.output and "is the server up" in result.output
    assert time.monotonic() - started < 20  # far below the 30 s it was asked to run


@pytest.mark.parametrize("args", [[], ["-c", "2", "--rate", "5"]])
def test_load_rate_or_concurrency_names_the_flags(refused_url: str, args: list[str]) -> None:
    result = CliRunner().invoke(app, ["load", refused_url, "-m", "echo", *args])
    assert result.exit_code == 2
    assert "--rate" in result.output and "--concurrency" in result.output
    assert "rate_rps" not in result.output


def test_command_table_matches_what_each_module_registers() -> None:
    import tailguard.commands

    modules = sorted(m.name for m in pkgutil.iter_modules(tailguard.commands.__path__))
    assert sorted(set(COMMAND_MODULES.values())) == modules
    for module_name in modules:
        commands = typer.Typer()
        importlib.import_module(f"tailguard.commands.{module_name}").register(commands)
        registered = set(typer.main.get_group(commands).commands)
        assert registered == {n for n, m in COMMAND_MODULES.items() if m == module_name}


def _command_paths(group: TyperGroup, prefix: tuple[str, ...] = ()) -> Iterator[list[str]]:
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield [*prefix, name]
        if isinstance(command, TyperGroup):
            yield from _command_paths(command, (*prefix, name))


def test_every_command_help_renders() -> None:
    # Typer reads each option's annotation when it builds the command; a type imported only
    # under TYPE_CHECKING would fail here, not at import time.
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    paths = list(_command_paths(root))
    names = {" ".join(p) for p in paths}
    assert {"load", "status", "serve", "data ingest", "data show", "models list", "train",
            "runs show", "sim", "chaos", "profile", "plan", "cost"} <= names
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, f"{' '.join(path)} --help: {result.output}"
        assert f"Usage: tailguard {' '.join(path)} " in result.output
