"""CLI commands of the sync area."""

from __future__ import annotations
