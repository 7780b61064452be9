"""HTTP controllers of the coverage area."""

from __future__ import annotations

CONTROLLERS: list[type] = []
