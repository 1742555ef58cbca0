"""Where a replacing edit's values come from: the site's mean over reference runs (`mean`), a
source run's own values at the same positions (`patch`), or values given outright (any of
`mean`, `resample`, `patch`). They are resolved when the edit is built, so an edit holds plain
numbers and replays from its serialised form alone."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from interp.errors import InvalidSettingError
from interp.models.site import spelled

REPLACING = ("mean", "resample", "patch")  # ops that put values in, rather than edit them
_MEAN_OVER = ("auto", "prompt", "all")


def resolve(
    op: str,
    site: str,
    heads: tuple[int, ...] | None,
    neurons: tuple[int, ...] | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """A replacing op's parameters with `values` (`[1 or source positions, ...]`, the edited
    heads' or neurons' part only) and `origin` (what they are) in place of `reference=`
    (mean: a run or runs, `mean_over=` which positions of each) or `source=` (patch: a run)."""
    out = dict(params)
    reference, source = out.pop("reference", None), out.pop("source", None)
    over = out.pop("mean_over", "auto")
    given = [v for v in (out.get("values"), reference, source) if v is not None]
    allowed = {"mean": "values= or reference=", "patch": "values= or source="}
    if (
        len(given) != 1
        or (op != "mean" and reference is not None)
        or (op != "patch" and source is not None)
    ):
        raise InvalidSettingError(f"the {op} operation takes {allowed.get(op, 'values=')}")
    if over not in _MEAN_OVER or (over != "auto" and reference is None):
        raise InvalidSettingError(
            f"mean_over= goes with reference= and is one of {', '.join(_MEAN_OVER)}, got {over!r}"
        )
    if reference is not None:
        runs = [reference] if hasattr(reference, "activations") else list(reference)
        if not runs:
            raise InvalidSettingError("reference= holds no runs")
        parts = [_part(_recorded(r, site)[: _mean_span(r, over)], heads, neurons) for r in runs]
        out["values"] = torch.cat(parts).mean(0, keepdim=True)
        count = sum(p.shape[0] for p in parts)
        out.setdefault("origin", f"the mean over {count} positions of {len(runs)} run(s)")
    elif source is not None:
        out["values"] = _part(_recorded(source, site), heads, neurons)
        out.setdefault("origin", f"the same positions of the run of {source.prompt[:60]!r}")
    return out


def values(value: Any) -> Tensor:
    """A replacing op's values, checked: finite numbers, `[positions, ...]`."""
    try:
        tensor = torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidSettingError("values= must be a tensor of numbers") from None
    if tensor.dim() < 2 or tensor.numel() == 0 or not bool(torch.isfinite(tensor).all()):
        raise InvalidSettingError(
            "values= must be finite numbers shaped [positions (or 1), ...the site's value]"
        )
    return tensor.detach().cpu()


def _recorded(run: Any, site: str) -> Tensor:
    acts = getattr(run, "activations", None)
    if not isinstance(acts, dict):
        raise InvalidSettingError(f"a reference or source is a recorded run, got {run!r:.40}")
    if site not in acts:
        raise InvalidSettingError(
            f"the run of {run.prompt[:40]!r} did not record {spelled(site)}; record it (hooks=) "
            "to take "
            "its values"
        )
    return acts[site].float()


def _mean_span(run: Any, over: str) -> int:
    """The leading positions of a run a mean covers (a forced continuation's answer must not
    leak into the mean: "auto" takes only its prompt)."""
    forced = run.settings.continuation is not None
    return run.prompt_len if over == "prompt" or (over == "auto" and forced) else run.n_positions


def _part(x: Tensor, heads: Iterable[int] | None, neurons: Iterable[int] | None) -> Tensor:
    if heads is not None:
        return x[:, list(heads)]
    return x[..., list(neurons)] if neurons is not None else x
