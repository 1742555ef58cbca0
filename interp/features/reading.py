"""A trace's feature activations: the dictionary's input read from the trace's recorded hooks
(or derived from them exactly: a block's output, its attention and MLP outputs), so no forward
pass is run; only a hook the trace cannot give (the MLP's input) costs one teacher-forced pass,
under the intervention the trace was recorded under."""

from __future__ import annotations

import re

from jaxtyping import Float
from torch import Tensor

from interp.dictionaries.dictionary import Dictionary
from interp.dictionaries.files import check
from interp.errors import HookError
from interp.features import harvest
from interp.interventions.replay import replay_hooks
from interp.models import engine
from interp.models.model import Model
from interp.trace import components
from interp.trace.trace import Trace

_DERIVED = re.compile(r"^blocks\.(\d+)\.hook_(resid_post|mlp_out|attn_out)$")


def hook_values(model: Model, trace: Trace, hook: str) -> Float[Tensor, "pos width"]:
    """`hook`'s activations at every position of `trace`: recorded, derived from recorded
    hooks, or (only then) from one forward pass over its tokens."""
    acts = trace.activations
    if hook in acts:
        return acts[hook].float()
    match = _DERIVED.match(hook)
    if match:
        layer, kind = int(match[1]), match[2]
        derive = {
            "resid_post": components.resid_after,
            "mlp_out": components.mlp_out,
            "attn_out": components.attn_out,
        }[kind]
        try:
            return derive(model, acts, layer)
        except HookError:
            pass
    return forward_values(model, trace, hook)


def forward_values(model: Model, trace: Trace, hook: str) -> Float[Tensor, "pos width"]:
    """`hook`'s activations from one teacher-forced pass over the trace's tokens, under its
    recorded intervention, stopped once the hook has fired."""
    run = engine.choose(model, record=[hook], edit=[], engine="auto")
    ids = trace.token_ids[None].to(model.device)
    got = harvest.capture(model, run, ids, [hook], extra=replay_hooks(model, [trace]))
    return got[hook][0].float().cpu()


def trace_features(model: Model, trace: Trace, d: Dictionary) -> Float[Tensor, "pos d_sae"]:
    """The dictionary's feature activations at every position of `trace`."""
    check(d, model)
    trace.bind(model)
    return d.encode(hook_values(model, trace, d.hook))
