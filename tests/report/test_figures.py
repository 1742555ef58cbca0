"""Figures: every token labelled without overlap (measured on the drawn figure), one style,
each figure written in every format asked for with its fonts embedded."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from interp.errors import InvalidSettingError
from interp.report import figures, parse_formats, style
from interp.report.tokens import short

TOKENS = [f" w{i}" if i % 7 else "\n" for i in range(100)]


def tick_labels(fig):
    """Every non-empty x tick label of every panel, with its drawn box."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    out = []
    for ax in fig.axes:
        for label in ax.get_xticklabels():
            if label.get_text():
                out.append((label.get_text(), label.get_window_extent(renderer)))
    return out


def assert_apart(labels):
    boxes = [box for _, box in labels]
    for a, b in zip(boxes, boxes[1:], strict=False):
        same_row = a.y0 < b.y1 and b.y0 < a.y1
        assert not (same_row and a.x0 < b.x1 and b.x0 < a.x1), "tick labels overlap"


def test_every_generated_token_of_the_lens_heatmap_is_labelled_in_panels():
    probs = np.random.default_rng(0).random((31, 100))
    layers = [f"L{i}" for i in range(30)] + ["final"]
    fig = figures.logit_lens_heatmap(probs, layers, TOKENS, "lens")
    labels = tick_labels(fig)
    assert [text for text, _ in labels] == [short(t, 10) for t in TOKENS]
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 2  # 50 a panel
    assert_apart(labels)
    assert fig.get_figwidth() == style.PAGE


def test_the_attention_figure_labels_each_of_its_positions():
    patterns = np.random.default_rng(0).random((3, 40, 40))
    fig = figures.attention_grid(patterns, ["L0H0", "L1H1", "L2H2"], TOKENS[:40], "heads")
    labels = tick_labels(fig)
    panels = [labels[i : i + figures.ATTENTION_POSITIONS] for i in range(0, len(labels), 32)]
    assert len(panels) == 3
    for panel in panels:
        assert [t for t, _ in panel] == [short(t, 8) for t in TOKENS[8:40]]
        assert_apart(panel)
    assert "the last 32 of 40 positions" in fig.get_suptitle()


def test_figures_fit_a_page_and_take_the_style():
    heat = figures.head_heatmap(np.ones((30, 9)), "t", "v", diverging=True)
    assert heat.get_figwidth() <= style.PAGE
    fig = figures.kl_bands({"a": np.ones((3, 5))})
    assert fig.get_figwidth() <= style.PAGE
    assert fig.axes[0].title.get_fontsize() == 8
    assert fig.axes[0].xaxis.label.get_fontsize() == style.RC["axes.labelsize"]


def test_each_figure_in_each_format_with_fonts_embedded():
    fig = figures.head_heatmap(np.arange(12.0).reshape(3, 4), "title", "value")
    files = style.render({"heads.png": fig}, parse_formats("svg,pdf"))
    assert sorted(files) == ["heads.pdf", "heads.png", "heads.svg"]
    assert files["heads.png"].startswith(b"\x89PNG")
    assert b"/FontFile2" in files["heads.pdf"]  # TrueType embedded
    svg = files["heads.svg"].decode()
    assert "<text" not in svg and "<path" in svg  # glyphs drawn as paths


def test_formats_are_checked():
    assert parse_formats("PDF, png") == ("png", "pdf")
    assert parse_formats(["svg"]) == ("png", "svg")
    assert parse_formats("") == ("png",)
    with pytest.raises(InvalidSettingError, match="unknown figure format 'jpg'"):
        parse_formats("png,jpg")


def test_the_cli_writes_the_formats_asked_for_and_refuses_others(tiny_llama, tmp_path, capsys):
    import interp
    from interp import cli
    from interp.cli.workflow import analyze_into

    out = tmp_path / "t"
    trace = interp.generate(tiny_llama, "The earth", max_new_tokens=6, seed=0)
    trace.save(out)
    analyze_into(tiny_llama, trace, out)
    assert cli.main(["report", str(out), "--format", "svg,pdf"]) == 0
    written = sorted(p.name for p in (out / "figures").iterdir())
    stems = {p.rsplit(".", 1)[0] for p in written}
    assert written == sorted(f"{s}.{f}" for s in stems for f in ("pdf", "png", "svg"))
    capsys.readouterr()
    before = sorted((out / "figures").iterdir())
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", str(out), "--format", "png,jpg"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "unknown figure format 'jpg'" in err[-1]
    assert sorted((out / "figures").iterdir()) == before
