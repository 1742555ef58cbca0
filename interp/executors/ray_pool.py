"""`Ray`: a set-level verb's rows in fixed chunks on Ray actors, each loading the model once.

Chunks go to whichever worker is free and come back in row order. A worker killed mid-chunk is
restarted by Ray and its chunk retried (`max_restarts`, `max_task_retries`): a result holds
every row once. A chunk's `InterpError` is raised as one process raises it; Ctrl-C cancels the
chunks, and a cluster interp started is shut down. Used in a `with` block, the cluster and the
workers (each with its model) stay up for every call inside it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from interp.errors import ExecutorError, InvalidSettingError
from interp.executors import ray_cluster
from interp.executors.worker import Worker
from interp.models.model import Model

Item = TypeVar("Item")
Part = TypeVar("Part")
RESTARTS = 3  # a worker's restarts (and a chunk's retries) before the run fails


@dataclass
class _Session:
    connection: ray_cluster.Connection
    actors: dict[tuple[Any, ...], list[Any]] = field(default_factory=dict)

    def release(self) -> None:
        """Stop every worker (their CPUs and GPUs free again)."""
        ray = ray_cluster.import_ray()
        for group in self.actors.values():
            for actor in group:
                ray.kill(actor, no_restart=True)
        self.actors.clear()

    def close(self) -> None:
        if self.connection.started or self.connection.joined:
            self.actors.clear()  # leaving the cluster ends the workers this process owns
        else:
            self.release()  # a cluster the caller joined stays; our workers go
        self.connection.close()


@dataclass
class Ray:
    """Run on a Ray cluster: `address` None starts one on this machine (localhost only,
    token authentication on), "auto" or "ray://host:port" joins one. `workers` actors, each
    with `cpus_per_worker` CPUs (torch threads) and `gpus_per_worker` GPUs (then the model
    runs on CUDA); `chunk_rows` rows per chunk (default: each worker gets about two)."""

    address: str | None = None
    workers: int = 2
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    chunk_rows: int | None = None
    _session: _Session | None = field(default=None, init=False, repr=False, compare=False)
    _last: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _depth: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, least in (("workers", 1), ("chunk_rows", 1)):
            value = getattr(self, name)
            if value is None and name == "chunk_rows":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidSettingError(f"{name} must be an integer >= {least}, got {value!r}")
        for name in ("cpus_per_worker", "gpus_per_worker"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise InvalidSettingError(f"{name} must be a number >= 0, got {value!r}")
        if self.cpus_per_worker <= 0:
            raise InvalidSettingError("cpus_per_worker must be more than 0")
        if self.address is not None:
            ray_cluster.check_address(self.address)

    def __enter__(self) -> Ray:
        """Join or start the cluster for the block (re-entrant: an inner block keeps it)."""
        if self._session is None:
            self._session = _Session(ray_cluster.connect(self.address))
        self._depth += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0:
            self.close()

    def close(self) -> None:
        """Stop the workers and leave (or shut down) the cluster, whatever the depth."""
        session, self._session, self._depth = self._session, None, 0
        if session is not None:
            session.close()

    def processes(self) -> list[tuple[int, str]]:
        """(pid, node id) of each live worker of this `with` block (none outside one)."""
        if self._session is None:
            return []
        ray = ray_cluster.import_ray()
        group = [actor for actors in self._session.actors.values() for actor in actors]
        return [tuple(place) for place in ray.get([actor.where.remote() for actor in group])]

    def record(self) -> dict[str, Any]:
        """What the last run ran on: {"kind": "ray", "workers", "nodes", "ray", "chunks"}."""
        return {"kind": "ray", "workers": self.workers, **self._last}

    def map(
        self,
        model: Model,
        task: Callable[[Model, list[Item]], Part],
        rows: Sequence[Item],
        what: str,
    ) -> list[Part]:
        """`task` over fixed chunks of `rows` on the workers: the parts in row order."""
        if not rows:
            return [task(model, [])]
        if model.loading is None:
            raise ExecutorError(
                f"{model.name} was built in memory, and a Ray worker loads its model by name or "
                "folder: save it (save_pretrained) and load it with interp.load_model('./folder')"
            )
        with self:
            try:
                return self._run(model, task, list(rows), what)
            except KeyboardInterrupt:
                self.close()  # Ctrl-C: nothing of this run stays up, a `with` block's too
                raise

    def _run(
        self, model: Model, task: Callable[..., Part], rows: list[Item], what: str
    ) -> list[Part]:
        ray = ray_cluster.import_ray()
        actors = self._actors(ray, model)
        size = self.chunk_rows or max(1, math.ceil(len(rows) / (2 * self.workers)))
        chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
        task_ref = ray.put(task)  # sent once, shared by every chunk
        parts: list[Any] = [None] * len(chunks)
        places: set[tuple[int, str]] = set()
        free, todo = list(actors), list(range(len(chunks)))
        pending: dict[Any, tuple[int, Any]] = {}
        try:
            while todo or pending:
                while free and todo:
                    i, actor = todo.pop(0), free.pop(0)
                    pending[actor.run.remote(task_ref, chunks[i])] = (i, actor)
                done, _ = ray.wait(list(pending), num_returns=1)
                i, actor = pending.pop(done[0])
                free.append(actor)
                status, value, place = _get(ray, done[0], what)
                if status == "error":
                    raise value
                parts[i] = value
                places.add(place)
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
        self._last = {
            "nodes": len({node for _, node in places}),
            "processes": len(places),
            "ray": ray.__version__,
            "chunks": len(chunks),
        }
        return parts

    def _actors(self, ray: Any, model: Model) -> list[Any]:
        assert self._session is not None
        key = (
            model.loading,
            model.checksum,
            self.workers,
            self.cpus_per_worker,
            self.gpus_per_worker,
        )
        if key in self._session.actors:
            return self._session.actors[key]
        self._session.release()  # one model's workers at a time: another model's free their CPUs
        ray_cluster.check_room(self.workers, self.cpus_per_worker, self.gpus_per_worker)
        remote = ray.remote(Worker).options(
            num_cpus=self.cpus_per_worker,
            num_gpus=self.gpus_per_worker,
            max_restarts=RESTARTS,
            max_task_retries=RESTARTS,
        )
        device = "cuda" if self.gpus_per_worker > 0 else "cpu"
        threads = max(1, int(self.cpus_per_worker))
        actors = [
            remote.remote(model.loading, model.checksum, device, threads)
            for _ in range(self.workers)
        ]
        self._session.actors[key] = actors
        for ref in [actor.load.remote() for actor in actors]:
            status, value = _get(ray, ref, "loading the model")
            if status == "error":
                self._session.release()
                raise value
        return actors


def _get(ray: Any, ref: Any, what: str) -> Any:
    """A task's value, or one line for a worker lost past its restarts or a Ray failure."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, Exception) else None
        raise (cause or ExecutorError(f"{what} failed on a Ray worker: {_first(exc)}")) from None
    except ray.exceptions.RayError as exc:
        raise ExecutorError(f"{what}: a Ray worker was lost: {_first(exc)}") from None


def _first(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
