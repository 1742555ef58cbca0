"""`interp train-dictionary` (a TopK SAE on the corpus, with a progress bar, resumable),
`interp features TRACE_DIR --dictionary DIR` (a trace's top features per token, added to its
report) and `interp dictionaries` (the cached dictionaries and their figures)."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from interp.cli.inputs import (
    add_executor_options,
    add_model_options,
    add_trace_dir,
    executor_of,
    integer,
)

_TOKENS = re.compile(r"^(\d+(?:\.\d+)?)([kKmM]?)$")


def add_features_parsers(sub: Any) -> None:
    t = sub.add_parser(
        "train-dictionary",
        help="train a TopK sparse autoencoder on a model's activations over the corpus",
        description=(
            "Train a TopK SAE (Gao et al. 2024) per --site on --tokens tokens of the corpus's "
            "training split (Debian's English documentation, `make corpus`), evaluate it on "
            "the held-out split and store its features' top contexts there. One site writes "
            "DIR; several write a folder of DIR each, named by the site's hook point. An "
            "interrupted run resumes from its checkpoint. With --ray the activations are "
            "harvested on Ray workers and the optimizer runs here: the weights equal one "
            "process's."
        ),
    )
    t.add_argument(
        "--defaults",
        action="store_true",
        help="the model's default dictionaries (what `make features` runs), into "
        "the cache; nothing to do if they are there",
    )
    t.add_argument(
        "--site",
        "--hook",
        dest="hook",
        action="append",
        metavar="SITE",
        help="a site, e.g. L15.resid_post (repeat: several in one pass)",
    )
    t.add_argument("--width", type=integer, metavar="N", help="latents")
    t.add_argument("--k", type=integer, metavar="K", help="active per token")
    t.add_argument("--tokens", type=tokens, metavar="N", help="training tokens, e.g. 4M or 500k")
    t.add_argument("--seed", type=integer, default=0)
    t.add_argument("--out", type=Path, metavar="DIR")
    add_model_options(t)
    add_executor_options(t)
    t.set_defaults(func=cmd_train_dictionary)

    f = sub.add_parser(
        "features",
        help="a trace's top dictionary features per token, added to its report",
        description=(
            "Read the dictionary (a SAELens or Gemma Scope 2 folder, or one interp trained) on "
            "the trace's recorded activations: print each generated token's top features, and "
            "save them, with each feature's top contexts, density, logit effect and direct "
            "logit attribution, into TRACE_DIR/features.json and its report."
        ),
    )
    add_trace_dir(f)
    f.add_argument("--dictionary", type=Path, action="append", required=True, metavar="DIR")
    f.add_argument("--top", type=integer, default=5, metavar="N", help="features per token")
    add_model_options(f)
    f.set_defaults(func=cmd_features)

    d = sub.add_parser("dictionaries", help="list the cached dictionaries and their figures")
    d.add_argument("--model", default=None, help="only this model's")
    d.add_argument("--json", action="store_true", help="as JSON")
    d.set_defaults(func=cmd_dictionaries)


def tokens(text: str) -> int:
    """A token count: 4M, 500k, 1000000."""
    match = _TOKENS.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected a token count such as 4M or 500k, got {text!r}")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()]
    value = int(float(match[1]) * scale)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive token count, got {text!r}")
    return value


def cmd_train_dictionary(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from interp.errors import InvalidSettingError
    from interp.features.topk import TrainSettings
    from interp.features.train import check_out, train_dictionary
    from interp.files.atomic import exclusive
    from interp.models import site as site_values

    if args.defaults:
        if not _defaults(args):
            return 0
    elif None in (args.hook, args.width, args.k, args.tokens, args.out):
        raise InvalidSettingError("give --site, --width, --k, --tokens and --out (or --defaults)")
    TrainSettings(width=args.width, k=args.k, seed=args.seed).check(1)
    executor = executor_of(args)
    args.hook = [site_values.parse(h).hook for h in args.hook]  # a site, or its hook's name
    check_out(args.out, len(args.hook))
    with exclusive(args.out):
        from interp.cli.inputs import load_model

        model = load_model(args, args.model)
        bar = tqdm(
            total=None,
            unit="chunk",
            desc="training",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        )

        start = time.perf_counter()
        first: list[int] = []  # the chunks done before this run started (a resumed one)

        def report(done: int, total: int, losses: dict[str, dict[str, float]]) -> None:
            if not first:
                first.append(done - 1)
            left = (time.perf_counter() - start) / (done - first[0]) * (total - done)
            fvu = ", ".join(
                f"{site_values.parse(h)} fvu {v.get('fvu', float('nan')):.3f}"
                for h, v in losses.items()
            )
            bar.total, bar.n = total, done
            bar.set_postfix_str(fvu)
            if bar.disable:  # no terminal: a line per chunk instead of the bar
                print(
                    f"training: chunk {done}/{total}, {fvu}; about {left / 60:.0f} min to go, "
                    "then evaluation",
                    file=sys.stderr,
                    flush=True,
                )

        try:
            found = train_dictionary(
                model,
                args.hook,
                args.out,
                width=args.width,
                k=args.k,
                tokens=args.tokens,
                seed=args.seed,
                report=report,
                executor=executor,
            )
        finally:
            bar.close()
    for d in found:
        e = d.info["evaluation"]
        print(
            f"{_site(d.hook)}: FVU {e['fvu']:.3f}, L0 {e['l0']:.1f}, "
            f"dead {e['dead_fraction']:.1%}, "
            f"dense {e['dense_fraction']:.1%}, loss recovered {e['loss_recovered']:.3f}, "
            f"KL {e['kl']:.3f} -> {d.path}"
        )
    if executor is not None:
        ran = executor.record()
        print(f"activations harvested on Ray ({ran['workers']} workers, {ran['nodes']} node(s))")
    return 0


def _defaults(args: argparse.Namespace) -> bool:
    """Fill in the model's default dictionaries; False when they are cached already."""
    from interp.errors import InvalidSettingError
    from interp.features.catalog import DEFAULTS, dictionaries_root, dictionary_dir
    from interp.features.train import planned, record

    plan = DEFAULTS.get(args.model)
    if plan is None:
        raise InvalidSettingError(f"{args.model} has no default dictionaries; give --site etc.")
    if args.hook or args.out:
        raise InvalidSettingError("--defaults chooses the sites and the output itself")
    want = record(planned(plan.width, plan.k, plan.tokens, args.seed))
    cached = [_trained_with(dictionary_dir(args.model, h)) for h in plan.hooks]
    if all(c == want for c in cached):
        print(f"the default dictionaries of {args.model} are cached under {dictionaries_root()}")
        return False
    if any(c is not None for c in cached):
        print(
            f"the cached default dictionaries of {args.model} were trained with other "
            "settings; training them again",
            file=sys.stderr,
        )
    args.hook, args.out = list(plan.hooks), dictionaries_root() / args.model
    args.width, args.k, args.tokens = plan.width, plan.k, plan.tokens
    hooks = ", ".join(_site(h) for h in plan.hooks)
    print(
        f"training {len(plan.hooks)} dictionaries of {args.model} ({hooks}; width "
        f"{plan.width}, k {plan.k}) on {plan.tokens:,} tokens",
        file=sys.stderr,
    )
    return True


def _trained_with(folder: Path) -> dict[str, Any] | None:
    """The training settings recorded beside a complete cached dictionary, else None."""
    from interp.files.store import read_json

    try:
        if not (folder / "contexts.safetensors").exists():
            return None
        optimizer = read_json(folder / "interp.json")["training"]["optimizer"]
    except Exception:  # noqa: BLE001 - a damaged or foreign record is simply not current
        return None
    return optimizer if isinstance(optimizer, dict) else None


def cmd_features(args: argparse.Namespace) -> int:
    from interp.cli.inputs import load_trace
    from interp.dictionaries.files import load_dictionary
    from interp.features.readout import check_top, read_features
    from interp.files.atomic import exclusive
    from interp.files.store import ANALYSIS_FILE
    from interp.report.build import build_report
    from interp.report.tokens import visible

    check_top(args.top)
    for folder in args.dictionary:
        load_dictionary(folder)  # a clear error before any model is loaded
    with exclusive(args.trace_dir):
        model, trace = load_trace(args)
        readouts = []
        for folder in args.dictionary:
            d = load_dictionary(folder, model)
            readouts.append(read_features(model, trace, d, top=args.top))
        for r in readouts:
            r.save(args.trace_dir)
        analysed = (args.trace_dir / ANALYSIS_FILE).exists()
        page = build_report(args.trace_dir) if analysed else None
    for r in readouts:
        print(
            f"{_site(r.dictionary['hook'])} ({r.dictionary['architecture']}, "
            f"{r.dictionary['width']} "
            f"features): top features per generated token"
        )
        for token, row in zip(r.tokens, r.top, strict=True):
            shown = ", ".join(f"#{i} {v:.2f}" for i, v in row) or "none active"
            print(f"  {visible(token):>14}  {shown}")
    if page is not None:
        print(f"report written to {page.resolve().as_uri()}")
    else:
        print(
            f"features written to {args.trace_dir / 'features.json'}; `interp analyze` then "
            "`interp report` shows them"
        )
    return 0


def cmd_dictionaries(args: argparse.Namespace) -> int:
    from interp.features.catalog import cached_dictionaries, dictionaries_root

    found = cached_dictionaries(args.model)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(
            f"no dictionaries under {dictionaries_root()}; `make features` trains the default ones"
        )
        return 0
    for entry in found:
        if "error" in entry:
            print(f"{entry['path']}: unreadable ({entry.get('reason', entry['error'])})")
            continue
        e = entry.get("evaluation") or {}
        figures = (
            f"FVU {e['fvu']:.3f}, loss recovered {e['loss_recovered']:.3f}"
            if "fvu" in e
            else "not evaluated"
        )
        print(
            f"{entry.get('model')} {_site(entry.get('hook'))} {entry.get('architecture')} "
            f"{entry.get('width')}: {figures}  {entry['path']}"
        )
    return 0


def _site(hook: Any) -> Any:
    """A listed dictionary's hook as its site's spelling (a damaged entry's, as it is)."""
    from interp.models.site import spelled

    return spelled(hook) if isinstance(hook, str) else hook
