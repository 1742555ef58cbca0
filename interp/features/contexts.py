"""Each feature's top-activating contexts and activation density over held-out text, computed
once per dictionary (one harvest serves several dictionaries) and stored beside it
(`contexts.safetensors`), so a report shows them offline without the corpus or the model. On an
executor each chunk of batches keeps its own top activations and counts; the driver keeps the
top of theirs and adds the counts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.dictionaries.dictionary import Dictionary
from interp.dictionaries.files import check
from interp.errors import InterpError
from interp.executors import Executor, run_rows
from interp.features import harvest
from interp.files import atomic
from interp.models import engine
from interp.models.model import Model

FILE = "contexts.safetensors"
TOP = 8  # contexts kept per feature
BEFORE, AFTER = 12, 3  # tokens shown before and after the activating one


@dataclass
class FeatureContexts:
    """Per feature: its `top` largest activations over `tokens` held-out tokens (massive
    activations left out), each with its context (`BEFORE` tokens before the activating one,
    `AFTER` after; -1 pads; the activating token at index `BEFORE`), and the fraction of
    tokens it fires on (`density`)."""

    values: Float[Tensor, "d_sae top"]  # 0 where a feature fired fewer than `top` times
    context_ids: Int[Tensor, "d_sae top ctx"]
    density: Float[Tensor, " d_sae"]
    tokens: int

    def save(self, folder: str | os.PathLike[str]) -> Path:
        from safetensors.torch import save_file

        path = Path(folder) / FILE
        with atomic.atomic_file(path) as tmp:
            save_file(
                {
                    "values": self.values.contiguous(),
                    "context_ids": self.context_ids.to(torch.int32).contiguous(),
                    "density": self.density.contiguous(),
                },
                tmp,
                metadata={"tokens": str(self.tokens)},
            )
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> FeatureContexts | None:
        """The stored contexts of the dictionary in `folder`, or None if it has none."""
        from safetensors import safe_open

        path = Path(folder) / FILE
        if not path.exists():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
                t = {k: f.get_tensor(k) for k in ("values", "context_ids", "density")}
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported in one line
            raise InterpError(f"{path} is not a readable contexts file ({exc})") from None
        return cls(t["values"], t["context_ids"].long(), t["density"], int(meta["tokens"]))


Top = tuple[Tensor, Tensor]  # per feature: the largest values and their flat row indices


def feature_contexts(
    model: Model,
    dictionaries: list[Dictionary],
    *,
    tokens: int = 65_536,
    batch: int = 32,
    top: int = TOP,
    context: int = harvest.CONTEXT,
    ids: Int[Tensor, "n ctx"] | None = None,
    executor: Executor | None = None,
) -> list[FeatureContexts]:
    """Top contexts and density of every feature of each dictionary over the first `tokens`
    tokens of the held-out split (or the windows `ids`; positions 1.. of each window), from
    one harvest. `executor`: where the batches of windows run (`interp.Ray(...)`; default
    this process)."""
    for d in dictionaries:
        check(d, model)
    if ids is None:
        ids = harvest.windows(harvest.corpus_tokens(model, "heldout"), context)
        ids = ids[: max(1, -(-tokens // (context - 1)))]
    context = ids.shape[1]
    rows = list(zip(range(0, len(ids), batch), harvest.batches(ids, batch), strict=True))
    task = partial(_tops, dictionaries=dictionaries, top=top)
    parts = run_rows(executor, model, task, rows, "feature contexts")
    out = []
    for i in range(len(dictionaries)):
        values, index = parts[0][i][0]
        for more, _, _ in (part[i] for part in parts[1:]):
            values, index = _best((values, index), *more, top)
        fired = torch.stack([part[i][1] for part in parts]).sum(0)  # int64 counts
        n = sum(part[i][2] for part in parts)
        window, pos = index // (context - 1), index % (context - 1) + 1
        snippets = torch.full((*index.shape, BEFORE + 1 + AFTER), -1, dtype=torch.long)
        for offset in range(-BEFORE, AFTER + 1):
            at = pos + offset
            ok = (at >= 0) & (at < context)
            snippets[..., offset + BEFORE] = torch.where(
                ok, ids[window, at.clamp(0, context - 1)], -1
            )
        values = values.clamp_min(0)
        snippets[values == 0] = -1  # a feature that never fired this often has no context there
        out.append(FeatureContexts(values, snippets, (fired.double() / max(n, 1)).float(), n))
    return out


def _tops(
    model: Model, rows: list[tuple[int, Tensor]], dictionaries: list[Dictionary], top: int
) -> list[tuple[Top, Tensor, int]]:
    """Some batches' (first window, windows): per dictionary, each feature's top values and
    their rows' flat indices over the whole run, how many rows it fired on, and the rows
    counted (those that are not massive activations). A chunk of `feature_contexts`."""
    hooks = list(dict.fromkeys(d.hook for d in dictionaries))
    run = engine.choose(model, record=hooks, edit=[], engine="auto")
    best = [
        (torch.zeros(d.d_sae, 0), torch.zeros(d.d_sae, 0, dtype=torch.long)) for d in dictionaries
    ]
    fired = [torch.zeros(d.d_sae, dtype=torch.long) for d in dictionaries]
    counted = [0] * len(dictionaries)
    for start, ids in rows:
        got = harvest.capture(model, run, ids.to(model.device), hooks)
        for i, d in enumerate(dictionaries):
            x = got[d.hook][:, 1:].float().cpu()  # [b, ctx-1, d_in]
            # rows in window order; a massive activation's row is left out (all zero)
            keep = harvest.typical(x)
            counted[i] += int(keep.sum())
            f = (d.encode(x) * keep[..., None]).reshape(-1, d.d_sae)
            fired[i] += (f > 0).sum(0)
            # flat index of a row over the whole run: window * (ctx - 1) + position - 1
            where = torch.arange(len(f)) + start * x.shape[1]
            vals, at = f.T.topk(min(top, len(f)), dim=-1)  # [d_sae, m]
            best[i] = _best(best[i], vals, where[at], top)
    return list(zip(best, fired, counted, strict=True))


def _best(best: Top, values: Tensor, index: Tensor, top: int) -> Top:
    """The `top` largest of two sets of values per feature, with their indices."""
    values = torch.cat([best[0], values], dim=1)
    index = torch.cat([best[1], index], dim=1)
    kept = values.topk(min(top, values.shape[1]), dim=-1)
    return kept.values, index.gather(1, kept.indices)
