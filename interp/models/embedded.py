"""Loading an embedded model: its GGUF found inside the installed package, converted once into
the cache, read from there."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import torch

from interp.errors import ModelUnavailableError
from interp.models.cache import cache_valid, convert_gguf, model_dir
from interp.models.checkpoint import read_cached_model
from interp.models.model import Model
from interp.models.registry import EmbeddedSpec

log = logging.getLogger(__name__)


def embedded_weights_file(spec: EmbeddedSpec) -> Path:
    """The GGUF file inside the installed package, found without importing the package."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelUnavailableError(
            f"model {spec.name!r} needs the package {spec.distribution}=={spec.version}, "
            f"which is not installed; install it with: {spec.install_command}"
        ) from None
    path = Path(str(dist.locate_file(spec.file)))
    if not path.is_file():
        raise ModelUnavailableError(
            f"the package {spec.distribution} is installed but has no {spec.file}; "
            f"reinstall it with: {spec.install_command} --force-reinstall"
        )
    return path


def load_embedded(spec: EmbeddedSpec, device: torch.device, *, check_kv: bool) -> Model:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = embedded_weights_file(spec)
    directory = model_dir(spec.name)
    marker = cache_valid(directory, source)
    if marker is None:
        if directory.exists():
            log.warning("the cached conversion in %s is incomplete or stale: rebuilding", directory)
        marker = convert_gguf(spec, source, directory)
    try:
        hf = read_cached_model(directory)
        tok = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # a cache that passed the checks but still does not load
        log.warning("the cached conversion in %s failed to load (%s): rebuilding", directory, exc)
        marker = convert_gguf(spec, source, directory)
        hf = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(directory))
    return Model.from_hf(
        spec.name,
        hf,
        tok,
        device=device,
        checksum=f"sha256:{marker['source_sha256']}",
        source=f"{spec.distribution}=={spec.version}:{spec.file}",
        check_kv=check_kv,
    )
