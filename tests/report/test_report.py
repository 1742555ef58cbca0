"""Reports: escaping, self-containment, the experiments, and every report opened in headless
Chromium from file:// with the network cut off."""

import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import pytest
from browser import NASTY, assert_renders

import interp
from interp.cli.workflow import ablate_into, analyze_into, sweep_into
from interp.errors import TraceFormatError
from interp.report.build import build_report
from interp.report.html import circuitsvis_bundle, script_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_report(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "t"
    trace = interp.generate(tiny_llama, NASTY, max_new_tokens=12, seed=0)
    trace.save(out)
    analyze_into(tiny_llama, trace, out)
    sweep_into(tiny_llama, trace, out)
    ablate_into(tiny_llama, trace, out, [(1, 0)])
    return build_report(out)


def test_script_json_cannot_end_a_script():
    text = script_json({"token": "</script><!-- \u2028 &", "x": 0.123456789})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"token": "</script><!-- \u2028 &", "x": 0.1235}


def test_a_robust_colour_scale_ends_at_the_98th_percentile_and_marks_the_rest():
    import numpy as np

    from interp.report.figures import colour_limit

    values = np.linspace(-1.0, 1.0, 100).reshape(10, 10)
    values[0, 0], values[3, 4] = 9.0, np.nan
    bound, beyond = colour_limit(values, robust=True)
    assert bound == pytest.approx(np.percentile(np.abs(values[np.isfinite(values)]), 98))
    assert (
        beyond[0, 0]
        and not beyond[3, 4]
        and beyond.sum() == (np.abs(np.nan_to_num(values)) > bound).sum()
    )
    assert colour_limit(values, robust=False)[0] == 9.0 and not colour_limit(values, False)[1].any()


def test_bundle_is_escaped_not_altered():
    bundle = circuitsvis_bundle()
    assert re.search(r"</script", bundle, re.IGNORECASE) is None
    assert '"<script><\\/script>"' in bundle  # the same string to JavaScript


def test_page_inlines_the_bundle_once_and_escapes_user_text(tiny_report):
    html = tiny_report.read_text(encoding="utf-8")
    assert html.count("var CircuitsVis=") == 1
    scripts = script_elements(html)  # as a browser's parser splits them
    assert len(scripts) == 3, [s[:80] for s in scripts]  # bundle, data, code: none ended early
    assert scripts[0] == circuitsvis_bundle()
    data = json.loads(scripts[1])
    assert NASTY.split()[1] in "".join(data["tokens"])  # '<script>alert("x")</script>' intact
    assert '<script>alert("x")' not in html and "</SCRIPT>" not in html
    assert "&lt;script&gt;alert(" in html
    outside = html.replace(circuitsvis_bundle(), "")  # the bundle's own strings aside
    assert "https://" not in outside and "http://" not in outside  # no CDN, no remote asset
    assert "<img" in html and "data:image/png;base64," in html
    figures = sorted(p.name for p in (tiny_report.parent / "figures").iterdir())
    for name in ("logit_lens.png", "logit_lens_kl.png", "head_roles.png", "sweep.png"):
        assert name in figures


def script_elements(html: str) -> list[str]:
    from html.parser import HTMLParser

    class Scripts(HTMLParser):
        def __init__(self):
            super().__init__(convert_charrefs=True)
            self.inside, self.found = False, []

        def handle_starttag(self, tag, attrs):
            if tag == "script":
                self.inside = True
                self.found.append("")

        def handle_endtag(self, tag):
            if tag == "script":
                self.inside = False

        def handle_data(self, data):
            if self.inside:
                self.found[-1] += data

    parser = Scripts()
    parser.feed(html)
    return parser.found


def test_report_refuses_unanalysed_and_old_results(tiny_llama, tmp_path):
    trace = interp.generate(tiny_llama, "The sun", max_new_tokens=3, seed=0)
    trace.save(tmp_path / "t")
    with pytest.raises(TraceFormatError, match="interp analyze"):
        build_report(tmp_path / "t")
    analyze_into(tiny_llama, trace, tmp_path / "t")
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    summary["analysis"]["format_version"] = 0
    (tmp_path / "t" / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(TraceFormatError, match="older format"):
        build_report(tmp_path / "t")
    assert not (tmp_path / "t" / "index.html").exists()


def test_report_cli_on_something_that_is_not_a_trace(tmp_path, capsys):
    from interp import cli

    assert cli.main(["report", str(tmp_path)]) == cli.EXIT_BAD_INPUT
    assert "not an interp trace" in capsys.readouterr().err


# ---- headless Chromium ---------------------------------------------------------------------


def test_tiny_report_renders_offline_in_chromium(tiny_report, tmp_path):
    assert_renders(tiny_report, tmp_path)


# ---- the experiments on the embedded model ------------------------------------------------


def run_experiment(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / f"{name}.py"), *args],
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.mark.parametrize(
    "name",
    [
        "seed_run",
        "induction_heads",
        "heads_and_text",
        "ioi",
        "ioi_circuit",
        "causal_tracing",
        "steering",
    ],
)
def test_experiment_help(name):
    done = run_experiment(name, "--help")
    assert done.returncode == 0 and "--seed" in done.stdout and "--model" in done.stdout


@pytest.mark.real_model
@pytest.mark.browser
def test_seed_run_experiment(tmp_path, smollm):
    out = tmp_path / "seed_run"
    done = run_experiment("seed_run", "--max-new-tokens", "8", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "embedded smollm2-135m" in done.stdout and "file://" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompt"] == "earth revolve around" and len(summary["token_logprobs"]) == 8
    assert "analysis" in summary and "sweep" in summary
    assert_renders(out / "index.html", tmp_path)


@pytest.mark.real_model
@pytest.mark.browser
def test_induction_heads_experiment(tmp_path, smollm):
    out = tmp_path / "induction"
    done = run_experiment("induction_heads", "--draws", "3", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    for key in (
        "loss_first_copy",
        "loss_second_copy",
        "top_induction_heads",
        "loss_second_copy_ablated_top",
        "loss_second_copy_ablated_random",
    ):
        assert key in s, key
    assert s["loss_second_copy"] < 0.3 * s["loss_first_copy"]
    assert s["loss_second_copy_ablated_top"] > s["loss_second_copy"] + 3.0
    assert max(s["loss_second_copy_ablated_random"]) < s["loss_second_copy_ablated_top"]
    assert all(h.startswith("L") for h, _ in s["top_induction_heads"])
    assert len(list((out / "figures").glob("*.png"))) == 3
    assert_renders(out / "index.html", tmp_path) if "cv-vis" in (
        out / "index.html"
    ).read_text() else None


@pytest.mark.real_model
@pytest.mark.browser
def test_heads_and_text_experiment(tmp_path, smollm):
    out = tmp_path / "heads"
    done = run_experiment(
        "heads_and_text", "--max-new-tokens", "6", "--top", "2", "--triage", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    effects = sorted(out.glob("ablations/*/effect.json"))
    assert len(effects) == 3  # two heads alone, then both
    html = (out / "index.html").read_text()
    assert 'id="ablations"' in html and "baseline" in html
    assert_renders(out / "index.html", tmp_path)


def test_experiments_refuse_to_overwrite_foreign_output(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    done = run_experiment("induction_heads", "--out", str(tmp_path / "x"))
    assert done.returncode != 0 and "refusing to overwrite" in done.stderr
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"


def test_results_display_themselves_offline(tiny_llama):
    """Through IPython's own display formatter, as a notebook shows them."""
    from IPython.core.interactiveshell import InteractiveShell

    from interp.report import display, notebook

    shell = InteractiveShell.instance()
    assert display.register(shell)

    def html_of(result):
        return shell.display_formatter.format(result)[0]["text/html"]

    trace = interp.generate(tiny_llama, "The <b>sun</b>", max_new_tokens=4, seed=0)
    att = interp.attention(tiny_llama, trace)
    notebook.reload_bundle()  # as in a fresh kernel
    shown = {
        "trace": html_of(trace),
        "lens": html_of(interp.logit_lens(tiny_llama, trace)),
        "roles": html_of(interp.head_roles(tiny_llama, block_len=8)),
        "attention": html_of(att),
        "sweep": html_of(interp.sweep(tiny_llama, trace)),
        "ablation": html_of(interp.ablate(tiny_llama, trace, "L0H1")),
    }
    for name, html in shown.items():
        outside = html.replace(circuitsvis_bundle(), "")
        assert "https://" not in outside and "http://" not in outside, name
        assert "<b>sun</b>" not in html, name  # token strings escaped
    assert "CircuitsVis.render(" in shown["attention"]
    assert shown["attention"].count("var CircuitsVis=") == 1
    again = html_of(att)  # the kernel has the bundle now: a second view does not carry it
    assert "CircuitsVis.render(" in again and "var CircuitsVis=" not in again
    assert len(again) < len(shown["attention"]) / 20
    quiet = html_of(interp.ablate(tiny_llama, trace, "L0H1", regenerate_text=False))
    assert "not regenerated" in quiet and "None" not in quiet
    assert "identical" in shown["ablation"] or "baseline text" in shown["ablation"]


def test_importing_interp_in_a_running_ipython_registers_the_display():
    """The result types know nothing of rendering: `import interp` registers the report's
    renderers with a running IPython, by name, without importing torch."""
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "import interp\n"
        "printers = shell.display_formatter.formatters['text/html'].deferred_printers\n"
        "print(sorted(printers) == sorted(interp.report.display.RENDERERS))\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.real_model
def test_ioi_experiment(tmp_path, smollm):
    out = tmp_path / "ioi"
    done = run_experiment("ioi", "--pairs", "1", "--templates", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "logit difference IO - S:" in done.stdout and "name mover candidates" in done.stdout
    s = json.loads((out / "summary.json").read_text())
    assert s["n_prompts"] == 4 and 4.0 < s["logit_diff_mean"] < 8.0 and s["logit_diff_stderr"] > 0
    assert s["dla_top_heads"][0][0] == "L23H3"  # the name mover the interventions tests found
    abc = s["patching"]["abc"]
    assert abc["denoise"]["heads"]["top"][0][0] == "L23H3"
    assert abc["noise"]["direction"] == "noise" and abc["noise"]["heads"]["top"][0][1] < 0
    assert s["patching"]["s2_swap"]["denoise"]["heads"]["top"]
    last = [r["resid"]["top"][0][0] for r in s["patching"]["resid_by_template"]]
    assert all(label.startswith("L") for label in last) and len(last) == 2
    paths = s["path_patching"]
    assert paths["logits"]["receivers"] == "logits" and paths["logits"]["path"]["top"][0][0] == (
        "L23H3"
    )
    assert paths["queries"]["receivers"].endswith(".q")
    assert paths["queries_s2_swap"]["receivers"] == paths["queries"]["receivers"]
    assert "L23H3" in [c["head"] for c in s["candidate_roles"]["name_movers"]]
    page = (out / "index.html").read_text()
    assert "Candidate roles (hypotheses, not verdicts)" in page
    assert len(list((out / "figures").glob("*.png"))) == 17
    assert run_experiment("ioi", "--pairs", "0", "--out", str(out)).returncode == 2


@pytest.mark.real_model
def test_ioi_circuit_experiment(tmp_path, smollm):
    out = tmp_path / "ioi_circuit"
    argv = ["--pairs", "2", "--steps", "2", "--exact-top", "6", "--exact-random", "4",
            "--seeds", "1", "--no-sizes", "--out", str(out)]  # fmt: skip
    done = run_experiment("ioi_circuit", *argv)
    assert done.returncode == 0, done.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    edges = {"eap": 70_651, "eap-ig": 70_651, "eap-per-head": 123_211, "eap-ig-per-head": 123_211}
    for method, n in edges.items():  # both graphs: SmolLM2 groups its keys and values
        assert s[method]["metric"].startswith("logit-diff")  # IO - S, not the default log-prob
        assert s[method]["clean_metric"] > s[method]["corrupted_metric"]
        assert s[method]["edges"] == n and s[method]["cpr"] == pytest.approx(
            json.loads((out / method / "curve.json").read_text())["cpr"]
        )
        assert (out / method / "index.html").exists()
    assert (out / "eap-ig-per-head" / "importances.json").exists()
    assert s["agreement"]["top"]["edges"] == 6 and -1 <= s["agreement"]["all"]["spearman"] <= 1
    assert set(s["study_heads"]) == {"L23H3", "L23H0", "L29H1"}
    assert "Estimates against exact effects" in (out / "index.html").read_text()
    assert run_experiment("ioi_circuit", "--pairs", "0", "--out", str(out)).returncode == 2


@pytest.mark.real_model
@pytest.mark.browser
def test_causal_tracing_experiment(tmp_path, smollm):
    """The first two facts: the Eiffel Tower (which the model knows) and Big Ben (which it
    does not: dropped and counted)."""
    out = tmp_path / "ct"
    done = run_experiment("causal_tracing", "--facts", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["n_facts"] == 1 and s["n_dropped"] == 1
    assert s["clean_prob_mean"] > 0.5 and s["corrupted_prob_mean"] < 0.1  # the noised baseline
    assert set(s["grids"]) == {"resid", "attn", "mlp"}
    resid = s["grids"]["resid"]
    assert max(resid["last token"]) > 0.3 > s["corrupted_prob_mean"]  # late layers bring it back
    assert all(len(v) == smollm.n_layers for grid in s["grids"].values() for v in grid.values())
    assert (out / "facts" / "0-resid" / "index.html").exists()
    assert (out / "facts" / "0-windows" / "index.html").exists()
    assert_renders(out / "index.html", tmp_path, circuitsvis=False)


@pytest.mark.real_model
@pytest.mark.browser
def test_steering_experiment(tmp_path, smollm):
    """One prompt, a few pairs: the page and steering.json carry every measure the issue names,
    and the experiment prints the sentence it puts on the page."""
    out = tmp_path / "steer"
    done = run_experiment(
        "steering", "--prompts", "1", "--samples", "3", "--controls", "1", "--scales", "0,0.3",
        "--max-new-tokens", "10", "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "layer 11: separability" in done.stderr and "file://" in done.stdout
    s = json.loads((out / "steering.json").read_text())
    assert s["layer"] == 11 and s["scales"] == [0.0, 0.3]
    measures = {"concept", "kl", "logprob_per_token", "repetition", "first_divergence"}
    for entry in (*s["steered"], *s["controls"], s["prompt_baseline"]):
        assert measures <= set(entry), entry
        assert all(len(entry[m]["ci95"]) == 2 for m in measures)
    zero = s["steered"][0]
    assert zero["kl"]["value"] == 0 and zero["first_divergence"]["value"] == 10  # never parts
    assert "smallest_clear_scale" in s and s["pairs"]
    assert len(s["separability_by_layer"]) == smollm.n_layers
    assert (out / "vector.safetensors").exists() and (out / "figures" / "curve.png").exists()
    assert done.stdout.splitlines()[0] in unescape((out / "index.html").read_text())
    assert_renders(out / "index.html", tmp_path, circuitsvis=False)
