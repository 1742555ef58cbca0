"""The classic IOI question on the embedded model, the way the interventions issue asked it:
a logit difference measured, ablated and attributed, each against plain Hugging Face by hand."""

import json

import pytest
import torch

import interp
from interp import metrics
from interp.interventions.patching_result import Patching

pytestmark = pytest.mark.real_model

IOI = "When Mary and John went to the store, John gave a drink to"
HEADS = "L23H3,L29H1,L23H0,L23H1,L23H7"


@pytest.fixture(scope="module")
def ioi(smollm):
    return interp.generate(smollm, IOI, max_new_tokens=1, temperature=0.0)


def hf_diff(hf, ids, edit=None):
    """HF's logit(" Mary") - logit(" John") at the last prompt position; `edit(layer, x)` may
    change each layer's o_proj input (the heads' z, [batch, pos, head * d_head])."""
    handles = []
    if edit is not None:
        for layer, block in enumerate(hf.model.layers):

            def pre(mod, args, layer=layer):
                return (edit(layer, args[0].clone()),)

            handles.append(block.self_attn.o_proj.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            logits = hf(ids[None]).logits[0].float()
    finally:
        for h in handles:
            h.remove()
    return logits, lambda mary, john, at: float(logits[at, mary] - logits[at, john])


def test_the_logit_difference_ablated_and_attributed_against_hugging_face(smollm, smollm_hf, ioi):
    mary, john = (metrics.single_token(smollm, t) for t in (" Mary", " John"))
    at = ioi.prompt_len - 1
    ids = ioi.token_ids[: ioi.prompt_len + 1].to(smollm.device)
    _, diff = hf_diff(smollm_hf, ids)
    base = diff(mary, john, at)
    assert 5.5 < base < 6.7  # the model prefers " Mary" (6.12 here)

    report = interp.ablate(
        smollm, ioi, HEADS, metric=metrics.logit_diff(" Mary", " John"), regenerate_text=False
    )
    effect = report.effect
    assert effect.baseline_metric == pytest.approx(base, abs=1e-3)

    # by hand: each head's z replaced by its mean over the trace's positions, in plain HF
    heads = interp.parse_heads(HEADS, smollm.n_layers, smollm.n_heads)
    d_head = smollm.d_model // smollm.n_heads
    seen = {}

    def keep(layer, x):
        seen[layer] = x[0].view(x.shape[1], smollm.n_heads, d_head).clone()
        return x

    hf_diff(smollm_hf, ids, keep)

    def replace(layer, x):
        z = x.view(*x.shape[:2], smollm.n_heads, d_head)
        for l_, h in heads:
            if l_ == layer:
                z[0, :, h] = seen[layer][:, h].mean(0)
        return z.reshape(x.shape)

    _, ablated = hf_diff(smollm_hf, ids, replace)
    want = ablated(mary, john, at)
    assert effect.ablated_metric == pytest.approx(want, abs=1e-3)
    assert want < base - 2.0  # these heads carry most of it (6.12 -> 2.74 here)

    # TransformerLens's own cache methods, right on interp's cache
    cache = ioi.cache
    final = cache["resid_post", smollm.n_layers - 1]
    attrs = cache.logit_attrs(final[None], " Mary", " John")[0, 0].detach()
    assert float(attrs[at]) == pytest.approx(base, abs=1e-3)  # TransformerLens alone: 4.88
    for stack in (
        cache.decompose_resid(),
        cache.get_full_resid_decomposition(expand_neurons=False),
    ):
        total = cache.logit_attrs(stack, " Mary", " John").sum(0)[0, at].detach()
        assert float(total) == pytest.approx(base, abs=2e-3)
    normed = cache.apply_ln_to_stack(final[None])[0, 0, at]
    with torch.no_grad():
        assert torch.allclose(normed, smollm.bridge.ln_final(final)[0, at], atol=1e-4)
    per_head = cache.logit_attrs(cache.stack_head_results(), " Mary", " John")[:, 0, at].detach()
    dla = interp.direct_logit_attribution(smollm, ioi, answer=" Mary", distractor=" John")
    assert dla.total[0] == pytest.approx(base, abs=1e-3)
    torch.testing.assert_close(
        per_head.view(smollm.n_layers, -1), dla.heads[0], atol=1e-3, rtol=1e-3
    )


def test_the_cli_sweeps_a_set_by_each_rows_answer_with_reference_means(smollm, tmp_path, capsys):
    from interp import cli

    lines = [
        {"prompt": IOI, "answer": " Mary", "distractor": " John"},
        {"prompt": "When Tom and Anna went to the park, Anna gave a ball to", "answer": " Tom",
         "distractor": " Anna"},
    ]  # fmt: skip
    prompts = tmp_path / "ioi.jsonl"
    prompts.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    abc = tmp_path / "abc.txt"
    abc.write_text(
        "When Paul and Lisa went to the shop, Mark gave a book to\n"
        "When Sara and Jim went to the beach, Kate gave a hat to\n",
        encoding="utf-8",
    )
    out = tmp_path / "set"
    generate = ["generate", "--prompts", str(prompts), "--max-new-tokens", "1"]
    assert cli.main([*generate, "--temperature", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    argv = ["sweep", str(out), "--metric", "logit-diff", "--reference", str(abc), "--triage"]
    assert cli.main([*argv, "--verify", "20"]) == 0
    printed = capsys.readouterr().out
    assert "triage sweep (mean ablation over the reference, mean over 2 rows)" in printed
    assert "largest effects on logit-diff:<answer>,<distractor>:" in printed and " ± " in printed
    saved = json.loads((out / "summary.json").read_text())["sweep"]
    assert saved["metric"] == "logit-diff:<answer>,<distractor>" and saved["rows"] == 2
    assert saved["top_heads"] and saved["top_heads"][0][0].startswith("L")
    result = interp.interventions.SweepResult.load(out)
    assert result.delta_rows.shape == (2, smollm.n_layers, smollm.n_heads)

    bad = ["sweep", str(out), "--metric", 'logit-diff:" Mary Jane"," John"']
    assert cli.main(bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tokenizes as" in err, err


def test_head_patching_equals_transformer_lens_and_the_cli_writes_it(smollm, tmp_path, capsys):
    from transformer_lens import patching as tl_patching

    from interp import cli
    from interp.interventions.patching import patch

    clean_lines = [
        {"prompt": IOI, "continuation": " Mary", "answer": " Mary", "distractor": " John"},
        {"prompt": "When Tom and Anna went to the park, Anna gave a ball to", "continuation":
         " Tom", "answer": " Tom", "distractor": " Anna"},
    ]  # fmt: skip
    abc = ["When Paul and Lisa went to the store, Mark gave a drink to",
           "When Sara and Jim went to the park, Kate gave a ball to"]  # fmt: skip
    corrupt_lines = [
        {"prompt": p, "continuation": c["continuation"]}
        for p, c in zip(abc, clean_lines, strict=True)
    ]
    for name, lines in (("clean", clean_lines), ("abc", corrupt_lines)):
        file = tmp_path / f"{name}.jsonl"
        file.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
        assert cli.main(["generate", "--prompts", str(file), "--out", str(tmp_path / name)]) == 0
    clean = interp.TraceSet.load(tmp_path / "clean", model=smollm)
    corrupted = interp.TraceSet.load(tmp_path / "abc", model=smollm)

    ours = patch(smollm, clean[0], corrupted[0], sites=["heads"], metric=metrics.logit_diff())
    mary, john = (metrics.single_token(smollm, t) for t in (" Mary", " John"))
    last = clean[0].prompt_len - 1
    with torch.no_grad():
        _, clean_cache = smollm.bridge.run_with_cache(clean[0].token_ids[None])
        want = tl_patching.get_act_patch_attn_head_out_all_pos(
            smollm.bridge,
            corrupted[0].token_ids[None],
            clean_cache,
            lambda logits: logits[0, last, mary] - logits[0, last, john],
        )
    got = ours["heads"].effect + ours.corrupted_metric
    torch.testing.assert_close(got, want.float(), atol=2e-3, rtol=1e-4)

    capsys.readouterr()
    argv = ["patch", str(tmp_path / "clean"), str(tmp_path / "abc"), "--sites", "heads,resid"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "denoise patching by logit-diff:<answer>,<distractor> (means over 2 pairs)" in printed
    name = Patching.dirname("denoise", "logit-diff:<answer>,<distractor>")
    assert name.startswith("denoise-logit-diff-answer-distractor-")
    out = tmp_path / "clean" / "patching" / name
    summary = json.loads((out / "summary.json").read_text())["patching"]
    assert summary["rows"] == 2 and summary["direction"] == "denoise"
    assert len(summary["heads"]["top"]) == 10 and summary["resid"]["top"][0][0].startswith("L")
    from safetensors.torch import load_file

    tensors = load_file(out / "patch.safetensors")
    assert tensors["heads.per_row"].shape == (2, smollm.n_layers, smollm.n_heads)
    assert tensors["resid.effect"].shape == (smollm.n_layers, clean[0].prompt_len)  # the prompt's
    assert {"heads.stderr", "heads.effect_normalized"} <= set(tensors)
    assert cli.main([*argv[:3], "--sites", "neurons"]) == 2
    assert "unknown site 'neurons'" in capsys.readouterr().err


def test_path_patching_equals_transformer_lens_and_the_cli_reports_it(smollm, tmp_path, capsys):
    """Into a name mover's query: TransformerLens's direct path from each sender of layer 22;
    into the logits: the sender's write added to the final norm's input in plain HF."""
    from transformer_lens import patching as tl_patching

    from interp import cli
    from interp.interventions.path_patching import path_patch

    abc = "When Paul and Lisa went to the store, Mark gave a drink to"
    clean = interp.generate(smollm, IOI, continuation=" Mary")
    clean.meta = {"answer": " Mary", "distractor": " John"}
    corrupted = interp.generate(smollm, abc, continuation=" Mary")
    mary, john = (metrics.single_token(smollm, t) for t in (" Mary", " John"))
    last = clean.prompt_len - 1

    def metric(logits):
        return logits[0, last, mary] - logits[0, last, john]

    with torch.no_grad():
        _, clean_cache = smollm.bridge.run_with_cache(clean.token_ids[None])
        _, bad_cache = smollm.bridge.run_with_cache(corrupted.token_ids[None])
        base = float(metric(smollm.bridge(corrupted.token_ids[None])))
        want = torch.stack([
            tl_patching.get_act_patch_direct_path(
                smollm.bridge, corrupted.token_ids[None], clean_cache, bad_cache, metric, 22, h,
                "q", verbose=False,
            )
            for h in range(smollm.n_heads)
        ]).float()  # fmt: skip  # [sender head, layer, head]
    for receiver in ((23, 3), (29, 1)):
        got = path_patch(
            smollm, clean, corrupted, receivers=f"L{receiver[0]}H{receiver[1]}.q",
            metric=metrics.logit_diff(),
        )["path"]  # fmt: skip
        torch.testing.assert_close(
            got.effect[22] + base, want[:, receiver[0], receiver[1]], atol=1e-3, rtol=1e-4
        )
        assert got.effect[receiver[0] :].abs().max() == 0  # no path from there

    into_logits = path_patch(smollm, clean, corrupted, metric=metrics.logit_diff())["path"]
    z = "blocks.23.attn.hook_z"
    w_o = smollm.bridge.blocks[23].attn.W_O[3]
    delta = (clean_cache[z][0, :, 3] - bad_cache[z][0, :, 3]) @ w_o
    final = bad_cache[f"blocks.{smollm.n_layers - 1}.hook_resid_post"][0] + delta
    with torch.no_grad():
        logits = smollm.bridge.unembed(smollm.bridge.ln_final(final[None]))
    assert float(into_logits.effect[23, 3]) == pytest.approx(float(metric(logits)) - base, abs=1e-3)
    assert float(into_logits.effect[23, 3]) > 1.0  # a name mover writes " Mary" directly

    for name, trace in (("clean", clean), ("abc", corrupted)):
        trace.save(tmp_path / name)
    capsys.readouterr()
    argv = ["path-patch", str(tmp_path / "clean"), str(tmp_path / "abc"), "--receivers"]
    assert cli.main([*argv, "L23H3.q"]) == 0
    printed = capsys.readouterr().out
    assert "denoise path-patching into L23H3.q by logit-diff" in printed
    name = Patching.dirname("denoise", "logit-diff:<answer>,<distractor>", "L23H3.q")
    assert name.startswith("path-denoise-logit-diff-answer-distractor-l23h3-q-")
    out = tmp_path / "clean" / "patching" / name
    summary = json.loads((out / "summary.json").read_text())["patching"]
    assert summary["receivers"] == "L23H3.q" and summary["path"]["top"][0][0].startswith("L")
    page = (out / "index.html").read_text()
    assert "path patching into L23H3.q" in page and (out / "figures" / "path.png").exists()
    assert cli.main([*argv, "L23H3.x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown receiver 'L23H3.x'" in err
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # nothing else written
    assert cli.main([*argv[:3], "--receivers", "L23H3.k"]) == 2
    assert "grouped-query attention" in capsys.readouterr().err


def test_every_layer_site_equals_transformer_lens_on_the_embedded_model(smollm):
    """resid, attn-out and mlp-out patching against TransformerLens's functions, on a few
    layers (its `index_df`) at every position."""
    import pandas as pd
    from transformer_lens import patching as tl_patching

    from interp.interventions.patching import patch

    clean = interp.generate(smollm, IOI, continuation=" Mary")
    clean.meta = {"answer": " Mary", "distractor": " John"}
    corrupted = interp.generate(
        smollm, "When Paul and Lisa went to the store, Mark gave a drink to", continuation=" Mary"
    )
    mary, john = (metrics.single_token(smollm, t) for t in (" Mary", " John"))
    last = clean.prompt_len - 1
    sites = ["resid", "attn-out", "mlp-out"]
    ours = patch(smollm, clean, corrupted, sites=sites, metric=metrics.logit_diff())
    layers = [0, 14, 23, 29]
    cells = pd.DataFrame(
        [(layer, pos) for layer in layers for pos in range(clean.prompt_len)],
        columns=["layer", "pos"],
    )
    with torch.no_grad():
        _, clean_cache = smollm.bridge.run_with_cache(clean.token_ids[None])
        for site, fn in (("resid", tl_patching.get_act_patch_resid_pre),
                         ("attn-out", tl_patching.get_act_patch_attn_out),
                         ("mlp-out", tl_patching.get_act_patch_mlp_out)):  # fmt: skip
            want = fn(
                smollm.bridge, corrupted.token_ids[None], clean_cache,
                lambda logits: logits[0, last, mary] - logits[0, last, john], index_df=cells,
                index_axis_names=None,
            ).float().view(len(layers), -1)  # fmt: skip
            got = ours[site].effect[layers] + ours.corrupted_metric
            assert (want - ours.corrupted_metric).abs().max() > 1.0, site  # real effects
            torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-4)
