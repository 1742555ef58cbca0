"""What a run will record, in bytes, against the memory available: a run that cannot finish
is refused before it starts."""

from __future__ import annotations

from collections.abc import Sequence

from interp.errors import InvalidSettingError
from interp.models import hooks as H
from interp.models.machine import available_memory
from interp.models.model import Model

ROW_BYTES = 4096  # a row's own objects (its trace, settings, sampler), whatever it records
STEP_BYTES = 256  # a row's per-step statistics and token strings, per position


def recording_bytes(model: Model, names: Sequence[str], n: int, rows: int = 1) -> int:
    """About how many bytes recording `names` over `n` positions of `rows` rows takes:
    query-key hooks ([head, query, key], assembled from per-step parts) grow with n squared;
    the others are [pos, ...], counted at d_model floats a position where their size is not
    known here; every row also costs its own objects and per-step statistics."""
    total = 0
    for name in names:
        if H.is_query_key(name):
            total += 2 * model.n_heads * n * n  # the whole tensor and its parts before assembly
        else:
            floats = H.per_position_floats(name, model.n_heads, int(model.cfg.d_head))
            total += n * (model.d_model if floats is None else floats)
    return rows * (total * model.dtype.itemsize + ROW_BYTES + n * STEP_BYTES)


def default_batch_size(model: Model, names: Sequence[str], n: int, rows: int, cap: int = 64) -> int:
    """How many rows to run at once when the caller does not say: as many as keep one
    chunk's recording within a quarter of the memory available, at most `cap`."""
    have = available_memory()
    per_row = max(1, recording_bytes(model, names, n))
    fit = rows if have is None else have // (4 * per_row)
    return max(1, min(rows, cap, fit))


def check_memory(model: Model, names: Sequence[str], n: int, rows: int = 1) -> None:
    """Refuse a run whose recording cannot fit in the memory available, before it starts."""
    need, have = recording_bytes(model, names, n, rows), available_memory()
    if have is None or need <= have:
        return
    patterns = sum(H.is_query_key(name) for name in names)
    where = f"{rows} rows of {n} positions" if rows > 1 else f"{n} positions"
    raise InvalidSettingError(
        f"recording {len(names)} hooks over {where} needs about {need / 1e9:.1f} GB, more than "
        f"the {have / 1e9:.1f} GB available; record fewer hooks (hooks=...)"
        + (f", leave out the {patterns} attention-pattern hooks" if patterns else "")
        + ", or use fewer or shorter prompts or fewer new tokens"
    )
