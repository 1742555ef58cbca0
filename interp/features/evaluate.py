"""`evaluate_dictionary`: SAEBench's core measures of a dictionary on held-out text: the
fraction of variance unexplained, L0, dead and dense latents, and what splicing the
reconstruction into the forward pass does to the next-token loss (loss recovered, between the
clean model at 1 and the hook zero-ablated at 0) and to the output distribution (KL). Massive
activations (`harvest.typical`) are left out of the measures and are neither spliced nor
ablated, as the first position is. On an executor each chunk of batches returns its sums and
counts (float64), which the driver adds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp.dictionaries.dictionary import Dictionary
from interp.dictionaries.files import check
from interp.executors import Executor, run_rows
from interp.features import harvest
from interp.interventions.metrics import kl_divergence
from interp.models import engine
from interp.models.model import Model

DENSE = 0.1  # a latent active on more than this fraction of tokens is dense


@dataclass(frozen=True)
class DictionaryEvaluation:
    """The measures over `tokens` held-out tokens (window positions 1.. only)."""

    fvu: float
    l0: float
    dead_fraction: float
    dense_fraction: float
    loss_recovered: float
    kl: float
    ce_clean: float
    ce_spliced: float
    ce_zero: float
    tokens: int

    def json(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}


def evaluate_dictionary(
    model: Model,
    d: Dictionary,
    *,
    tokens: int = 65_536,
    context: int = harvest.CONTEXT,
    batch: int = 16,
    ids: Int[Tensor, "n ctx"] | None = None,
    executor: Executor | None = None,
) -> DictionaryEvaluation:
    """The measures on the first `tokens` tokens of the corpus's held-out split (or on the
    windows `ids`), in batches of windows. `executor`: where the batches run
    (`interp.Ray(...)`; default this process)."""
    check(d, model)
    if ids is None:
        all_windows = harvest.windows(harvest.corpus_tokens(model, "heldout"), context)
        ids = all_windows[: max(1, -(-tokens // (context - 1)))]
    parts = run_rows(
        executor, model, partial(_sums, d=d), harvest.batches(ids, batch), "evaluating"
    )
    t = {key: sum(part[key] for part in parts) for key in parts[0]}
    n, n_pred = int(t["rows"]), int(t["predicted"])
    var = float(t["x2"]) - float((t["x"] ** 2).sum()) / n
    ce = {name: float(t[f"ce_{name}"]) / n_pred for name in ("clean", "spliced", "zero")}
    gap = ce["zero"] - ce["clean"]
    active = t["active"]
    return DictionaryEvaluation(
        fvu=float(t["err"]) / var,
        l0=float(t["l0"]) / n,
        dead_fraction=float((active == 0).float().mean()),
        dense_fraction=float((active > DENSE * n).float().mean()),
        loss_recovered=(ce["zero"] - ce["spliced"]) / gap if gap > 0 else float("nan"),
        kl=float(t["kl"]) / n_pred,
        ce_clean=ce["clean"],
        ce_spliced=ce["spliced"],
        ce_zero=ce["zero"],
        tokens=n,
    )


def _sums(model: Model, rows: list[Tensor], d: Dictionary) -> dict[str, Any]:
    """Some batches' sums and counts (float64, int64): a chunk of `evaluate_dictionary`."""
    run = engine.choose(model, record=[d.hook], edit=[d.writes], engine="auto")
    t: dict[str, Any] = {"err": 0.0, "x": torch.zeros(d.d_out, dtype=torch.float64), "x2": 0.0}
    t.update({"active": torch.zeros(d.d_sae, dtype=torch.long), "l0": 0, "rows": 0})
    t.update({"ce_clean": 0.0, "ce_spliced": 0.0, "ce_zero": 0.0, "kl": 0.0, "predicted": 0})
    for ids in rows:
        chunk = ids.to(model.device)
        clean, read, target = _clean(model, run, chunk, d)
        keep = harvest.typical(read[:, 1:].float())  # [batch, ctx-1]: not massive
        f = d.encode(read[:, 1:])
        recon = d.decode(f)
        x = target[:, 1:].double()[keep]
        t["err"] += float((recon.double()[keep] - x).pow(2).sum())
        t["x"] += x.sum(0).cpu()
        t["x2"] += float(x.pow(2).sum())
        fired = f[keep] > 0
        t["active"] += fired.sum(0).cpu()
        t["l0"] += int(fired.sum())
        t["rows"] += fired.shape[0]
        spliced = _logits_with(run, chunk, d.writes, recon, keep)
        zero = _logits_with(run, chunk, d.writes, torch.zeros_like(recon), keep)
        labels = chunk[:, 2:]
        lp_clean = clean[:, 1:-1].float().log_softmax(-1)
        for name, logits in (("clean", clean), ("spliced", spliced), ("zero", zero)):
            lp = logits[:, 1:-1].float().log_softmax(-1)
            t[f"ce_{name}"] -= float(lp.gather(-1, labels[..., None]).sum())
            if name == "spliced":
                t["kl"] += float(kl_divergence(lp_clean, lp).sum())
        t["predicted"] += labels.numel()
    return t


def _clean(
    model: Model, run: engine.BridgeEngine | engine.DirectEngine, ids: Tensor, d: Dictionary
) -> tuple[Tensor, Tensor, Tensor]:
    """The clean logits, the activations the dictionary reads and those it reconstructs."""
    got: dict[str, Tensor] = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(x: Tensor, hook: object = None) -> None:
            got[name] = x.detach()

        return keep

    names = list(dict.fromkeys([d.hook, d.writes]))
    with torch.no_grad(), run.hooked([(h, keeper(h)) for h in names]):
        logits = run.logits(ids)
    return logits, got[d.hook], got[d.writes]


def _logits_with(
    run: engine.BridgeEngine | engine.DirectEngine,
    ids: Tensor,
    hook: str,
    value: Tensor,
    keep: Tensor,
) -> Tensor:
    """Logits with `hook`'s activations at positions 1.. replaced by `value` where `keep`
    (massive activations, which the dictionary does not model, stay as they are)."""

    def put(x: Tensor, hook: object = None) -> Tensor:
        x = x.clone()
        rest = x[:, 1:]
        rest[keep] = value.to(x.dtype)[keep]
        return x

    with torch.no_grad(), run.hooked([(hook, put)]):
        return run.logits(ids)
