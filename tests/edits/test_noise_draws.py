"""A noise edit's draws and ROME's scale (`interp.edits.noise`), and the values a patching
result holds: draws=K equals a naive loop of K edits with K seeds over clean runs replicated by
hand; the patched metric equals a plain Hugging Face run under the patch; scale="rome" equals
three standard deviations of the corrupted tokens' embeddings computed by hand."""

import json

import pytest
import torch
from conftest import hf_logits, reference

import interp
from interp import metrics
from interp.edits import Intervention, applying, edit, span
from interp.errors import InvalidSettingError
from interp.generation.generate import record_under
from interp.interventions import Patching
from interp.interventions.patching import patch

PROMPTS = ["The Eiffel Tower is in the city of", "The Eiffel Tower is in the city in"]
METRIC = metrics.logit_diff(40, 41)


@pytest.fixture(scope="module")
def cleans(tiny_llama):
    return interp.generate(tiny_llama, PROMPTS, max_new_tokens=1, temperature=0)


def test_draws_equal_a_naive_loop_of_seeds_over_replicated_clean_runs(tiny_llama, cleans):
    noise = edit("hook_embed", "noise", positions=span("Eiffel Tower"), seed=5, draws=3)
    got = patch(tiny_llama, cleans, noise, sites=["heads", "resid"], metric=METRIC)
    pairs = [
        (clean, record_under(tiny_llama, clean, edit("embed", "noise", positions=span(
            "Eiffel Tower"), seed=5 + k)))
        for clean in cleans
        for k in range(3)
    ]  # fmt: skip
    want = patch(
        tiny_llama,
        interp.TraceSet([c for c, _ in pairs]),
        interp.TraceSet([k for _, k in pairs]),
        sites=["heads", "resid"],
        metric=METRIC,
    )
    assert got.rows == 6 and got.draws == 3 and want.draws == 1
    for site in ("heads", "resid"):
        g, w = got[site], want[site]
        for name in ("per_row", "patched_per_row", "effect", "stderr", "patched"):
            torch.testing.assert_close(getattr(g, name), getattr(w, name), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(g.clean_per_row, w.clean_per_row)
        torch.testing.assert_close(g.corrupted_per_row, w.corrupted_per_row)
    corrupted = got["heads"].corrupted_per_row
    assert len(set(corrupted.tolist())) == 6  # every draw its own noise, no identical rows
    # each corrupted row records the one seed it ran under, and replays from it
    rows = record_under(tiny_llama, cleans, noise)
    seeds = [r.intervention.edits[0].params["seed"] for r in rows]
    assert seeds == [5, 6, 7, 5, 6, 7] and all("draws" not in r.intervention.to_json()["edits"][0]
                                                .get("params", {}) for r in rows)  # fmt: skip
    one = record_under(tiny_llama, cleans[0], noise)
    assert isinstance(one, interp.TraceSet) and len(one) == 3
    assert got.under["corrupted"].startswith("noise embed at")


def test_draws_are_checked_where_built_and_round_trip_through_json():
    built = edit("embed", "noise", positions=span("Eiffel Tower"), seed=2, draws=4)
    text = json.dumps(built.to_json())
    back = Intervention.from_json(json.loads(text))
    assert back.to_json() == built.to_json() and back.edits[0].params["draws"] == 4
    assert "4 draws" in built.label
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(InvalidSettingError, match="draws= must be a whole number") as err:
            edit("embed", "noise", draws=bad)
        assert "\n" not in str(err.value)
    with pytest.raises(InvalidSettingError, match="takes no draws="):
        edit("embed", "zero", draws=2)
    with pytest.raises(InvalidSettingError, match="past 2\\*\\*64 - 1"):
        edit("embed", "noise", seed=2**64 - 1, draws=2)
    rome = edit("embed", "noise", scale="rome")
    assert Intervention.from_json(json.loads(json.dumps(rome.to_json()))).edits[0].params == {
        "scale": "rome"
    }
    with pytest.raises(InvalidSettingError, match="goes with the embed site"):
        edit("L0.resid_pre", "noise", scale="rome")
    with pytest.raises(InvalidSettingError, match='a number or "rome"'):
        edit("embed", "noise", scale="ROME")


def test_an_unresolved_draw_is_refused_where_it_would_run(tiny_llama, cleans):
    noise = edit("embed", "noise", draws=2)
    with pytest.raises(InvalidSettingError, match="resolved over the whole set"):
        interp.generate(tiny_llama, PROMPTS[0], max_new_tokens=1, intervention=noise)
    with pytest.raises(InvalidSettingError, match="different numbers of draws"):
        record_under(tiny_llama, cleans, noise + edit("embed", "noise", draws=3, seed=9))


def test_the_patched_metric_is_a_plain_run_under_the_patch(tiny_llama, cleans, tmp_path):
    clean = cleans[0]
    noise = edit("embed", "noise", positions=span("Eiffel Tower"), seed=1)
    result = patch(tiny_llama, clean, noise, sites=["mlp-out"], metric=METRIC)
    hf, ids, last = reference(tiny_llama), clean.token_ids, clean.prompt_len - 1
    at = applying.positions_in(noise, clean)
    scale = 3 * float(hf.get_input_embeddings().weight.detach().std())  # the default scale
    delta = torch.zeros(clean.n_positions, hf.config.hidden_size)
    delta[at] = scale * applying.noise(1, torch.tensor(at), (hf.config.hidden_size,))
    moved = (hf.get_input_embeddings(), lambda m, a, out: out + delta[None])
    mlps = [layer.mlp for layer in hf.model.layers]
    seen = {}
    hooks = [(m, lambda m, a, out, i=i: seen.__setitem__(i, out[0].clone())) for i, m in
             enumerate(mlps)]  # fmt: skip
    clean_logits = hf_logits(hf, ids, hooks)
    noised = hf_logits(hf, ids, [moved])

    def restored(layer, pos):
        def put(m, a, out):
            out = out.clone()
            out[0, pos] = seen[layer][pos]
            return out

        logits = hf_logits(hf, ids, [moved, (mlps[layer], put)])
        return float(logits[last, 40] - logits[last, 41])

    got = result["mlp-out"]
    assert float(got.clean_per_row[0]) == pytest.approx(
        float(clean_logits[last, 40] - clean_logits[last, 41]), abs=1e-4
    )
    assert float(got.corrupted_per_row[0]) == pytest.approx(
        float(noised[last, 40] - noised[last, 41]), abs=1e-4
    )
    for layer in range(tiny_llama.n_layers):
        for pos in (at[-1], last):
            want = restored(layer, pos)
            assert float(got.patched[layer, pos]) == pytest.approx(want, abs=1e-4)
            assert float(got.patched_per_row[0, layer, pos]) == pytest.approx(want, abs=1e-4)
    torch.testing.assert_close(got.patched, got.effect + result.corrupted_metric)
    # saved and read back with them; a file written before them recomputes `patched`
    back = Patching.load(result.save(tmp_path / "p"))["mlp-out"]
    for name in ("patched", "patched_per_row", "clean_per_row", "corrupted_per_row"):
        torch.testing.assert_close(getattr(back, name), getattr(got, name))
    from safetensors.torch import load_file, save_file

    file = tmp_path / "p" / "patch.safetensors"
    old = {k: v for k, v in load_file(file).items() if "patched" not in k and "clean." not in k
           and "corrupted." not in k}  # fmt: skip
    save_file(old, file)
    older = Patching.load(tmp_path / "p")["mlp-out"]
    assert older.patched_per_row is None and older.clean_per_row is None
    torch.testing.assert_close(older.patched, got.patched)


def test_the_rome_scale_is_three_deviations_of_the_corrupted_embeddings(tiny_llama, cleans):
    at = [1, 2]  # different tokens in each row: the deviation is over the whole set
    noise = edit("embed", "noise", positions=at, scale="rome", seed=3, draws=2)
    rows = record_under(tiny_llama, cleans, noise)
    hf = reference(tiny_llama)
    ids = torch.cat([c.token_ids[at] for c in cleans])
    want = 3 * float(hf.get_input_embeddings().weight.detach()[ids].std())
    scales = {r.intervention.edits[0].params["scale"] for r in rows}
    assert len(scales) == 1 and scales.pop() == pytest.approx(want, rel=1e-6) and len(rows) == 4
    # and the noise runs at that scale: the corrupted logits of a plain run by hand
    clean = cleans[1]
    delta = torch.zeros(clean.n_positions, hf.config.hidden_size)
    delta[at] = want * applying.noise(4, torch.tensor(at), (hf.config.hidden_size,))
    moved = (hf.get_input_embeddings(), lambda m, a, out: out + delta[None])
    last = clean.prompt_len - 1
    logits = hf_logits(hf, clean.token_ids, [moved])
    got = interp.evaluate(tiny_llama, rows[3], METRIC)
    assert float(got.mean) == pytest.approx(float(logits[last, 40] - logits[last, 41]), abs=1e-4)


def test_the_cli_patches_under_noise_draws(tiny_llama, tmp_path, capsys, monkeypatch):
    from interp import cli

    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    clean = tmp_path / "clean"
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "continuation": " Paris"}) + "\n"
                               for p in PROMPTS))  # fmt: skip
    assert cli.main(["generate", "--prompts", str(prompts), "--out", str(clean)]) == 0
    capsys.readouterr()
    patch_argv = ["patch", str(clean), "--noise", "span:Eiffel Tower", "--sites", "resid",
                  "--metric", "kl"]  # fmt: skip
    assert cli.main([*patch_argv, "--draws", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--draws must be at least 1" in err
    assert not (clean / "patching").exists()
    assert cli.main([*patch_argv, "--draws", "3", "--show", "patched"]) == 0
    (written,) = (clean / "patching").iterdir()
    result = Patching.load(written)
    assert result.rows == 3 * len(PROMPTS) and result.draws == 3
    assert result["resid"].patched_per_row.shape[0] == 6
    page = (written / "index.html").read_text()
    assert "3 noise draws" in page and "The heatmap shows the patched runs" in page
    assert "The heatmap shows" not in (interp.report.build_report(written) and
                                       (written / "index.html").read_text())  # fmt: skip


def test_a_window_patches_the_layers_rome_patches():
    """`window=K` at layer L: `[L - K//2, L - K//2 + K)` cut to the model, as ROME writes it
    (`range(max(0, L - K // 2), min(n, L - (-K // 2)))`), by a plain loop."""
    from interp.interventions.candidates import window_layers

    for n in (1, 2, 5, 30):
        for k in range(1, 12):
            for layer in range(n):
                rome = list(range(max(0, layer - k // 2), min(n, layer - (-k // 2))))
                assert window_layers(layer, k, n) == rome
    assert window_layers(12, 10, 30) == list(range(7, 17))


def test_a_circuits_noise_draws_are_its_rows_as_patchings_are(tiny_llama, cleans):
    noise = edit("embed", "noise", positions=span("Eiffel Tower"), seed=2, draws=2)
    got = interp.circuit(tiny_llama, cleans, noise, metric=METRIC, method="eap")
    pairs = [(c, record_under(tiny_llama, c, edit("embed", "noise", positions=span(
        "Eiffel Tower"), seed=2 + k))) for c in cleans for k in range(2)]  # fmt: skip
    want = interp.circuit(
        tiny_llama,
        interp.TraceSet([c for c, _ in pairs]),
        interp.TraceSet([k for _, k in pairs]),
        metric=METRIC,
        method="eap",
    )
    torch.testing.assert_close(got.scores, want.scores)
