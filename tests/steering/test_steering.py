"""Steering: vectors against a hand computation over recorded residuals, `add` against a plain
Hugging Face forward pre-hook, steered pairs against single generations with their seeds, the
measures against hand computations, the separability of planted and random directions, the
vector file, the command line, and the shipped concept on SmolLM2 against its controls."""

import json

import pytest
import torch
from conftest import reference

import interp
from interp import cli
from interp.errors import InvalidSettingError, ModelMismatchError
from interp.generation.generate import row_seed
from interp.steering import (
    SteeringVector,
    concept_words,
    separability,
    steer_eval,
    steering_vector,
)
from interp.steering.measures import repetition, words_of

POSITIVE = ["The earth revolves around the sun", "The sun is a star", "The moon goes round"]
NEGATIVE = ["A cat sat on the mat", "The dog ran in the park", "Birds fly over the sea"]
DATA = "experiments/data/weddings/"


def blocks(hf):
    return hf.transformer.h if hasattr(hf, "transformer") else hf.model.layers


def resid(model, prompt, layer):
    """The recorded stream entering `layer` at each prompt position, one run per prompt."""
    name = f"blocks.{layer}.hook_resid_pre"
    run = interp.generate(model, prompt, max_new_tokens=1, temperature=0, hooks=[name])
    return run.activations[name][: run.prompt_len].float()


def test_diffmean_and_caa_equal_a_hand_computation_over_recorded_residuals(tiny):
    for position in ("last", "mean"):
        v = steering_vector(tiny, POSITIVE, NEGATIVE, layer=1, position=position)

        def read(p, position=position):
            stream = resid(tiny, p, 1)
            return stream[-1] if position == "last" else stream[1:].mean(0)

        pos = torch.stack([read(p) for p in POSITIVE])
        neg = torch.stack([read(p) for p in NEGATIVE])
        torch.testing.assert_close(v.vector, pos.mean(0) - neg.mean(0), atol=1e-5, rtol=1e-4)
    caa = steering_vector(tiny, POSITIVE, NEGATIVE, layer=1, method="caa", position="last")
    pairs = torch.stack([resid(tiny, p, 1)[-1] - resid(tiny, n, 1)[-1]
                         for p, n in zip(POSITIVE, NEGATIVE, strict=True)])  # fmt: skip
    torch.testing.assert_close(caa.vector, pairs.mean(0), atol=1e-5, rtol=1e-4)
    norms = torch.cat([resid(tiny, p, 1)[1:].norm(dim=-1) for p in POSITIVE + NEGATIVE])
    assert caa.resid_norm == pytest.approx(float(norms.median()), rel=1e-4)
    assert caa.sets["positive"]["size"] == 3 and caa.method == "caa"


def test_every_layer_at_once_equals_each_layer_alone(tiny):
    every = steering_vector(tiny, POSITIVE, NEGATIVE)
    assert len(every.vectors) == tiny.n_layers
    one = steering_vector(tiny, POSITIVE, NEGATIVE, layer=1)
    torch.testing.assert_close(every.at(1).vector, one.vector)
    assert every.separability[1] == one.separability
    assert every.best().separability == max(every.separability, key=lambda e: e.value)


def test_separability_of_a_planted_direction_is_near_one_and_of_noise_near_chance():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(64, generator=g)
    d = d / d.norm()
    planted = [
        separability(torch.randn(40, 64, generator=g) + 3 * d,
                     torch.randn(40, 64, generator=g) - 3 * d, seed=s)
        for s in range(5)
    ]  # fmt: skip
    assert min(e.lo for e in planted) >= 0.95
    noise = separability(torch.randn(40, 64, generator=g), torch.randn(40, 64, generator=g))
    assert abs(noise.value - 0.5) < 0.08 and noise.lo < 0.5 < noise.hi


def hf_greedy(hf, ids, layer, added, new_tokens, from_position=0):
    """Greedy decoding by full forwards with a forward pre-hook adding `added` to the input of
    block `layer` at positions >= `from_position`: the tokens and their log-probs."""

    def pre(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        x = x.clone()
        x[:, from_position:] += added.to(x.dtype)
        if args:
            return (x, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": x}

    handle = blocks(hf)[layer].register_forward_pre_hook(pre, with_kwargs=True)
    tokens, logprobs = list(ids), []
    try:
        with torch.no_grad():
            for _ in range(new_tokens):
                lp = hf(torch.tensor([tokens])).logits[0, -1].float().log_softmax(-1)
                tokens.append(int(lp.argmax()))
                logprobs.append(float(lp.max()))
    finally:
        handle.remove()
    return tokens[len(ids) :], torch.tensor(logprobs)


@pytest.mark.parametrize("positions", ["all", "generated"])
def test_add_equals_a_hugging_face_pre_hook_in_tokens_and_log_probs(tiny, positions):
    g = torch.Generator().manual_seed(1)
    v = SteeringVector.given(tiny, torch.randn(tiny.d_model, generator=g), layer=1)
    steer = v.intervention(3.0, positions=positions)
    run = interp.generate(tiny, "The earth revolves", max_new_tokens=8, temperature=0,
                          intervention=steer, stop_at_eos=False)  # fmt: skip
    ids = run.token_ids[: run.prompt_len].tolist()
    start = 0 if positions == "all" else run.prompt_len
    tokens, lps = hf_greedy(reference(tiny), ids, 1, 3.0 * v.vector, 8, start)
    assert run.continuation_ids == tokens
    torch.testing.assert_close(run.token_logprobs.float(), lps, atol=1e-4, rtol=1e-4)
    plain = interp.generate(tiny, "The earth revolves", max_new_tokens=8, temperature=0,
                            stop_at_eos=False)  # fmt: skip
    assert plain.continuation_ids != tokens  # the vector moved the text


def test_project_and_set_act_on_the_component_along_the_vector(tiny):
    v = SteeringVector.given(tiny, torch.randn(tiny.d_model), layer=1)
    name = "blocks.1.hook_resid_pre"
    unit = v.vector / v.norm
    for op, want in (("project", 0.0), ("set", 2.5 * v.norm)):
        run = interp.generate(tiny, "The earth", max_new_tokens=2, temperature=0, hooks=[name],
                              intervention=v.intervention(2.5, op=op))  # fmt: skip
        along = run.activations[name].float() @ unit
        torch.testing.assert_close(along, torch.full_like(along, want), atol=1e-3, rtol=1e-4)


def test_resid_units_scale_by_the_streams_typical_norm(tiny):
    v = steering_vector(tiny, POSITIVE, NEGATIVE, layer=1)
    edit = v.intervention(0.5, unit="resid").edits[0]
    assert edit.params["scale"] == pytest.approx(0.5 * v.resid_norm / v.norm)
    given = SteeringVector.given(tiny, v.vector, 1)
    with pytest.raises(InvalidSettingError, match="no residual norm"):
        given.intervention(1.0, unit="resid")


@pytest.fixture(scope="module")
def evaluation(tiny_llama):
    v = SteeringVector.given(tiny_llama, torch.randn(tiny_llama.d_model), layer=1)
    result = steer_eval(
        tiny_llama, ["The earth revolves", "The sun"], v, scales=[0.0, 4.0], samples=3,
        controls=2, max_new_tokens=6, concept_words=["the", "sun", "earth"],
        prompt_baseline="Talk about the sun.", seed=3,
    )  # fmt: skip
    return v, result


def test_scale_zero_leaves_every_pair_identical_and_a_zero_vector_is_refused(
    tiny_llama, evaluation
):
    _, result = evaluation
    zero = result.steered[0]
    assert all(s.first_divergence is None for s in zero.samples)
    assert zero.first_divergence.value == 6 == zero.first_divergence.hi  # never parts: horizon
    assert zero.kl.value == pytest.approx(0, abs=1e-6)
    assert [s.text for s in zero.samples] == [s.text for s in result.unsteered.samples]
    with pytest.raises(InvalidSettingError, match="zero: it has no direction"):  # issue 47
        SteeringVector.given(tiny_llama, torch.zeros(tiny_llama.d_model), layer=1)


def test_steered_pair_k_is_a_single_generate_under_the_edit_with_its_seed(tiny_llama, evaluation):
    v, result = evaluation
    assert result.steered[1].first_divergence.value < 6
    for k in range(3):
        seed = row_seed(3, 1 * 3 + k)  # prompt 1, sample k
        for measures, steer in ((result.unsteered, None), (result.steered[1], v.intervention(4.0))):
            scored = next(s for s in measures.samples if (s.prompt, s.sample) == (1, k))
            alone = interp.generate(tiny_llama, "The sun", max_new_tokens=6, seed=seed,
                                    intervention=steer)  # fmt: skip
            assert scored.seed == seed and scored.text == alone.continuation
    baseline = result.prompt_baseline
    assert baseline is not None
    first = baseline.samples[0]
    alone = interp.generate(tiny_llama, "Talk about the sun. The earth revolves",
                            max_new_tokens=6, seed=row_seed(3, 0))  # fmt: skip
    assert first.text == alone.continuation


def test_the_measures_equal_hand_computations(tiny_llama, evaluation):
    v, result = evaluation
    hf = reference(tiny_llama)
    s = result.steered[1].samples[4]  # prompt 1, sample 1
    prompt = tiny_llama.encode("The sun")
    alone = interp.generate(tiny_llama, prompt, max_new_tokens=6, seed=row_seed(3, 4),
                            intervention=v.intervention(4.0))  # fmt: skip
    assert alone.continuation == s.text
    text = alone.continuation_ids
    ids = torch.tensor([prompt + text])
    p, n = len(prompt), len(text)

    def pre(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        x = x + 4.0 * v.vector
        return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": x})

    with torch.no_grad():
        plain = hf(ids).logits[0, p - 1 : p - 1 + n].float().log_softmax(-1)
        handle = blocks(hf)[1].register_forward_pre_hook(pre, with_kwargs=True)
        try:
            steered = hf(ids).logits[0, p - 1 : p - 1 + n].float().log_softmax(-1)
        finally:
            handle.remove()
    kl = (steered.exp() * (steered - plain)).sum(-1).mean()
    assert s.kl == pytest.approx(float(kl), abs=1e-4)
    lp = plain.gather(-1, torch.tensor(text)[:, None]).mean()
    assert s.logprob_per_token == pytest.approx(float(lp), abs=1e-4)
    words = concept_words(tiny_llama, ["the", "sun", "earth"])
    mass = steered[:, list(words.token_ids)].logsumexp(-1).mean()
    assert s.concept_mass == pytest.approx(float(mass), abs=1e-4)
    assert s.concept == pytest.approx(words.rate(s.text))
    rates = [x.concept for x in result.steered[1].samples]
    assert result.steered[1].concept.value == pytest.approx(sum(rates) / len(rates))


def test_measures_of_text_by_hand():
    assert words_of("The Bride's vows, and 3 brides!") == ["the", "bride's", "vows", "and",
                                                            "brides"]  # fmt: skip
    assert repetition([1, 2, 3, 1, 2, 3, 1, 2]) == pytest.approx(3 / 6)
    assert repetition([1, 2]) == 0.0 and repetition([1, 2, 3, 4]) == 0.0


def test_bootstrap_and_controls_are_seeded(tiny_llama, evaluation):
    v, result = evaluation
    again = steer_eval(
        tiny_llama, ["The earth revolves", "The sun"], v, scales=[0.0, 4.0], samples=3,
        controls=2, max_new_tokens=6, concept_words=["the", "sun", "earth"],
        prompt_baseline="Talk about the sun.", seed=3,
    )  # fmt: skip
    assert json.dumps(again.json()) == json.dumps(result.json())
    other = steer_eval(tiny_llama, ["The sun"], v, scales=[4.0], samples=3, controls=2,
                       max_new_tokens=6, concept_words=["sun"], seed=4)  # fmt: skip
    texts = [s.text for c in other.control_each[0] for s in c.samples]
    mine = [s.text for c in result.control_each[1] for s in c.samples if s.prompt == 1]
    assert texts != mine  # another seed, other directions (and noise)
    assert len(result.control_each[1]) == 2 and result.controls[1].samples


def test_the_record_of_an_evaluation_has_the_documented_keys(evaluation):
    _, result = evaluation
    record = result.json()
    for key in ("layer", "scales", "steered", "controls", "prompt_baseline",
                "smallest_clear_scale", "pairs"):  # fmt: skip
        assert key in record
    for entry in (*record["steered"], *record["controls"], record["prompt_baseline"]):
        for measure in ("concept", "kl", "logprob_per_token", "repetition", "first_divergence"):
            assert set(entry[measure]) == {"value", "ci95"}
    assert [e["verdict"] for e in record["steered"]] == result.verdicts
    assert record["pairs"] and {"unsteered_text", "steered_text"} <= set(record["pairs"][0])


def test_smallest_clear_scale_is_the_first_whose_interval_clears_every_control(evaluation):
    _, result = evaluation
    clear = result.smallest_clear_scale
    for scale, steered, each in zip(result.scales, result.steered, result.control_each,
                                    strict=True):  # fmt: skip
        clears = steered.concept.lo > max(c.concept.hi for c in each)
        if any(c.concept.hi > c.concept.lo for c in each):
            assert (result.verdicts[result.scales.index(scale)] == "clears") == clears
        if clear is not None and scale < clear:
            assert not clears
        if scale == clear:
            assert clears


def test_the_vector_file_round_trips_and_refuses_another_model(tiny, tiny_gemma, tmp_path):
    v = steering_vector(tiny, POSITIVE, NEGATIVE, layer=1)
    path = v.save(tmp_path / "v.safetensors")
    back = SteeringVector.load(path, tiny)
    torch.testing.assert_close(back.vector, v.vector)
    assert back.record() == v.record()
    with pytest.raises(ModelMismatchError, match="made on 'tiny-.*', not 'tiny-gemma'"):
        SteeringVector.load(path, tiny_gemma)
    wide = SteeringVector(torch.ones(7), 1, tiny.name, "given")
    with pytest.raises(InvalidSettingError, match="d_model"):
        wide.check(tiny)
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(interp.InterpError, match="not a safetensors file"):
        SteeringVector.load(tmp_path / "bad.safetensors")


def test_bad_settings_are_one_line(tiny_llama, unchecked):
    v = SteeringVector.given(tiny_llama, torch.randn(tiny_llama.d_model), layer=1)
    cases = [
        ({"scales": []}, "scales"),
        ({"scales": [float("nan")]}, "finite number"),
        ({"scales": ["two"]}, "finite number"),
        ({"samples": 0}, "samples"),
        ({"concept_words": ["two words"]}, "not one word"),
        ({"concept_words": []}, "needs concept words"),
    ]
    for extra, message in cases:
        options = {"scales": [1.0], "concept_words": ["sun"], **extra}
        with pytest.raises(InvalidSettingError, match=message):
            steer_eval(tiny_llama, ["The sun"], v, **options)
    with pytest.raises(InvalidSettingError, match="out of range"):
        SteeringVector.given(tiny_llama, torch.randn(tiny_llama.d_model), layer=99)
    with pytest.raises(InvalidSettingError, match="at least 2"):
        steering_vector(tiny_llama, ["one"], NEGATIVE)
    with pytest.raises(InvalidSettingError, match="unbalanced"):
        steering_vector(tiny_llama, POSITIVE, NEGATIVE[:2], method="caa")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "pos.txt").write_text("\n".join(POSITIVE))
    (tmp_path / "neg.txt").write_text("\n".join(NEGATIVE))
    (tmp_path / "prompts.txt").write_text("The earth revolves\nThe sun\n")
    (tmp_path / "words.txt").write_text("the\nsun\nearth\n")
    return tmp_path


def steer_argv(d, *extra):
    return ["steer", str(d / "prompts.txt"), "--positive", str(d / "pos.txt"), "--negative",
            str(d / "neg.txt"), "--layer", "1", "--scales", "0,2", "--samples", "2",
            "--controls", "1", "--concept-words", str(d / "words.txt"), "--max-new-tokens", "4",
            "--out", str(d / "out"), *extra]  # fmt: skip


def test_steer_writes_the_vector_the_record_and_the_page(capsys, files, monkeypatch, tiny_llama):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    code = cli.main(steer_argv(files, "--prompt-baseline", "Talk about the sun."))
    out = capsys.readouterr()
    assert code == 0, out.err
    record = json.loads((files / "out" / "steering.json").read_text())
    assert record["scales"] == [0.0, 2.0] and record["layer"] == 1
    assert len(record["separability_by_layer"]) == tiny_llama.n_layers
    assert record["prompt_baseline"]["instruction"] == "Talk about the sun."
    v = SteeringVector.load(files / "out" / "vector.safetensors", tiny_llama)
    want = steering_vector(tiny_llama, POSITIVE, NEGATIVE, layer=1, position="mean")
    torch.testing.assert_close(v.vector, want.vector)
    page = (files / "out" / "index.html").read_text()
    assert "steering at layer 1" in page and "<mark>" in page
    # the saved vector steers again, alone
    code = cli.main([*steer_argv(files)[:2], "--vector", str(files / "out" / "vector.safetensors"),
                     *steer_argv(files)[8:]])  # fmt: skip
    assert code == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--scales": "0,two"}, "'two' is not a number"),
        ({"--layer": "99"}, "out of range"),
        ({"--layer": "top"}, "integer or 'best'"),
        ({"--negative": "empty.txt"}, "holds no prompts"),
        ({"--negative": "one.txt"}, "unbalanced"),
        ({"--concept-words": "bad_words.txt"}, "not one word"),
        ({"--vector": "vector_other.safetensors"}, "not both"),
    ],
)
def test_steer_bad_input_is_one_line_exit_2_nothing_written(
    capsys, files, monkeypatch, tiny_llama, change, message
):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    (files / "empty.txt").write_text("\n")
    (files / "one.txt").write_text("A cat\n")
    (files / "bad_words.txt").write_text("two words\n")
    argv = steer_argv(files)
    for flag, value in change.items():
        target = value if flag in ("--scales", "--layer") else str(files / value)
        if flag in argv:
            argv[argv.index(flag) + 1] = target
        else:
            argv += [flag, target]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (files / "out").exists()


def test_steer_refuses_a_vector_of_another_model(capsys, files, monkeypatch, tiny_gemma,
                                                 tiny_llama):  # fmt: skip
    v = SteeringVector.given(tiny_gemma, torch.randn(tiny_gemma.d_model), 1)
    v.save(files / "v.safetensors")
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny_llama)
    argv = [*steer_argv(files)[:2], "--vector", str(files / "v.safetensors"),
            *steer_argv(files)[8:]]  # fmt: skip
    assert cli.main(argv) == 2
    assert "made on" in capsys.readouterr().err and not (files / "out").exists()


def test_the_shipped_concept_on_smollm2_clears_its_controls_at_some_scale(smollm):
    """The experiment's weddings vector at its layer: some scale's concept interval (the
    log-probability mass on the concept words) lies above every random direction's."""

    def lines(name):
        with open(DATA + name, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]

    v = steering_vector(smollm, lines("positive.txt"), lines("negative.txt"), layer=11,
                        position="mean")  # fmt: skip
    assert v.separability is not None and v.separability.value >= 0.75
    result = steer_eval(
        smollm, lines("prompts.txt")[:1], v, scales=[0.2, 0.4], unit="resid", samples=6,
        controls=2, max_new_tokens=16, concept_words=lines("concept_words.txt"),
        concept="mass", seed=0,
    )  # fmt: skip
    clear = result.smallest_clear_scale
    print(f"smallest clear scale: {clear}; {result.sentence()}")
    assert clear is not None
