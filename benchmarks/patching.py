"""Activation patching on a 12-prompt IOI set of the embedded model (6 name pairs x 2 orders;
corrupted: the ABC set, three other names), in one run: interp's `heads` and `resid` patching
against TransformerLens's own functions on the bridge, with the same metric (the mean logit
difference over rows), comparing time and numbers; the `heads` triage against the same exact
numbers; path patching of every sender into the logits and into a name mover's query.

    .venv/bin/python benchmarks/patching.py [--json out.json]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402

PAIRS = [("Mary", "John"), ("Tom", "Anna"), ("David", "Sarah"), ("James", "Emma"),
         ("Paul", "Lisa"), ("Mark", "Kate")]  # fmt: skip
OTHERS = ["Peter", "Laura", "Simon"]
TEMPLATE = "When {a} and {b} went to the store, {c} gave a drink to"


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__, rounds=False).parse_args(argv)

    import torch
    from transformer_lens import patching as tl_patching

    import interp
    from interp import metrics
    from interp.models.provenance import library_versions

    torch.set_grad_enabled(False)
    model = interp.load_model()
    clean_prompts, answers = [], []
    for a, b in PAIRS:
        for x, y in ((a, b), (b, a)):
            clean_prompts.append(TEMPLATE.format(a=x, b=y, c=y))
            answers.append((f" {x}", f" {y}"))
    corrupt_prompts = [TEMPLATE.format(a=OTHERS[0], b=OTHERS[1], c=OTHERS[2])] * len(clean_prompts)
    clean = interp.generate(
        model, clean_prompts, continuation=[a for a, _ in answers], max_new_tokens=1
    )
    corrupted = interp.generate(
        model, corrupt_prompts, continuation=[a for a, _ in answers], max_new_tokens=1
    )
    for row, (a, d) in zip(clean, answers, strict=True):
        row.meta = {"answer": a, "distractor": d}
    ids = torch.stack([t.token_ids for t in clean]).to(model.device)
    bad = torch.stack([t.token_ids for t in corrupted]).to(model.device)
    last = clean[0].prompt_len - 1
    a_ids = torch.tensor([metrics.single_token(model, a) for a, _ in answers])
    d_ids = torch.tensor([metrics.single_token(model, d) for _, d in answers])
    rows = torch.arange(len(clean))

    def tl_metric(logits):  # the mean over rows of each row's logit difference
        return (logits[rows, last, a_ids] - logits[rows, last, d_ids]).mean()

    def timed(fn):
        t0 = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t0

    _, clean_cache = model.bridge.run_with_cache(ids)
    result = {
        "rows": len(clean),
        "threads": torch.get_num_threads(),
        "versions": library_versions(),
    }
    table = []
    for site, fn in (("heads", tl_patching.get_act_patch_attn_head_out_all_pos),
                     ("resid", tl_patching.get_act_patch_resid_pre)):  # fmt: skip
        tl, t_tl = timed(lambda fn=fn: fn(model.bridge, bad, clean_cache, tl_metric))
        ours, t_ours = timed(
            lambda site=site: interp.patch(  # TransformerLens's covers every position
                model,
                clean,
                corrupted,
                sites=[site],
                metric=metrics.logit_diff(),
                positions="all",
            )  # fmt: skip
        )
        got = ours[site].effect + ours.corrupted_metric
        err = float((got - tl.float().cpu()).abs().max())
        ratio = t_ours / t_tl
        result[site] = {
            "transformer_lens_s": round(t_tl, 1),
            "interp_s": round(t_ours, 1),
            "ratio": round(ratio, 3),
            "max_abs_difference": err,
            "top5": [[str(cell), round(v, 3)] for cell, v in ours[site].top(5)],
        }
        table.append([
            f"`{site}` patching: TransformerLens's function on the bridge", f"{t_tl:.0f} s"
        ])  # fmt: skip
        table.append([
            f"`{site}` patching: interp (target ≤ 0.5x, same numbers)",
            f"{t_ours:.0f} s, **{ratio:.2f}x** ({met(ratio, 0.5, at_most=True)}), max "
            f"difference {err:.1e}",
        ])  # fmt: skip
        if site == "heads":  # the triage against the same exact numbers
            t_tl_heads, exact = t_tl, ours["heads"]
            tri, t_tri = timed(lambda: interp.patch(
                model, clean, corrupted, sites=["heads"], metric=metrics.logit_diff(),
                method="triage",
            ))  # fmt: skip
            top20 = {h for h, _ in exact.top(20)}
            recovered = len(top20 & {h for h, _ in tri["heads"].top(20)})
            verified = int(tri["heads"].verified.sum())
            ratio = t_tri / t_tl_heads
            result["heads_triage"] = {
                "interp_s": round(t_tri, 1),
                "ratio_to_transformer_lens_exact": round(ratio, 3),
                "verified": verified,
                "recovers_of_exact_top20": recovered,
            }
            table.append([
                "`heads` triage: interp (target ≤ 0.25x TransformerLens's exact time, ≥ 18 "
                "of the exact top 20)",
                f"{t_tri:.0f} s, **{ratio:.2f}x** ({met(ratio, 0.25, at_most=True)}), "
                f"{verified} heads patched exactly, **{recovered} of 20** recovered "
                f"({met(recovered, 18)})",
            ])  # fmt: skip
    for receivers in ("logits", "L23H3.q"):
        paths, t_path = timed(lambda receivers=receivers: interp.path_patch(
            model, clean, corrupted, receivers=receivers, metric=metrics.logit_diff()
        ))  # fmt: skip
        top = ", ".join(f"{h} {v:+.2f}" for h, v in paths["path"].top(3))
        result[f"path_{receivers}"] = {"interp_s": round(t_path, 1), "top3": top}
        table.append([f"path patching of every sender into {receivers}: interp",
                      f"{t_path:.0f} s (top: {top})"])  # fmt: skip
    table.append(["top heads by denoising effect on the logit difference",
                  ", ".join(f"{h} {v:+.2f}" for h, v in result["heads"]["top5"])])  # fmt: skip
    what = f"{len(clean)}-prompt IOI set against the ABC set, logit difference, denoising"
    return emit(result, args.json, table, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
