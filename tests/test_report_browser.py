"""report.html of a real compile opened in headless Chromium: the page renders and its plots decode."""

import base64
import io
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import edgecc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")


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


def test_plots_in_the_html_decode(report_html):
    sources = re.findall(r"<img[^>]*src=['\"]data:image/png;base64,([A-Za-z0-9+/=]+)['\"]", report_html.read_text())
    assert len(sources) >= 2  # per-kernel bars and roofline at least (tuning/Pareto need tuning/variants)
    for encoded in sources:
        pixels = _image(base64.b64decode(encoded))
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and _non_blank(pixels)


def test_chromium_renders_the_page(report_html, tmp_path):
    shot = tmp_path / "report.png"
    profile = tempfile.mkdtemp(prefix="edgecc-chromium-")
    try:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=1200,3000",
                        f"file://{report_html.resolve()}"], capture_output=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.is_file(), "chromium wrote no screenshot"
    pixels = _image(shot.read_bytes())
    assert pixels.shape[:2] == (3000, 1200)
    assert _non_blank(pixels)
    # plots are colourful (bars, roofline points); text alone is greyscale
    colour = (pixels.max(axis=2) - pixels.min(axis=2)) > 40
    assert colour.mean() > 0.002, colour.mean()
