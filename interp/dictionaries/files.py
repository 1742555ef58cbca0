"""Dictionaries on disk in SAELens's format (a folder of `cfg.json` and
`sae_weights.safetensors`), also reading Gemma Scope 2's downloaded folders (`config.json` and
`params.safetensors`, Hugging Face hook names); checked against the model they are used with.
Writes are atomic."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from interp.dictionaries.dictionary import Dictionary
from interp.errors import DictionaryFormatError, InvalidSettingError, ModelMismatchError
from interp.files import atomic
from interp.files.store import load_tensors, read_json
from interp.models import hooks as H
from interp.models.model import Model
from interp.models.registry import EMBEDDED, canonical_name
from interp.models.site import spelled

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
GS_CFG, GS_WEIGHTS = "config.json", "params.safetensors"
SAELENS_VERSION = "6.12.1"  # the version whose format this follows
_ARCHITECTURES = {
    "standard": ("relu", False),
    "relu": ("relu", False),
    "topk": ("topk", False),
    "jumprelu": ("jumprelu", False),
    "jump_relu": ("jumprelu", False),
    "transcoder": ("relu", True),
    "jumprelu_transcoder": ("jumprelu", True),
}
_HF_HOOK = re.compile(r"model\.layers\.(\d+)\.(output|pre_feedforward_layernorm\.output)$")


def load_dictionary(path: str | os.PathLike[str], model: Model | None = None) -> Dictionary:
    """The dictionary in folder `path` (SAELens's format, or Gemma Scope 2's), checked against
    `model` where given: its hooks must exist and its widths match them. Returns a
    `Dictionary`."""
    folder = Path(path)
    if not folder.is_dir():
        raise DictionaryFormatError(f"{folder} is not a folder holding a dictionary")
    if (folder / CFG).exists():
        d = _from_saelens(folder)
    elif (folder / GS_CFG).exists() and (folder / GS_WEIGHTS).exists():
        d = _from_gemma_scope(folder)
    else:
        raise DictionaryFormatError(
            f"{folder} holds neither {CFG} and {WEIGHTS} (SAELens) nor {GS_CFG} and "
            f"{GS_WEIGHTS} (Gemma Scope 2)"
        )
    d.path = folder
    if model is not None:
        check(d, model)
    return d


def save_dictionary(d: Dictionary, path: str | os.PathLike[str]) -> Path:
    """Write `d` as a SAELens folder (cfg.json, sae_weights.safetensors) plus interp's own
    record (`interp.json`: training, corpus, evaluation), replacing `path` whole."""
    from safetensors.torch import save_file

    tensors = {"W_enc": d.W_enc, "b_enc": d.b_enc, "W_dec": d.W_dec, "b_dec": d.b_dec}
    if d.threshold is not None:
        tensors["threshold"] = d.threshold
    with atomic.atomic_dir(path) as tmp:
        save_file(
            {k: v.detach().float().cpu().contiguous() for k, v in tensors.items()}, tmp / WEIGHTS
        )
        (tmp / CFG).write_text(json.dumps(saelens_config(d), indent=2))
        (tmp / "interp.json").write_text(json.dumps(d.info, indent=2, default=str))
    d.path = atomic.resolve_target(path)
    return d.path


def saelens_config(d: Dictionary) -> dict[str, Any]:
    """The cfg.json SAELens writes for such a dictionary."""
    cfg: dict[str, Any] = {
        "architecture": d.architecture,
        "d_in": d.d_in,
        "d_sae": d.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": d.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "model_name": d.model_name,
            "hook_name": d.hook,
            "hook_layer": _layer_of(d.hook),
            "hook_head_index": None,
            "sae_lens_version": SAELENS_VERSION,
        },
    }
    if d.k is not None:
        cfg["k"] = d.k
    if d.hook_out is not None:
        cfg.update(
            d_out=d.d_out,
            hook_name_out=d.hook_out,
            hook_layer_out=_layer_of(d.hook_out),
            hook_head_index_out=None,
        )
    return cfg


def check(d: Dictionary, model: Model) -> None:
    """Refuse, in one line naming both, a hook the model lacks or a width it does not have."""
    for hook, width, side in ((d.hook, d.d_in, "reads"), (d.writes, d.d_out, "writes")):
        if hook not in model.bridge.hook_dict:
            raise ModelMismatchError(
                f"the dictionary {side} {spelled(hook)}, which {model.name} lacks"
            )
        expected = hook_width(model, hook)
        if expected is None:
            raise ModelMismatchError(
                f"the dictionary {side} {spelled(hook)}; interp reads dictionaries at the residual "
                "stream, attention and MLP outputs, the MLP's input and its hidden activations"
            )
        if expected != width:
            raise ModelMismatchError(
                f"the dictionary {side} {spelled(hook)} with width {width}; {model.name} has width "
                f"{expected} there"
            )
    if d.model_name is not None and not same_model(d.model_name, model):
        raise ModelMismatchError(
            f"the dictionary was made for {d.model_name!r}, not {model.name!r}; a dictionary "
            "reads one model's activations"
        )


def same_model(name: str, model: Model) -> bool:
    """Whether a dictionary's recorded model name is `model`: its interp name or its Hugging
    Face repo (any organisation), or a variant of one (`-it`, `-instruct`, `-pt`)."""
    spec = EMBEDDED.get(canonical_name(model.name))
    ours = {_bare(n) for n in (model.name, model.source, spec.hf_name if spec else "") if n}
    for other in ours:
        short, long = sorted((_bare(name), other), key=len)
        if long == short or long.startswith(short + "-"):
            return True
    return False


def _bare(name: str) -> str:
    return name.strip().lower().rsplit("/", 1)[-1]


def hook_width(model: Model, hook: str) -> int | None:
    """The width of a hook's activations, for the hooks a dictionary may read or write."""
    return H.dictionary_width(hook, model.d_model, int(model.cfg.d_mlp))


def _from_saelens(folder: Path) -> Dictionary:
    cfg = read_json(folder / CFG)
    if not isinstance(cfg, dict):
        raise DictionaryFormatError(f"{folder / CFG} is not a JSON object")
    arch = cfg.get("architecture", "standard")
    if arch not in _ARCHITECTURES:
        raise DictionaryFormatError(
            f"{folder / CFG}: architecture {arch!r} is not one interp reads "
            f"({', '.join(sorted(_ARCHITECTURES))})"
        )
    activation, transcoder = _ARCHITECTURES[arch]
    norm = cfg.get("normalize_activations") or "none"
    if norm != "none":
        raise DictionaryFormatError(
            f"{folder / CFG}: normalize_activations {norm!r} is not supported (its scaling "
            "is not in the folder); fold it into the weights and set it to 'none'"
        )
    if (cfg.get("reshape_activations") or "none") != "none":
        raise DictionaryFormatError(f"{folder / CFG}: reshaped (hook_z) dictionaries are not read")
    meta = cfg.get("metadata") or cfg.get("meta") or {}
    hook = meta.get("hook_name") if isinstance(meta, dict) else None
    hook = hook or cfg.get("hook_name")
    if not isinstance(hook, str) or not hook:
        raise DictionaryFormatError(f"{folder / CFG} names no hook (metadata.hook_name)")
    hook_out = cfg.get("hook_name_out") if transcoder else None
    if transcoder and not isinstance(hook_out, str):
        raise DictionaryFormatError(f"{folder / CFG}: a transcoder needs hook_name_out")
    w = load_tensors(folder / WEIGHTS, "dictionary weights")
    if "threshold" not in w and "log_threshold" in w:
        w["threshold"] = w["log_threshold"].exp()
    model_name = (meta.get("model_name") if isinstance(meta, dict) else None) or cfg.get(
        "model_name"
    )
    file = folder / CFG
    d = _build(
        folder / WEIGHTS,
        w,
        activation,
        hook,
        hook_out,
        _typed(cfg, "k", int, file),
        _typed(cfg, "apply_b_dec_to_input", bool, file, True),
        model_name,
    )
    for key, size in (("d_in", d.d_in), ("d_sae", d.d_sae), ("d_out", d.d_out)):
        if _typed(cfg, key, int, file) is not None and cfg.get(key) != size:
            raise DictionaryFormatError(
                f"{folder / CFG} says {key} {cfg.get(key)}; the weights have {size}"
            )
    extra = folder / "interp.json"
    if extra.exists():
        d.info = read_json(extra)
    return d


def _from_gemma_scope(folder: Path) -> Dictionary:
    cfg = read_json(folder / GS_CFG)
    if not isinstance(cfg, dict):
        raise DictionaryFormatError(f"{folder / GS_CFG} is not a JSON object")
    if _typed(cfg, "affine_connection", bool, folder / GS_CFG, False):
        raise DictionaryFormatError(f"{folder}: affine (skip) transcoders are not supported")
    hook = _tl_hook(cfg.get("hf_hook_point_in"), folder)
    out = cfg.get("hf_hook_point_out")
    hook_out = None
    if out and out != cfg.get("hf_hook_point_in"):
        hook_out = _tl_hook(out, folder, output=True)
    w = load_tensors(folder / GS_WEIGHTS, "dictionary weights")
    w = {k.replace("w_enc", "W_enc").replace("w_dec", "W_dec"): v for k, v in w.items()}
    if cfg.get("architecture", "jump_relu") != "jump_relu":
        raise DictionaryFormatError(f"{folder / GS_CFG}: architecture {cfg['architecture']!r}")
    d = _build(
        folder / GS_WEIGHTS, w, "jumprelu", hook, hook_out, None, False, cfg.get("model_name")
    )
    if _typed(cfg, "width", int, folder / GS_CFG) not in (None, d.d_sae):
        raise DictionaryFormatError(
            f"{folder / GS_CFG} says width {cfg['width']}; the weights have {d.d_sae}"
        )
    return d


def _typed(cfg: dict[str, Any], key: str, kind: type, file: Path, default: Any = None) -> Any:
    """`cfg[key]` (None or absent: `default`) if it is a JSON boolean, integer or number as
    `kind` says; otherwise one line naming the field (`bool("false")` would be true)."""
    value = cfg.get(key)
    if value is None:
        return default
    if kind is bool:
        ok, what = isinstance(value, bool), "true or false"
    else:
        ok = isinstance(value, int if kind is int else (int, float)) and not isinstance(value, bool)
        what = "an integer" if kind is int else "a number"
    if not ok:
        raise DictionaryFormatError(f"{file}: {key} must be {what}, got {value!r:.40}")
    return value


def _tl_hook(name: Any, folder: Path, output: bool = False) -> str:
    """TransformerLens's name for a Gemma Scope 2 (Hugging Face) hook point."""
    post = re.fullmatch(r"model\.layers\.(\d+)\.post_feedforward_layernorm\.output", str(name))
    if output and post:
        return H.mlp_out(int(post[1]))
    match = _HF_HOOK.fullmatch(str(name))
    if match is None:
        raise DictionaryFormatError(
            f"{folder / GS_CFG}: the hook point {name!r} is not one interp maps"
        )
    layer, kind = int(match[1]), match[2]
    return H.resid_post(layer) if kind == "output" else H.mlp_in(layer)


def _build(
    file: Path,
    w: dict[str, torch.Tensor],
    activation: str,
    hook: str,
    hook_out: str | None,
    k: Any,
    apply_b_dec: bool,
    model_name: Any,
) -> Dictionary:
    missing = [n for n in ("W_enc", "b_enc", "W_dec", "b_dec") if n not in w]
    if activation == "jumprelu" and "threshold" not in w:
        missing.append("threshold")
    if missing:
        raise DictionaryFormatError(f"{file} lacks {', '.join(missing)}")
    f32 = {n: t.float() for n, t in w.items()}
    for name, t in f32.items():
        if not bool(torch.isfinite(t).all()):
            raise DictionaryFormatError(f"{file}: {name} holds a NaN or an infinity")
    try:
        return Dictionary(
            f32["W_enc"],
            f32["b_enc"],
            f32["W_dec"],
            f32["b_dec"],
            activation,  # type: ignore[arg-type]
            hook,
            hook_out,
            k if activation == "topk" else None,
            f32.get("threshold"),
            apply_b_dec,
            model_name if isinstance(model_name, str) else None,
        )
    except InvalidSettingError as exc:
        raise DictionaryFormatError(f"{file}: {exc}") from None


def _layer_of(hook: str) -> int | None:
    match = re.match(r"blocks\.(\d+)\.", hook)
    return int(match[1]) if match else None
