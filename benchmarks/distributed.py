"""Heads patching of 64 IOI pairs of the embedded model in one process (2 torch threads) and on
a local Ray cluster (2 workers x 1 thread); Ray's start-up and per-chunk overhead measured
apart, the work per chunk that keeps the overhead under 10%, and a model of the time on N
machines built from those measurements (a model, not a measurement).

    .venv/bin/python benchmarks/distributed.py [--pairs 64] [--json out.json]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, settings_line  # noqa: E402

NAMES = (
    "Mary John Tom Anna David Sarah James Emma Paul Lisa Mark Kate Peter Laura Simon Jane".split()
)
TEMPLATE = "When {a} and {b} went to the store, {c} gave a drink to"


def _noop(model, rows):
    """A chunk that does nothing with its rows: what a chunk costs beyond its work."""
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = arguments(__doc__, rounds=False)
    parser.add_argument("--pairs", type=int, default=64, help="IOI pairs (default 64)")
    args = parser.parse_args(argv)

    import torch

    import interp
    from interp import metrics

    torch.set_num_threads(2)
    torch.set_grad_enabled(False)
    model = interp.load_model()
    pairs = [(a, b) for a in NAMES for b in NAMES if a != b][: args.pairs]
    clean_prompts = [TEMPLATE.format(a=a, b=b, c=b) for a, b in pairs]
    others = [
        next(n for n in NAMES[i % 16 :] + NAMES if n not in pair) for i, pair in enumerate(pairs)
    ]
    corrupt_prompts = [
        TEMPLATE.format(a=a, b=b, c=c) for (a, b), c in zip(pairs, others, strict=True)
    ]
    answers = [f" {a}" for a, _ in pairs]
    clean = interp.generate(model, clean_prompts, continuation=answers)
    corrupted = interp.generate(model, corrupt_prompts, continuation=answers)
    for row, (a, b) in zip(clean, pairs, strict=True):
        row.meta = {"answer": f" {a}", "distractor": f" {b}"}
    metric = metrics.logit_diff()

    t0 = time.perf_counter()
    one = interp.patch(model, clean, corrupted, metric=metric)
    one_s = time.perf_counter() - t0

    start = time.perf_counter()
    with interp.Ray(workers=2, cpus_per_worker=1) as ray_workers:
        cluster_s = time.perf_counter() - start
        t0 = time.perf_counter()
        interp.evaluate(model, interp.TraceSet(list(clean)[:2]), metric, executor=ray_workers)
        load_s = time.perf_counter() - t0  # the workers load the model (and run two rows)
        t0 = time.perf_counter()
        spread = interp.patch(model, clean, corrupted, metric=metric, executor=ray_workers)
        ray_s = time.perf_counter() - t0
        chunks = ray_workers.record()["chunks"]
        items = list(zip(clean, corrupted, strict=True))
        per_chunk = []
        for size in (1, 8):  # a chunk's cost without work: scheduling, and shipping its rows
            ray_workers.chunk_rows = size  # the same workers, chunks of `size` rows
            t0 = time.perf_counter()
            ray_workers.map(model, _noop, items, "nothing")
            per_chunk.append((time.perf_counter() - t0) / math.ceil(len(items) / size))
    diff = max(
        float((one["heads"].per_row - spread["heads"].per_row).abs().max()),
        float((one["heads"].effect - spread["heads"].effect).abs().max()),
    )
    rows = len(pairs)
    row_s = ray_s / rows * 2  # one worker's time for one row (two workers ran them)
    fixed, per_row_ship = per_chunk[0], (per_chunk[1] - per_chunk[0]) / 7
    overhead_rows = max(1, math.ceil(fixed / (0.1 * row_s - per_row_ship)))  # overhead <= 10%
    startup = cluster_s + load_s

    def model_s(machines: int, big: int) -> float:  # 2 workers a machine, `big` pairs
        workers = 2 * machines
        chunk = math.ceil(big / (2 * workers))
        return startup + math.ceil(big / chunk / workers) * (chunk * (row_s + per_row_ship) + fixed)

    result = {
        "pairs": rows,
        "one_process_s": round(one_s, 1),
        "ray_s": round(ray_s, 1),
        "ratio": round(ray_s / one_s, 2),
        "chunks": chunks,
        "max_abs_diff": diff,
        "cluster_start_s": round(cluster_s, 1),
        "workers_load_s": round(load_s, 1),
        "chunk_overhead_s": round(fixed, 4),
        "row_shipping_s": round(per_row_ship, 4),
        "row_work_s": round(row_s, 2),
        "rows_per_chunk_for_10pct": overhead_rows,
        "model_1000_pairs_s": {n: round(model_s(n, 1000)) for n in (1, 2, 4, 8)},
    }
    table = [
        [f"heads patching of {rows} IOI pairs, one process (2 threads)", f"{one_s:.0f} s"],
        [
            "the same on a local Ray cluster (2 workers x 1 thread)",
            f"{ray_s:.0f} s ({ray_s / one_s:.2f}x; {chunks} chunks; max difference {diff:.1e})",
        ],
        [
            "Ray start-up: the local cluster / the workers loading the model",
            f"{cluster_s:.1f} s / {load_s:.1f} s",
        ],  # fmt: skip
        [
            "a chunk's overhead without work / shipping one row's two traces",
            f"{fixed * 1e3:.0f} ms / {per_row_ship * 1e3:.0f} ms",
        ],  # fmt: skip
        ["one row's work on one worker (1 thread)", f"{row_s:.2f} s"],
        ["rows per chunk that keep the overhead under 10%", f"{overhead_rows}"],
        [
            "model: 1,000 pairs on N machines of 2 workers (start-up + chunks x (work + overhead))",
            ", ".join(f"N={n}: {v / 60:.1f} min" for n, v in result["model_1000_pairs_s"].items()),
        ],
    ]
    what = f"{rows} IOI pairs against the ABC set, heads patching, logit difference"
    return emit(result, args.json, table, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
