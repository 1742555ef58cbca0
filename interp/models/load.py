"""`load_model`: a name -> a loaded model, from the embedded packages or the Hub."""

from __future__ import annotations

import torch

from interp.models.embedded import load_embedded
from interp.models.hub import load_hub, resolve_hf_name
from interp.models.model import Model, validate_device
from interp.models.registry import DEFAULT_MODEL, EMBEDDED, canonical_name


def load_model(
    name: str = DEFAULT_MODEL, device: str | torch.device = "cpu", *, check_kv: bool = True
) -> Model:
    """Load a model by name: `smollm2-135m` (embedded), `gpt2`, or a Hugging Face repo id.
    `check_kv=False` skips the load-time guards (`interp.models.guards`)."""
    dev = validate_device(device)
    name = canonical_name(name)
    if name in EMBEDDED:
        return load_embedded(EMBEDDED[name], dev, check_kv=check_kv)
    return load_hub(name, resolve_hf_name(name), dev, check_kv=check_kv)
