"""Features: harvesting throughput (the default hooks, one forward pass stopped at the later),
TopK training throughput (width 4608, k 32), the features of a 100-token trace against one
forward pass over it (target: at most 0.2 forward passes; the report's whole readout
beside it), and the default dictionaries'
training record and held-out evaluation (read from the cache: `make features` first).

    .venv/bin/python benchmarks/features.py [--tokens 100] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402

HARVEST_WINDOWS = 64  # windows of 128 tokens harvested per round


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)

    import torch

    import interp
    from interp.features import (
        cached_dictionaries,
        load_dictionary,
        read_features,
        trace_features,
    )
    from interp.features.harvest import activations, corpus_tokens, windows
    from interp.features.topk import TopKTrainer, TrainSettings

    settings = TrainSettings(width=4608, k=32)

    torch.set_grad_enabled(False)
    model = interp.load_model()
    found = cached_dictionaries(model.name)
    if not found:
        print("no cached dictionaries: run `make features` first", file=sys.stderr)
        return 2
    dictionaries = [load_dictionary(e["path"], model) for e in found]
    hooks = [d.hook for d in dictionaries]
    ids = windows(corpus_tokens(model, "train"))[:HARVEST_WINDOWS]
    n_tokens = HARVEST_WINDOWS * (ids.shape[1] - 1)
    trace = interp.generate(model, "earth revolve around", max_new_tokens=args.tokens, seed=0,
                            stop_at_eos=False)  # fmt: skip
    full = trace.token_ids[None]

    def harvest() -> float:
        t0 = time.perf_counter()
        activations(model, ids, hooks)
        return n_tokens / (time.perf_counter() - t0)

    acts = activations(model, ids[:32], hooks[:1])[hooks[0]]

    def train() -> float:
        with torch.enable_grad():
            trainer = TopKTrainer(model.d_model, settings)
            trainer.train_chunk(acts[:2048], 0)  # the bias's initialisation, outside the clock
            t0 = time.perf_counter()
            trainer.train_chunk(acts, 1)
        return (len(acts) // settings.batch * settings.batch) / (time.perf_counter() - t0)

    def forward() -> float:
        t0 = time.perf_counter()
        model.bridge(full, return_type="logits")
        return time.perf_counter() - t0

    def features() -> float:
        t0 = time.perf_counter()
        for d in dictionaries:
            trace_features(model, trace, d)
        return time.perf_counter() - t0

    def readout() -> float:
        t0 = time.perf_counter()
        for d in dictionaries:
            read_features(model, trace, d)
        return time.perf_counter() - t0

    harvest(), forward(), features(), readout()  # warm-up
    runs: dict[str, list[float]] = {
        "harvest": [],
        "train": [],
        "forward": [],
        "features": [],
        "readout": [],
    }
    for _ in range(args.rounds):
        runs["harvest"].append(harvest())
        runs["train"].append(train())
        runs["forward"].append(forward())
        runs["features"].append(features())
        runs["readout"].append(readout())
    med = {k: statistics.median(v) for k, v in runs.items()}
    ratio = med["features"] / len(dictionaries) / med["forward"]
    readout_ratio = med["readout"] / len(dictionaries) / med["forward"]
    records = []
    for entry, d in zip(found, dictionaries, strict=True):
        t = d.info.get("training", {})
        records.append({"hook": d.hook, "width": d.d_sae, "k": d.k,
                        "tokens": t.get("tokens_trained"), "train_seconds": t.get("train_seconds"),
                        "total_seconds": t.get("total_seconds"),
                        "evaluation": entry.get("evaluation")})  # fmt: skip
    result = {
        "threads": torch.get_num_threads(),
        "harvest_tokens_per_s": round(med["harvest"], 1),
        "harvest_hooks": hooks,
        "train_tokens_per_s": round(med["train"], 1),
        "trace_tokens": trace.n_positions,
        "forward_s": round(med["forward"], 4),
        "features_s": round(med["features"], 4),
        "features_in_forward_passes": round(ratio, 3),
        "readout_s": round(med["readout"], 4),
        "readout_in_forward_passes": round(readout_ratio, 3),
        "dictionaries": records,
        "versions": interp.provenance.library_versions(),
    }
    table = [
        [f"harvesting ({', '.join(hooks)}, one pass)", f"{med['harvest']:.0f} tokens/s"],
        [
            f"TopK training (width 4608, k 32, batch {settings.batch})",
            f"{med['train']:.0f} tokens/s",
        ],
        [
            f"feature activations of a {trace.n_positions}-token trace from its recorded hook, "
            "per dictionary (target ≤ 0.2 forward passes)",
            f"{med['features'] / len(dictionaries) * 1000:.0f} ms, **{ratio:.2f}** forward "
            f"passes ({met(ratio, 0.2, at_most=True)})",
        ],
        [
            "the report's readout of it, per dictionary (the above, attribution, and a card "
            "per feature shown: logit effects over the vocabulary, contexts decoded)",
            f"{med['readout'] / len(dictionaries) * 1000:.0f} ms, "
            f"{readout_ratio:.2f} forward passes",
        ],
    ]
    for r in records:
        e = r["evaluation"] or {}
        total = r["total_seconds"] or r["train_seconds"] or 0
        table.append([
            f"`{r['hook']}` ({r['width']} latents, k {r['k']}, {r['tokens']:,} tokens, "
            f"{total / 60:.0f} min for both dictionaries)",
            f"FVU {e.get('fvu', float('nan')):.3f} (target ≤ 0.3), L0 {e.get('l0', 0):.1f}, "
            f"dead {e.get('dead_fraction', 0):.1%}, dense {e.get('dense_fraction', 0):.1%}, "
            f"loss recovered {e.get('loss_recovered', float('nan')):.3f} (target ≥ 0.8), "
            f"KL {e.get('kl', float('nan')):.3f}",
        ])  # fmt: skip
    what = (
        f"{HARVEST_WINDOWS} windows of 128 corpus tokens a harvest; the features of both default "
        f"dictionaries on a {args.tokens}-token generation against one forward pass over it; "
        f"median of {args.rounds} interleaved rounds"
    )
    return emit(result, args.json, table, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
