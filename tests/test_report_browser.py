"""report.html of a real compile opened in headless Chromium: a script run inside the rendered page
reads what a user sees (tables, images, the summary's place, text that overflows), and a screenshot
of the page is checked for plots."""

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import edgecc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")

# Runs in the page once it has loaded; writes what it found into the DOM for --dump-dom to return.
PROBE = """<script>
window.addEventListener('load', () => {
  const visible = document.body.innerText;
  const images = [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth,
      right: i.getBoundingClientRect().right}));
  const tables = [...document.querySelectorAll('table')].map(t => t.rows.length);
  const summary = document.querySelector('section.summary').getBoundingClientRect();
  const overflowing = [...document.querySelectorAll('td, th, p, li')].filter(e => {
      const r = e.getBoundingClientRect(); return r.right > window.innerWidth + 1; }).length;
  const out = document.createElement('pre'); out.id = 'edgecc-probe';
  out.textContent = JSON.stringify({images, tables, summary_top: summary.top, summary_bottom: summary.bottom,
      page_width: document.documentElement.scrollWidth, window_width: window.innerWidth, overflowing,
      raw_markdown: /\\|\\s*---|^#+ /m.test(visible), raw_json: /\\{\\s*"/.test(visible),
      summary_text: document.querySelector('section.summary').innerText});
  document.body.appendChild(out);
});
</script>"""


def _chromium(*args, timeout=120):
    profile = tempfile.mkdtemp(prefix="edgecc-chromium-")
    try:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _image(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def _non_blank(pixels: np.ndarray) -> bool:
    not_white = (pixels < 250).any(axis=2).mean()
    return pixels.std() > 5 and not_white > 0.01


@pytest.fixture(scope="module")
def report_html(held_out_distilbert_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "distil"
    edgecc.compile(held_out_distilbert_onnx, "host", out, seq_len=20, min_seconds=0.2, log=lambda *_: None)
    return out / "report.html"


@pytest.fixture(scope="module")
def page(report_html, tmp_path_factory):
    """What the rendered page shows, read by a script inside it."""
    probed = tmp_path_factory.mktemp("probe") / "report.html"
    probed.write_text(report_html.read_text().replace("</body>", PROBE + "</body>"))
    dom = _chromium(
        "--window-size=1200,900", "--virtual-time-budget=10000", "--dump-dom", f"file://{probed.resolve()}"
    ).stdout
    found = re.search(r"<pre id=\"edgecc-probe\">(.*?)</pre>", dom, re.S)
    assert found, "the probe script did not run in chromium"
    import html

    return json.loads(html.unescape(found.group(1)))


def test_every_table_renders_and_nothing_is_raw(page):
    assert len(page["tables"]) >= 8 and all(rows >= 2 for rows in page["tables"][1:])
    assert not page["raw_markdown"] and not page["raw_json"]


def test_plots_decode_and_fit_the_page(page):
    alts = {i["alt"] for i in page["images"]}
    assert {"Per-kernel time", "Roofline"} <= alts
    for image in page["images"]:
        assert image["complete"] and image["width"] > 300, image
        assert image["right"] <= page["window_width"], image  # scaled into the page, not cut off
    assert page["page_width"] <= page["window_width"] and page["overflowing"] == 0


def test_the_summary_is_the_first_screen(page):
    assert page["summary_top"] < 150 and page["summary_bottom"] < 900 * 1.2
    text = page["summary_text"]
    for needle in ("Latency", "ONNX Runtime", "Correctness", "Size", "Energy", "Tuning", "Slowest kernels"):
        assert needle in text, needle
    assert re.search(r"(compute|memory)-bound at [\d.]+%|moves data only", text)


def test_plots_in_the_html_decode(report_html):
    sources = re.findall(r"<img[^>]*src=['\"]data:image/png;base64,([A-Za-z0-9+/=]+)['\"]", report_html.read_text())
    assert len(sources) >= 2  # per-kernel bars and roofline at least (tuning/Pareto need tuning/variants)
    for encoded in sources:
        pixels = _image(base64.b64decode(encoded))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and _non_blank(pixels)


def test_chromium_renders_the_page(report_html, tmp_path):
    shot = tmp_path / "report.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,3000", f"file://{report_html.resolve()}")
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = _image(shot.read_bytes())
    assert pixels.shape[:2] == (3000, 1200)
    assert _non_blank(pixels)
    # plots are colourful (bars, roofline points); text alone is greyscale
    colour = (pixels.max(axis=2) - pixels.min(axis=2)) > 40
    assert colour.mean() > 0.002, colour.mean()
