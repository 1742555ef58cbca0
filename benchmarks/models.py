"""Each embedded model side by side: load from the conversion cache, recorded generation
against plain Hugging Face `generate`, and every analysis of a 100-token trace in forward-pass
equivalents. Rounds interleave the cases (compare ratios, not absolute seconds).

    .venv/bin/python benchmarks/models.py [--tokens 100] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, settings_line  # noqa: E402

MODELS = ("smollm2-135m", "gemma3-270m")
PROMPT = "earth revolve around"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(name: str, tokens: int, rounds: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    import interp
    from interp.analysis import attention, direct_logit_attribution, logit_lens
    from interp.models import cache_root

    interp.load_model(name)  # the cache exists before a load from it is timed
    load_s = statistics.median(timed(lambda: interp.load_model(name)) for _ in range(rounds))
    model = interp.load_model(name)
    hf = AutoModelForCausalLM.from_pretrained(
        str(cache_root() / "models" / name), dtype=torch.float32
    ).eval()
    ids = torch.tensor([model.encode(PROMPT)])
    trace = interp.generate(model, PROMPT, max_new_tokens=tokens, seed=0, stop_at_eos=False)
    interp.workflow.model_head_roles(model)  # the probe runs once per model; analyses read it after

    def recorded():
        interp.generate(model, PROMPT, max_new_tokens=tokens, seed=0, stop_at_eos=False)

    def hf_generate():
        torch.manual_seed(0)
        hf.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, top_k=0)

    token_ids = trace.token_ids[None]
    cases = {
        "recorded": recorded,
        "hf": hf_generate,
        "forward": lambda: model.bridge(token_ids),
        "logit lens": lambda: logit_lens(model, trace),
        "attention": lambda: attention(model, trace),
        "head roles (cached)": lambda: interp.workflow.model_head_roles(model),
        "direct logit attribution": lambda: direct_logit_attribution(model, trace),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for case, fn in cases.items():
            times[case].append(timed(fn))
            print(f"  {name}: {case} {times[case][-1]:.2f} s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    analyses = ("logit lens", "attention", "head roles (cached)", "direct logit attribution")
    return {
        "engine": trace.provenance["engine"],
        "shape": f"{model.n_layers} layers × {model.n_heads} heads, vocabulary {model.d_vocab:,}",
        "load_from_cache_s": round(load_s, 2),
        "recorded_tokens_per_s": round(tokens / med["recorded"], 2),
        "hf_generate_tokens_per_s": round(tokens / med["hf"], 2),
        "recorded_vs_hf_generate": round(med["hf"] / med["recorded"], 3),
        "forward_s": round(med["forward"], 3),
        "forward_equivalents": {k: round(med[k] / med["forward"], 2) for k in analyses},
        "all_analyses_forward_equivalents": round(
            sum(med[k] for k in analyses) / med["forward"], 2
        ),
    }


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)

    import torch

    torch.set_grad_enabled(False)
    found = {name: measure(name, args.tokens, args.rounds) for name in MODELS}

    def row(label: str, cell) -> list[str]:
        return [label, *(cell(r) for r in found.values())]

    rows = [
        row("layout", lambda r: r["shape"]),
        row("engine that records", lambda r: r["engine"]),
        row("load from the conversion cache", lambda r: f"{r['load_from_cache_s']:.2f} s"),
        row("recorded generation", lambda r: f"{r['recorded_tokens_per_s']:.1f} tok/s"),
        row("plain HF `generate`", lambda r: f"{r['hf_generate_tokens_per_s']:.1f} tok/s"),
        row("recorded ÷ HF `generate`", lambda r: f"**{r['recorded_vs_hf_generate']:.2f}x**"),
        row("one forward pass over the trace", lambda r: f"{r['forward_s']:.2f} s"),
    ]
    for analysis in next(iter(found.values()))["forward_equivalents"]:
        rows.append(
            row(analysis, lambda r, a=analysis: f"{r['forward_equivalents'][a]:.2f} passes")
        )
    rows.append(
        row("all analyses", lambda r: f"**{r['all_analyses_forward_equivalents']:.1f} passes**")
    )
    result = {"tokens": args.tokens, "threads": torch.get_num_threads(), "models": found}
    what = f"{args.tokens} sampled tokens, median of {args.rounds} interleaved rounds"
    return emit(result, args.json, rows, settings_line(what), ["measure", *MODELS])


if __name__ == "__main__":
    sys.exit(main())
