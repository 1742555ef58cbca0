"""Paired samples: 16 pairs x 40 tokens of an ablation, batched, against one pair (target: at
most 4x one pair's time, so 16 pairs cost no more than four single ones). The ablation is the
five strongest induction heads (mean) on a list-copying prompt; rounds are interleaved.

    .venv/bin/python benchmarks/samples.py [--tokens 40] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402

PROMPT = "Items: apple, chair, candle, window, river, stone, paper, cloud. Again: apple, chair,"
PAIRS = 16


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    args.tokens = 40 if args.tokens == 100 else args.tokens  # this benchmark's own default

    import torch

    import interp
    from interp.interventions import make_ablation, paired_samples
    from interp.models.provenance import library_versions

    torch.set_grad_enabled(False)
    model = interp.load_model()
    trace = interp.generate(model, PROMPT, max_new_tokens=args.tokens, seed=0, stop_at_eos=False)
    heads = [h for h, _ in interp.workflow.model_head_roles(model).top("induction", 5)]
    ablation = make_ablation(model, trace, heads, "mean")

    def run(n: int) -> float:
        t0 = time.perf_counter()
        paired_samples(model, trace, ablation, samples=n, max_new_tokens=args.tokens, greedy=False)
        return time.perf_counter() - t0

    run(1)  # warm-up
    times: dict[int, list[float]] = {1: [], PAIRS: []}
    for _ in range(args.rounds):
        for n in (1, PAIRS):
            times[n].append(run(n))
    one, many = statistics.median(times[1]), statistics.median(times[PAIRS])
    ratio = many / one
    result = {
        "pairs": PAIRS,
        "tokens": args.tokens,
        "threads": torch.get_num_threads(),
        "one_pair_s": round(one, 2),
        "pairs_s": round(many, 2),
        "ratio": round(ratio, 2),
        "heads": [f"L{a}H{b}" for a, b in heads],
        "versions": library_versions(),
    }
    table = [
        ["one pair (baseline and ablated run, teacher-forced KL)", f"{one:.1f} s"],
        [
            f"{PAIRS} pairs, batched (target ≤ 4x one pair)",
            f"{many:.1f} s, **{ratio:.2f}x** ({met(ratio, 4.0, at_most=True)})",
        ],
    ]
    what = (
        f"{args.tokens} new tokens a run, five strongest induction heads ablated (mean), "
        f"median of {args.rounds} interleaved rounds"
    )
    return emit(result, args.json, table, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
