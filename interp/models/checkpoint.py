"""Reading a cached conversion straight from its safetensors file, and checking such files."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch

from interp.models.model import eval_mode

WEIGHTS_FILE = "model.safetensors"


def safetensors_header_ok(path: Path) -> bool:
    """The header parses and the data section it describes fits the file exactly."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            if n <= 0 or 8 + n > size:
                return False
            header = json.loads(fh.read(n))
        ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
        return bool(ends) and 8 + n + max(ends) == size
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False


def read_cached_model(directory: Path) -> Any:
    """The cached conversion as a Hugging Face model, read straight from its files.

    `from_pretrained` gives the same model, but its first call in a process builds
    transformers' weight-renaming tables for every architecture, for a checkpoint that
    `save_pretrained` wrote for this very class. Here the model is built without random
    initialisation, takes the safetensors file's tensors (memory-mapped, as `from_pretrained`
    does) and re-ties its output embedding. Every parameter and persistent buffer must come
    from the file: a missing or an extra tensor is a broken cache (`ValueError`), which the
    caller rebuilds. Tests compare the result with `from_pretrained`.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig
    from transformers.initialization import no_init_weights

    config = AutoConfig.from_pretrained(directory)
    with no_init_weights():
        hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    loaded = hf.load_state_dict(load_file(directory / WEIGHTS_FILE), strict=False, assign=True)
    hf.tie_weights()
    missing = set(loaded.missing_keys) - set(getattr(hf, "all_tied_weights_keys", {}))
    if missing or loaded.unexpected_keys:
        raise ValueError(
            f"the cached weights do not fit {type(hf).__name__}: "
            f"missing {sorted(missing)[:3]}, unexpected {sorted(loaded.unexpected_keys)[:3]}"
        )
    if (directory / "generation_config.json").exists():
        hf.generation_config = GenerationConfig.from_pretrained(directory)
    eval_mode(hf)
    return hf
