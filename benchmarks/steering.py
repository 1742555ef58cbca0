"""Steering: recorded generation under a steering vector against plain recorded generation
(target: at least 0.9x its tokens per second), and a scale sweep of 4 scales x 16 pairs x 40
tokens, batched, against one scale's 16 pairs (target: at most 2x). The vector is the weddings
concept's difference of means at layer 11 (experiments/data/weddings/); rounds are interleaved.

    .venv/bin/python benchmarks/steering.py [--tokens 100] [--rounds 3] [--device cpu]
        [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "experiments" / "data" / "weddings"
PROMPT = "I went up to my friend and said"
LAYER, PAIRS, SWEEP_TOKENS = 11, 16, 40
SCALES = [0.1, 0.2, 0.3, 0.45]


def lines(name: str) -> list[str]:
    return [s.strip() for s in (DATA / name).read_text().splitlines() if s.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__)
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    args = parser.parse_args(argv)

    import torch

    import interp

    torch.set_grad_enabled(False)
    model = interp.load_model(device=args.device)
    vector = interp.steering_vector(
        model, lines("positive.txt"), lines("negative.txt"), layer=LAYER, position="mean"
    )
    steer = vector.intervention(0.3, unit="resid")
    words = lines("concept_words.txt")

    def generation(intervention: interp.Intervention | None) -> float:
        t0 = time.perf_counter()
        interp.generate(model, PROMPT, max_new_tokens=args.tokens, seed=0, stop_at_eos=False,
                        intervention=intervention)  # fmt: skip
        return args.tokens / (time.perf_counter() - t0)

    def sweep(scales: list[float]) -> float:
        t0 = time.perf_counter()
        interp.steer_eval(model, [PROMPT], vector, scales=scales, unit="resid", samples=PAIRS,
                          controls=0, max_new_tokens=SWEEP_TOKENS, concept_words=words)  # fmt: skip
        return time.perf_counter() - t0

    generation(None), generation(steer), sweep(SCALES[:1])  # warm-up
    speed: dict[str, list[float]] = {"plain": [], "steered": []}
    took: dict[str, list[float]] = {"one": [], "four": []}
    for _ in range(args.rounds):
        speed["plain"].append(generation(None))
        speed["steered"].append(generation(steer))
        took["one"].append(sweep(SCALES[2:3]))
        took["four"].append(sweep(SCALES))
    plain, steered = statistics.median(speed["plain"]), statistics.median(speed["steered"])
    one, four = statistics.median(took["one"]), statistics.median(took["four"])
    speed_ratio, sweep_ratio = steered / plain, four / one
    rows_one, rows_four = PAIRS * 2, PAIRS * (1 + len(SCALES))  # the unsteered rows are shared
    per_row = sweep_ratio * rows_one / rows_four
    result = {
        "tokens": args.tokens,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "plain_tokens_per_s": round(plain, 1),
        "steered_tokens_per_s": round(steered, 1),
        "speed_ratio": round(speed_ratio, 3),
        "sweep": {"pairs": PAIRS, "tokens": SWEEP_TOKENS, "scales": SCALES},
        "one_scale_s": round(one, 2),
        "four_scales_s": round(four, 2),
        "sweep_ratio": round(sweep_ratio, 2),
        "rows": {"one_scale": rows_one, "four_scales": rows_four},
        "time_per_row_ratio": round(per_row, 2),
        "versions": interp.provenance.library_versions(),
    }
    table = [
        ["plain recorded generation", f"{plain:.1f} tokens/s"],
        [
            "steered (add at layer 11, every step; target ≥ 0.9x)",
            f"{steered:.1f} tokens/s, **{speed_ratio:.2f}x** ({met(speed_ratio, 0.9)})",
        ],
        [f"`steer_eval`, one scale: {PAIRS} pairs x {SWEEP_TOKENS} tokens, scored", f"{one:.1f} s"],
        [
            f"`steer_eval`, {len(SCALES)} scales batched (target ≤ 2x one scale)",
            f"{four:.1f} s, **{sweep_ratio:.2f}x** ({met(sweep_ratio, 2.0, at_most=True)})",
        ],
        [
            f"rows: {rows_four} against {rows_one} (the unsteered rows shared); time per row",
            f"{per_row:.2f}x",
        ],
    ]
    what = (
        f"{args.tokens} new tokens a generation, one prompt; sweeps without controls or prompting "
        f"baseline; median of {args.rounds} interleaved rounds"
    )
    return emit(result, args.json, table, settings_line(what, args.device))


if __name__ == "__main__":
    sys.exit(main())
