"""Causal tracing of one fact on the embedded model (Meng et al. 2022): seeded noise on the
subject's tokens, then the residual stream restored at every (layer, prompt position), and
attention and MLP outputs over windows of 10 layers. interp's exact runner against a naive
loop of one full forward per cell (TransformerLens hooks on the bridge), site by site in turn,
comparing time and numbers (the restored probability of the answer).

    .venv/bin/python benchmarks/causal_tracing.py [--json out.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402

PROMPT, SUBJECT, ANSWER = "The Eiffel Tower is in the city of", "Eiffel Tower", " Paris"
WINDOW = 10


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, rounds=False).parse_args(argv)

    import torch

    import interp
    from interp import metrics
    from interp.models.provenance import library_versions

    torch.set_grad_enabled(False)
    model = interp.load_model()
    answer = metrics.single_token(model, ANSWER)
    hooks = [*interp.default_hooks(model.n_layers), "hook_embed"]
    clean = interp.generate(model, PROMPT, continuation=[answer], hooks=hooks)
    noise = interp.edit("hook_embed", "noise", positions=interp.span(SUBJECT), seed=0)
    corrupted = interp.record_under(model, clean, noise)
    # the noise as the naive loop adds it: the recorded difference of the embeddings
    delta = (corrupted.activations["hook_embed"] - clean.activations["hook_embed"]).to(model.device)
    ids = clean.token_ids[None].to(model.device)
    n, last, n_layers = clean.prompt_len, clean.prompt_len - 1, model.n_layers
    _, cache = model.bridge.run_with_cache(ids)
    names = {
        "resid": "blocks.{}.hook_resid_pre",
        "attn-out": "blocks.{}.hook_attn_out",
        "mlp-out": "blocks.{}.hook_mlp_out",
    }

    def noised(x, hook):
        return x + delta[None].to(x.dtype)

    def restore(name, pos):
        def hook(x, hook):
            x = x.clone()
            x[:, pos] = cache[name][:, pos]
            return x

        return hook

    def naive(site: str, window: int) -> torch.Tensor:
        """The restored probability at every (layer, prompt position), one forward each."""
        out = torch.empty(n_layers, n)
        for layer in range(n_layers):
            first = max(0, layer - window // 2)
            layers = range(first, min(n_layers, layer - window // 2 + window))
            for pos in range(n):
                fwd = [("hook_embed", noised)]
                fwd += [
                    (names[site].format(w), restore(names[site].format(w), pos)) for w in layers
                ]
                logits = model.bridge.run_with_hooks(ids, fwd_hooks=fwd)
                out[layer, pos] = logits[0, last].float().softmax(-1)[answer]
        return out

    def timed(fn):
        t0 = time.perf_counter()
        value = fn()
        return value, time.perf_counter() - t0

    prob = metrics.prob(answer)
    result = {
        "threads": torch.get_num_threads(),
        "versions": library_versions(),
        "prompt_positions": n,
        "layers": n_layers,
    }
    total_naive = total_ours = 0.0
    worst = 0.0
    for site, window in (("resid", 1), ("attn-out", WINDOW), ("mlp-out", WINDOW)):
        want, t_naive = timed(lambda site=site, window=window: naive(site, window))
        ours, t_ours = timed(
            lambda site=site, window=window: interp.patch(
                model, clean, noise, sites=[site], metric=prob, window=window
            )
        )
        got = ours[site].effect + ours.corrupted_metric
        err = float((got - want).abs().max())
        worst = max(worst, err)
        total_naive += t_naive
        total_ours += t_ours
        result[site] = {
            "window": window,
            "naive_s": round(t_naive, 1),
            "interp_s": round(t_ours, 1),
            "ratio": round(t_ours / t_naive, 3),
            "max_abs_difference": err,
            "clean_prob": round(ours.clean_metric, 4),
            "corrupted_prob": round(ours.corrupted_metric, 4),
        }
    ratio = total_ours / total_naive
    result["ratio"] = round(ratio, 3)
    cells = 3 * n_layers * n
    table = [
        [f"naive loop: one full forward per cell ({cells} cells)", f"{total_naive:.0f} s"],
        [
            "interp's exact runner (target ≤ 0.5x, same numbers)",
            f"{total_ours:.0f} s, **{ratio:.2f}x** ({met(ratio, 0.5, at_most=True)}), max "
            f"difference {worst:.1e}",
        ],
    ]
    table += [
        [f"`{site}`" + (f", windows of {WINDOW} layers" if site != "resid" else ", every cell"),
         f"naive {result[site]['naive_s']:.0f} s, interp {result[site]['interp_s']:.0f} s "
         f"({result[site]['ratio']:.2f}x)"]
        for site in ("resid", "attn-out", "mlp-out")
    ]  # fmt: skip
    r = result["resid"]
    table.append(
        ["the fact's probability: clean, corrupted", f"{r['clean_prob']}, {r['corrupted_prob']}"]
    )
    what = (
        f"causal tracing of {PROMPT!r} -> {ANSWER!r}, noise on {SUBJECT!r}, {n} prompt "
        f"positions x {n_layers} layers"
    )
    return emit(result, args.json, table, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
