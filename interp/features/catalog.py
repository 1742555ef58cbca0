"""Where dictionaries are cached (`$INTERP_CACHE_DIR/dictionaries/<model>/<hook>/`), which ones
`make features` trains by default, and the list of those cached, with their figures."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.dictionaries.files import CFG
from interp.errors import DictionaryFormatError
from interp.files.store import read_json
from interp.models import hooks as H
from interp.models.cache import cache_root


@dataclass(frozen=True)
class DefaultDictionaries:
    """The dictionaries `make features` trains for a model: one middle and one late layer of
    the residual stream, TopK SAEs of `width` latents with `k` active, on `tokens` tokens."""

    hooks: tuple[str, ...]
    width: int
    k: int
    tokens: int


DEFAULTS = {
    "smollm2-135m": DefaultDictionaries((H.resid_post(15), H.resid_post(25)), 4608, 32, 1_000_000),
}


def dictionaries_root() -> Path:
    return cache_root() / "dictionaries"


def dictionary_dir(model_name: str, hook: str) -> Path:
    """The cache folder of `model_name`'s dictionary at `hook`."""
    return dictionaries_root() / model_name / hook


def cached_dictionaries(model_name: str | None = None) -> list[dict[str, Any]]:
    """The cached dictionaries (of one model, or all): path, model, hook, architecture, width,
    k and the evaluation figures, read from their files without loading the weights."""
    root = dictionaries_root()
    out: list[dict[str, Any]] = []
    for cfg_path in sorted(root.glob(f"{model_name or '*'}/*/{CFG}")):
        folder = cfg_path.parent
        try:
            cfg = read_json(cfg_path)
            info = read_json(folder / "interp.json") if (folder / "interp.json").exists() else {}
            if not isinstance(cfg, dict):
                raise DictionaryFormatError(f"{CFG} is not a JSON object")
        except Exception as exc:  # noqa: BLE001 - a damaged entry is listed as such, not fatal
            reason = f"{type(exc).__name__}: {exc}"[:200]
            out.append({"path": str(folder), "error": "unreadable", "reason": reason})
            continue
        meta = cfg.get("metadata")
        meta = meta if isinstance(meta, dict) else {}
        out.append(
            {
                "path": str(folder),
                "model": meta.get("model_name", folder.parent.name),
                "hook": meta.get("hook_name", folder.name),
                "architecture": cfg.get("architecture"),
                "width": cfg.get("d_sae"),
                "k": cfg.get("k"),
                "evaluation": info.get("evaluation") if isinstance(info, dict) else None,
                "contexts": (folder / "contexts.safetensors").exists(),
            }
        )
    return out
