"""HTTP controllers of the sync area."""

from __future__ import annotations

CONTROLLERS: list[type] = []
