"""Head-ablation sweeps on a 100-token trace of the embedded model, in one run: the naive
sweep (one full forward per head), the fast exact sweep, the attribution-patching estimate
and the triage; the estimate's rank correlation with exact for each mode. Then the same under
a logit difference on a 12-prompt IOI set (6 name pairs x 2 orders, each row's own answer and
distractor), against a naive per-head loop over the set.

    .venv/bin/python benchmarks/sweep.py [--tokens 100] [--json out.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, rounds=False).parse_args(argv)

    import torch
    from naive import naive_sweep, per_head

    import interp
    from interp.interventions import MODES, attribution_estimate, sweep
    from interp.models.provenance import library_versions

    torch.set_grad_enabled(False)
    model = interp.load_model()
    trace = interp.generate(
        model, "earth revolve around", max_new_tokens=args.tokens, seed=0, stop_at_eos=False
    )
    heads = [(layer, head) for layer in range(model.n_layers) for head in range(model.n_heads)]

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    parts = per_head(model, trace, heads, "mean")
    naive, t_naive = timed(lambda: naive_sweep(model, trace, parts))
    exact, t_exact = timed(lambda: sweep(model, trace, "mean"))
    _, t_estimate = timed(lambda: attribution_estimate(model, trace, list(parts.values())))
    triage, t_triage = timed(lambda: sweep(model, trace, "mean", method="triage"))
    err = (exact.delta - naive).abs()
    top20 = {h for h, _ in exact.top_heads(20)}
    recovered = len(top20 & {h for h, _ in triage.top_heads(20)})
    spearman = {"mean": exact.estimate_spearman}
    for mode in MODES:
        if mode != "mean":
            spearman[mode] = sweep(model, trace, mode).estimate_spearman
    result = {
        "tokens": trace.n_positions,
        "threads": torch.get_num_threads(),
        "versions": library_versions(),
        "naive_sweep_s": round(t_naive, 1),
        "fast_exact_sweep_s": round(t_exact, 1),
        "fast_vs_naive": round(t_exact / t_naive, 3),
        "fast_max_abs_error": float(err.max()),
        "estimate_s": round(t_estimate, 2),
        "triage_s": round(t_triage, 1),
        "triage_vs_naive": round(t_triage / t_naive, 3),
        "triage_verified": int(triage.verified.sum()),
        "triage_recovers_of_exact_top20": recovered,
        "estimate_spearman": {k: round(v, 3) for k, v in spearman.items()},
        "exact_top5": [[str(h), round(v, 3)] for h, v in exact.top_heads(5)],
    }
    r = result
    fast, tri = r["fast_vs_naive"], r["triage_vs_naive"]
    rho = ", ".join(f"{k} {v:.2f}" for k, v in r["estimate_spearman"].items())
    rows = [
        [f"naive sweep (one full forward per head, {len(heads)} heads)", f"{t_naive:.0f} s"],
        [
            "fast exact sweep (target ≤ 0.5x naive)",
            f"{t_exact:.0f} s, **{fast:.2f}x** ({met(fast, 0.5, at_most=True)}), "
            f"max difference {r['fast_max_abs_error']:.1e} nats",
        ],
        ["attribution-patching estimate", f"{t_estimate:.1f} s"],
        [
            "triage (target ≤ 0.25x naive, ≥ 18 of the exact top 20)",
            f"{t_triage:.0f} s, **{tri:.2f}x** ({met(tri, 0.25, at_most=True)}), "
            f"{r['triage_verified']} heads verified, **{recovered} of 20** recovered "
            f"({met(recovered, 18)})",
        ],
        ["estimate's Spearman correlation with exact", rho],
    ]
    ioi, ioi_rows = ioi_section(model, heads, timed)
    result["ioi"] = ioi
    rows += ioi_rows
    what = f"{trace.n_positions}-token trace and a 12-prompt IOI set, mean ablation"
    return emit(result, args.json, rows, settings_line(what))


PAIRS = [("Mary", "John"), ("Tom", "Anna"), ("David", "Sarah"), ("James", "Emma"),
         ("Paul", "Lisa"), ("Mark", "Kate")]  # fmt: skip
TEMPLATE = "When {a} and {b} went to the store, {b} gave a drink to"


def ioi_section(model, heads, timed):
    """The exact sweep and the triage under the logit difference on the IOI set, against a
    naive per-head loop over its rows."""
    import torch
    from naive import naive_sweep, per_head

    import interp

    lines = []
    for a, b in PAIRS:
        lines += [(TEMPLATE.format(a=a, b=b), a, b), (TEMPLATE.format(a=b, b=a), b, a)]
    ts = interp.generate(model, [p for p, _, _ in lines], max_new_tokens=1, temperature=0.0)
    for row, (_, answer, distractor) in zip(ts, lines, strict=True):
        row.meta = {"answer": f" {answer}", "distractor": f" {distractor}"}
    metric = interp.metrics.logit_diff()
    naive, t_naive = timed(
        lambda: torch.stack(
            [naive_sweep(model, row, per_head(model, row, heads), metric) for row in ts]
        ).mean(0)
    )
    exact, t_exact = timed(lambda: interp.sweep(model, ts, "mean", metric=metric))
    triage, t_triage = timed(
        lambda: interp.sweep(model, ts, "mean", metric=metric, method="triage")
    )
    top20 = {h for h, _ in exact.top_heads(20)}
    recovered = len(top20 & {h for h, _ in triage.top_heads(20)})
    fast, tri = t_exact / t_naive, t_triage / t_naive
    out = {
        "rows": len(ts),
        "naive_sweep_s": round(t_naive, 1),
        "fast_exact_sweep_s": round(t_exact, 1),
        "fast_vs_naive": round(fast, 3),
        "fast_max_abs_error": float((exact.delta - naive).abs().max()),
        "triage_s": round(t_triage, 1),
        "triage_vs_naive": round(tri, 3),
        "triage_recovers_of_exact_top20": recovered,
        "estimate_spearman": round(exact.estimate_spearman, 3),
        "exact_top5": [[str(h), round(v, 3)] for h, v in exact.top_heads(5)],
    }
    rows = [
        [f"IOI set ({len(ts)} prompts), logit difference: naive loop over rows and heads",
         f"{t_naive:.0f} s"],
        ["IOI set: fast exact sweep (target ≤ 0.5x naive)",
         f"{t_exact:.0f} s, **{fast:.2f}x** ({met(fast, 0.5, at_most=True)}), max difference "
         f"{out['fast_max_abs_error']:.1e}"],
        ["IOI set: triage (target ≤ 0.25x naive, ≥ 18 of the exact top 20)",
         f"{t_triage:.0f} s, **{tri:.2f}x** ({met(tri, 0.25, at_most=True)}), "
         f"**{recovered} of 20** recovered ({met(recovered, 18)}), estimate Spearman "
         f"{exact.estimate_spearman:.2f}"],
        ["IOI set: top heads by mean change in logit difference",
         ", ".join(f"{h} {v:+.2f}" for h, v in exact.top_heads(5))],
    ]  # fmt: skip
    return out, rows


if __name__ == "__main__":
    sys.exit(main())
