"""interp's own warnings at the command line: one `interp: warning: ...` line on stderr, the
command going on (an edit at a span that starts at position 0, on a model without a BOS)."""

import json

import pytest

import interp
from interp import cli
from interp.edits import edit

PROMPT = "The Eiffel Tower is in the city of"


@pytest.mark.parametrize("text", ["The Eiffel", "Eiffel"])
def test_an_edit_at_the_first_token_prints_one_warning_line(
    text, tiny, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(interp.models, "load_model", lambda *a, **k: tiny)
    spec = tmp_path / "noise.json"
    spec.write_text(json.dumps(edit("embed", "noise", positions=interp.span(text)).to_json()))
    out = tmp_path / "run"
    argv = ["generate", PROMPT, "--intervention", spec, "--max-new-tokens", 1, "--out", out]
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 0 and out.exists(), err
    lines = [line for line in err.splitlines() if line.startswith("interp: warning: ")]
    at_zero = text == "The Eiffel" and tiny.encode("x")[0] != tiny.tokenizer.bos_token_id
    if at_zero:
        assert len(lines) == 1, err
        assert "span 'The Eiffel' starts at position 0" in lines[0]
        assert "AttentionSinkWarning" not in err  # no Python traceback-style line
    else:
        assert not lines, err
