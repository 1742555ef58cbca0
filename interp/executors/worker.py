"""The Ray actor: one per worker, the model loaded once (by name from its node's model cache,
or from a folder on shared storage) and checked to be the driver's weights, then chunk after
chunk of rows. A chunk's `InterpError` comes back as a value, so the driver raises the very
error one process would; anything else fails the task as Ray fails it."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from interp.errors import ExecutorError, InterpError
from interp.models.model import Loading, Model


class Worker:
    """A Ray actor's class (made remote by `interp.executors.ray_pool`); a restarted actor
    loads the model again on its first chunk."""

    def __init__(self, loading: Loading, checksum: str, device: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.loading, self.checksum, self.device = loading, checksum, device
        self.model: Model | None = None

    def where(self) -> tuple[int, str]:
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def load(self) -> tuple[str, Any]:
        """("ok", (pid, node)) once the model is loaded and checked, or ("error", the error)."""
        try:
            self._model()
        except InterpError as exc:
            return "error", exc
        return "ok", self.where()

    def run(self, task: Callable[[Model, list[Any]], Any], rows: list[Any]) -> tuple[str, Any, Any]:
        """(status, the part or the chunk's InterpError, (pid, node))."""
        try:
            return "ok", task(self._model(), rows), self.where()
        except InterpError as exc:
            return "error", exc, self.where()

    def _model(self) -> Model:
        if self.model is None:
            from interp.models.load import load_model

            node = self.where()[1][:12]
            try:
                model = load_model(self.loading.name, self.device, check_kv=self.loading.check_kv)
            except InterpError as exc:
                raise ExecutorError(
                    f"a Ray worker on node {node} could not load the model: {exc}"
                ) from None
            if model.checksum != self.checksum:
                raise ExecutorError(
                    f"a Ray worker on node {node} loaded other weights for "
                    f"{self.loading.name} ({model.checksum}) than this process's ({self.checksum})"
                )
            self.model = model
        return self.model
