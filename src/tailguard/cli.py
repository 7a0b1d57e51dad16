"""The ``tailguard`` command line. Thin: each command calls one module's entry point.

Start-up is lazy: a call imports only the ``tailguard.commands`` module of the command it runs
(``tailguard --help`` imports them all to list them). ``tailguard load`` is spawned next to a
server under test on the same cores, so what it imports at start is CPU taken from that server.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import typer
import typer.main
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click import Command, Context

# Command name -> the module of tailguard.commands whose register(app) adds it, in the order
# of ``tailguard --help``.
COMMAND_MODULES: dict[str, str] = {
    "serve": "serve",
    "apply": "apply",
    "k8s": "k8s",
    "load": "load",
    "train": "train",
    "sim": "sim",
    "status": "status",
    "chaos": "chaos",
    "profile": "profile",
    "plan": "plan",
    "cost": "cost",
    "models": "models",
    "data": "data",
    "keys": "keys",
    "runs": "train",
    "alerts": "alerts",
    "monitor": "monitor",
    "dashboards": "dashboards",
}


class _LazyCommands(MutableMapping[str, "Command"]):
    """The root's name -> command mapping: a command is built when its value is first read.

    Every name is listed without importing anything; reading one imports its module, builds
    that module's commands with typer and keeps them.
    """

    def __init__(self) -> None:
        self._built: dict[str, Command] = {}
        self._modules_done: set[str] = set()

    def __getitem__(self, name: str) -> Command:
        module_name = COMMAND_MODULES.get(name)
        if module_name is not None and module_name not in self._modules_done:
            module = importlib.import_module(f"tailguard.commands.{module_name}")
            commands = typer.Typer()
            module.register(commands)
            for built_name, command in typer.main.get_group(commands).commands.items():
                self._built.setdefault(built_name, command)
            self._modules_done.add(module_name)
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMAND_MODULES
        yield from (name for name in self._built if name not in COMMAND_MODULES)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _LazyGroup(TyperGroup):
    """The root group, its commands a ``_LazyCommands``."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lazy = _LazyCommands()
        lazy.update(self.commands)  # any command registered on the root app directly
        self.commands = lazy

    def list_commands(self, ctx: Context) -> list[str]:
        # Names only: TyperGroup's own version reads every value (building every command).
        return list(self.commands)


app = typer.Typer(
    name="tailguard",
    cls=_LazyGroup,
    help="Train and serve ML models under P99 latency and cost objectives.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    # A callback makes typer build the root as a group although no command is registered on
    # it directly: _LazyGroup supplies them.
    pass


def main() -> None:
    app()


if __name__ == "__main__":
    main()
