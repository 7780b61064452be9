"""The ``gridsync`` command: one click group, commands grouped by area in this package."""

from gridsync.cli import console, core, coverage, data, ops, sync, whistle  # noqa: F401  (register commands)
from gridsync.cli.base import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
