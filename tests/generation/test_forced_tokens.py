"""A forced continuation of several tokens is recorded as such: its ids (`trace.forced_ids`)
and their count in summary.json; a sampled run has none. On SmolLM2, " Agra" is " Ag" + "ra":
a metric built with the model refuses it where it is built."""

import json

import pytest
import torch

import interp
from interp import metrics
from interp.errors import InvalidSettingError
from interp.trace.trace import Trace


def test_a_forced_continuation_records_its_tokens_and_their_count(tiny, tmp_path):
    text = " the sun."
    given = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(given) > 1
    run = interp.generate(tiny, "The earth revolves around", continuation=text)
    assert run.forced_ids == given
    assert run.summary()["forced_tokens"] == len(given)
    # the continuation's log-prob is the sum over its tokens, not the first token's
    assert len(run.token_logprobs) == len(given)
    back = Trace.load(run.save(tmp_path / "run"))
    assert back.forced_ids == given
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["forced_tokens"] == len(given) and written["forced_continuation"] is True
    sampled = interp.generate(tiny, "The earth revolves around", max_new_tokens=2, seed=0)
    assert sampled.forced_ids is None and sampled.summary()["forced_tokens"] is None


def test_agra_is_two_tokens_of_smollm2_and_refused_where_the_metric_is_built(smollm):
    pieces = smollm.tokenizer(" Agra", add_special_tokens=False)["input_ids"]
    assert smollm.token_strs(pieces) == [" Ag", "ra"]
    with pytest.raises(InvalidSettingError, match=r"' Agra' is not a single token.*' Ag' \+ 'ra'"):
        metrics.prob(" Agra", model=smollm)
    run = interp.generate(smollm, "The Taj Mahal is in the city of", continuation=" Agra")
    assert run.forced_ids == pieces and run.summary()["forced_tokens"] == 2
    assert run.token_logprobs.shape == torch.Size([2])
