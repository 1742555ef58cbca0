"""Where set-level work runs: in this process (`Local`, the default) or on Ray actors that each
load the model once (`Ray`). A verb checks its inputs here, hands `run_rows` a task
`(model, rows) -> part` and its rows, and merges the parts, which come back in row order,
from per-row values or sums and counts (`interp.executors.merging`), so that a result never
depends on where its rows ran."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from interp.executors.local import Local
from interp.executors.ray_pool import Ray
from interp.models.model import Model

__all__ = ["Executor", "Local", "Ray", "run_rows"]

Executor = Local | Ray
Item = TypeVar("Item")
Part = TypeVar("Part")


def run_rows(
    executor: Executor | None,
    model: Model,
    task: Callable[[Model, list[Item]], Part],
    rows: Sequence[Item],
    what: str,
) -> list[Part]:
    """`task` over `rows` where `executor` says (None: this process, as one chunk): the parts in
    row order. `what` names the work in errors and progress."""
    executor = Local() if executor is None else executor
    if not isinstance(executor, (Local, Ray)):
        raise TypeError(f"executor must be interp.Local or interp.Ray, got {executor!r}")
    return executor.map(model, task, rows, what)


def describe(executor: Executor | None) -> dict[str, Any]:
    """What ran a run, for its summary: {"kind": "local"} or Ray's workers, nodes and version."""
    return {"kind": "local"} if executor is None else executor.record()
