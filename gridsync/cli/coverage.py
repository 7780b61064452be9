"""CLI commands of the coverage area."""

from __future__ import annotations
