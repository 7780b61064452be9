"""CLI commands of the whistle area."""

from __future__ import annotations
