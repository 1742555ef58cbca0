"""Wrapping an in-memory Hugging Face causal LM as a `Model`: the TransformerLens bridge booted
on it, the load-time guards run (`interp.models.guards`), and the model handed the direct
engine the guards approved. Every loader (embedded, Hub, local folder) ends here."""

from __future__ import annotations

from typing import Any

import torch

from interp.errors import UnknownModelError
from interp.models.guards import check_model
from interp.models.model import Model, eval_mode


def from_hf(
    name: str,
    hf_model: Any,
    tokenizer: Any,
    *,
    device: str | torch.device = "cpu",
    checksum: str = "random-init",
    source: str = "",
    check_kv: bool = True,
) -> Model:
    """Wrap `hf_model` in a TransformerLens bridge; with `check_kv`, run the load-time guards
    and give the model the direct engine they approved (or set it aside, saying why)."""
    from transformer_lens.model_bridge import TransformerBridge

    # `.to` and `.eval` walk every module: only when needed (a model from
    # `from_pretrained` is already in eval mode)
    device = torch.device(device)
    if any(t.device != device for t in (*hf_model.parameters(), *hf_model.buffers())):
        hf_model = hf_model.to(device)
    eval_mode(hf_model)
    try:
        bridge = TransformerBridge.boot_transformers(
            name, hf_model=hf_model, tokenizer=tokenizer, device=device
        )
    except Exception as exc:  # TransformerLens raises plain errors for unsupported layouts
        raise UnknownModelError(
            f"TransformerLens cannot wrap model {name!r} ({type(hf_model).__name__}): {exc}"
        ) from exc
    eval_mode(bridge)
    model = Model(name=name, bridge=bridge, tokenizer=tokenizer, checksum=checksum, source=source)
    if check_kv:
        engine, problem = check_model(model)
        model.direct = (model.device, engine, problem)
    return model
