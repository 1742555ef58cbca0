"""What it takes to reproduce a result: library versions, weights checksum, device, dtype."""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import torch

__all__ = ["library_versions", "provenance"]

if TYPE_CHECKING:
    from interp.models.model import Model

DISTRIBUTIONS = ("interp", "torch", "transformers", "transformer-lens")


def library_versions() -> dict[str, str]:
    out = {}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def library_versions_line() -> str:
    return ", ".join(f"{k} {v}" for k, v in library_versions().items())


def provenance(model: Model) -> dict[str, str]:
    """The record saved with every trace."""
    record = {k.replace("-", "_"): v for k, v in library_versions().items()}
    record.update(
        model_checksum=model.checksum,
        model_source=model.source,
        device=str(model.device),
        dtype=str(model.dtype).removeprefix("torch."),
        torch_threads=str(torch.get_num_threads()),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    return record
