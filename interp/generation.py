"""The recording loop: sample (or force) a continuation and record activations at every step.

The prompt is tokenised once and run once; every later step runs the model on the new token
only, with the KV cache, and caching hooks on the recorded hook names keep that one
position's activations. Nothing keeps a whole-sequence cache per step, so memory grows
linearly with the number of steps (attention patterns aside, which are quadratic anyway).
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from interp import hooks as H
from interp import inputs
from interp.engine import EngineName, choose
from interp.errors import HookError, InvalidSettingError
from interp.models.model import Model
from interp.provenance import provenance
from interp.sampling import Sampler, SamplingConfig, check_finite
from interp.trace import GenerationSettings, Trace

HookFn = Callable[..., Tensor | None]
DEFAULT_TOP_ALTERNATIVES = 5


def generate(
    model: Model,
    prompt: str | Sequence[int],
    *,
    max_new_tokens: int = 100,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    continuation: str | Sequence[int] | None = None,
    stop_at_eos: bool = True,
    hooks: Sequence[str] | None = None,
    fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]] = (),
    top_alternatives: int = DEFAULT_TOP_ALTERNATIVES,
    progress: bool = False,
    engine: EngineName = "auto",
) -> Trace:
    """Sample a continuation of `prompt` token by token and record it as a `Trace`.

    - `seed`: the sampler's own generator (None picks one and records it). Same seed, same
      tokens. `temperature=0` is greedy.
    - `continuation`: record this given text (or token ids) instead of sampling: teacher
      forcing through the same loop, with the log-prob and rank of each given token.
    - `hooks`: hook names to record (default: `interp.hooks.default_hooks`).
    - `fwd_hooks`: `(name or filter, fn)` pairs active during every forward (ablations);
      recorded activations and log-probs are those of the hooked model.
    - `engine`: "auto" runs the Hugging Face modules directly where `interp.engine` knows the
      layout and the hooks (faster: no bridge overhead per module), else the TransformerLens
      bridge; "direct" insists (an error where it cannot); "bridge" always uses the bridge.
      Both record the same activations.
    """
    config = SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p)
    seed = inputs.seed(seed)
    if top_alternatives < 1:
        raise InvalidSettingError(f"top_alternatives must be >= 1, got {top_alternatives}")
    prompt_ids, prompt_text = _prompt_ids(model, prompt)
    forced: list[int] | None = None
    if continuation is not None:
        forced = _continuation_ids(model, continuation)
        max_new_tokens = len(forced)
    elif max_new_tokens < 1:
        raise InvalidSettingError(f"max-new-tokens must be >= 1, got {max_new_tokens}")
    total = len(prompt_ids) + max_new_tokens
    if total > model.n_ctx:
        raise InvalidSettingError(
            f"prompt ({len(prompt_ids)} tokens) plus {max_new_tokens} new tokens exceeds "
            f"{model.name}'s context of {model.n_ctx} tokens"
        )
    names, user_hooks = resolve_hooks(model, hooks, fwd_hooks)
    check_memory(model, names, total)
    runner = choose(model.bridge, names, [name for name, _ in user_hooks], engine)
    sampler = None
    if forced is None:
        seed = secrets.randbits(31) if seed is None else seed
        sampler = Sampler(config, seed)
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        stop_at_eos=stop_at_eos,
        continuation=None if forced is None else model.decode(forced),
    )

    recorder = _Recorder(names)
    device = model.device
    tokens = list(prompt_ids)
    step_lp, step_rank, step_top_ids, step_top_p = [], [], [], []
    stop_reason = "forced" if forced is not None else "max_new_tokens"
    bar = tqdm(
        total=max_new_tokens, desc="generating", unit="tok", disable=not progress, file=sys.stderr
    )
    t0 = time.perf_counter()
    # The user's hooks go first, so the recorder sees what they changed.
    with torch.no_grad(), runner.hooked([*user_hooks, *recorder.hooks()]):
        last, past = runner.forward(torch.tensor([prompt_ids], device=device), None)
        t_prompt = time.perf_counter() - t0
        for step in range(max_new_tokens):
            check_finite(last)
            token = sampler.draw(last) if sampler is not None else _forced(forced, step)
            lp = torch.log_softmax(last.float(), dim=-1)
            top = torch.topk(lp, min(top_alternatives, lp.numel()))
            step_lp.append(lp[token])
            step_rank.append((last > last[token]).sum() + 1)
            step_top_ids.append(top.indices)
            step_top_p.append(top.values.exp())
            tokens.append(token)
            last, past = runner.forward(torch.tensor([[token]], device=device), past)
            bar.update(1)
            if forced is None and stop_at_eos and token == model.eos_token_id:
                stop_reason = "eos"
                break
    bar.close()
    elapsed = time.perf_counter() - t0
    n_new = len(tokens) - len(prompt_ids)
    generated = tokens[len(prompt_ids) :]
    token_ids = torch.tensor(tokens, dtype=torch.long)
    return Trace(
        model_name=model.name,
        prompt=prompt_text,
        token_ids=token_ids,
        prompt_len=len(prompt_ids),
        token_strs=model.token_strs(tokens),
        continuation=model.decode(generated),
        settings=settings,
        token_logprobs=torch.stack(step_lp).float().cpu(),
        token_ranks=torch.stack(step_rank).long().cpu(),
        top_ids=torch.stack(step_top_ids).long().cpu(),
        top_probs=torch.stack(step_top_p).float().cpu(),
        activations=recorder.assemble(len(tokens)),
        stop_reason=stop_reason,
        timings={
            "prompt_forward_s": round(t_prompt, 4),
            "generation_s": round(elapsed, 4),
            "tokens_per_s": round(n_new / elapsed, 3) if elapsed > 0 else 0.0,
        },
        provenance={**provenance(model), "engine": runner.name},
        model=model,
    )


def _forced(forced: list[int] | None, step: int) -> int:
    assert forced is not None  # a run without a sampler forces its tokens
    return forced[step]


def _prompt_ids(model: Model, prompt: str | Sequence[int]) -> tuple[list[int], str]:
    if isinstance(prompt, str):
        text = inputs.text(prompt, "the prompt")
        ids = model.encode(text)
    else:
        ids = inputs.token_ids(prompt, "prompt", model.d_vocab)
        text = model.decode(ids)
    if not ids:
        raise InvalidSettingError("the prompt tokenises to no tokens")
    return ids, text


def _continuation_ids(model: Model, continuation: str | Sequence[int]) -> list[int]:
    if isinstance(continuation, str):
        text = inputs.text(continuation, "the forced continuation", blank_ok=True)
        ids = model.encode(text, add_special_tokens=False)
    else:
        ids = inputs.token_ids(continuation, "continuation", model.d_vocab)
    if not ids:
        raise InvalidSettingError("the forced continuation tokenises to no tokens")
    return ids


def recording_bytes(model: Model, names: Sequence[str], n: int) -> int:
    """About how many bytes recording `names` over `n` positions takes: query-key hooks
    ([head, query, key], assembled from per-step rows) grow with n squared; the others are
    [pos, ...], counted at d_model floats a position where their size is not known here."""
    per_position = {"attn.hook_z": model.n_heads * int(model.cfg.d_head), "hook_scale": 1}
    total = 0
    for name in names:
        if H.is_query_key(name):
            total += 2 * model.n_heads * n * n  # the whole tensor and its rows before assembly
        else:
            suffix = next((s for s in per_position if name.endswith(s)), None)
            total += n * (per_position[suffix] if suffix else model.d_model)
    return total * model.dtype.itemsize


def available_memory() -> int | None:
    """Bytes of memory available to this process now (Linux's MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(model: Model, names: Sequence[str], n: int) -> None:
    """Refuse a run whose recording cannot fit in the memory available, before it starts."""
    need, have = recording_bytes(model, names, n), available_memory()
    if have is None or need <= have:
        return
    patterns = sum(H.is_query_key(name) for name in names)
    raise InvalidSettingError(
        f"recording {len(names)} hooks over {n} positions needs about {need / 1e9:.1f} GB, more "
        f"than the {have / 1e9:.1f} GB available; record fewer hooks (hooks=...)"
        + (f", leave out the {patterns} attention-pattern hooks" if patterns else "")
        + ", or use a shorter prompt or fewer new tokens"
    )


def resolve_hooks(
    model: Model,
    hooks: Sequence[str] | None,
    fwd_hooks: Sequence[tuple[str | Callable[[str], bool], HookFn]],
) -> tuple[list[str], list[tuple[str, HookFn]]]:
    """The hook names to record, and the user's `(name or filter, fn)` pairs as `(name, fn)`
    pairs, all checked against the bridge's hook names (read once: TL rebuilds the dict)."""
    available = model.bridge.hook_dict
    names = H.default_hooks(model.n_layers) if hooks is None else list(dict.fromkeys(hooks))
    user: list[tuple[str, HookFn]] = []
    for target, fn in fwd_hooks:
        if isinstance(target, str):
            user.append((target, fn))
        else:
            user += [(name, fn) for name in available if target(name)]
    unknown = [n for n in [*names, *(name for name, _ in user)] if n not in available]
    if unknown:
        raise HookError(f"{model.name} has no hook named {unknown[0]!r}")
    return names, user


class _Recorder:
    """Forward hooks that keep each forward's new positions, then whole-sequence tensors.

    The hooks stay registered for the whole run (one `hooked` context of the engine, see
    `interp.engine`): TransformerLens 4.3's `run_with_cache` rebuilds its hook registry and
    alias map on every call, a large share of a decoding step (DEVELOPERS.md).
    Tests check the result against one full-sequence `run_with_cache`.
    """

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.parts: dict[str, list[Tensor]] = {n: [] for n in names}

    def hooks(self) -> list[tuple[str, HookFn]]:
        return [(name, self._hook(name)) for name in self.names]

    def _hook(self, name: str) -> HookFn:
        parts = self.parts[name]

        def record(tensor, hook):
            value = tensor[0] if isinstance(tensor, tuple) else tensor
            # [batch=1, ...] -> [...]; kept on the CPU so a long run does not hold the device
            parts.append(value.detach()[0].cpu())
            return tensor

        return record

    def assemble(self, n_positions: int) -> dict[str, Tensor]:
        out = {}
        for name, parts in self.parts.items():
            if H.is_query_key(name):
                out[name] = _assemble_query_key(name, parts, n_positions)
            else:
                out[name] = torch.cat(parts, dim=0)  # parts are [new_pos, ...]
        return out


def _assemble_query_key(name: str, parts: list[Tensor], n: int) -> Tensor:
    """Rows [head, new_q, keys_so_far] -> [head, n, n], future keys filled as a full causal run
    fills them (0 probability in patterns, -inf in scores)."""
    fill = 0.0 if name.endswith("hook_pattern") else float("-inf")
    n_heads = parts[0].shape[0]
    out = torch.full((n_heads, n, n), fill, dtype=parts[0].dtype)
    row = 0
    for part in parts:
        q, k = part.shape[1], part.shape[2]
        out[:, row : row + q, :k] = part
        row += q
    return out
