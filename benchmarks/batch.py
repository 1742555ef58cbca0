"""Batched recording against one row at a time and against Hugging Face's own batched sampling.

Measures tokens/s of: 8 samples x N tokens of the seed prompt in one batch against 1 sample;
the same batch against Hugging Face `generate(do_sample=True, num_return_sequences=8)` on the
plain model; 16 prompts of different lengths x 20 tokens batched against a loop of
single-prompt `generate` calls; and the peak memory of each. Rounds are interleaved.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402

PROMPT = "earth revolve around"
PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "In 1905, Albert Einstein published four papers that",
    "The recipe calls for two cups of flour and",
    "Water boils at",
    "My favourite programming language is Python because it",
    "The mitochondria is",
    "After the long winter, the farmers of the northern valley finally",
    "Q: What is the largest planet in the solar system? A:",
    "Dear Sir or Madam,",
    "The stock market fell sharply today after",
    "A haiku about the sea:",
    "To install the package, run",
    "The cat sat",
    "Photosynthesis converts light energy into chemical energy in",
    "Breaking news:",
]


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    n = args.tokens

    import torch
    from transformers import AutoModelForCausalLM

    import interp
    from interp.models import cache_root

    torch.set_grad_enabled(False)
    model = interp.load_model()
    hf = AutoModelForCausalLM.from_pretrained(
        str(cache_root() / "models" / "smollm2-135m"), dtype=torch.float32
    ).eval()
    ids = torch.tensor([model.encode(PROMPT)])

    def single():
        interp.generate(model, PROMPT, max_new_tokens=n, seed=0, stop_at_eos=False)

    def batch8():
        interp.generate(model, PROMPT, num_samples=8, max_new_tokens=n, seed=0, stop_at_eos=False)

    def hf8():
        torch.manual_seed(0)
        hf.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=True, top_k=0,
                    num_return_sequences=8)  # fmt: skip

    def prompts_loop():
        for p in PROMPTS:
            interp.generate(model, p, max_new_tokens=20, seed=0, stop_at_eos=False)

    def prompts_batch():
        interp.generate(model, PROMPTS, max_new_tokens=20, seed=0, stop_at_eos=False)

    cases = {
        "1 sample": (single, n),
        "8 samples, batched": (batch8, 8 * n),
        "HF generate, 8 return sequences": (hf8, 8 * n),
        "16 prompts, one at a time": (prompts_loop, 16 * 20),
        "16 prompts, batched": (prompts_batch, 16 * 20),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    peak: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, (fn, _) in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            peak[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"  {name}: {times[name][-1]:.1f} s", file=sys.stderr)
    tps = {k: cases[k][1] / statistics.median(v) for k, v in times.items()}
    r8 = tps["8 samples, batched"] / tps["1 sample"]
    rhf = tps["8 samples, batched"] / tps["HF generate, 8 return sequences"]
    r16 = tps["16 prompts, batched"] / tps["16 prompts, one at a time"]
    result = {
        "tokens": n,
        "rounds": args.rounds,
        "tokens_per_s": {k: round(v, 2) for k, v in tps.items()},
        "batch8_vs_single": round(r8, 2),
        "batch8_vs_hf_generate": round(rhf, 2),
        "prompts16_batched_vs_loop": round(r16, 2),
        "peak_rss_mb_after": {k: round(v) for k, v in peak.items()},
    }
    rows = [[name, f"{value:.1f} tok/s"] for name, value in tps.items()]
    rows += [
        ["8 samples batched ÷ 1 sample (target ≥ 4)", f"**{r8:.1f}x** ({met(r8, 4)})"],
        [
            "8 samples batched ÷ HF `generate(num_return_sequences=8)` (target ≥ 0.9)",
            f"**{rhf:.2f}x** ({met(rhf, 0.9)})",
        ],
        ["16 prompts batched ÷ one at a time (target ≥ 3)", f"**{r16:.1f}x** ({met(r16, 3)})"],
        ["peak memory (RSS) at the end", f"{max(peak.values()):.0f} MB"],
    ]
    what = f"{n} new tokens (20 for the 16 prompts), median of {args.rounds} interleaved rounds"
    return emit(result, args.json, rows, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
