"""One site's patching result (`PatchingResult`), the cells it ranks (`Head`, `HeadPosition`,
`SitePosition`), the sites and directions patching knows, and one site read back from the
stored tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple, cast

from torch import Tensor

from interp.interventions import sites
from interp.models.heads import Head
from interp.models.site import Site
from interp.trace import schema

PatchSite = Literal["heads", "heads-by-pos", "resid", "attn-out", "mlp-out"]
PATCH_SITES: tuple[PatchSite, ...] = ("heads", "heads-by-pos", "resid", "attn-out", "mlp-out")
ResultSite = Literal["heads", "heads-by-pos", "resid", "attn-out", "mlp-out", "path"]
RESULT_SITES: tuple[ResultSite, ...] = (*PATCH_SITES, "path")
Direction = Literal["denoise", "noise"]


class HeadPosition(NamedTuple):
    """A head at one position: a `(Head, position)` pair (a heads-by-pos cell); `str()` gives
    its label, "L5H1@7"."""

    head: Head
    position: int

    def __str__(self) -> str:
        return f"{self.head}@{self.position}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


class SitePosition(NamedTuple):
    """A layer's site at one position: a `(Site, position)` pair (a resid, attn-out or mlp-out
    cell); `str()` gives its label, "L5.attn@7"."""

    site: Site
    position: int

    @property
    def layer(self) -> int:
        return self.site.layer

    def __str__(self) -> str:
        return f"{self.site}@{self.position}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


Cell = Head | HeadPosition | SitePosition  # one patched candidate of a site


@dataclass
class PatchingResult:
    """One site's patching effects: `[layer, head]` (heads; path: the sender heads),
    `[layer, head, pos]` (heads-by-pos) or `[layer, pos]` (resid, attn-out, mlp-out);
    `per_row` rows first. `effect` is exact where `verified` (None: everywhere); elsewhere
    (a triage) it is NaN, and `estimate` holds the attribution-patching estimate. `patched`
    is the patched runs' metric itself (effect + the metric of the run patched into: ROME's
    restored probability), with its standard error; `patched_per_row`, `clean_per_row` and
    `corrupted_per_row` each row's values (None where read from a file written before them).
    Means and standard errors are over rows (prompts x noise draws)."""

    site: ResultSite
    direction: Direction
    metric: str
    effect: Tensor
    effect_normalized: Tensor
    stderr: Tensor | None  # over rows; None for one pair
    per_row: Tensor
    clean_metric: float  # means over rows
    corrupted_metric: float
    estimate: Tensor | None = None  # attribution patching: an estimate, never an effect
    verified: Tensor | None = None  # bool, where `effect` was computed exactly
    patched: Tensor = field(kw_only=True)  # m(patched), means over rows
    patched_stderr: Tensor | None = field(default=None, kw_only=True)
    patched_per_row: Tensor | None = field(default=None, kw_only=True)  # [row, ...]
    clean_per_row: Tensor | None = field(default=None, kw_only=True)  # [row]
    corrupted_per_row: Tensor | None = field(default=None, kw_only=True)  # [row]

    def cell(self, index: Sequence[int]) -> Cell:
        """The candidate at an index into `effect`: a `Head` (heads, path), a `HeadPosition`
        (heads-by-pos) or a `SitePosition` (resid, attn-out, mlp-out: `L5.attn` at 7)."""
        if self.site in ("heads", "path"):
            return Head(int(index[0]), int(index[1]))
        if self.site == "heads-by-pos":
            return HeadPosition(Head(int(index[0]), int(index[1])), int(index[2]))
        family = cast(sites.Site, self.site)
        return SitePosition(sites.at(family, int(index[0])), int(index[1]))

    def top(self, k: int = 10) -> list[tuple[Cell, float]]:
        """The k largest exact |effect| with their candidates, signed, largest magnitude first
        (ties in index order; cells without an exact effect left out): `(Head, effect)` for
        heads and path, `(HeadPosition(head, position), effect)` for heads-by-pos and
        `(SitePosition(site, position), effect)` for the layer sites. Each is a tuple that
        unpacks as it reads (`(head, pos), v = ...`); `str()` gives its label."""
        return [(cell, value) for _, cell, value in self.ranked(k)]

    def ranked(self, k: int = 10) -> list[tuple[int, Cell, float]]:
        """`top`'s candidates with their index into the flattened effect."""
        flat = self.effect.flatten()
        known = ~flat.isnan()
        order = flat.nan_to_num(0.0).abs().argsort(descending=True, stable=True)
        shape = self.effect.shape
        out: list[tuple[int, Cell, float]] = []
        for i in order.tolist():
            if len(out) == k:
                break
            if not known[i]:
                continue
            index, rest = [], i
            for size in reversed(shape):
                index.append(rest % size)
                rest //= size
            out.append((i, self.cell(list(reversed(index))), float(flat[i])))
        return out


_AXES: dict[str, tuple[str, ...]] = {
    "heads": ("layer", "head"),
    "path": ("layer", "head"),
    "heads-by-pos": ("layer", "head", "pos"),
    "resid": ("layer", "pos"),
    "attn-out": ("layer", "pos"),
    "mlp-out": ("layer", "pos"),
}


def stored_site(
    site: ResultSite,
    tensors: dict[str, Tensor],
    where: Path,
    sizes: dict[str, int | None],
    rows: int,
    direction: Direction,
    metric: str,
    clean: float,
    corrupted: float,
) -> PatchingResult:
    """One site's tensors, each of the dtype and shape the summary implies: the site's axes
    (layers, heads, positions) the same sizes at every site and as many positions as the
    tokens, `per_row` one slice a pair."""
    axes = _AXES[site]
    effect = schema.tensor(
        tensors, f"{site}.effect", where, "float", [None] * len(axes), allow_nan=True
    )
    for axis, size in zip(axes, effect.shape, strict=True):
        if sizes[axis] is None:
            sizes[axis] = int(size)
    shape = [sizes[axis] for axis in axes]

    def get(name: str, kind: schema.Kind, dims: list[int | None]) -> Tensor:
        return schema.tensor(tensors, f"{site}.{name}", where, kind, dims, allow_nan=True)

    effect = get("effect", "float", shape)
    normalized = get("effect_normalized", "float", shape)
    per_row = get("per_row", "float", [rows, *shape])
    kinds: dict[str, schema.Kind] = {"stderr": "float", "estimate": "float", "verified": "bool"}
    kinds |= {"patched": "float", "patched_stderr": "float"}
    optional = {
        name: get(name, kind, shape) if f"{site}.{name}" in tensors else None
        for name, kind in kinds.items()
    }
    name = f"{site}.patched_per_row"
    patched_rows = get("patched_per_row", "float", [rows, *shape]) if name in tensors else None
    sides = {  # each row's metric of each run, shared by the sites
        side: schema.tensor(tensors, f"{side}.per_row", where, "float", [rows])
        if f"{side}.per_row" in tensors
        else None
        for side in ("clean", "corrupted")
    }
    patched = optional["patched"]
    if patched is None:  # a file from before the patched values were kept
        patched = effect + (corrupted if direction == "denoise" else clean)
    return PatchingResult(
        site,
        direction,
        metric,
        effect,
        normalized,
        optional["stderr"],
        per_row,
        clean,
        corrupted,
        optional["estimate"],
        optional["verified"],
        patched=patched,
        patched_stderr=optional["patched_stderr"],
        patched_per_row=patched_rows,
        clean_per_row=sides["clean"],
        corrupted_per_row=sides["corrupted"],
    )
