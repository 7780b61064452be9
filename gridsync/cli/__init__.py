"""The ``gridsync`` command: one click group, commands grouped by area in this package."""

from gridsync.cli import (  # noqa: F401  (register commands)
    core,
    coverage,
    data,
    hotline,
    ops,
    sync,
    whistle,
)
from gridsync.cli.base import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
