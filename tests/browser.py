"""Headless Chromium for the report tests: the page rendered offline, as a reader sees it."""

import re
import shutil
import subprocess
from pathlib import Path

NASTY = "A <script>alert(\"x\")</script> and 'quotes' & </SCRIPT>\nnew line"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "Chromium is missing: `make test` installs Debian's chromium package"
    return path


OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves,
    "--proxy-server=127.0.0.1:9",  # and nothing connects: the page must need no network
    "--virtual-time-budget=15000",
]


def assert_renders(page: Path, tmp_path: Path, circuitsvis: bool = True) -> None:
    import numpy as np
    from matplotlib.image import imread

    dom, log, shot = open_in_chromium(page, tmp_path)
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"error|uncaught", line, re.IGNORECASE)]
    assert not errors, errors
    assert "</html>" in dom.lower(), "the page did not load"
    containers = re.findall(r'<div id="([^"]+)" class="cv-vis">(.{0,200})', dom, re.DOTALL)
    assert bool(containers) == circuitsvis, "CircuitsVis containers missing or unexpected"
    for element_id, inner in containers:
        assert inner.startswith("<div"), f"CircuitsVis visualisation {element_id} did not mount"
    pixels = imread(shot)
    assert pixels.shape[0] > 100 and float(np.std(pixels[..., :3])) > 0.05, "blank screenshot"


def open_in_chromium(page: Path, tmp_path: Path) -> tuple[str, str, Path]:
    """(DOM after scripts ran, console log, screenshot) of `page` opened from file://."""
    url = page.resolve().as_uri()
    dom = subprocess.run(
        [
            chromium(),
            *OFFLINE_FLAGS,
            f"--user-data-dir={tmp_path / 'p1'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium(),
            *OFFLINE_FLAGS,
            f"--user-data-dir={tmp_path / 'p2'}",
            "--window-size=1280,1600",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return dom.stdout, dom.stderr, shot
