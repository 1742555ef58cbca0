"""`generate`'s arguments read against the model, before anything runs: one prompt or a
batch, prompts and forced continuations as token ids, each prompt's fields, each row's
intervention, and the hooks to record."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from interp import inputs
from interp.edits import applying
from interp.edits.value import Intervention
from interp.errors import HookError, InvalidSettingError
from interp.models import hooks as H
from interp.models import site as site_values
from interp.models.engine import HookFn
from interp.models.model import Model


def per_row(model: Model, intervention: Any, n: int) -> list[Intervention | None]:
    """Each row's intervention (one for all, or one per row), checked."""
    items = intervention if isinstance(intervention, (list, tuple)) else [intervention] * n
    if len(items) != n:
        raise InvalidSettingError(
            f"a list of interventions has one per row ({n}), got {len(items)}"
        )
    for item in dict.fromkeys(items):
        if item is not None and not isinstance(item, Intervention):
            raise InvalidSettingError(
                f"intervention must be an interp.edits.Intervention, got {type(item).__name__}"
            )
        if item is not None:
            applying.check(item, model)
    return list(items)


def metas(meta: Any, n: int, one: bool) -> list[dict[str, Any]]:
    """One dict of fields per prompt, checked."""
    if meta is None:
        return [{} for _ in range(n)]
    items = [meta] if one and isinstance(meta, dict) else meta
    if isinstance(items, dict) or not isinstance(items, Sequence) or len(items) != n:
        raise InvalidSettingError(f"meta must be one dict of fields per prompt ({n})")
    if not all(isinstance(item, dict) for item in items):
        raise InvalidSettingError("meta must be one dict of fields per prompt")
    return list(items)


def is_one_prompt(prompt: Any) -> bool:
    """A string, or a flat sequence of token ids (a batch is a list of those)."""
    if isinstance(prompt, str):
        return True
    if hasattr(prompt, "dim"):
        return bool(prompt.dim() <= 1)
    if isinstance(prompt, (bytes, bytearray)) or not isinstance(prompt, Sequence):
        return True  # not a batch: `prompt_ids` says what is wrong with it
    return not any(isinstance(p, (str, Sequence)) or hasattr(p, "dim") for p in prompt)


def forced_continuations(
    model: Model, continuation: Any, n_prompts: int, single: bool, num_samples: int
) -> list[list[int]] | None:
    if continuation is None:
        return None
    if num_samples > 1:
        raise InvalidSettingError(
            "num_samples > 1 with a forced continuation: a forced continuation has one sample"
        )
    if single:
        return [continuation_ids(model, continuation)]
    if is_one_prompt(continuation) or len(continuation) != n_prompts:
        raise InvalidSettingError(
            f"a batch of {n_prompts} prompts takes a list of {n_prompts} continuations"
        )
    return [continuation_ids(model, c) for c in continuation]


def prompt_ids(model: Model, prompt: str | Sequence[int]) -> tuple[list[int], str]:
    if isinstance(prompt, str):
        text = inputs.text(prompt, "the prompt")
        ids = model.encode(text)
    else:
        ids = inputs.token_ids(prompt, "prompt", model.d_vocab)
        text = model.decode(ids)
    if not ids:
        raise InvalidSettingError("the prompt tokenises to no tokens")
    return ids, text


def continuation_ids(model: Model, continuation: str | Sequence[int]) -> list[int]:
    if isinstance(continuation, str):
        text = inputs.text(continuation, "the forced continuation", blank_ok=True)
        ids = model.encode(text, add_special_tokens=False)
    else:
        ids = inputs.token_ids(continuation, "continuation", model.d_vocab)
    if not ids:
        raise InvalidSettingError("the forced continuation tokenises to no tokens")
    return ids


def resolve_hooks(
    model: Model,
    hooks: Sequence[str] | None,
    fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]],
) -> tuple[list[str], list[tuple[str, HookFn]]]:
    """The hook names to record (sites, in their spelling or as hook names), and the user's
    `(name or filter, fn)` pairs as `(name, fn)` pairs, all checked against the bridge's hook
    names (read once: TL rebuilds the dict)."""
    available = model.bridge.hook_dict
    if hooks is None:
        names = H.default_hooks(model.n_layers)
    else:
        names = list(dict.fromkeys(site_values.parse(h).hook for h in hooks))
    user: list[tuple[str, HookFn]] = []
    for target, fn in fwd_hooks:
        if isinstance(target, str):
            user.append((target, fn))
        else:
            user += [(name, fn) for name in available if target(name)]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise HookError(
            f"{model.name} has no site {site_values.spelled(unknown[0])}; its blocks are "
            f"L0..L{model.n_layers - 1}"
        )
    unknown = [name for name, _ in user if name not in available]
    if unknown:
        raise HookError(f"{model.name} has no hook named {unknown[0]!r}")
    return names, user
