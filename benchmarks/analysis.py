"""Time of every analysis on a 100-token trace of the embedded model, against one forward pass
over the same tokens, in one run (compare the ratio, not absolute seconds). The head-role probe
(16 sequences of 2 x 50 tokens) is a property of the model: `interp analyze` reads it from the
model cache after its first run, so the total counts the cached read, and the probe's own run
is shown beside it.

    .venv/bin/python benchmarks/analysis.py [--tokens 100] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)

    import torch

    import interp
    from interp.analysis import attention, direct_logit_attribution, head_roles, logit_lens
    from interp.models.provenance import library_versions

    torch.set_grad_enabled(False)
    model = interp.load_model()
    trace = interp.generate(
        model, "earth revolve around", max_new_tokens=args.tokens, seed=0, stop_at_eos=False
    )
    ids = trace.token_ids[None]
    cases = {
        "forward": lambda: model.bridge(ids),
        "logit lens": lambda: logit_lens(model, trace),
        "attention": lambda: attention(model, trace),
        "head roles, read from the model cache": lambda: interp.workflow.model_head_roles(model),
        "direct logit attribution": lambda: direct_logit_attribution(model, trace),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():  # warm-up
        fn()
    for _ in range(args.rounds):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    probe_s = []  # the probe itself, 16 x 101 tokens: not part of a cached analysis
    for _ in range(max(1, args.rounds // 2)):
        t0 = time.perf_counter()
        head_roles(model)
        probe_s.append(time.perf_counter() - t0)
    probe = statistics.median(probe_s)
    med = {k: statistics.median(v) for k, v in times.items()}
    forward = med.pop("forward")
    total = sum(med.values())
    result = {
        "tokens": trace.n_positions,
        "threads": torch.get_num_threads(),
        "versions": library_versions(),
        "forward_s": round(forward, 3),
        "analyses_s": {k: round(v, 3) for k, v in med.items()},
        "all_analyses_s": round(total, 3),
        "forward_equivalents": {k: round(v / forward, 2) for k, v in med.items()},
        "all_analyses_forward_equivalents": round(total / forward, 2),
        "head_roles_probe_run_s": round(probe, 3),
        "head_roles_probe_run_forward_equivalents": round(probe / forward, 2),
    }
    rows = [["one forward pass over the same tokens (the bridge)", f"{forward:.2f} s (1)"]]
    rows += [[k, f"{v:.2f} s ({v / forward:.2f} forward passes)"] for k, v in med.items()]
    passes = total / forward
    rows.append(
        [
            "the head-role probe run itself (16 × 2 × 50 tokens; once per model)",
            f"{probe:.2f} s ({probe / forward:.2f} forward passes)",
        ]
    )
    rows.append(
        [
            "all analyses (target ≤ 5 forward passes)",
            f"{total:.2f} s, **{passes:.1f} forward passes** ({met(passes, 5, at_most=True)})",
        ]
    )
    what = f"{trace.n_positions}-token trace, median of {args.rounds} rounds"
    return emit(result, args.json, rows, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
