"""`Local`: every row in this process, as one chunk: exactly what a verb does without an
executor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from interp.models.model import Model

Item = TypeVar("Item")
Part = TypeVar("Part")


@dataclass(frozen=True)
class Local:
    """Run in this process (the default)."""

    def map(
        self,
        model: Model,
        task: Callable[[Model, list[Item]], Part],
        rows: Sequence[Item],
        what: str,
    ) -> list[Part]:
        return [task(model, list(rows))]

    def record(self) -> dict[str, Any]:
        return {"kind": "local"}
