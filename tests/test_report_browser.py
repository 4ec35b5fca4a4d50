"""The HTML report in a real browser: headless Chromium loads every figure and shows the tables.

The page counts its decoded images (``naturalWidth > 0``) into ``#images-loaded``; Chromium's
``--dump-dom`` prints the DOM after the load event. Chromium comes from Debian (``chromium``),
installed by ``.ci/run``; without it the test fails in CI and is skipped elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from test_report import FIGURES, synthetic_report

pytestmark = pytest.mark.slow  # a real browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is missing in CI (.ci/run installs the Debian package 'chromium')")
    pytest.skip("Chromium not installed (apt-get install -y chromium chromium-driver); "
                "set CI=1 to require it")


def _dump_dom(html_path, tmp_path) -> str:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
           "--dump-dom", html_path.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def _counts(dom: str) -> tuple[int, int]:
    loaded = re.search(r'id="images-loaded">(\d+)<', dom)
    total = re.search(r'id="images-total">(\d+)<', dom)
    assert loaded and total, "the page's image-count script did not run"
    return int(loaded.group(1)), int(total.group(1))


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    return synthetic_report(tmp_path_factory.mktemp("report"))[0]


def test_report_renders_in_headless_chromium(report_html, tmp_path):
    html_path = report_html
    dom = _dump_dom(html_path, tmp_path)
    assert _counts(dom) == (len(FIGURES), len(FIGURES))
    assert dom.count("<table") == 5 and dom.count("<tr") > 10
    assert "Accuracy and relearning" in dom and "npo" in dom and "gold" in dom


def test_a_broken_figure_is_detected(report_html, tmp_path):
    """The check can fail: an image that does not decode is not counted as loaded."""
    html = report_html.read_text()
    html_path = tmp_path / "broken.html"
    html_path.write_text(html.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    loaded, total = _counts(_dump_dom(html_path, tmp_path))
    assert total == len(FIGURES) and loaded == len(FIGURES) - 1
