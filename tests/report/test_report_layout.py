"""The report's layout, measured in headless Chromium by the DOM's own boxes: nothing overflows a
1280-px window, no token cell is blank, the head selector's labels neither overlap nor get cut."""

import json
import re
import subprocess

import pytest
from browser import NASTY, OFFLINE_FLAGS, chromium

import interp
from interp.cli.workflow import analyze_into
from interp.report.build import build_report
from interp.report.tokens import visible, visible_in_text

MEASURE = """<script>
setTimeout(function () {
  var boxes = function (selector) {
    return Array.prototype.map.call(document.querySelectorAll(selector), function (el) {
      var r = el.getBoundingClientRect();
      return {text: el.textContent, left: r.left, right: r.right, top: r.top,
              bottom: r.bottom, cut: el.scrollWidth > el.clientWidth + 1};
    });
  };
  var heads = Array.prototype.filter.call(document.querySelectorAll(".cv-vis *"), function (el) {
    return el.children.length === 0 && /^L\\d+H\\d+( [(].*[)])?$/.test(el.textContent.trim());
  });
  var out = {
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    cells: boxes("table.grid td, table.grid th:not(:first-child), .tokens .tok"),
    headLabels: heads.map(function (el) {
      var r = el.getBoundingClientRect();
      return {text: el.textContent.trim(), left: r.left, right: r.right, top: r.top,
              bottom: r.bottom, cut: el.scrollWidth > el.clientWidth + 1};
    })
  };
  var pre = document.createElement("pre"); pre.id = "interp-measure";
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
}, 4000);
</script>"""


def measure(page, tmp_path) -> dict:
    """The page's geometry at 1280 x 1600, after its scripts ran (a measuring copy)."""
    copy = tmp_path / "measured.html"
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = subprocess.run(
        [
            chromium(),
            *OFFLINE_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,1600",
            "--dump-dom",
            copy.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="interp-measure">(.*?)</pre>', dom, re.S)
    assert found, "the page's scripts did not finish"
    return json.loads(found[1].replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


@pytest.fixture(scope="module")
def long_report(tiny_llama, tmp_path_factory):
    """A 40-token continuation of a prompt with markup, quotes and a newline."""
    out = tmp_path_factory.mktemp("layout") / "t"
    trace = interp.generate(tiny_llama, NASTY, max_new_tokens=40, seed=0, stop_at_eos=False)
    trace.save(out)
    analyze_into(tiny_llama, trace, out)
    return build_report(out)


def test_tokens_are_shown_with_their_whitespace():
    assert visible(" the") == "\u23b5the" and visible("\n") == "\u21b5"
    assert visible("\t") == "\u21e5" and visible("") == "\u2205"
    assert visible("a\x07\xa0") == "a\\x07\\xa0" and visible("<bos>") == "<bos>"
    assert visible_in_text(" the") == " the" and visible_in_text("\n\n") == "\u21b5\u21b5\n\n"


@pytest.mark.browser
def test_the_page_fits_1280_px_and_no_token_or_label_is_lost(long_report, tmp_path):
    m = measure(long_report, tmp_path)
    assert m["innerWidth"] == 1280 and m["scrollWidth"] <= 1280
    assert len(m["cells"]) > 100
    blank = [c for c in m["cells"] if not c["text"].strip()]
    assert not blank, blank[:3]
    labels = m["headLabels"]
    assert len(labels) >= 8  # the top heads' selector and the layer selector
    assert not [x["text"] for x in labels if x["cut"]]
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            apart = (
                a["right"] <= b["left"]
                or b["right"] <= a["left"]
                or a["bottom"] <= b["top"]
                or b["bottom"] <= a["top"]
            )
            assert apart, (a["text"], b["text"])
