"""`generate`: one prompt or a batch -> rows (prompt, sampler or forced tokens, settings),
checked before anything runs, recorded by `interp.generation.recording`."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Literal, TypedDict, overload

from typing_extensions import Unpack  # typing's from Python 3.11; requires-python is 3.10

from interp import inputs
from interp.edits import noise
from interp.edits.value import Intervention
from interp.errors import InvalidSettingError
from interp.executors import Executor, describe, run_rows
from interp.generation import arguments
from interp.generation.memory import check_memory, default_batch_size
from interp.generation.recording import Progress, Row, run
from interp.generation.sampling import Sampler, SamplingConfig
from interp.models.engine import EngineName, HookFn, choose
from interp.models.model import Model
from interp.trace.trace import (
    CALLABLE_KEY,
    INTERVENTION_KEY,
    INTERVENTION_SPEC_KEY,
    GenerationSettings,
    Trace,
)
from interp.trace.traceset import TraceSet

DEFAULT_TOP_ALTERNATIVES = 5


class GenerateOptions(TypedDict, total=False):
    """`generate`'s keyword options (for the type checker's overloads)."""

    max_new_tokens: int
    temperature: float
    top_k: int | None
    top_p: float | None
    seed: int | None
    continuation: str | Sequence[int] | Sequence[str | Sequence[int]] | None
    stop_at_eos: bool
    hooks: Sequence[str] | None
    fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]]
    top_alternatives: int
    progress: bool
    engine: EngineName
    batch_size: int | None
    intervention: Intervention | Sequence[Intervention | None] | None
    seeds: Sequence[int] | None
    meta: dict[str, Any] | Sequence[dict[str, Any]] | None
    executor: Executor | None


@overload
def generate(  # type: ignore[overload-overlap]  # a str is also a Sequence[str]
    model: Model,
    prompt: str | Sequence[int],
    *,
    num_samples: Literal[1] = 1,
    **options: Unpack[GenerateOptions],
) -> Trace: ...


@overload
def generate(
    model: Model,
    prompt: Sequence[str | Sequence[int]],
    *,
    num_samples: int = 1,
    **options: Unpack[GenerateOptions],
) -> TraceSet: ...


def generate(
    model: Model,
    prompt: str | Sequence[int] | Sequence[str | Sequence[int]],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    continuation: str | Sequence[int] | Sequence[str | Sequence[int]] | None = None,
    stop_at_eos: bool = True,
    hooks: Sequence[str] | None = None,
    fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
    top_alternatives: int = DEFAULT_TOP_ALTERNATIVES,
    progress: bool = False,
    engine: EngineName = "auto",
    batch_size: int | None = None,
    intervention: Intervention | Sequence[Intervention | None] | None = None,
    seeds: Sequence[int] | None = None,
    meta: dict[str, Any] | Sequence[dict[str, Any]] | None = None,
    executor: Executor | None = None,
) -> Trace | TraceSet:
    """Sample a continuation of `prompt` token by token and record it as a `Trace`; for a
    batch, a `TraceSet`.

    - `prompt`: a string or a list of token ids (one trace), or a list of those (a batch).
      `num_samples=N` draws N samples of each prompt; the rows of a batch are prompt-major.
      A batch runs as one KV-cached loop (prompts of different lengths left-padded, each row
      stopping at its own end), and row i equals a single `generate` of its prompt with its
      own seed.
    - `seed`: the sampler's own generator (None picks one and records it). Same seed, same
      tokens. `temperature=0` is greedy. In a batch, row i's seed is derived from `seed` and
      i (`row_seed`) and recorded in its settings.
    - `continuation`: record this given text (or token ids) instead of sampling: teacher
      forcing through the same loop, with the log-prob and rank of each given token. In a
      batch, one continuation per prompt.
    - `hooks`: the sites to record (`L5.attn`, `L5.resid_pre`, `L5.z`, or any hook by its
      name; default: `interp.models.hooks.default_hooks`).
    - `fwd_hooks`: `(name or filter, fn)` pairs active during every forward (ablations);
      recorded activations and log-probs are those of the hooked model, and the trace says so
      (`trace.intervention_label`): raw hooks cannot be replayed, so patching and sweeps
      refuse it.
    - `engine`: "auto" runs the Hugging Face modules directly where `interp.models.engine` knows the
      layout and the hooks (faster: no bridge overhead per module), else the TransformerLens
      bridge; "direct" insists (an error where it cannot); "bridge" always uses the bridge.
      Both record the same activations.
    - `batch_size`: how many rows run at once (default: as many as fit comfortably in the
      memory available, at most 64); results do not depend on it.
    - `intervention`: an `interp.edits.Intervention` applied at every step (the prompt pass
      and each new token), each row at its own positions; the trace keeps it
      (`trace.intervention`; its serialised form in `provenance`, read back on load; a
      callable edit is not saved), so consumers replay the run under it. A
      list gives each row its own (None: that row runs plain), so conditions share one batch.
    - `seeds`: each row's own seed (one per row, instead of those derived from `seed`), so a
      row can share its noise with a row of another batch: a steered run with its baseline.
    - `meta`: each prompt's fields (a dict; for a batch, one per prompt), kept as each row's
      `meta`; an intervention's position labels (`"S2"`) resolve against them as it runs.
    - `executor`: where a batch's prompts run (`interp.Ray(...)`: chunks of prompts on Ray
      workers; default this process). Each row keeps the seed its index gives it, so the
      rows are the same wherever they ran.
    """
    config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    seed = inputs.seed(seed)
    if top_alternatives < 1:
        raise InvalidSettingError(f"top_alternatives must be >= 1, got {top_alternatives}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise InvalidSettingError(f"num_samples must be an integer >= 1, got {num_samples}")
    one = arguments.is_one_prompt(prompt)
    single = one and num_samples == 1
    prompts: list[Any] = [prompt] if one else list(prompt)
    if not prompts:
        raise InvalidSettingError("the batch of prompts is empty")
    forced_all = arguments.forced_continuations(
        model, continuation, len(prompts), single, num_samples
    )
    if forced_all is None and max_new_tokens < 1:
        raise InvalidSettingError(f"max-new-tokens must be >= 1, got {max_new_tokens}")
    base = secrets.randbits(31) if seed is None else seed
    encoded = [arguments.prompt_ids(model, text) for text in prompts]
    metas = arguments.metas(meta, len(prompts), one)
    names, user_hooks = arguments.resolve_hooks(model, hooks, fwd_hooks)
    per_row = arguments.per_row(model, intervention, len(prompts) * num_samples)
    row_seeds = inputs.seeds(seeds, len(prompts) * num_samples, forced_all is not None)
    new = (
        [len(f) for f in forced_all] if forced_all is not None else [max_new_tokens] * len(prompts)
    )
    for p, ((ids, _), n_new) in enumerate(zip(encoded, new, strict=True)):
        if len(ids) + n_new > model.n_ctx:
            raise InvalidSettingError(
                f"prompt ({len(ids)} tokens) plus {n_new} new tokens exceeds "
                f"{model.name}'s context of {model.n_ctx} tokens"
                + ("" if single else f" (prompt {p})")
            )
    longest = max(len(ids) + n for (ids, _), n in zip(encoded, new, strict=True))
    check_memory(model, names, longest, len(prompts) * num_samples)  # before any row is built
    if executor is not None and not single:
        k = num_samples
        items = [
            (
                prompts[p],
                None if forced_all is None else forced_all[p],
                metas[p],
                per_row[p * k : (p + 1) * k],
                [
                    row_seed(base, p * k + i) if row_seeds is None else row_seeds[p * k + i]
                    for i in range(k)
                ],
            )
            for p in range(len(prompts))
        ]
        options = {
            "num_samples": k,
            "max_new_tokens": max_new_tokens,
            "temperature": temperature,
            "top_k": top_k,
            "top_p": top_p,
            "stop_at_eos": stop_at_eos,
            "hooks": hooks,
            "fwd_hooks": fwd_hooks,
            "top_alternatives": top_alternatives,
            "engine": engine,
            "batch_size": batch_size,
        }
        parts = run_rows(executor, model, partial(_prompts, options=options), items, "generate")
        where = json.dumps(describe(executor))
        for part in parts:
            for trace in part:
                trace.provenance["executor"] = where  # said in each row's summary
        return TraceSet([trace for part in parts for trace in part])
    rows: list[Row] = []
    for p, (ids, prompt_text) in enumerate(encoded):
        for _ in range(num_samples):
            forced = None if forced_all is None else forced_all[p]
            row_seed_ = base if single else row_seed(base, len(rows))
            row_seed_ = row_seed_ if row_seeds is None else row_seeds[len(rows)]
            n_new = new[p]
            settings = GenerationSettings(
                max_new_tokens=n_new,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                seed=None if forced is not None else row_seed_,
                stop_at_eos=stop_at_eos,
                continuation=None if forced is None else model.decode(forced),
            )
            sampler = None if forced is not None else Sampler(config, row_seed_)
            rows.append(Row(ids, prompt_text, forced, sampler, settings, meta=dict(metas[p])))
    edited = [name for name, _ in user_hooks]
    edited += [e.hook for i in dict.fromkeys(per_row) if i is not None for e in i.edits]
    runner = choose(model, names, edited, engine)
    if batch_size is None:
        batch_size = default_batch_size(model, names, longest, len(rows))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidSettingError(f"batch_size must be an integer >= 1, got {batch_size}")
    chunks = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    padded = [len({len(r.prompt_ids) for r in chunk}) > 1 for chunk in chunks]
    traces = []
    bar = Progress(rows, progress)
    try:
        for at, (chunk, pad) in enumerate(zip(chunks, padded, strict=True)):
            edits = per_row[at * batch_size : at * batch_size + len(chunk)]
            traces += run(
                model, runner, chunk, names, user_hooks, top_alternatives, bar, pad, edits
            )
    finally:
        bar.close()
    for trace, under in zip(traces, per_row, strict=True):
        record_intervention(trace, under, [name for name, _ in user_hooks])
    return traces[0] if single else TraceSet(traces)


def _prompts(model: Model, items: list[tuple[Any, ...]], options: dict[str, Any]) -> list[Trace]:
    """A chunk of a batch's prompts, each row with the seed and edits of its place in the
    whole batch: (prompt, forced ids, meta, edits and seeds of its samples) per item."""
    prompts, forced, metas, edits, seeds = (list(column) for column in zip(*items, strict=True))
    sampled = forced[0] is None
    out = generate(
        model,
        prompts,
        continuation=None if sampled else forced,
        meta=metas,
        intervention=[edit for per_prompt in edits for edit in per_prompt],
        seeds=[seed for per_prompt in seeds for seed in per_prompt] if sampled else None,
        **options,
    )
    return list(out)


def row_seed(seed: int, row: int) -> int:
    """Row `row`'s seed in a batch run with `seed`: deterministic, different for every row."""
    digest = hashlib.sha256(f"interp-row-seed:{seed}:{row}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def record_intervention(
    trace: Trace, intervention: Intervention | None, raw_hooks: Sequence[str]
) -> None:
    """Say in the trace's provenance what it ran under: an intervention's label and its
    serialised form (replayable), or raw hooks (not replayable)."""
    parts = [] if intervention is None else [intervention.label]
    if raw_hooks:
        parts.append(f"raw fwd_hooks on {', '.join(dict.fromkeys(raw_hooks))[:200]}")
    if not parts:
        return
    trace.provenance[INTERVENTION_KEY] = " + ".join(parts)
    if intervention is None or raw_hooks:
        return
    trace.intervention = intervention  # the value: consumers replay it, a callable too
    if intervention.replayable:
        trace.provenance[INTERVENTION_SPEC_KEY] = json.dumps(intervention.to_json())
    else:  # said on disk: read back, the run has no intervention to replay
        trace.provenance[CALLABLE_KEY] = "true"


def record_under(
    model: Model, runs: Trace | TraceSet, intervention: Intervention
) -> Trace | TraceSet:
    """Each run's own tokens (its prompt, its continuation forced) recorded again under
    `intervention`, with the same hooks: the corrupted side of a patching, for example. A
    run recorded under an intervention runs under it first, then under `intervention`. A noise
    edit's `draws=K` makes each run K rows in turn (seeds seed, seed+1, ...), and its
    `scale="rome"` is computed over all of `runs` (`interp.edits.noise`); each row records the
    edit it ran under. Returns a `Trace` for a trace (a `TraceSet` of its draws where K > 1), a
    `TraceSet` for a set."""
    rows = [runs] if isinstance(runs, Trace) else list(runs)
    for row in rows:
        row.bind(model)
        row.require_plain("recording it again", replayed=True)
    k = noise.draws(intervention)
    scales = noise.rome_scales(model, intervention, rows)
    out = []
    for row in rows:
        for d in range(k):
            one = noise.draw(intervention, d, scales)
            under = one if row.intervention is None else row.intervention + one
            again = generate(
                model,
                row.token_ids[: row.prompt_len].tolist(),
                continuation=row.continuation_ids,
                hooks=row.hook_names,
                intervention=under,
                meta=row.meta,
            )
            again.prompt, again.meta, again.origin = row.prompt, dict(row.meta), row.origin
            out.append(again)
    return out[0] if isinstance(runs, Trace) and k == 1 else TraceSet(out)


def record_pairs(
    model: Model, clean: Trace | TraceSet, intervention: Intervention
) -> tuple[Trace | TraceSet, Trace | TraceSet]:
    """The clean runs and the corrupted ones `record_under` `intervention` gives, paired row by
    row: each clean run repeated once for each of its corrupted run's draws."""
    corrupted = record_under(model, clean, intervention)
    k = noise.draws(intervention)
    if k == 1:
        return clean, corrupted
    rows = [clean] if isinstance(clean, Trace) else list(clean)
    return TraceSet([row for row in rows for _ in range(k)]), corrupted
