"""Every site patched between the same runs (`Patching`) and its on-disk form: a directory with
patch.safetensors (`<site>.effect`, `.effect_normalized`, `.stderr`, `.per_row`, `.patched`,
`.patched_stderr`, `.patched_per_row`; `clean.per_row` and `corrupted.per_row`, each row's
metric of each run) and summary.json's `patching`."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from interp.errors import TraceFormatError
from interp.files import atomic, store
from interp.interventions.patching_site import (
    RESULT_SITES,
    Direction,
    PatchingResult,
    ResultSite,
    stored_site,
)
from interp.trace import schema

PATCH_FORMAT = "interp-patching"
PATCH_FORMAT_VERSION = 1
PATCH_FILE = "patch.safetensors"
# what a patching directory holds: the result, and the report rendered from it
PATCH_ENTRIES = frozenset({store.SUMMARY, PATCH_FILE, "index.html", "figures"})


@dataclass
class Patching:
    """Every site patched between the same runs (`patching[site]` is one `PatchingResult`).
    `receivers` names where a path patching's paths end ("logits" or "L23H3.q,..."), `method`
    is "exact" or "triage"; `tokens` label the columns of the per-position sites: the prompt's
    positions (`positions="prompt"`), every position of the runs ("all"), or groups of
    positions patched at once ("groups", each labelled by its spelling). `under` says what
    each side's runs were recorded under ({"corrupted": "noise embed ..."}), and
    `held_callable` that one of those was a callable edit: it ran in this process, and what is
    saved cannot replay it. `draws` is the noise draws each clean run was corrupted by (its
    rows in turn: `rows` is prompts x draws). `executor` records where the rows ran
    ({"kind": "ray", "workers", "nodes", "ray": version}; empty: in one process)."""

    results: dict[ResultSite, PatchingResult]
    direction: Direction
    metric: str
    clean_metric: float
    corrupted_metric: float
    rows: int
    receivers: str | None = None
    method: str = "exact"
    tokens: list[str] | None = None  # the first clean row's, to label positions
    window: int = 1  # layers patched at once around each layer (a layer's sites)
    positions: str = "all"  # the per-position sites' columns: "prompt", "all" or "groups"
    under: dict[str, str] = field(default_factory=dict)  # side -> its runs' interventions
    held_callable: bool = False
    draws: int = 1
    executor: dict[str, Any] = field(default_factory=dict)  # where the rows ran; {}: here

    def __getitem__(self, site: ResultSite) -> PatchingResult:
        return self.results[site]

    def summary(self, k: int = 10) -> dict[str, Any]:
        out: dict[str, Any] = {
            "direction": self.direction,
            "metric": self.metric,
            "method": self.method,
            "rows": self.rows,
            "clean_metric": round(self.clean_metric, 6),
            "corrupted_metric": round(self.corrupted_metric, 6),
        }
        if self.receivers is not None:
            out["receivers"] = self.receivers
        if self.tokens is not None:
            out["tokens"] = list(self.tokens)
        if self.window != 1:
            out["window"] = self.window
        out["positions"] = self.positions
        if self.under:
            out["under"] = dict(self.under)
        if self.held_callable:
            out["held_callable"] = True
        if self.draws != 1:
            out["draws"] = self.draws
        if self.executor:
            out["executor"] = dict(self.executor)
        for site, result in self.results.items():
            out[site] = {"top": [[str(cell), round(v, 6)] for cell, v in result.top(k)]}
        return out

    def tensors(self) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for site, r in self.results.items():
            out |= {f"{site}.effect": r.effect, f"{site}.effect_normalized": r.effect_normalized}
            out[f"{site}.per_row"] = r.per_row
            for name in ("stderr", "estimate", "verified", "patched", "patched_stderr"):
                value = getattr(r, name)
                if value is not None:
                    out[f"{site}.{name}"] = value
            if r.patched_per_row is not None:
                out[f"{site}.patched_per_row"] = r.patched_per_row
            for side in ("clean", "corrupted"):
                value = getattr(r, f"{side}_per_row")
                if value is not None:
                    out[f"{side}.per_row"] = value
        return out

    @staticmethod
    def dirname(
        direction: str,
        metric: str,
        receivers: str | None = None,
        window: int = 1,
        under: str | None = None,
        positions: str = "prompt",
    ) -> str:
        """The default directory name under CLEAN_DIR/patching/: readable words of the
        settings (the direction, metric, receivers, window, the corruption's digest), and a
        hash of their exact text, so that two settings never share one
        (`logit-diff:"Mary","John"` and `logit-diff:" Mary"," John"` read alike)."""
        settings: list[object] = [direction, metric, receivers]
        settings += [window] if window != 1 else []
        settings += [under] if under is not None else []
        settings += [positions] if positions != "prompt" else []
        digest = hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:8]
        words = [f"path-{direction}" if receivers is not None else direction, _slug(metric, 40)]
        if receivers is not None:
            words.append(_slug(receivers, 40))
        if window != 1:
            words.append(f"window{window}")
        if under is not None:
            words.append(under)
        if positions != "prompt":
            words.append(f"{_slug(positions, 40)}-positions")
        return "-".join([*words, digest])

    @staticmethod
    def check_output(directory: str | os.PathLike[str]) -> None:
        """Refuse, before any work, a directory a patching result may not be written to."""
        store.check_output_dir(Path(directory), own=PATCH_ENTRIES, formats=(PATCH_FORMAT,))

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the directory atomically (an earlier patching result there is replaced;
        anything else is refused)."""
        from safetensors.torch import save_file

        target = Path(directory)
        self.check_output(target)
        record = {
            "format": PATCH_FORMAT,
            "format_version": PATCH_FORMAT_VERSION,
            "patching": self.summary(),
        }
        text = store.dumps(record)
        with atomic.atomic_dir(target) as tmp:
            save_file(
                {k: v.contiguous().cpu() for k, v in self.tensors().items()}, tmp / PATCH_FILE
            )
            (tmp / store.SUMMARY).write_text(text, encoding="utf-8")
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> Patching:
        """A patching result saved by `save` (checked: a clear error for anything else)."""
        path = Path(directory)
        if not (path / store.SUMMARY).is_file():
            raise TraceFormatError(f"{path} holds no patching result (no {store.SUMMARY})")
        record = store.read_json(path / store.SUMMARY)
        if not isinstance(record, dict) or record.get("format") != PATCH_FORMAT:
            raise TraceFormatError(f"{path} holds no patching result")
        if record.get("format_version") != PATCH_FORMAT_VERSION:
            raise TraceFormatError(
                f"{path} holds a patching result of format version "
                f"{record.get('format_version')!r}; this interp reads {PATCH_FORMAT_VERSION}: "
                "patch again"
            )
        summary = record.get("patching")
        where = path / store.SUMMARY
        if not isinstance(summary, dict):
            raise TraceFormatError(f"{where}: 'patching' is not an object")
        direction = schema.field(summary, "direction", str, where)
        if direction not in ("denoise", "noise"):
            raise TraceFormatError(f"{where}: direction {direction!r} is not denoise or noise")
        metric = schema.field(summary, "metric", str, where)
        clean = schema.field(summary, "clean_metric", float, where)
        corrupted = schema.field(summary, "corrupted_metric", float, where)
        rows = schema.field(summary, "rows", int, where)
        if rows < 1:
            raise TraceFormatError(f"{where}: rows {rows} is not a count of pairs")
        receivers = (
            schema.field(summary, "receivers", str, where) if "receivers" in summary else None
        )
        method = schema.field(summary, "method", str, where) if "method" in summary else "exact"
        tokens = schema.items(summary, "tokens", str, where) if "tokens" in summary else None
        window = schema.field(summary, "window", int, where) if "window" in summary else 1
        if window < 1:
            raise TraceFormatError(f"{where}: window {window} is not a number of layers")
        positions = (
            schema.field(summary, "positions", str, where) if "positions" in summary else "all"
        )
        if positions not in ("prompt", "all", "groups"):
            raise TraceFormatError(f"{where}: positions {positions!r} is not prompt, all or groups")
        under = summary.get("under", {})
        if not isinstance(under, dict) or not all(
            side in ("clean", "corrupted") and isinstance(v, str) for side, v in under.items()
        ):
            raise TraceFormatError(f"{where}: under is not an object of the sides' labels")
        held = summary.get("held_callable", False)
        if not isinstance(held, bool):
            raise TraceFormatError(f"{where}: held_callable is not true or false")
        draws = schema.field(summary, "draws", int, where) if "draws" in summary else 1
        if draws < 1 or rows % draws:
            raise TraceFormatError(f"{where}: draws {draws} does not divide the {rows} rows")
        executor = summary.get("executor", {})
        if not isinstance(executor, dict):
            raise TraceFormatError(f"{where}: executor is not an object")
        tensors = store.load_tensors(path / PATCH_FILE, "patching results")
        sizes: dict[str, int | None] = {"layer": None, "head": None, "pos": None}
        if tokens is not None:
            sizes["pos"] = len(tokens)
        results: dict[ResultSite, PatchingResult] = {}
        for site in RESULT_SITES:
            if site in summary:
                results[site] = stored_site(
                    site,
                    tensors,
                    path / PATCH_FILE,
                    sizes,
                    rows,
                    direction,
                    metric,
                    clean,
                    corrupted,
                )
        if not results:
            raise TraceFormatError(f"{where}: the patching result names no site")
        return cls(
            results,
            direction,
            metric,
            clean,
            corrupted,
            rows,
            receivers,
            method,
            tokens,
            window,
            positions,
            under,
            held,
            draws,
            executor,
        )


def _slug(text: str, limit: int) -> str:
    return re.sub(r"[\W_]+", "-", text.lower()).strip("-")[:limit].rstrip("-") or "x"
