"""The values an ablation puts in, by its mode: the mean over the trace's (or a reference
set's) positions, zeros, or the value at the same position in another run (a text or a
recorded trace), each with a sentence saying what it is."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from interp import inputs
from interp.errors import InvalidSettingError
from interp.interventions import sites
from interp.interventions.sites import Site, Target
from interp.models.model import Model
from interp.trace.trace import Trace
from interp.trace.traceset import TraceSet

AblationMode = Literal["mean", "zero", "resample"]
MODES: tuple[AblationMode, ...] = ("mean", "zero", "resample")
MeanOver = Literal["auto", "prompt", "all"]  # which positions of a run a mean covers

DEFAULT_RESAMPLE_TEXT = (
    "The committee met on Tuesday to review the budget for the coming year. After a long "
    "discussion about roads, schools and the new library, the members agreed to postpone "
    "the final vote until the spring, when more figures would be available."
)


def mean_positions(trace: Trace, over: MeanOver = "auto") -> int:
    """How many leading positions of a run a mean covers: "all", the "prompt"'s, or ("auto")
    the prompt's where the continuation was forced (a given answer must not leak into the
    mean) and all of them where it was sampled."""
    if over not in ("auto", "prompt", "all"):
        raise InvalidSettingError(f"mean_over must be 'auto', 'prompt' or 'all', got {over!r}")
    forced = trace.settings.continuation is not None
    return (
        trace.prompt_len if over == "prompt" or (over == "auto" and forced) else trace.n_positions
    )


def replacement_values(
    model: Model,
    trace: Trace,
    targets: Sequence[Target],
    mode: AblationMode,
    site: Site,
    *,
    reference: TraceSet | Trace | None = None,
    source: Trace | None = None,
    resample_text: str | None = None,
    min_positions: int | None = None,
    mean_over: MeanOver = "auto",
) -> tuple[dict[int, Tensor], str]:
    """Each targeted layer's replacing value (`[pos or 1, head, d_head]` for heads, `[pos or
    1, d_model]` for a layer's site) by `mode`, and what it is, in words."""
    layers = sorted({layer for layer, _ in targets})
    what = "head's" if site == "heads" else f"{site}'s"
    if mode == "mean":
        rows = (
            [trace]
            if reference is None
            else ([reference] if isinstance(reference, Trace) else list(reference))
        )
        spans = [mean_positions(row.bind(model), mean_over) for row in rows]
        values = {
            layer: torch.cat(
                [
                    sites.activation(model, row.activations, site, layer)[:span]
                    for row, span in zip(rows, spans, strict=True)
                ]
            ).mean(0, keepdim=True)
            for layer in layers
        }
        cut = sum(span < row.n_positions for row, span in zip(rows, spans, strict=True))
        if reference is None:
            kind = "prompt positions" if cut else "positions"
            described = f"the {what} mean over the {sum(spans)} {kind} of the trace"
        else:
            described = (
                f"the {what} mean over {sum(spans)} positions of {len(rows)} reference rows"
                + (f" (only the prompt positions of {cut} of them)" if cut else "")
            )
    elif mode == "zero":
        shape = (model.n_heads, int(model.cfg.d_head)) if site == "heads" else (model.d_model,)
        values = {layer: torch.zeros(1, *shape) for layer in layers}
        described = "zeros"
    else:
        needed = max(
            min_positions or 0, trace.n_positions, trace.prompt_len + trace.settings.max_new_tokens
        )
        if source is not None:
            if resample_text is not None:
                raise InvalidSettingError("give a resample text or a source trace, not both")
            source.bind(model)
            if source.n_positions < trace.n_positions:
                raise InvalidSettingError(
                    f"the source run has {source.n_positions} positions, the trace "
                    f"{trace.n_positions}: a patch needs a run at least as long"
                )
            values = {
                layer: sites.activation(model, source.activations, site, layer) for layer in layers
            }
            described = (
                f"the {what} value at the same position in the run of {source.prompt[:60]!r}"
            )
        else:
            text = (
                DEFAULT_RESAMPLE_TEXT
                if resample_text is None
                else inputs.text(resample_text, "the resample text")
            )
            values = _resample_values(model, text, site, layers, needed)
            described = f"the {what} value at the same position on the text {text[:60]!r}"
    return values, described


def _resample_values(
    model: Model, text: str, site: Site, layers: list[int], needed: int
) -> dict[int, Tensor]:
    ids = model.encode(text)
    if not ids:
        raise InvalidSettingError("the resample text tokenises to no tokens")
    body = model.encode(text, add_special_tokens=False) or ids
    while len(ids) < needed:  # repeat the text until it covers every position
        ids += body
    ids = ids[:needed]
    names = {sites.hook_name(site, layer) for layer in layers}
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(
            torch.tensor([ids], device=model.device), names_filter=lambda n: n in names
        )
    return {layer: cache[sites.hook_name(site, layer)][0].float().cpu() for layer in layers}
