"""Loading a Hugging Face model folder on this machine (config, weights, tokenizer): named by a
path that starts with `./`, `../`, `/` or `~`, never by a bare name, so a Hub name or a trace's
`model` field can never pick up a folder in the working directory. Its code is never run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from interp.errors import ModelNotInstalledError
from interp.models.cache import sha256
from interp.models.machine import available_memory
from interp.models.model import Model
from interp.models.wrap import from_hf

PATH_PREFIXES = ("./", "../", "/", "~")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def is_path(name: str) -> bool:
    """True for a model named by a path (`./m`, `../m`, `/m`, `~/m`), not a bare name."""
    return name.strip().startswith(PATH_PREFIXES)


def load_local(name: str, device: torch.device, *, check_kv: bool) -> Model:
    """The model in the folder `name`, its provenance the folder and its weights' SHA-256."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        directory = Path(name.strip()).expanduser().resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ModelNotInstalledError(
            f"the model folder {name.strip()} cannot be resolved: {_first_line(exc)}"
        ) from None
    weights = _check_folder(directory)
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            directory,
            dtype=torch.float32,
            local_files_only=True,
            trust_remote_code=False,
            output_loading_info=True,
        )
        hf, info = loaded
        tok = AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # a user's files: any library's error (a torn safetensors file
        # raises safetensors' own) becomes one line naming the folder
        raise ModelNotInstalledError(
            f"the model folder {directory} could not be loaded: {_first_line(exc)}"
        ) from None
    _check_tensors(directory, info)
    if not getattr(hf.config, "architectures", None):
        hf.config.architectures = [type(hf).__name__]  # TransformerLens picks its adapter by it
    return from_hf(
        str(directory),
        hf,
        tok,
        device=device,
        checksum=f"sha256:{sha256(weights)}",
        source=f"local folder {directory}",
        check_kv=check_kv,
    )


def _check_folder(directory: Path) -> list[Path]:
    """The folder's weight files, or a clear error for what it lacks."""
    if not directory.is_dir():
        what = "is a file, not a folder" if directory.exists() else "does not exist"
        raise ModelNotInstalledError(f"the model folder {directory} {what}")
    config = directory / "config.json"
    if not config.is_file():
        raise ModelNotInstalledError(
            f"{directory} has no config.json: not a Hugging Face model folder"
        )
    try:
        record = json.loads(config.read_text())
        auto_map = record.get("auto_map")
    except (OSError, ValueError, AttributeError, RecursionError):
        raise ModelNotInstalledError(f"{config} is not a readable JSON object") from None
    _check_size(config, record)
    if auto_map:
        raise ModelNotInstalledError(
            f"{directory} needs its own Python code (config.json has an auto_map), and interp "
            "never runs a model folder's code"
        )
    weights = sorted({p for pattern in WEIGHT_PATTERNS for p in directory.glob(pattern)})
    if not weights:
        raise ModelNotInstalledError(
            f"{directory} has a config.json but no weights (model.safetensors or pytorch_model.bin)"
        )
    if not any((directory / f).is_file() for f in TOKENIZER_FILES):
        raise ModelNotInstalledError(
            f"{directory} has no tokenizer (tokenizer.json or tokenizer_config.json); save it "
            "beside the model with tokenizer.save_pretrained"
        )
    return weights


def _check_size(config: Path, record: dict[str, Any]) -> None:
    """Refuse, before anything is built, a config whose model cannot fit in memory: its
    parameters estimated from the widths it names (float32)."""

    def get(*keys: str, default: int = 0) -> int:
        for key in keys:
            value = record.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return max(value, 0)
        return default

    d = get("hidden_size", "n_embd", "d_model")
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    ff = get("intermediate_size", "n_inner", "ffn_dim", default=4 * d)
    vocab = get("vocab_size")
    params = 2 * vocab * d + layers * (4 * d * d + 3 * d * ff)
    need, have = 4 * params, available_memory()
    if have is not None and need > have:
        raise ModelNotInstalledError(
            f"{config} describes a model of about {params / 1e9:.1f}B parameters ({layers:,} "
            f"layers of width {d:,}): about {need / 1e9:.1f} GB in float32, more than the "
            f"{have / 1e9:.1f} GB available"
        )


def _check_tensors(directory: Path, info: dict[str, Any]) -> None:
    """Refuse weights that do not match the model: Hugging Face fills a missing tensor with
    random values and only warns (a model that loads and generates nonsense)."""
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        names = sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(kind) or ())
        if names:
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            what = {
                "missing_keys": "lack tensors the model needs",
                "unexpected_keys": "hold tensors the model does not have",
                "mismatched_keys": "hold tensors of the wrong shape",
            }[kind]
            raise ModelNotInstalledError(f"the weights in {directory} {what}: {shown}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
