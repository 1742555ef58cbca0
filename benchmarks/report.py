"""Time and size of a full report for a 100-token trace of the embedded model (the report
alone: generation and analyses are done first, the sweep is left out).

    .venv/bin/python benchmarks/report.py [--tokens 100] [--json out.json]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import arguments, emit, met, settings_line  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)

    import interp
    from interp.cli.workflow import analyze_into
    from interp.report import build_report

    model = interp.load_model()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "t"
        trace = interp.generate(
            model, "earth revolve around", max_new_tokens=args.tokens, seed=0, stop_at_eos=False
        )
        trace.save(out)
        analyze_into(model, trace, out)
        times = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            page = build_report(out)
            times.append(time.perf_counter() - t0)
        figures = sum(p.stat().st_size for p in (out / "figures").iterdir())
        paper = []  # every figure also as SVG and PDF
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            build_report(out, formats="png,svg,pdf")
            paper.append(time.perf_counter() - t0)
        all_formats = sum(p.stat().st_size for p in (out / "figures").iterdir())
        result = {
            "tokens": trace.n_positions,
            "render_s": round(statistics.median(times), 2),
            "render_all_formats_s": round(statistics.median(paper), 2),
            "html_mb": round(page.stat().st_size / 1e6, 2),
            "figures_mb": round(figures / 1e6, 2),
            "figures_all_formats_mb": round(all_formats / 1e6, 2),
        }
    r = result
    rows = [
        [
            "rendering `index.html` and figures (target ≤ 10 s)",
            f"{r['render_s']:.1f} s ({met(r['render_s'], 10, at_most=True)})",
        ],
        [
            "`index.html`, self-contained (target ≤ 5 MB)",
            f"{r['html_mb']:.1f} MB ({met(r['html_mb'], 5, at_most=True)}; figures beside it: "
            f"{r['figures_mb']:.1f} MB)",
        ],
        [
            "the same with `--format png,svg,pdf`",
            f"{r['render_all_formats_s']:.1f} s; figures {r['figures_all_formats_mb']:.1f} MB",
        ],
    ]
    what = f"{trace.n_positions}-token trace without a sweep, median of {args.rounds} rounds"
    return emit(result, args.json, rows, settings_line(what))


if __name__ == "__main__":
    sys.exit(main())
