"""report.html in a real browser: headless Chromium loads every plot and overlay image.

Needs Debian's `chromium` package (CI: `apt-get install -y chromium`); skipped without it.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeling.report import ReportConfig, build_report

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             "/usr/bin/chromium") if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (CI installs it: apt-get install -y chromium)")

# Appended to a copy of the page: after `load`, record each <img>'s state on <body>.
PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
  document.body.setAttribute('data-probe', JSON.stringify({
    total: imgs.length, broken: broken,
    plots: imgs.filter(i => i.src.startsWith('data:image/png')).length,
    overlays: imgs.filter(i => i.src.startsWith('data:image/jpeg')).length}));
});
</script>"""
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--virtual-time-budget=10000"]


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120)


def probe(page: Path, tmp: Path, extra: str = "") -> dict:
    probed = tmp / f"probe-{page.stem}.html"
    text = page.read_text().replace("</body>", extra + PROBE + "</body>")
    probed.write_text(text)
    dom = chromium(["--dump-dom", probed.as_uri()], tmp / "profile").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, f"the probe did not run; chromium printed: {dom[:300]!r}"
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def report(set_a: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report"
    build_report(ReportConfig(labels=str(set_a), out=str(out), compare=str(set_a), gallery=3))
    return out / "report.html"


def test_every_plot_and_overlay_loads(report: Path, tmp_path: Path):
    result = probe(report, tmp_path)
    assert result["broken"] == []
    assert result["plots"] >= 10  # distributions, quality metrics, categories, agreement
    assert result["overlays"] == 3 * 4 + 3 * 2  # (sample + worst) x 2 sets, 3 compare pairs


def test_probe_detects_a_broken_image(report: Path, tmp_path: Path):
    """The check above can fail: a corrupt embedded image is reported."""
    bad = '<img alt="corrupt" src="data:image/png;base64,AAAAAAAA">'
    result = probe(report, tmp_path, extra=bad)
    assert result["broken"] == ["corrupt"]


def test_screenshot_renders_content(report: Path, tmp_path: Path):
    shot = tmp_path / "shot.png"
    chromium([f"--screenshot={shot}", "--window-size=1200,1600", report.as_uri()], tmp_path / "p")
    assert shot.exists(), "chromium wrote no screenshot"
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 10  # not a blank page
