"""Loading a Hugging Face model folder on this machine (config, weights, tokenizer): named by a
path that starts with `./`, `../`, `/` or `~`, never by a bare name, so a Hub name or a trace's
`model` field can never pick up a folder in the working directory. Its code is never run."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from interp.errors import ModelNotInstalledError
from interp.models.cache import sha256
from interp.models.model import Model

PATH_PREFIXES = ("./", "../", "/", "~")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def is_path(name: str) -> bool:
    """True for a model named by a path (`./m`, `../m`, `/m`, `~/m`), not a bare name."""
    return name.strip().startswith(PATH_PREFIXES)


def load_local(name: str, device: torch.device, *, check_kv: bool) -> Model:
    """The model in the folder `name`, its provenance the folder and its weights' SHA-256."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(name.strip()).expanduser().resolve()
    weights = _check_folder(directory)
    try:
        hf = AutoModelForCausalLM.from_pretrained(
            directory, dtype=torch.float32, local_files_only=True, trust_remote_code=False
        )
        tok = AutoTokenizer.from_pretrained(
            directory, local_files_only=True, trust_remote_code=False
        )
    except Exception as exc:  # a user's files: any library's error (a torn safetensors file
        # raises safetensors' own) becomes one line naming the folder
        raise ModelNotInstalledError(
            f"the model folder {directory} could not be loaded: {_first_line(exc)}"
        ) from None
    if not getattr(hf.config, "architectures", None):
        hf.config.architectures = [type(hf).__name__]  # TransformerLens picks its adapter by it
    return Model.from_hf(
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
        auto_map = json.loads(config.read_text()).get("auto_map")
    except (OSError, ValueError, AttributeError):
        raise ModelNotInstalledError(f"{config} is not a readable JSON object") from None
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
