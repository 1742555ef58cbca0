"""Loading a Hugging Face Hub model (GPT-2 small and anything else TransformerLens 4
supports): the local Hugging Face cache first, the Hub only after a quick reachability check."""

from __future__ import annotations

import os
import socket
from typing import Any

import torch

from interp.errors import ModelUnavailableError, UnknownModelError
from interp.models.model import Model
from interp.models.registry import DEFAULT_MODEL, EMBEDDED
from interp.models.wrap import from_hf


def resolve_hf_name(name: str) -> str:
    """A Hub repo id for a name: TransformerLens's official names and aliases, or `org/model`.
    A repo id that is also a path here is refused: transformers would load that folder, and a
    trace's `model` field must never steer which local folder is loaded."""
    from transformer_lens.supported_models import get_official_model_name

    try:
        repo = get_official_model_name(name)
    except ValueError:
        if not ("/" in name and all(part.strip() for part in name.split("/"))):
            embedded = ", ".join(sorted(EMBEDDED))
            raise UnknownModelError(
                f"unknown model {name!r}: use an embedded model ({embedded}), 'gpt2', a "
                "Hugging Face repo id (org/name) of a causal LM that TransformerLens supports, "
                "or a local model folder named as a path (./folder, /abs/folder)"
            ) from None
        repo = name
    if os.path.exists(repo):
        raise UnknownModelError(
            f"model name {name!r} is also a path on this machine ({os.path.abspath(repo)}); "
            "a bare name is never read as a folder: to load that folder, name it as a path "
            f"(./{name}), else run from another directory"
        )
    return repo


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check (huggingface_hub itself keeps retrying an unreachable host)."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable_message(name: str, hf_name: str, reason: str) -> str:
    return (
        f"Model {name!r} (Hugging Face: {hf_name}) could not be loaded: its weights are not "
        f"in the local Hugging Face cache and {reason}. To use it, run once where the Hub is "
        f"reachable (or copy a populated ~/.cache/huggingface here; HF_HUB_OFFLINE=1 then "
        f"reads it without the network), or use the embedded model: --model {DEFAULT_MODEL}."
    )


def load_hub(name: str, hf_name: str, device: torch.device, *, check_kv: bool) -> Model:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def fetch(local_only: bool) -> tuple[Any, Any]:
        kwargs = {"local_files_only": local_only, "trust_remote_code": False}
        hf = AutoModelForCausalLM.from_pretrained(hf_name, dtype=torch.float32, **kwargs)
        tok = AutoTokenizer.from_pretrained(hf_name, **kwargs)
        return hf, tok

    try:
        hf, tok = fetch(local_only=True)
    except OSError:
        if not hub_reachable():
            raise ModelUnavailableError(
                _unavailable_message(name, hf_name, "the Hugging Face Hub cannot be reached")
            ) from None
        try:
            hf, tok = fetch(local_only=False)
        except OSError as exc:
            raise ModelUnavailableError(
                _unavailable_message(name, hf_name, f"the Hub refused it ({exc})")
            ) from None
    revision = getattr(hf.config, "_commit_hash", None)
    return from_hf(
        name,
        hf,
        tok,
        device=device,
        checksum=f"hf:{hf_name}@{revision or 'unknown'}",
        source=hf_name,
        check_kv=check_kv,
    )
