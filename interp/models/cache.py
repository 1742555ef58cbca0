"""The conversion cache: an embedded model's GGUF dequantised once to fp32 safetensors, kept
under $INTERP_CACHE_DIR with a marker that ties it to the very file it was made from."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from interp import atomic
from interp.models.checkpoint import safetensors_header_ok
from interp.models.registry import EmbeddedSpec
from interp.models.tokenizer import record_added_tokens
from interp.provenance import library_versions

log = logging.getLogger(__name__)

CACHE_ENV = "INTERP_CACHE_DIR"
CACHE_FORMAT = 2  # 2: tokenizer_config.json lists the added tokens
MARKER = "interp-cache.json"


def cache_root() -> Path:
    """Where converted models are cached: $INTERP_CACHE_DIR, else ~/.cache/interp."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "interp"


def model_dir(name: str) -> Path:
    """The cache directory of one embedded model."""
    return cache_root() / "models" / name


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_valid(directory: Path, source: Path) -> dict[str, Any] | None:
    """The cache's marker if the cache is complete and was made from this very file."""
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    try:
        stat = source.stat()
        if marker.get("format") != CACHE_FORMAT:
            return None
        if marker["source_size"] != stat.st_size:
            return None
        if marker["source_mtime_ns"] != stat.st_mtime_ns:
            # The same file installed again (another venv, a reinstall) has a new mtime:
            # its checksum decides, and the marker learns the new mtime.
            if sha256(source) != marker["source_sha256"]:
                return None
            marker["source_mtime_ns"] = stat.st_mtime_ns
            _write_marker(directory, marker)
        for fname, size in marker["files"].items():
            if (directory / fname).stat().st_size != size:
                return None
        for fname in marker["files"]:
            if fname.endswith(".safetensors") and not safetensors_header_ok(directory / fname):
                return None
    except (OSError, KeyError, TypeError):
        return None
    return marker


def _write_marker(directory: Path, marker: dict[str, Any]) -> None:
    """Replace the cache's marker atomically; a read-only cache keeps its old one."""
    with contextlib.suppress(OSError):
        atomic.write_text(directory / MARKER, json.dumps(marker, indent=2))


def convert_gguf(spec: EmbeddedSpec, source: Path, directory: Path) -> dict[str, Any]:
    """Dequantise the GGUF to fp32 safetensors in a temporary directory, then swap it in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s from %s (one time, about 15 s)", spec.name, source.name)
    with atomic.atomic_dir(directory) as tmp:
        with _gguf_progress_bar_follows_transformers():
            hf: Any = AutoModelForCausalLM.from_pretrained(
                str(source.parent), gguf_file=source.name, dtype=torch.float32
            )
        tok = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        # save_pretrained refuses a GGUF-loaded model ("not serializable") while it carries
        # the GGUF quantizer; the tensors are already dequantised to fp32.
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        record_added_tokens(tmp)
        stat = source.stat()
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        marker = {
            "format": CACHE_FORMAT,
            "model": spec.name,
            "source": str(source),
            "source_size": stat.st_size,
            "source_mtime_ns": stat.st_mtime_ns,
            "source_sha256": sha256(source),
            "files": files,
            "versions": library_versions(),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    return marker


@contextlib.contextmanager
def _gguf_progress_bar_follows_transformers() -> Iterator[None]:
    """Make the GGUF conversion's progress bar obey transformers' progress-bar switch.

    transformers draws that bar with a bare `tqdm` (`modeling_gguf_pytorch_utils`), which
    ignores `transformers.utils.logging.disable_progress_bar()`: the CLI turns bars off when
    stderr is not a terminal, and a log file would otherwise fill with carriage-return frames.
    While bars are off, the module's `tqdm` is a disabled one; it is restored afterwards.
    """
    from transformers import modeling_gguf_pytorch_utils as gguf_utils
    from transformers.utils import logging as hf_logging

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None or hf_logging.is_progress_bar_enabled():
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar
