"""Statistics over the rows of a set: means with their standard errors (`interp.stats`, shared
with the interventions)."""

from __future__ import annotations

from interp.stats import mean_and_se

__all__ = ["mean_and_se"]
