"""Screenshot of a report for the README: `python -m labeling.report.screenshot REPORT.html OUT.png`.

Headless Chromium renders the page; the picture joins two parts of it: the top (totals,
failures, the first row of distribution plots) and the per-class table with the first
rows of the random-sample gallery. Needs Debian's `chromium` package.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

WIDTH = 1240
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         "--virtual-time-budget=10000"]
# Records the page position of every section heading and of the first row of plots.
OFFSETS_JS = """<script>window.addEventListener('load', () => {
  const r = {};
  document.querySelectorAll('h2, h3').forEach(h => { r[h.id || h.textContent] =
      h.getBoundingClientRect().top + window.scrollY; });
  const plot = document.querySelector('#distributions + .grid figure');
  if (plot) r['first-plot-bottom'] = plot.getBoundingClientRect().bottom + window.scrollY;
  document.body.setAttribute('data-offsets', JSON.stringify(r));
});</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("chromium not found (Debian: apt-get install -y chromium)")


def offsets(page: Path, tmp: Path) -> dict[str, float]:
    probe = tmp / "offsets.html"
    probe.write_text(page.read_text().replace("</body>", OFFSETS_JS + "</body>"))
    dom = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp / 'p1'}",
                          f"--window-size={WIDTH},1000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-offsets="([^"]*)"', dom)
    if not found:
        raise RuntimeError("chromium did not render the page")
    return json.loads(html.unescape(found.group(1)))


def screenshot(page: Path, out: Path, gallery_height: int = 1250) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pos = offsets(page, tmp)
        top_end = int(pos.get("first-plot-bottom", 1100)) + 12
        start = int(pos.get("classes", pos.get("galleries", top_end))) - 14
        height = start + gallery_height + 50
        shot = tmp / "full.png"
        subprocess.run([chromium(), *FLAGS, f"--user-data-dir={tmp / 'p2'}",
                        f"--window-size={WIDTH},{height}", f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, timeout=120, check=False)
        if not shot.exists():
            raise RuntimeError("chromium wrote no screenshot")
        full = Image.open(shot).convert("RGB")
    top = full.crop((0, 0, WIDTH, top_end))
    bottom = full.crop((0, start, WIDTH, min(full.height, start + gallery_height)))
    picture = Image.new("RGB", (WIDTH, top.height + bottom.height + 24), "white")
    picture.paste(top, (0, 0))
    picture.paste(bottom, (0, top.height + 24))
    draw = ImageDraw.Draw(picture)
    y = top.height + 11
    for x in range(0, WIDTH, 14):  # a dashed line where the page was cut
        draw.line([(x, y), (x + 7, y)], fill=(170, 170, 170), width=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    picture.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m labeling.report.screenshot",
                                description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path, help="report.html")
    p.add_argument("out", type=Path, help="PNG to write (e.g. docs/report.png)")
    args = p.parse_args(argv)
    try:
        print(screenshot(args.page.resolve(), args.out))
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"screenshot: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
