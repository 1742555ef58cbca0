"""What decides which tokens a run produces: a trace's generation settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides which tokens a run produces."""

    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int | None
    stop_at_eos: bool
    continuation: str | None = None  # a forced (teacher-forced) continuation, if any
