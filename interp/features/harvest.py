"""Activations for dictionaries: the corpus as token windows (documents joined by the end of
sequence token, cut into windows of `context` tokens, cached per model), and a hook's
activations over batches of windows from a forward pass stopped once every hook has fired.
Position 0 of a window has no context (and an outlying norm): it is left out everywhere.
On an executor a row is a batch of windows, kept whole: a batch's massive activations are judged
against that batch, so where the batches run never changes what is kept."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.executors import Executor, Ray, merging, run_rows
from interp.features import corpus
from interp.files import atomic
from interp.models import engine
from interp.models.model import Model

CONTEXT = 128
MASSIVE = 10.0  # a row whose norm exceeds this many times its batch's median is left out


class _Stop(Exception):
    """Raised by the last hook to fire: nothing after it needs computing."""


def corpus_tokens(model: Model, split: str) -> Int[Tensor, " tokens"]:
    """The split's documents tokenised and joined by the end-of-sequence token (cached beside
    the corpus, per model)."""
    from safetensors.torch import load_file, save_file

    folder = corpus.corpus_dir()
    if not (folder / "corpus.json").exists():
        corpus.build()
    stamp = hashlib.sha256((folder / "corpus.json").read_bytes()).hexdigest()[:16]
    path = folder / "tokens" / f"{model.name}-{split}-{stamp}.safetensors"
    if path.exists():
        return load_file(path)["tokens"].long()
    eos = model.eos_token_id if model.eos_token_id is not None else 0
    ids: list[int] = []
    for text in corpus.load(split):
        ids += model.encode(text, add_special_tokens=False) + [eos]
    tokens = torch.tensor(ids, dtype=torch.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_file(path) as tmp:
        save_file({"tokens": tokens}, tmp)
    return tokens.long()


def windows(tokens: Int[Tensor, " tokens"], context: int = CONTEXT) -> Int[Tensor, "n ctx"]:
    """Consecutive windows of `context` tokens (a ragged tail dropped)."""
    n = len(tokens) // context
    return tokens[: n * context].view(n, context)


def activations(
    model: Model,
    ids: Int[Tensor, "n ctx"],
    hooks: Sequence[str],
    batch: int = 32,
    *,
    executor: Executor | None = None,
) -> dict[str, Float[Tensor, "tokens width"]]:
    """Each hook's activations at positions 1.. of every window, massive ones left out
    (`[tokens, width]`, in window order), from forward passes stopped after the last hook
    fires. `executor`: where the batches of windows run (`interp.Ray(...)`; default this
    process)."""
    hooks = list(hooks)
    task = partial(_activations, hooks=hooks)
    parts = run_rows(executor, model, task, batches(ids, batch), "harvesting activations")
    return {h: merging.rows([part[h] for part in parts]) for h in hooks}


def _activations(
    model: Model, rows: list[Tensor], hooks: list[str]
) -> dict[str, Float[Tensor, "tokens width"]]:
    """Some batches' activations: a chunk of `activations`."""
    run = engine.choose(model, record=hooks, edit=[], engine="auto")
    out: dict[str, list[Tensor]] = {h: [] for h in hooks}
    for ids in rows:
        got = capture(model, run, ids.to(model.device), hooks)
        for h in hooks:
            x = got[h][:, 1:].float().cpu()
            out[h].append(x[typical(x)])
    return {h: torch.cat(v) for h, v in out.items()}


def batches(ids: Int[Tensor, "n ctx"], batch: int) -> list[Tensor]:
    """The windows in batches of `batch`, the rows an executor spreads (each its own copy, so
    a chunk sent to a worker carries its own windows only)."""
    return [ids[start : start + batch].clone() for start in range(0, len(ids), batch)]


@contextlib.contextmanager
def held(executor: Executor | None) -> Iterator[None]:
    """Keep a Ray executor's cluster and workers (each with its model) up over several calls
    (re-entrant: one the caller holds in its own `with` block stays up after)."""
    if isinstance(executor, Ray):
        with executor:
            yield
    else:
        yield


def typical(x: Float[Tensor, "*batch width"]) -> Tensor:
    """Which rows are not massive activations (Sun et al. 2024): a few tokens (in SmolLM2,
    some newlines acting as attention sinks) have residual norms a hundred times the median
    and would carry almost all the variance; like the first position, they are left out of
    training and of the evaluation's measures. A row counts as massive above `MASSIVE` times
    the median norm of its batch."""
    norms = x.norm(dim=-1)
    return norms <= MASSIVE * norms.median()


def capture(
    model: Model,
    run: engine.BridgeEngine | engine.DirectEngine,
    ids: Tensor,
    hooks: Iterable[str],
    extra: Sequence[tuple[str, Callable[..., Any]]] = (),
) -> dict[str, Tensor]:
    """One forward pass over `ids` (with the hooks `extra` too, such as a run's replayed
    intervention), kept until every hook in `hooks` has fired."""
    wanted = list(hooks)
    got: dict[str, Tensor] = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(x: Tensor, hook: object = None) -> None:
            got[name] = x.detach()
            if len(got) == len(wanted):
                raise _Stop

        return keep

    with torch.no_grad(), run.hooked([*extra, *((h, keeper(h)) for h in wanted)]):
        try:
            run.logits(ids)
        except _Stop:
            pass
    return got
