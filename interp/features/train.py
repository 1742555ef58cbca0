"""`train_dictionary`: TopK SAEs on a model's activations over the corpus's training split,
several hooks from one forward pass. Windows are drawn in a seeded order and harvested in
chunks; after every few chunks the trainers are checkpointed (atomically) beside the output,
and a run started again with the same settings resumes from there to the same weights. On an
executor only the harvests spread (each chunk's windows, the evaluation and the top contexts);
the optimizer steps stay in this process, so the weights equal one process's."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from interp.dictionaries.dictionary import Dictionary
from interp.dictionaries.files import CFG, hook_width, save_dictionary
from interp.errors import InvalidSettingError, OutputPathError
from interp.executors import Executor, describe
from interp.features import corpus, harvest
from interp.features.contexts import feature_contexts
from interp.features.evaluate import evaluate_dictionary
from interp.features.topk import TopKTrainer, TrainSettings
from interp.files import atomic
from interp.models.model import Model
from interp.models.provenance import provenance
from interp.models.site import spelled

CHUNK_WINDOWS = 512  # windows harvested at once (about 65k tokens)
CHECKPOINT_EVERY = 4  # chunks between checkpoints
Report = Callable[[int, int, dict[str, dict[str, float]]], None]


def train_dictionary(
    model: Model,
    hooks: str | Sequence[str],
    out: str | os.PathLike[str],
    *,
    width: int,
    k: int,
    tokens: int,
    settings: dict[str, Any] | None = None,
    context: int = harvest.CONTEXT,
    chunk_windows: int = CHUNK_WINDOWS,
    evaluate_tokens: int = 32_768,
    contexts_tokens: int = 65_536,
    seed: int = 0,
    report: Report | None = None,
    stop_after_chunks: int | None = None,
    executor: Executor | None = None,
) -> list[Dictionary]:
    """Train one TopK SAE per hook on `tokens` training tokens and write each, evaluated on
    held-out text and with its features' top contexts there, to `out` (one hook) or
    `out/<hook>/` (several). `report(chunk, chunks,
    losses)` follows progress; `stop_after_chunks` stops early, leaving the checkpoint (for
    tests of resuming). `executor`: where the activations are harvested (`interp.Ray(...)`;
    default this process); a run may resume on another executor."""
    names = [hooks] if isinstance(hooks, str) else list(hooks)
    if not names or len(set(names)) != len(names):
        raise InvalidSettingError("give one or more different hooks")
    target = Path(out)
    outs = [target] if len(names) == 1 else [target / name for name in names]
    trainers = [
        TopKTrainer(_width(model, name), planned(width, k, tokens, seed, settings))
        for name in names
    ]
    chunk_windows = min(chunk_windows, max(1, math.ceil(tokens / (context - 1))))
    per_chunk = chunk_windows * (context - 1)
    n_chunks = max(1, math.ceil(tokens / per_chunk))
    all_windows = harvest.windows(harvest.corpus_tokens(model, "train"), context)
    if n_chunks * chunk_windows > len(all_windows):
        raise InvalidSettingError(
            f"the corpus's training split has {len(all_windows) * (context - 1):,} tokens in "
            f"windows of {context}; {tokens:,} were asked for"
        )
    order = torch.randperm(len(all_windows), generator=torch.Generator().manual_seed(seed))
    plan = {
        "hooks": names,
        "width": width,
        "k": k,
        "tokens": tokens,
        "context": context,
        "chunk_windows": chunk_windows,
        "seed": seed,
        "settings": settings or {},
        "model": model.name,
        "checksum": model.checksum,
    }
    ckpt = checkpoint_path(target)
    first, elapsed = 0, 0.0
    if ckpt.exists():
        state = read_checkpoint(ckpt)
        if state["plan"] != plan:
            raise InvalidSettingError(
                f"{ckpt} is a checkpoint of another run; remove it, or run with its settings"
            )
        try:
            trainers = [TopKTrainer.from_state(s) for s in state["trainers"]]
            first, elapsed = int(state["next_chunk"]), float(state["elapsed_s"])
        except Exception:  # noqa: BLE001 - any damage is the same refusal
            raise _not_ours(ckpt) from None
    with harvest.held(executor):  # one cluster and its workers for every harvest
        t0 = time.perf_counter() - elapsed
        for c in range(first, n_chunks):
            ids = all_windows[order[c * chunk_windows : (c + 1) * chunk_windows]]
            acts = harvest.activations(model, ids, names, executor=executor)
            for name, trainer in zip(names, trainers, strict=True):
                trainer.train_chunk(acts[name], c)
            done = c + 1
            if report is not None:
                report(done, n_chunks, {n: t.last for n, t in zip(names, trainers, strict=True)})
            if done < n_chunks and (done % CHECKPOINT_EVERY == 0 or done == stop_after_chunks):
                _checkpoint(ckpt, plan, trainers, done, time.perf_counter() - t0)
            if stop_after_chunks is not None and done >= stop_after_chunks and done < n_chunks:
                return []
        train_s = time.perf_counter() - t0
        results = []
        for name, trainer in zip(names, trainers, strict=True):
            info = {
                "trained_by": "interp train-dictionary",
                "method": "TopK SAE (Gao et al. 2024)",
                "training": {
                    **plan,
                    "hook": name,
                    "tokens_trained": trainer.tokens,
                    "steps": trainer.steps,
                    "train_seconds": round(train_s, 1),
                    "optimizer": record(trainer.settings),
                    "input_scale": trainer.scale,
                    "executor": describe(executor),
                },
                "corpus": corpus.record(),
                "model": provenance(model),
            }
            d = trainer.dictionary(name, model.name, info)
            d.info["evaluation"] = evaluate_dictionary(
                model, d, tokens=evaluate_tokens, executor=executor
            ).json()
            results.append(d)
        found = feature_contexts(model, results, tokens=contexts_tokens, executor=executor)
        for d, place, contexts in zip(results, outs, found, strict=True):
            d.info["training"]["total_seconds"] = round(time.perf_counter() - t0, 1)
            contexts.save(save_dictionary(d, place))
    ckpt.unlink(missing_ok=True)
    return results


def planned(
    width: int, k: int, tokens: int, seed: int = 0, settings: dict[str, Any] | None = None
) -> TrainSettings:
    """The trainer's settings for a run of `tokens` tokens (`settings` overrides the rest)."""
    return TrainSettings(width=width, k=k, seed=seed, planned_tokens=tokens, **(settings or {}))


def record(settings: TrainSettings) -> dict[str, Any]:
    """The settings as written beside a dictionary, with the learning rate they resolve to (so
    a change of the default rate is seen in the record)."""
    return {**asdict(settings), "learning_rate": settings.learning_rate}


def check_out(out: Path, n_hooks: int) -> None:
    """Refuse, before any work, an output that is not empty and not dictionaries interp wrote
    (one, or for several hooks a folder of them): a user's files are never replaced."""
    out = Path(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputPathError(f"output path {out} exists and is not a directory")
    entries = [e for e in out.iterdir() if not e.name.startswith(".")]
    ours = [out] if n_hooks == 1 else entries
    if entries and not all((e / "interp.json").exists() and (e / CFG).exists() for e in ours):
        raise OutputPathError(
            f"output directory {out} exists and is not a dictionary interp wrote; refusing to "
            "overwrite it (choose another --out)"
        )


def checkpoint_path(out: Path) -> Path:
    """Where a run writing `out` keeps its checkpoint: beside it."""
    out = atomic.resolve_target(out)
    return out.with_name(f".{out.name}.checkpoint")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint `_checkpoint` wrote, read with `weights_only=True`: tensors, numbers,
    strings and containers only, so a planted pickle cannot run code; anything else (a
    damaged or foreign file) is refused in one line."""
    try:
        with warnings.catch_warnings():  # a foreign pickle's protocol warning: refused anyway
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # noqa: BLE001 - unpickling errors come in many types
        raise _not_ours(path) from None
    keys = {"plan", "trainers", "next_chunk", "elapsed_s"}
    if not isinstance(state, dict) or set(state) != keys or not isinstance(state["trainers"], list):
        raise _not_ours(path)
    return state


def _not_ours(path: Path) -> InvalidSettingError:
    return InvalidSettingError(
        f"{path.name} is not a checkpoint interp wrote; remove it to start again"
    )


def _checkpoint(
    path: Path, plan: dict[str, Any], trainers: list[TopKTrainer], next_chunk: int, elapsed: float
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "plan": plan,
        "trainers": [t.state() for t in trainers],
        "next_chunk": next_chunk,
        "elapsed_s": elapsed,
    }
    with atomic.atomic_file(path) as tmp:
        torch.save(state, tmp)


def _width(model: Model, hook: str) -> int:
    width = hook_width(model, hook)
    if width is None or hook not in model.bridge.hook_dict:
        raise InvalidSettingError(
            f"{spelled(hook)} is not a site interp trains dictionaries on in {model.name} (the "
            "residual stream, attention and MLP outputs, the MLP's input)"
        )
    return width
