"""Dictionaries read on traces: feature activations from the recorded hooks (equal to a forward
pass's), feature attribution summing with the bias and error terms to the layer's direct logit
attribution, feature edits equal to SAELens-style splicing (and an unchanged splice leaving the
logits alone), top contexts equal to a naive search, the report's features section in
Chromium, the CLI; and on SmolLM2, a dictionary trained within the suite, resumed end to end."""

from __future__ import annotations

import json

import pytest
import torch
from browser import assert_renders
from fakes import random_dictionary

import interp
from interp.features import (
    Dictionary,
    feature_attribution,
    feature_contexts,
    feature_edit,
    load_dictionary,
    read_features,
    save_dictionary,
    trace_features,
)
from interp.features.reading import forward_values, hook_values


@pytest.fixture(scope="module")
def tiny_trace(tiny):
    return interp.generate(tiny, "The earth revolves around the", max_new_tokens=8, seed=0)


@pytest.mark.parametrize("hook", ["blocks.1.hook_resid_post", "blocks.0.hook_mlp_out",
                                  "blocks.1.hook_attn_out", "blocks.1.hook_resid_pre"])  # fmt: skip
def test_activations_come_from_the_recorded_hooks_as_a_forward_pass_gives_them(
    tiny, tiny_trace, hook
):
    recorded = hook_values(tiny, tiny_trace, hook)
    forward = forward_values(tiny, tiny_trace, hook)
    assert recorded.shape == forward.shape == (tiny_trace.n_positions, tiny.d_model)
    assert torch.allclose(recorded, forward, atol=1e-4), (recorded - forward).abs().max()
    d = random_dictionary(tiny, hook)
    assert torch.allclose(trace_features(tiny, tiny_trace, d), d.encode(forward), atol=1e-3)


@pytest.mark.parametrize("layer", [0, 1])
def test_feature_attribution_and_its_error_sum_to_the_layers_attribution(tiny, tiny_trace, layer):
    """Independent reference: the components' attribution (embeddings, heads, biases, MLPs) of
    `direct_logit_attribution`, summed up to the layer."""
    d = random_dictionary(tiny, f"blocks.{layer}.hook_resid_post", width=48, k=5)
    fa = feature_attribution(tiny, tiny_trace, d)
    a = interp.direct_logit_attribution(tiny, tiny_trace)
    upto = slice(0, layer + 1)
    layer_total = (a.embed + a.heads[:, upto].sum((1, 2)) + a.attn_bias[:, upto].sum(1)
                   + a.mlp[:, upto].sum(1))  # fmt: skip
    assert torch.allclose(fa.total, layer_total, atol=1e-4)
    assert torch.allclose(fa.features.sum(-1) + fa.bias + fa.error, layer_total, atol=1e-4)
    # one feature by hand: activation x (decoder row . unembedding column with the final
    # norm's gain), centred for a LayerNorm, over the recorded final-norm scale
    from interp.models.surgery import norm_gain

    step = 2
    i = int(fa.activations[step].argmax())
    pos = fa.positions[step]
    target = int(tiny_trace.token_ids[pos + 1])
    w = tiny.bridge.W_U.detach()[:, target].float()
    gain = norm_gain(tiny, tiny.bridge.ln_final)
    w = w if gain is None else w * gain
    row = d.W_dec[i]
    if tiny.cfg.normalization_type in ("LN", "LNPre"):
        row = row - row.mean()
    scale = float(tiny_trace.activations["ln_final.hook_scale"][pos])
    expected = float(fa.activations[step, i]) * float(row @ w) / scale
    assert float(fa.features[step, i]) == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_a_transcoders_attribution_sums_to_its_mlps(tiny, tiny_trace):
    """A transcoder reads the MLP's input and writes its output: its features, bias and error
    sum to that MLP's own direct logit attribution."""
    g = torch.Generator().manual_seed(1)
    n, w = tiny.d_model, 40
    t = Dictionary(torch.randn(n, w, generator=g) / n**0.5, torch.randn(w, generator=g) * 0.1,
                   torch.randn(w, n, generator=g) / n**0.5, torch.randn(n, generator=g) * 0.1,
                   "topk", "blocks.1.mlp.hook_in", hook_out="blocks.1.hook_mlp_out",
                   k=5)  # fmt: skip
    fa = feature_attribution(tiny, tiny_trace, t)
    mlp = interp.direct_logit_attribution(tiny, tiny_trace).mlp[:, 1]
    assert torch.allclose(fa.total, mlp, atol=1e-4)
    assert torch.allclose(fa.features.sum(-1) + fa.bias + fa.error, mlp, atol=1e-4)
    x = forward_values(tiny, tiny_trace, "blocks.1.mlp.hook_in")[torch.tensor(fa.positions)]
    assert torch.allclose(fa.activations, t.encode(x), atol=1e-5)  # read from the MLP's input


def _logits(model, ids, hooks=()):
    with torch.no_grad(), model.bridge.hooks(fwd_hooks=list(hooks)):
        return model.bridge(ids, return_type="logits")


def test_a_feature_edit_is_saelens_splicing_with_the_error_kept(tiny, tiny_trace, tmp_path):
    d = random_dictionary(tiny, "blocks.1.hook_resid_post", width=40, k=5)
    ids = tiny_trace.token_ids[None]
    clean = _logits(tiny, ids)

    def splice(change):
        def hook(x, hook=None):
            f = d.encode(x)
            error = x - d.decode(f)
            return d.decode(change(f.clone())) + error

        return [(d.hook, hook)]

    unchanged = _logits(tiny, ids, splice(lambda f: f))
    assert torch.allclose(unchanged, clean, atol=1e-5)
    f = d.encode(hook_values(tiny, tiny_trace, d.hook))
    busy = int((f > 0).sum(0).argmax())

    def ablated(f):
        f[..., busy] = 0
        return f

    reference = _logits(tiny, ids, splice(ablated))
    assert not torch.allclose(reference, clean, atol=1e-3)
    save_dictionary(d, tmp_path / "d")
    replayed = interp.Intervention.from_json(feature_edit(d, busy, "ablate").to_json())
    with torch.no_grad():
        from interp.edits.applying import Row, hooks

        ours = _logits(tiny, ids, hooks(replayed, tiny, [Row.of(tiny_trace)]))
    assert torch.allclose(ours, reference, atol=1e-5)

    def clamped(f):
        f[..., busy] = 3.0
        return f

    clamp = feature_edit(d, busy, "clamp", 3.0)
    with torch.no_grad():
        ours = _logits(tiny, ids, hooks(clamp, tiny, [Row.of(tiny_trace)]))
    assert torch.allclose(ours, _logits(tiny, ids, splice(clamped)), atol=1e-5)


def test_feature_edits_refuse_in_one_line(tiny):
    from interp.errors import InvalidSettingError

    d = random_dictionary(tiny, "blocks.1.hook_resid_post")
    with pytest.raises(InvalidSettingError, match="out of range"):
        feature_edit(d, 999, "ablate")
    with pytest.raises(InvalidSettingError, match="needs value="):
        feature_edit(d, 1, "clamp")
    with pytest.raises(InvalidSettingError, match="save the dictionary first"):
        feature_edit(d, 1, "ablate").to_json()
    with pytest.raises(
        InvalidSettingError, match="reads L1.resid_post; the edit.s site is L0.resid_post"
    ):
        interp.edit("blocks.0.hook_resid_post", "feature", dictionary=d, features=[1])
    t = Dictionary(d.W_enc, d.b_enc, d.W_dec, d.b_dec, "topk", "blocks.1.mlp.hook_in",
                   hook_out="blocks.1.hook_mlp_out", k=6)  # fmt: skip
    with pytest.raises(InvalidSettingError, match="transcoder"):
        feature_edit(t, 1, "ablate")
    steer = feature_edit(t, [1, 2], "steer", 2.0)
    assert steer.edits[0].hook == "blocks.1.hook_mlp_out"
    assert torch.allclose(steer.edits[0].params["vector"], t.W_dec[[1, 2]].sum(0))


def test_top_contexts_equal_a_naive_search(tiny):
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(0, 250, (6, 20), generator=g)
    d = random_dictionary(tiny, "blocks.1.hook_resid_post", width=24, k=4)
    (found,) = feature_contexts(tiny, [d], ids=ids, top=3, batch=4)
    acts = []
    for row in ids:
        with torch.no_grad(), tiny.bridge.hooks(fwd_hooks=[]):
            _, cache = tiny.bridge.run_with_cache(row[None], names_filter=[d.hook])
        acts.append(d.encode(cache[d.hook][0])[1:])  # positions 1..
    f = torch.stack(acts)  # [window, pos-1, d_sae]
    assert found.tokens == 6 * 19
    assert torch.allclose(found.density, (f > 0).float().mean((0, 1)))
    for i in range(24):
        flat = f[..., i].flatten()
        values, where = flat.sort(descending=True)
        assert torch.allclose(found.values[i], values[:3].clamp_min(0), atol=1e-4)
        if float(values[0]) > 0:
            w, p = divmod(int(where[0]), 19)
            snippet = found.context_ids[i, 0]
            assert int(snippet[12]) == int(ids[w, p + 1])  # the activating token, index BEFORE
            assert int(snippet[11]) == (int(ids[w, p]) if p + 1 >= 1 else -1)


@pytest.mark.browser
def test_the_report_shows_features_and_renders_in_chromium(tiny_llama, tmp_path):
    from interp.cli.workflow import analyze_into
    from interp.report.build import build_report

    out = tmp_path / "t"
    trace = interp.generate(tiny_llama, "The earth revolves around", max_new_tokens=10, seed=0)
    trace.save(out)
    analyze_into(tiny_llama, trace, out)
    page = build_report(out)
    assert "No dictionary has been read on this trace" in page.read_text()
    assert "make features" in page.read_text()
    d = random_dictionary(tiny_llama, "blocks.1.hook_resid_post", width=32, k=4)
    save_dictionary(d, tmp_path / "d")
    d = load_dictionary(tmp_path / "d", tiny_llama)
    g = torch.Generator().manual_seed(1)
    (c,) = feature_contexts(tiny_llama, [d], ids=torch.randint(0, 250, (4, 16), generator=g))
    c.save(tmp_path / "d")
    r = read_features(tiny_llama, trace, d, top=3)
    assert len(r.top) == trace.n_generated and all(len(row) <= 3 for row in r.top)
    assert all(card.density is not None for card in r.cards.values())
    r.save(out)
    html = build_report(out).read_text()
    assert "Dictionary features" in html and 'class="card"' in html
    cells = [c for c in html.split('<td class="tok-cell">')[1:]]
    assert len(cells) == trace.n_generated
    assert all(cell.split("</td>")[0].strip() for cell in cells), "a blank token cell"
    assert_renders(out / "index.html", tmp_path)


def test_features_cli_and_the_dictionaries_list(tmp_path, monkeypatch, capsys, smollm):
    from interp.cli import main
    from interp.features import catalog

    monkeypatch.setattr(catalog, "dictionaries_root", lambda: tmp_path / "cache" / "dictionaries")
    assert main(["dictionaries", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    d = random_dictionary(smollm, "blocks.3.hook_resid_post", width=32, k=4)
    d.model_name = "smollm2-135m"
    d.info["evaluation"] = {"fvu": 0.5, "loss_recovered": 0.7}
    folder = tmp_path / "cache" / "dictionaries" / "smollm2-135m" / d.hook
    save_dictionary(d, folder)
    assert main(["dictionaries", "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["hook"] == d.hook and entry["width"] == 32 and entry["model"] == "smollm2-135m"
    assert entry["evaluation"]["fvu"] == 0.5 and entry["architecture"] == "topk"
    trace_dir = tmp_path / "trace"
    assert main(["generate", "The cat sat", "--max-new-tokens", "4", "--out", str(trace_dir)]) == 0
    capsys.readouterr()
    assert main(["features", str(trace_dir), "--dictionary", str(folder)]) == 0
    printed = capsys.readouterr().out
    assert "L3.resid_post (" in printed and "#" in printed
    saved = json.loads((trace_dir / "features.json").read_text())
    assert len(saved["readouts"]) == 1 and len(saved["readouts"][0]["top"]) == 4
    other = random_dictionary(smollm, "blocks.3.hook_resid_post", width=16)
    save_dictionary(other, tmp_path / "wrong")
    bad = Dictionary(other.W_enc[:100], other.b_enc, other.W_dec[:, :100], other.b_dec[:100],
                     "topk", other.hook, k=6)  # fmt: skip
    save_dictionary(bad, tmp_path / "narrow")
    assert main(["features", str(trace_dir), "--dictionary", str(tmp_path / "narrow")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "width 100" in err[0] and "576" in err[0]
    assert json.loads((trace_dir / "features.json").read_text()) == saved  # nothing half-written
    assert main(["features", str(trace_dir), "--dictionary", str(tmp_path / "nothing")]) == 2


def test_a_small_smollm_dictionary_beats_a_random_one_and_resumes_end_to_end(smollm, tmp_path):
    """Trained here on a few thousand corpus tokens at an early layer: its held-out FVU is
    below a random dictionary's; stopped after one chunk and run again, it reaches the
    weights of a run that was never interrupted."""
    from interp.features import evaluate_dictionary, train_dictionary
    from interp.features.train import checkpoint_path

    hook = "blocks.2.hook_resid_post"
    kwargs = dict(width=128, k=8, tokens=3 * 16 * 127, chunk_windows=16, evaluate_tokens=1024,
                  contexts_tokens=1024, settings={"batch": 256, "lr": 2e-3})  # fmt: skip
    (straight,) = train_dictionary(smollm, hook, tmp_path / "a", **kwargs)
    assert train_dictionary(smollm, hook, tmp_path / "b", stop_after_chunks=1, **kwargs) == []
    assert checkpoint_path(tmp_path / "b").exists() and not (tmp_path / "b").exists()
    (resumed,) = train_dictionary(smollm, hook, tmp_path / "b", **kwargs)
    assert not checkpoint_path(tmp_path / "b").exists()
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(straight, name), getattr(resumed, name)), name
    loaded = load_dictionary(tmp_path / "a", smollm)
    assert (tmp_path / "a" / "contexts.safetensors").exists()
    trained = evaluate_dictionary(smollm, loaded, tokens=2048)
    assert trained.fvu == pytest.approx(loaded.info["evaluation"]["fvu"], rel=0.3)
    random = random_dictionary(smollm, hook, width=128, k=8)
    baseline = evaluate_dictionary(smollm, random, tokens=2048)
    assert trained.fvu < 0.8 * baseline.fvu, (trained.fvu, baseline.fvu)
    assert trained.l0 == pytest.approx(8, abs=0.01)


def test_feature_samples_have_density_matched_controls(tiny_llama, tmp_path):
    from interp.errors import InvalidSettingError
    from interp.features import FeatureContexts, feature_samples
    from interp.features.edits import density_controls

    d = random_dictionary(tiny_llama, "blocks.1.hook_resid_post", width=32, k=6)
    save_dictionary(d, tmp_path / "d")
    d = load_dictionary(tmp_path / "d")
    with pytest.raises(InvalidSettingError, match="stored densities"):
        density_controls(d, [3], 2)
    g = torch.Generator().manual_seed(2)
    (c,) = feature_contexts(tiny_llama, [d], ids=torch.randint(0, 250, (8, 24), generator=g))
    c.save(tmp_path / "d")
    density = FeatureContexts.load(tmp_path / "d").density
    target = int(density.argmax())
    sets = density_controls(d, [target], 3, seed=1)
    for (other,) in sets:
        assert other != target
        assert density[target] / 2 < density[other] < density[target] * 2
    trace = interp.generate(tiny_llama, "The earth revolves", max_new_tokens=6, seed=0)
    result = feature_samples(tiny_llama, trace, d, target, samples=3, controls=2, seed=1)
    assert len(result.controls) == 2 and len(result.effect.pairs) == 3
    assert "feature" in result.effect.label
    for control in result.controls:  # the same seeds: one baseline text per pair, shared
        assert control.label != result.effect.label
        assert [p.baseline_text for p in control.pairs] == [
            p.baseline_text for p in result.effect.pairs
        ]
