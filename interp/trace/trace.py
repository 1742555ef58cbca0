"""The Trace: the one object everything after generation reads, and its on-disk form.

On disk a trace is a directory:
  summary.json             metadata, tokens, settings, per-step log-probs, provenance
  steps.safetensors        per-step tensors (log-probs, ranks, top alternatives), exact
  activations.safetensors  one tensor per recorded hook, without the batch dimension
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.edits.positions import Positions, as_positions
from interp.edits.resolving import Row, resolve_positions
from interp.edits.value import Intervention
from interp.errors import HookError, InvalidSettingError, ModelMismatchError, TraceFormatError
from interp.files import atomic
from interp.files.store import (
    ACTIVATIONS,
    FORMAT,
    FORMAT_VERSION,
    STEPS,
    SUMMARY,
    TRACE_ENTRIES,
    SourceFiles,
    check_output_dir,
    dumps,
    load_tensors,
    read_summary,
)
from interp.models.hooks import missing
from interp.models.site import BySite, spelled
from interp.trace import schema
from interp.trace.schema import INTERVENTION_SPEC_KEY
from interp.trace.settings import GenerationSettings

if TYPE_CHECKING:
    from transformer_lens import ActivationCache

    from interp.models.model import Model

STOP_REASONS = ("max_new_tokens", "eos", "forced")
STEP_TENSORS = ("token_ids", "token_logprobs", "token_ranks", "top_ids", "top_probs")
INTERVENTION_KEY = "intervention"  # provenance: what the run was recorded under
CALLABLE_KEY = "intervention_callable"  # provenance: it held a callable, which is not saved
__all__ = ["INTERVENTION_SPEC_KEY", "GenerationSettings", "Trace"]


@dataclass(eq=False)
class Trace:
    """A recorded generation: tokens, settings, per-step statistics and activations.

    `activations[name]` (a hook name, or a site's spelling) holds, for every position of
    prompt + continuation, what one full-sequence `run_with_cache` gives for that hook, without
    the batch dimension
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
    meta: dict[str, Any] = field(default_factory=dict)  # a prompts file's other fields (JSONL)
    origin: str = ""  # where the prompt came from ("prompts.jsonl:7"), for error messages
    model: Model | None = field(default=None, repr=False)
    # what the run was recorded under, as a value (read once from its JSON when loaded); a
    # callable edit's holds in this process only
    intervention: Intervention | None = field(default=None, repr=False)

    def __post_init__(self) -> None:  # `activations["L5.attn"]` reads blocks.5.hook_attn_out
        if not isinstance(self.activations, BySite):
            self.activations = BySite(self.activations)

    def __getstate__(self) -> dict[str, Any]:  # pickled without its model: a process binds its own
        return {**self.__dict__, "model": None}

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
    def forced_ids(self) -> list[int] | None:
        """A forced continuation's ids (several: its log-prob is their sum), None if sampled."""
        return None if self.settings.continuation is None else self.continuation_ids

    def positions(self, positions: Positions) -> list[int]:
        """The positions `positions` name here, sorted, as an edit resolves them ([]: none)."""
        return resolve_positions(as_positions(positions), Row.of(self), empty_ok=True)

    @property
    def hook_names(self) -> list[str]:
        return list(self.activations)

    @property
    def cache(self) -> ActivationCache:
        """The activations as a TransformerLens `ActivationCache` over the whole sequence
        (batch dimension 1), its norm-dependent methods right on interp's unfolded bridge
        (`interp.trace.activation_cache`). Methods that need the model need a bound model:
        `Trace.load(dir, model=model)` or `trace.bind(model)`."""
        from transformer_lens import ActivationCache

        from interp.trace.activation_cache import InterpCache

        acts = {k: v.unsqueeze(0) for k, v in self.activations.items()}
        if self.model is None:
            return ActivationCache(acts, None)
        return InterpCache(acts, self.model, self.token_ids[None])

    def require_hooks(self, names: list[str], purpose: str) -> None:
        """Raise a clear error naming the hooks this trace lacks for `purpose`."""
        absent = [spelled(name) for name in missing(names, self.activations)]
        if absent:
            more = f" and {len(absent) - 6} more" if len(absent) > 6 else ""
            shown = ", ".join(absent[:6]) + more
            raise HookError(
                f"{purpose} needs sites this trace did not record: {shown}; "
                "record it again with the default hooks"
            )

    @property
    def intervention_label(self) -> str | None:
        """What the run was recorded under, in words (an intervention's label, raw
        `fwd_hooks`), None for the plain model: `provenance["intervention"]`."""
        return self.provenance.get(INTERVENTION_KEY)

    def require_plain(self, purpose: str, *, replayed: bool = False) -> None:
        """Refuse a run recorded under hooks or an intervention for `purpose`, which would
        compute its baselines on the plain model while starting from (or comparing with) the
        recorded activations: the numbers would be silently wrong. `replayed`: `purpose`
        replays the run's `intervention`, so only what it cannot replay is refused (raw
        hooks, and a callable edit read back from disk, where it was not saved)."""
        label = self.intervention_label
        if label is None or (replayed and self.intervention is not None):
            return
        where = self.origin or repr(self.prompt[:40])
        if replayed and self.provenance.get(CALLABLE_KEY):
            raise InvalidSettingError(
                f"the run of {where} was recorded under {label}, which held a callable: it "
                f"is not saved with the run, so {purpose} can replay it only in the process "
                "that recorded it"
            )
        raise InvalidSettingError(
            f"the run of {where} was recorded under {label}, which {purpose} "
            "cannot replay: its baselines would come from the plain model; record the run "
            "without it" + (" or under an interp.edits intervention" if replayed else "")
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
        for name, ids in (("token_ids", self.token_ids), ("top_ids", self.top_ids)):
            if ids.numel() and int(ids.max()) >= model.d_vocab:
                raise TraceFormatError(
                    f"this trace's {name} hold id {int(ids.max())}, outside {model.name}'s "
                    f"vocabulary of {model.d_vocab}"
                )
        schema.widths(
            self.activations,
            (model.n_heads, int(model.cfg.d_head), model.d_model),
            f"the run of {self.origin or repr(self.prompt[:40])} ({model.name})",
        )
        self.model = model
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        plain: tuple[str, ...] = ("model_name", "prompt", "prompt_len", "token_strs", "settings")
        plain += ("continuation", "stop_reason", "timings", "provenance", "meta", "origin")
        if any(getattr(self, a) != getattr(other, a) for a in plain):
            return False
        if any(not _same(getattr(self, a), getattr(other, a)) for a in STEP_TENSORS):
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
            "forced_tokens": None if s.continuation is None else self.n_generated,
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
            "meta": self.meta,
            "origin": self.origin,
        }

    def step_tensors(self) -> dict[str, Tensor]:
        """The per-step tensors as saved in steps.safetensors."""
        return {name: getattr(self, name) for name in STEP_TENSORS}

    def save(self, directory: str | os.PathLike, extra_json: dict[str, Any] | None = None) -> Path:
        """Write the trace atomically: into a temporary sibling directory, then renamed.

        An existing trace at `directory` is replaced; anything else there is refused.
        `extra_json` maps file names to JSON-able objects written in the same directory
        (before the rename, so they appear together with the trace or not at all).
        """
        from safetensors.torch import save_file

        target = Path(directory)
        check_output_dir(target, own=TRACE_ENTRIES | set(extra_json or {}))
        texts = {SUMMARY: dumps(self.summary())}  # refused before any write if unreadable
        texts |= {name: dumps(content) for name, content in (extra_json or {}).items()}
        with atomic.atomic_dir(target) as tmp:
            save_file(
                {k: v.contiguous().cpu() for k, v in self.step_tensors().items()}, tmp / STEPS
            )
            acts = {k: v.contiguous().cpu() for k, v in self.activations.items()}
            save_file(acts, tmp / ACTIVATIONS)
            for name, text in texts.items():
                (tmp / name).write_text(text, encoding="utf-8")
        return target

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        model: Model | None = None,
        *,
        activations: bool = True,
    ) -> Trace:
        """Read a trace written by `save`, checking every field and tensor against the others
        (`TraceFormatError` names the file and the field); with `model`, also bind it (same
        model only). `activations=False` skips the activations file (for readers of the
        tokens and statistics alone, such as the report): the trace then has none."""
        path = Path(directory)
        summary = read_summary(path)
        steps = load_tensors(path / STEPS, "per-step tensors")
        acts = load_tensors(path / ACTIVATIONS, "activations") if activations else None
        trace = cls.from_record(summary, steps, acts, SourceFiles(path))
        if model is not None:
            trace.bind(model)
        return trace

    @classmethod
    def from_record(
        cls,
        summary: dict[str, Any],
        steps: dict[str, Tensor],
        acts: dict[str, Tensor] | None,
        files: SourceFiles,
    ) -> Trace:
        """A trace from its summary record and tensors as read from disk, every field and
        tensor checked against the others (`files` names where each came from)."""
        where = files.summary
        prompt_len = schema.field(summary, "prompt_len", int, where)
        token_strs = schema.items(summary, "token_strs", str, where)
        hooks = schema.items(summary, "hooks", str, where)
        stop_reason = schema.field(summary, "stop_reason", str, where)
        if stop_reason not in STOP_REASONS:
            raise TraceFormatError(f"{where}: stop_reason {stop_reason!r} is not one of interp's")
        n = len(token_strs)
        if not 1 <= prompt_len < n:
            raise TraceFormatError(f"{where}: prompt_len {prompt_len} is out of range ({n} tokens)")
        gen = n - prompt_len
        token_ids = schema.tensor(steps, "token_ids", files.steps, "int", [n])
        if bool((token_ids < 0).any()):
            raise TraceFormatError(f"{files.steps}: tensor 'token_ids' holds negative ids")
        schema.same_ids(summary, token_ids, where, files.steps)
        top_ids = schema.tensor(steps, "top_ids", files.steps, "int", [gen, None])
        k = top_ids.shape[1]
        return cls(
            model_name=schema.field(summary, "model", str, where),
            prompt=schema.field(summary, "prompt", str, where),
            token_ids=token_ids,
            prompt_len=prompt_len,
            token_strs=token_strs,
            continuation=schema.field(summary, "continuation", str, where),
            settings=GenerationSettings(**schema.settings(summary, where)),
            token_logprobs=schema.tensor(steps, "token_logprobs", files.steps, "float", [gen]),
            token_ranks=schema.tensor(steps, "token_ranks", files.steps, "int", [gen]),
            top_ids=top_ids,
            top_probs=schema.tensor(steps, "top_probs", files.steps, "float", [gen, k]),
            activations={}
            if acts is None
            else {name: schema.activation(acts, name, n, files.activations) for name in hooks},
            stop_reason=stop_reason,
            timings=schema.mapping(summary, "timings", float, where),
            provenance=schema.mapping(summary, "provenance", str, where),
            meta=schema.field(summary, "meta", dict, where) if "meta" in summary else {},
            origin=schema.field(summary, "origin", str, where) if "origin" in summary else "",
            intervention=schema.intervention(summary, where),
        )


def _same(a: Tensor, b: Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(torch.equal(a.cpu(), b.cpu()))
