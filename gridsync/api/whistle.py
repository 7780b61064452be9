"""HTTP controllers of the whistle area."""

from __future__ import annotations

CONTROLLERS: list[type] = []
