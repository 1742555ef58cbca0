"""Circuit discovery on the embedded model (issue 48's targets): EAP and EAP-IG (5 steps)
edge scores over IOI pairs (the ABC corruption, one-token names, one length a template), and
MIB's faithfulness curve (10 fractions, both rankings, a random control of 3 seeds) on 16
pairs; the peak memory of the process.

    .venv/bin/python benchmarks/circuits.py [--json out.json] [--pairs 100] [--curve-pairs 16]
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "experiments" / "data" / "ioi.json"


def rows(n: int, seed: int = 0) -> list[dict]:
    """n IOI rows: a clean prompt, its ABC corruption, the answer (IO) and distractor (S)."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    names, rng = data["names"], random.Random(seed)
    out = []
    while len(out) < n:
        template = data["templates"][len(out) % len(data["templates"])]
        io, s, x, y, z = rng.sample(names, 5)
        out.append({
            "clean": template.format(A=io, B=s, C=s),
            "abc": template.format(A=x, B=y, C=z),
            "answer": f" {io}",
            "distractor": f" {s}",
        })  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    p = arguments(__doc__, rounds=False)
    p.add_argument("--pairs", type=int, default=100)
    p.add_argument("--curve-pairs", type=int, default=16)
    args = p.parse_args(argv)

    import torch

    import interp
    from interp.models.provenance import library_versions

    torch.set_grad_enabled(False)
    model = interp.load_model()

    def pairs(n: int) -> tuple:
        chosen = rows(n)
        answers = [r["answer"] for r in chosen]
        sets = [
            interp.generate(model, [r[k] for r in chosen], continuation=answers, max_new_tokens=1)
            for k in ("clean", "abc")
        ]
        for row, trace in zip(chosen, sets[0], strict=True):
            trace.meta = {"answer": row["answer"], "distractor": row["distractor"]}
        return sets[0], sets[1]

    def timed(fn, what=""):
        start = time.perf_counter()
        out = fn()
        print(f"{what}: {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
        return out, time.perf_counter() - start

    clean, abc = pairs(args.pairs)
    eap, t_eap = timed(lambda: interp.circuit(model, clean, abc, method="eap"), "EAP")
    ig, t_ig = timed(lambda: interp.circuit(model, clean, abc, method="eap-ig", steps=5), "IG")
    clean2, abc2 = pairs(args.curve_pairs)
    scores, t_scores = timed(lambda: interp.circuit(model, clean2, abc2, method="eap"), "scores")
    curve, t_curve = timed(lambda: scores.curve(), "curve")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    top = ", ".join(f"{edge} {value:+.2f}" for edge, value in ig.top(3))
    result = {
        "versions": library_versions(),
        "pairs": args.pairs,
        "curve_pairs": args.curve_pairs,
        "edges": eap.graph.n_edges,
        "eap_s": round(t_eap, 1),
        "eap_ig_s": round(t_ig, 1),
        "curve_scores_s": round(t_scores, 1),
        "curve_s": round(t_curve, 1),
        "peak_gib": round(peak, 2),
        "cpr": round(curve.cpr, 3),
        "cmd": round(curve.cmd, 3),
        "top_eap_ig": top,
    }
    table = [
        [f"EAP, {args.pairs} pairs (target ≤ 30 s)",
         f"**{t_eap:.0f} s** ({met(t_eap, 30, at_most=True)})"],
        [f"EAP-IG, 5 steps, {args.pairs} pairs (target ≤ 90 s)",
         f"**{t_ig:.0f} s** ({met(t_ig, 90, at_most=True)})"],
        [f"MIB's curve on {args.curve_pairs} pairs: 10 fractions x 2 rankings + 3 random seeds "
         "(50 exact evaluations; target: a 12-point curve ≤ 2 min)",
         f"{t_curve:.0f} s (EAP scores first: {t_scores:.0f} s); CPR {curve.cpr:.2f}, "
         f"CMD {curve.cmd:.2f}"],
        ["peak memory of the process (target ≤ 4 GB)",
         f"**{peak:.2f} GiB** ({met(peak, 4 / 1.0737, at_most=True)})"],
        ["top EAP-IG edges", top],
    ]  # fmt: skip
    what = f"IOI pairs (ABC corruption), {eap.graph.n_edges:,} edges (kv=group)"
    return emit(result, args.json, table, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
