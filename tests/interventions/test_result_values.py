"""Results hold values: a patching site's `top`, a sweep's `verified_heads` and an ablation's
`heads` are `Head`s (with a position where a cell has one), equal to what a plain loop over the
result's own tensors picks; their labels are for display, and results written with labels
still load."""

import itertools
import json
import math

import pytest
import torch

import interp
from interp import metrics
from interp.errors import TraceFormatError
from interp.interventions import (
    AblationRecord,
    HeadPosition,
    Patching,
    PatchingResult,
    SitePosition,
    SweepResult,
    patch,
    sweep,
)
from interp.models.heads import Head


def naive_top(effect: torch.Tensor, k: int) -> list[tuple[tuple[int, ...], float]]:
    """Every cell's index and value, largest |value| first, ties in index order, NaN (no exact
    effect) left out: a plain loop."""
    cells = []
    for index in itertools.product(*(range(n) for n in effect.shape)):
        value = float(effect[index])
        if not math.isnan(value):
            cells.append((index, value))
    cells.sort(key=lambda cell: -abs(cell[1]))  # a stable sort: ties keep index order
    return cells[:k]


def as_cell(site: str, index: tuple[int, ...]):
    if site in ("heads", "path"):
        return Head(*index), f"L{index[0]}H{index[1]}"
    if site == "heads-by-pos":
        return HeadPosition(Head(index[0], index[1]), index[2]), "L{}H{}@{}".format(*index)
    label = f"L{index[0]}.{ {'resid': 'resid_pre', 'attn-out': 'attn', 'mlp-out': 'mlp'}[site] }"
    return SitePosition(interp.site(label), index[1]), f"{label}@{index[1]}"


SHAPES = {"heads": (3, 4), "path": (3, 4), "heads-by-pos": (2, 3, 5), "resid": (3, 5),
          "attn-out": (2, 4), "mlp-out": (4, 3)}  # fmt: skip


@pytest.mark.parametrize("site", list(SHAPES))
def test_top_gives_the_cells_a_plain_ranking_of_the_effect_picks(site):
    effect = torch.randn(SHAPES[site], generator=torch.Generator().manual_seed(0))
    flat = effect.view(-1)
    flat[2], flat[5] = 9.0, -9.0  # a tie in magnitude: index order
    flat[0] = math.nan  # a triage's unverified cell
    result = PatchingResult(
        site, "denoise", "m", effect, effect, None, effect[None], 0.0, 1.0, patched=effect + 1.0
    )
    want = [(*as_cell(site, index), value) for index, value in naive_top(effect, 7)]
    got = result.top(7)
    assert [(cell, value) for cell, _, value in want] == got
    for (cell, value), (wanted, label, _) in zip(got, want, strict=True):
        assert type(cell) is type(wanted) and str(cell) == label and f"{cell:>12}".strip() == label
        if isinstance(cell, HeadPosition):
            index = (*cell.head, cell.position)
        else:
            index = cell if isinstance(cell, Head) else (cell.site.layer, cell.position)
        assert float(effect[index]) == value
    flat_indices = [_flat(index, SHAPES[site]) for index, _ in naive_top(effect, 7)]
    assert [i for i, _, _ in result.ranked(7)] == flat_indices


def _flat(index: tuple[int, ...], shape: tuple[int, ...]) -> int:
    out = 0
    for i, n in zip(index, shape, strict=True):
        out = out * n + i
    return out


@pytest.fixture(scope="module")
def pair(tiny_llama):
    clean = interp.generate(
        tiny_llama, "The earth revolves around the", max_new_tokens=1, temperature=0
    )
    ids = clean.token_ids[: clean.prompt_len].tolist()
    ids[-3] = (ids[-3] + 7) % tiny_llama.d_vocab
    corrupted = interp.generate(tiny_llama, ids, continuation=clean.continuation_ids)
    return clean, corrupted


def test_a_patchings_top_holds_values_and_its_file_labels(tiny_llama, pair, tmp_path):
    clean, corrupted = pair
    sites = ["heads", "heads-by-pos", "resid", "mlp-out"]
    result = patch(tiny_llama, clean, corrupted, sites=sites, metric=metrics.logit_diff(40, 41))
    for site in sites:
        want = [
            (as_cell(site, index)[0], value) for index, value in naive_top(result[site].effect, 10)
        ]
        assert result[site].top(10) == want
    assert all(type(cell) is Head for cell, _ in result["heads"].top(10))
    assert all(type(cell) is HeadPosition for cell, _ in result["heads-by-pos"].top(10))
    assert all(type(cell) is SitePosition for cell, _ in result["resid"].top(10))
    out = result.save(tmp_path / "p")
    stored = json.loads((out / "summary.json").read_text())["patching"]
    for site in sites:  # the file keeps the labels, as results written before values did
        assert stored[site]["top"] == [[str(c), round(v, 6)] for c, v in result[site].top(10)]
    back = Patching.load(out)
    for site in sites:
        assert back[site].top(10) == result[site].top(10)
        assert [type(c) for c, _ in back[site].top(10)] == [
            type(c) for c, _ in result[site].top(10)
        ]


def test_a_sweeps_verified_heads_are_heads_and_load_from_a_labelled_file(tiny_llama, tmp_path):
    trace = interp.generate(tiny_llama, "The earth revolves around", max_new_tokens=4, seed=0)
    triage = sweep(tiny_llama, trace, "mean", method="triage", verify=3)
    n_heads = tiny_llama.n_heads
    picked = triage.estimate.abs().flatten().argsort(descending=True)[:3].tolist()
    want = sorted(Head(i // n_heads, i % n_heads) for i in picked)
    assert triage.verified_heads == want and all(type(h) is Head for h in triage.verified_heads)
    assert triage.summary()["verified_heads"] == [f"L{h.layer}H{h.head}" for h in want]
    directory = trace.save(tmp_path / "t")
    triage.save(directory)
    record = json.loads((directory / "summary.json").read_text())
    assert record["sweep"]["verified_heads"] == [str(h) for h in want]  # labels on disk
    back = SweepResult.load(directory)
    assert back.verified_heads == want and all(type(h) is Head for h in back.verified_heads)
    assert [h for h, _ in back.top_heads(3)] == [h for h, _ in triage.top_heads(3)]
    assert back.executor == {}  # ran in this process: no executor recorded
    for tampered in ("ray", ["kind", "ray"]):  # where it ran, if said, is an object
        record["sweep"]["executor"] = tampered
        (directory / "summary.json").write_text(json.dumps(record))
        with pytest.raises(interp.InterpError, match="field 'executor' must be an object"):
            SweepResult.load(directory)


def test_an_ablations_heads_are_heads_and_its_targets_their_labels(tiny_llama, tmp_path):
    trace = interp.generate(tiny_llama, "The earth revolves around", max_new_tokens=3, seed=0)
    for spec in ("L1H2,L0H1", [(1, 2), (0, 1)], [Head(1, 2), Head(0, 1)]):
        effect = interp.ablate(tiny_llama, trace, spec, "zero", regenerate_text=False).effect
        assert effect.heads == [Head(0, 1), Head(1, 2)]  # sorted, as the targets are checked
        assert all(type(h) is Head for h in effect.heads)
        assert effect.targets == ["L0H1", "L1H2"]
    edits = interp.ablation(tiny_llama, trace, "L0H1", "zero")
    effect = interp.ablate(tiny_llama, trace, edits, regenerate_text=False).effect
    # an ablation given as edits reads as one: its heads, labelled as the spec's are
    assert effect.heads == [Head(0, 1)] and effect.targets == ["L0H1"]
    scaled = interp.edit("blocks.0.attn.hook_z", "scale", factor=0.5, heads=[1])
    effect = interp.ablate(tiny_llama, trace, scaled, regenerate_text=False).effect
    assert effect.heads == [] and effect.targets == [e.label for e in scaled.edits]
    report = interp.ablate(tiny_llama, trace, "L1H2,L0H1", "zero", regenerate_text=False)
    summary = report.summary()
    assert summary["heads"] == ["L0H1", "L1H2"] and "targets" not in summary  # labels on disk
    back = AblationRecord.from_json(json.loads(json.dumps(summary)), tmp_path / "effect.json")
    assert back.heads == [Head(0, 1), Head(1, 2)] and back.targets == ["L0H1", "L1H2"]


def test_an_effect_json_written_before_values_loads_with_its_heads_parsed(tmp_path):
    old = {  # an effect.json from before metrics and sites: heads, by the log-prob
        "heads": ["L0H8", "L16H0"], "mode": "mean", "source": "the head's mean",
        "delta_logprob_total": -0.5, "delta_logprob": [-0.25, -0.25], "kl": [0.1, 0.2],
        "baseline_logprobs": [-1.0, -2.0], "ablated_logprobs": [-1.25, -2.25], "hardest": [0, 1],
        "baseline_text": "a", "ablated_text": "b", "first_divergence": 0,
        "baseline_divergence_char": 0, "ablated_divergence_char": 0,
    }  # fmt: skip
    directory = tmp_path / "t" / "ablations" / "L0H8_L16H0-mean"
    directory.mkdir(parents=True)
    (directory / "effect.json").write_text(json.dumps(old))
    (record,) = AblationRecord.load_all(tmp_path / "t")
    assert record.heads == [Head(0, 8), Head(16, 0)] and record.targets == old["heads"]
    assert all(type(h) is Head for h in record.heads) and record.site == "heads"
    layer_site = old | {"heads": ["L1 mlp-out"], "site": "mlp-out"}
    back = AblationRecord.from_json(layer_site, directory / "effect.json")
    assert back.heads == [] and back.targets == ["L1 mlp-out"]
    with pytest.raises(TraceFormatError, match="malformed head label 'L0'"):
        AblationRecord.from_json(old | {"heads": ["L0"]}, directory / "effect.json")
