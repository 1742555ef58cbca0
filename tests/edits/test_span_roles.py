"""A span's positions and its roles (`trace.positions(interp.span(...).middle)`), against the
tokenizer's own character offsets; roles in edits and their JSON; the attention-sink warning
of an edit at a span that starts at position 0."""

import json
import warnings

import pytest
import torch

import interp
from interp.edits import Intervention
from interp.edits.positions import from_json, to_json
from interp.errors import AttentionSinkWarning, InvalidSettingError

PROMPT = "The Eiffel Tower is in the city of"


def _by_offsets(model, prompt: str, text: str) -> list[int]:
    """The prompt positions whose characters overlap `text`, from the tokenizer's offsets
    (a BOS token, if any, has the empty offset (0, 0) and overlaps nothing)."""
    enc = model.tokenizer(prompt, return_offsets_mapping=True)
    at = prompt.index(text)
    return [
        i
        for i, (a, b) in enumerate(enc["offset_mapping"])
        if b > a and a < at + len(text) and at < b
    ]


def test_a_spans_positions_and_roles_equal_the_tokenizers_offsets(tiny):
    run = interp.generate(tiny, PROMPT, max_new_tokens=2, seed=0)
    subject = interp.span("Eiffel Tower")
    tokens = _by_offsets(tiny, PROMPT, "Eiffel Tower")
    assert len(tokens) > 3  # the tiny tokenizer splits it finely: a real middle
    last_prompt = run.prompt_len - 1
    assert run.positions(subject) == tokens
    assert run.positions(subject.first) == [tokens[0]]
    assert run.positions(subject.middle) == tokens[1:-1]
    assert run.positions(subject.last) == [tokens[-1]]
    assert run.positions(subject.after) == [tokens[-1] + 1]
    assert run.positions(subject.further) == list(range(tokens[-1] + 2, last_prompt))
    assert run.positions([subject.first, "last_prompt"]) == [tokens[0], last_prompt]
    rome = subject.rome()
    assert list(rome) == [
        "first subject token",
        "middle subject tokens",
        "last subject token",
        "first after the subject",
        "further tokens",
        "last token",
    ]
    assert [run.positions(g) for g in rome.values()] == [
        [tokens[0]],
        tokens[1:-1],
        [tokens[-1]],
        [tokens[-1] + 1],
        list(range(tokens[-1] + 2, last_prompt)),
        [last_prompt],
    ]


def test_each_row_of_a_set_has_its_own_span_positions(tiny):
    prompts = ["The Eiffel Tower is in the city of", "Big Ben is in the city of"]
    subjects = ["Eiffel Tower", "Big Ben"]
    runs = interp.generate(tiny, prompts, max_new_tokens=1, seed=0, meta=[{}, {}])
    for run, prompt, subject in zip(runs, prompts, subjects, strict=True):
        want = _by_offsets(tiny, prompt, subject)
        assert run.positions(interp.span(subject).middle) == want[1:-1]
    # one span text found in both rows resolves to each row's own tokens
    both = runs.positions(interp.span("is in the city"))
    assert both == [_by_offsets(tiny, p, "is in the city") for p in prompts]
    assert len(both[0]) == len(both[1]) and both[0] != both[1]


def test_a_role_naming_no_token_is_empty_for_positions_and_refused_by_an_edit(tiny):
    prompt = "A B"
    run = interp.generate(tiny, prompt, max_new_tokens=1, seed=0)
    tokens = _by_offsets(tiny, prompt, "A B")
    assert len(tokens) in (2, 3)
    if len(tokens) == 2:
        assert run.positions(interp.span("A B").middle) == []
    assert run.positions(interp.span("A B").after) == []  # the span ends the prompt
    assert run.positions(interp.span("A B").further) == []
    noise = interp.edit("embed", "noise", positions=interp.span("A B").after, seed=0)
    with pytest.raises(InvalidSettingError, match=r"span 'A B'\.after names no token"):
        interp.evaluate(tiny, run, "logprob", intervention=noise)


def test_roles_round_trip_through_json_and_are_checked_where_built():
    subject = interp.span("Eiffel Tower")
    for p in (subject, subject.first, subject.middle, subject.last, subject.after):
        assert from_json(json.loads(json.dumps([to_json(p)])), "x") == [p]
    noise = interp.edit("embed", "noise", positions=[subject.middle, "last_prompt"], seed=0)
    back = Intervention.from_json(json.loads(json.dumps(noise.to_json())))
    assert back.edits[0].positions == (subject.middle, "last_prompt")
    assert "span 'Eiffel Tower'.middle" in noise.label
    with pytest.raises(InvalidSettingError, match="already names a role"):
        _ = subject.first.last
    with pytest.raises(InvalidSettingError, match="whole span"):
        subject.middle.rome()


def test_an_unknown_role_read_from_json_is_refused(unchecked):
    with pytest.raises(InvalidSettingError, match="role is one of"):
        from_json([{"span": "x", "role": "centre"}], "x")


def test_an_edit_at_a_span_that_starts_at_position_0_warns(tiny):
    run = interp.generate(tiny, PROMPT, max_new_tokens=1, seed=0)
    has_bos = tiny.encode("x")[0] == tiny.tokenizer.bos_token_id
    start = interp.edit("embed", "noise", positions=interp.span("The Eiffel"), seed=0)
    inside = interp.edit("embed", "noise", positions=interp.span("Eiffel"), seed=0)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        interp.evaluate(tiny, run, "logprob", intervention=inside)
        assert not [w for w in seen if issubclass(w.category, AttentionSinkWarning)]
        interp.evaluate(tiny, run, "logprob", intervention=start)
    sink = [str(w.message) for w in seen if issubclass(w.category, AttentionSinkWarning)]
    if has_bos:  # position 0 is the BOS token: the span starts at 1
        assert not sink
    else:
        assert sink and "\n" not in sink[0]
        assert "span 'The Eiffel' starts at position 0" in sink[0]


def test_a_span_of_each_rows_own_field(tiny):
    prompts = ["The Eiffel Tower is in the city of", "Big Ben is in the city of"]
    meta = [{"subject": "Eiffel Tower"}, {"subject": "Big Ben"}]
    runs = interp.generate(tiny, prompts, max_new_tokens=1, seed=0, meta=meta)
    subject = interp.span(field="subject")
    for run, prompt, m in zip(runs, prompts, meta, strict=True):
        assert run.positions(subject.last) == _by_offsets(tiny, prompt, m["subject"])[-1:]
    assert runs.positions(subject) == [
        _by_offsets(tiny, p, m["subject"]) for p, m in zip(prompts, meta, strict=True)
    ]
    assert from_json(json.loads(json.dumps([to_json(subject.middle)])), "x") == [subject.middle]
    assert to_json(subject.middle) == {"span_field": "subject", "role": "middle"}
    noise = interp.edit("embed", "noise", positions=subject.first, seed=0)
    assert "span <subject>.first" in noise.label
    bare = interp.generate(tiny, prompts[0], max_new_tokens=1, seed=0)
    with pytest.raises(InvalidSettingError, match="no text field 'subject'"):
        bare.positions(subject)
    with pytest.raises(InvalidSettingError, match="a text or a field's name"):
        interp.span("x", field="subject")


def test_the_command_lines_span_spellings_are_the_values():
    from interp.edits.positions import parse_spans

    subject = interp.span("Eiffel Tower")
    assert parse_spans("span:Eiffel Tower") == [subject]
    assert parse_spans("span.last:Eiffel Tower") == [subject.last]
    assert parse_spans("field.middle:subject") == [interp.span(field="subject").middle]
    assert parse_spans("rome:Eiffel Tower") == list(subject.rome().values())
    assert parse_spans("rome-field:subject") == list(interp.span(field="subject").rome().values())
    assert parse_spans("last_prompt") is None and parse_spans("S2") is None
    for bad in ("span.top:Eiffel", "span:", "rome.last:Eiffel"):
        with pytest.raises(InvalidSettingError, match="span.ROLE:TEXT"):
            parse_spans(bad)


def test_interp_patch_takes_roles_and_romes_categories(tiny, tmp_path, capsys, monkeypatch):
    from interp import cli

    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny)
    clean = interp.generate(tiny, PROMPT, max_new_tokens=1, seed=0, temperature=0)
    clean.save(tmp_path / "clean")
    argv = [
        "patch",
        str(tmp_path / "clean"),
        "--noise",
        "span.first:Eiffel Tower",
        "--sites",
        "resid",
        "--positions",
        "rome:Eiffel Tower",
        "--metric",
        "logprob",
        "--out",
        str(tmp_path / "p"),
    ]
    assert cli.main(argv) == 0, capsys.readouterr().err
    subject = interp.span("Eiffel Tower")
    noise = interp.edit("embed", "noise", seed=0, positions=subject.first)
    want = interp.patch(
        tiny,
        clean,
        noise,
        sites=["resid"],
        metric="logprob",
        positions=list(subject.rome().values()),
    )
    got = interp.Patching.load(tmp_path / "p")
    assert got["resid"].effect.shape[-1] == 6  # ROME's six categories, one column each
    torch.testing.assert_close(got["resid"].effect, want["resid"].effect, equal_nan=True)
