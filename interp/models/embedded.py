"""Loading an embedded model: its GGUF found inside the installed packages (one file, or pieces
to concatenate), converted once into the cache, read from there."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import torch

from interp.errors import ModelNotInstalledError
from interp.models.cache import cache_valid, convert_gguf, model_dir
from interp.models.checkpoint import read_cached_model
from interp.models.model import Model
from interp.models.registry import EmbeddedSpec
from interp.models.wrap import from_hf

log = logging.getLogger(__name__)


def embedded_weights_files(spec: EmbeddedSpec) -> list[Path]:
    """The GGUF's files inside the installed packages, in order, found without importing
    them."""
    paths = []
    for distribution, file in spec.pieces:
        try:
            dist = importlib.metadata.distribution(distribution)
        except importlib.metadata.PackageNotFoundError:
            terms = f" (its weights are under the {spec.terms})" if spec.terms else ""
            raise ModelNotInstalledError(
                f"model {spec.name!r} needs the package {spec.distribution}=={spec.version}"
                f"{terms}, which is not installed; install it with: {spec.install_command}"
            ) from None
        path = Path(str(dist.locate_file(file)))
        if not path.is_file():
            raise ModelNotInstalledError(
                f"the package {distribution} is installed but has no {file}; "
                f"reinstall it with: {spec.install_command} --force-reinstall"
            )
        paths.append(path)
    return paths


def load_embedded(spec: EmbeddedSpec, device: torch.device, *, check_kv: bool) -> Model:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sources = embedded_weights_files(spec)
    directory = model_dir(spec.name)
    marker = cache_valid(directory, sources)
    if marker is None:
        if directory.exists():
            log.warning("the cached conversion in %s is incomplete or stale: rebuilding", directory)
        marker = convert_gguf(spec, sources, directory)
    try:
        hf = read_cached_model(directory)
        tok = AutoTokenizer.from_pretrained(str(directory))
    except Exception as exc:  # a cache that passed the checks but still does not load
        log.warning("the cached conversion in %s failed to load (%s): rebuilding", directory, exc)
        marker = convert_gguf(spec, sources, directory)
        hf = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(str(directory))
    return from_hf(
        spec.name,
        hf,
        tok,
        device=device,
        checksum=f"sha256:{marker['source_sha256']}",
        source=f"{spec.distribution}=={spec.version}:{spec.file}",
        check_kv=check_kv,
    )
