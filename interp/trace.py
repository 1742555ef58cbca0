"""The Trace: the one object everything after generation reads, and its on-disk form.

On disk a trace is a directory:
  summary.json             metadata, tokens, settings, per-step log-probs, provenance
  steps.safetensors        per-step tensors (log-probs, ranks, top alternatives), exact
  activations.safetensors  one tensor per recorded hook, without the batch dimension
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp import atomic
from interp.errors import HookError, ModelMismatchError, OutputPathError, TraceFormatError
from interp.hooks import missing

if TYPE_CHECKING:
    from transformer_lens import ActivationCache

    from interp.models.model import Model

FORMAT = "interp-trace"
FORMAT_VERSION = 1
SUMMARY = "summary.json"
STEPS = "steps.safetensors"
ACTIVATIONS = "activations.safetensors"


@dataclass(frozen=True)
class GenerationSettings:
    """Everything that decides which tokens a run produces."""

    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int | None
    stop_at_eos: bool
    continuation: str | None = None  # a forced (teacher-forced) continuation, if any


@dataclass(eq=False)
class Trace:
    """A recorded generation: tokens, settings, per-step statistics and activations.

    `activations[name]` holds, for every position of prompt + continuation, what one
    full-sequence `run_with_cache` gives for that hook, without the batch dimension
    (`[pos, ...]`; attention patterns `[head, query_pos, key_pos]`).
    """

    model_name: str
    prompt: str
    token_ids: Int[Tensor, " pos"]
    prompt_len: int
    token_strs: list[str]
    continuation: str  # the generated text as the tokenizer decodes the continuation's ids
    settings: GenerationSettings
    token_logprobs: Float[Tensor, " gen"]  # log-prob of each generated token, unmodified model
    token_ranks: Int[Tensor, " gen"]  # 1 = the model's most likely token
    top_ids: Int[Tensor, "gen k"]  # the most likely alternatives at each step
    top_probs: Float[Tensor, "gen k"]
    activations: dict[str, Tensor]
    stop_reason: str  # "max_new_tokens", "eos" or "forced"
    timings: dict[str, float] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)
    model: Model | None = field(default=None, repr=False)

    # ---- views -------------------------------------------------------------------------

    @property
    def n_positions(self) -> int:
        return int(self.token_ids.shape[0])

    @property
    def n_generated(self) -> int:
        return self.n_positions - self.prompt_len

    @property
    def continuation_ids(self) -> list[int]:
        return self.token_ids[self.prompt_len :].tolist()

    @property
    def hook_names(self) -> list[str]:
        return list(self.activations)

    @property
    def cache(self) -> ActivationCache:
        """The activations as a TransformerLens `ActivationCache` over the whole sequence
        (batch dimension 1). Methods that need the model (`accumulated_resid`, `logit_lens`,
        ...) need a bound model: `Trace.load(dir, model=model)` or `trace.bind(model)`."""
        from transformer_lens import ActivationCache

        bridge = self.model.bridge if self.model is not None else None
        return ActivationCache({k: v.unsqueeze(0) for k, v in self.activations.items()}, bridge)

    def require_hooks(self, names: list[str], purpose: str) -> None:
        """Raise a clear error naming the hooks this trace lacks for `purpose`."""
        absent = missing(names, self.activations)
        if absent:
            shown = ", ".join(absent[:6]) + (
                f" and {len(absent) - 6} more" if len(absent) > 6 else ""
            )
            raise HookError(
                f"{purpose} needs hooks this trace did not record: {shown}; "
                "record it again with the default hooks"
            )

    def bind(self, model: Model) -> Trace:
        """Attach the model this trace was recorded with; refuse any other model."""
        if model.name != self.model_name:
            raise ModelMismatchError(
                f"this trace was recorded with model {self.model_name!r}, not {model.name!r}"
            )
        recorded = self.provenance.get("model_checksum")
        if recorded and recorded != model.checksum:
            raise ModelMismatchError(
                f"this trace was recorded with other weights for {self.model_name!r} "
                f"(checksum {recorded}, loaded {model.checksum})"
            )
        self.model = model
        return self

    # ---- equality ----------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        plain = (
            "model_name",
            "prompt",
            "prompt_len",
            "token_strs",
            "continuation",
            "settings",
            "stop_reason",
            "timings",
            "provenance",
        )
        if any(getattr(self, a) != getattr(other, a) for a in plain):
            return False
        tensors = ("token_ids", "token_logprobs", "token_ranks", "top_ids", "top_probs")
        if any(not _same(getattr(self, a), getattr(other, a)) for a in tensors):
            return False
        if self.activations.keys() != other.activations.keys():
            return False
        return all(_same(v, other.activations[k]) for k, v in self.activations.items())

    __hash__ = None  # type: ignore[assignment]

    # ---- disk --------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The JSON-able record written to summary.json."""
        s = self.settings
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": self.model_name,
            "prompt": self.prompt,
            "seed": s.seed,
            "sampling": {"temperature": s.temperature, "top_k": s.top_k, "top_p": s.top_p},
            "settings": asdict(s),
            "token_ids": self.token_ids.tolist(),
            "token_strs": self.token_strs,
            "prompt_len": self.prompt_len,
            "continuation": self.continuation,
            "forced_continuation": s.continuation is not None,
            "stop_reason": self.stop_reason,
            "token_logprobs": self.token_logprobs.tolist(),
            "token_ranks": self.token_ranks.tolist(),
            "top_alternatives": [
                [[int(i), float(p)] for i, p in zip(ids, probs, strict=True)]
                for ids, probs in zip(self.top_ids.tolist(), self.top_probs.tolist(), strict=True)
            ],
            "hooks": self.hook_names,
            "timings": self.timings,
            "provenance": self.provenance,
        }

    def save(self, directory: str | os.PathLike, extra_json: dict[str, Any] | None = None) -> Path:
        """Write the trace atomically: into a temporary sibling directory, then renamed.

        An existing trace at `directory` is replaced; anything else there is refused.
        `extra_json` maps file names to JSON-able objects written in the same directory
        (before the rename, so they appear together with the trace or not at all).
        """
        from safetensors.torch import save_file

        target = Path(directory)
        check_output_dir(target)
        with atomic.atomic_dir(target) as tmp:
            steps = {
                "token_ids": self.token_ids,
                "token_logprobs": self.token_logprobs,
                "token_ranks": self.token_ranks,
                "top_ids": self.top_ids,
                "top_probs": self.top_probs,
            }
            save_file({k: v.contiguous().cpu() for k, v in steps.items()}, tmp / STEPS)
            acts = {k: v.contiguous().cpu() for k, v in self.activations.items()}
            save_file(acts, tmp / ACTIVATIONS)
            (tmp / SUMMARY).write_text(json.dumps(self.summary(), indent=1, ensure_ascii=False))
            for name, content in (extra_json or {}).items():
                (tmp / name).write_text(json.dumps(content, indent=1, ensure_ascii=False))
        return target

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        model: Model | None = None,
        *,
        activations: bool = True,
    ) -> Trace:
        """Read a trace written by `save`; with `model`, also bind it (same model only).
        `activations=False` skips the activations file (for readers of the tokens and
        statistics alone, such as the report): the trace then has no activations."""
        from safetensors.torch import load_file

        path = Path(directory)
        summary = read_summary(path)
        try:
            steps = load_file(path / STEPS)
            acts = load_file(path / ACTIVATIONS) if activations else {}
            settings = GenerationSettings(**summary["settings"])
            trace = cls(
                model_name=summary["model"],
                prompt=summary["prompt"],
                token_ids=steps["token_ids"],
                prompt_len=int(summary["prompt_len"]),
                token_strs=list(summary["token_strs"]),
                continuation=summary["continuation"],
                settings=settings,
                token_logprobs=steps["token_logprobs"],
                token_ranks=steps["token_ranks"],
                top_ids=steps["top_ids"],
                top_probs=steps["top_probs"],
                activations={k: acts[k] for k in summary["hooks"]} if activations else {},
                stop_reason=summary["stop_reason"],
                timings=dict(summary["timings"]),
                provenance=dict(summary["provenance"]),
            )
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise TraceFormatError(f"{path} is not a readable interp trace ({exc})") from None
        if model is not None:
            trace.bind(model)
        return trace


def _same(a: Tensor, b: Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu()))


def read_summary(path: Path) -> dict[str, Any]:
    """summary.json of a trace directory, after checking that it is one, of a known version."""
    file = path / SUMMARY
    if not path.is_dir():
        raise TraceFormatError(f"{path} is not a trace directory (it does not exist)")
    try:
        summary = json.loads(file.read_text())
    except FileNotFoundError:
        raise TraceFormatError(f"{path} is not an interp trace (no {SUMMARY})") from None
    except (OSError, ValueError) as exc:
        raise TraceFormatError(f"{file} is not readable JSON ({exc})") from None
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        raise TraceFormatError(f"{path} is not an interp trace ({SUMMARY} has no interp format)")
    version = summary.get("format_version")
    if version != FORMAT_VERSION:
        raise TraceFormatError(
            f"{path} holds a trace of format version {version}; this interp reads version "
            f"{FORMAT_VERSION}: record it again"
        )
    return summary


def is_trace_dir(path: Path) -> bool:
    try:
        read_summary(path)
    except TraceFormatError:
        return False
    return True


def check_output_dir(path: Path) -> None:
    """Refuse an output directory we may not (over)write, before any work is done.

    Allowed: a path that does not exist yet (its parent creatable and writable), an empty
    directory, or an existing interp trace (which is replaced).
    """
    if path.exists():
        if not path.is_dir():
            raise OutputPathError(f"output path {path} exists and is not a directory")
        if any(path.iterdir()) and not is_trace_dir(path):
            raise OutputPathError(
                f"output directory {path} exists and is not an interp trace; refusing to "
                "overwrite it (choose another --out)"
            )
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write output directory {path}: {parent} is not writable")
