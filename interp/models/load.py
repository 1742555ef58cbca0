"""`load_model`: a name -> a loaded model, from the embedded packages, a local folder or the
Hub."""

from __future__ import annotations

import torch

from interp.models.embedded import load_embedded
from interp.models.hub import load_hub, resolve_hf_name
from interp.models.local import is_path, load_local
from interp.models.model import Loading, Model, validate_device
from interp.models.registry import DEFAULT_MODEL, EMBEDDED, canonical_name


def load_model(
    name: str = DEFAULT_MODEL, device: str | torch.device = "cpu", *, check_kv: bool = True
) -> Model:
    """Load a model by name: an embedded one (`smollm2-135m`, `gemma3-270m`), `gpt2`, a
    Hugging Face repo id, or a local Hugging Face folder given as a path (`./my-model`,
    `/abs/dir`, `~/dir`). `check_kv=False` skips the load-time guards
    (`interp.models.guards`)."""
    dev = validate_device(device)
    if is_path(name):
        model = load_local(name, dev, check_kv=check_kv)
        model.loading = Loading(model.name, check_kv)  # the folder, made absolute
        return model
    name = canonical_name(name)
    if name in EMBEDDED:
        model = load_embedded(EMBEDDED[name], dev, check_kv=check_kv)
    else:
        model = load_hub(name, resolve_hf_name(name), dev, check_kv=check_kv)
    model.loading = Loading(name, check_kv)
    return model
