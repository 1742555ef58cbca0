"""Every verb checks its metric, positions and edits against the model before its first
forward pass (`interventions/preflight.py`, one home): on a model whose every forward raises,
a bad study is refused in one line, never by the forward. Metrics built with `model=` check
themselves where they are built."""

import pytest
import torch

import interp
from interp import metrics
from interp.errors import InvalidSettingError
from interp.models.kernels import UnembeddingLinear

PROMPT = "The Eiffel Tower is in the city of"
VERBS = ["patch", "path_patch", "sweep", "ablate", "evaluate", "circuit"]


class Forwarded(RuntimeError):
    pass


@pytest.fixture
def clean(tiny):
    return interp.generate(tiny, PROMPT, max_new_tokens=1, seed=0, temperature=0)


@pytest.fixture
def no_forward(tiny, clean, monkeypatch):
    """`tiny` (after `clean` is recorded) whose every linear layer raises when called: any
    forward pass ends in the unembedding (a `torch.nn.Linear`, or the engine's faster one),
    through the bridge, the direct engine or from a layer."""

    def refuse(self, x):
        raise Forwarded("a forward pass ran")

    monkeypatch.setattr(torch.nn.Linear, "forward", refuse)
    monkeypatch.setattr(UnembeddingLinear, "forward", refuse)  # the fast unembedding
    return tiny


def _several_tokens(model) -> str:
    text = " Eiffelx"
    assert len(model.encode(text, add_special_tokens=False)) > 1
    return text


def _verbs(model, clean, metric, noise):
    return {
        "patch": lambda: interp.patch(model, clean, noise, sites=["resid"], metric=metric),
        "path_patch": lambda: interp.path_patch(model, clean, clean, metric=metric),
        "sweep": lambda: interp.sweep(model, clean, "zero", metric=metric),
        "ablate": lambda: interp.ablate(model, clean, "L0H0", "zero", metric=metric),
        "evaluate": lambda: interp.evaluate(model, clean, metric, intervention=noise),
        "circuit": lambda: interp.circuit(model, clean, noise, metric=metric, method="eap"),
    }


def test_the_fixture_refuses_any_forward_pass(no_forward, clean):
    with pytest.raises(Forwarded):
        interp.generate(no_forward, PROMPT, max_new_tokens=1, seed=0)
    with pytest.raises(Forwarded):
        interp.evaluate(no_forward, clean)


@pytest.mark.parametrize("verb", VERBS)
def test_a_two_token_answer_is_refused_before_the_first_forward_pass(verb, clean, no_forward):
    noise = interp.edit("embed", "noise", positions=interp.span("Eiffel"), seed=0)
    metric = metrics.prob(_several_tokens(no_forward))
    with pytest.raises(InvalidSettingError, match="is not a single token of"):
        _verbs(no_forward, clean, metric, noise)[verb]()


@pytest.mark.parametrize("verb", ["patch", "evaluate", "circuit"])
def test_an_edit_at_a_span_the_prompt_lacks_is_refused_before_the_first_forward_pass(
    verb, clean, no_forward
):
    noise = interp.edit("embed", "noise", positions=interp.span("Big Ben"), seed=0)
    with pytest.raises(InvalidSettingError, match="its prompt has no span 'Big Ben'"):
        _verbs(no_forward, clean, "logprob", noise)[verb]()


@pytest.mark.parametrize(
    ("group", "words"), [(interp.span("Big Ben"), "no span 'Big Ben'"), ("S2", "no position 'S2'")]
)
def test_a_position_group_is_resolved_before_the_first_forward_pass(
    group, words, clean, no_forward
):
    noise = interp.edit("embed", "noise", positions=interp.span("Eiffel"), seed=0)
    with pytest.raises(InvalidSettingError, match=words):
        interp.patch(no_forward, clean, noise, sites=["resid"], positions=[group])


def test_a_metric_built_with_the_model_checks_its_tokens_where_it_is_built(tiny):
    several = _several_tokens(tiny)
    one = tiny.token_strs([tiny.encode(" the", add_special_tokens=False)[0]])[0]
    with pytest.raises(InvalidSettingError, match="is not a single token of"):
        metrics.prob(several, model=tiny)
    with pytest.raises(InvalidSettingError, match="is not a single token of"):
        metrics.logit_diff(one, several, model=tiny)
    with pytest.raises(InvalidSettingError, match="the same token"):
        metrics.logit_diff(one, one, model=tiny)
    with pytest.raises(InvalidSettingError, match="outside the vocabulary"):
        metrics.prob(tiny.d_vocab, model=tiny)
    assert metrics.prob(one, model=tiny).label == f"prob:{one!r}"
    assert metrics.logit_diff(one, 5, model=tiny).label == f"logit-diff:{one!r},5"
    assert metrics.prob(several).label == f"prob:{several!r}"  # without the model: at the verb


def test_a_metric_refuses_a_position_that_is_not_one_where_it_is_built(unchecked):
    with pytest.raises(InvalidSettingError, match="a position is an index or 'last_prompt'"):
        metrics.prob(" x", position="last")
    with pytest.raises(InvalidSettingError, match="the answer is a text, a token id or None"):
        metrics.prob(1.5)


def test_noise_draws_outside_patch_and_circuit_are_refused_before_a_forward(no_forward, clean):
    noise = interp.edit("embed", "noise", seed=1, draws=3)
    for run in (
        lambda: interp.evaluate(no_forward, clean, "logprob", intervention=noise),
        lambda: interp.ablate(no_forward, clean, noise),
    ):
        with pytest.raises(InvalidSettingError, match="give it to interp.patch or interp.circuit"):
            run()
