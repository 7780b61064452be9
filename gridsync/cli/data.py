"""CLI commands of the data area."""

from __future__ import annotations
