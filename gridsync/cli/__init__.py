"""The ``gridsync`` command: one click group, commands grouped by area in this package."""

from gridsync.cli import (  # noqa: F401  (register commands)
    console,
    core,
    coverage,
    data,
    hotline,
    ops,
    records,
    reports,
    sync,
    whistle,
)
from gridsync.cli.base import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
