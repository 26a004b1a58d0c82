"""report.html in a real headless Chromium: it renders without console errors or failed loads, and every
image is decoded (data URIs, nothing fetched). A full-page screenshot is kept under the test's tmp_path."""

from __future__ import annotations

import base64
import json
import os

import pytest

from l059_omop.outcomes import compute_outcomes
from tests.outcomes.cdp import Browser, find_chromium
from tests.outcomes.lung_omop import COHORT_ID


@pytest.fixture
def chromium():
    path = find_chromium()
    if path is None:
        reason = "headless Chromium not installed (Debian: apt-get install -y chromium)"
        if os.environ.get("L059_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (L059_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return path


@pytest.mark.browser
@pytest.mark.parametrize("module_cdm_engine", ["duckdb"], indirect=True)
def test_report_renders_in_chromium(chromium, lung_engine, tmp_path):
    out = tmp_path / "out"
    compute_outcomes(lung_engine, out, cohort_id=COHORT_ID)
    report = out / "report.html"
    browser = Browser(chromium, tmp_path / "profile")
    try:
        page = browser.page()
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=report.resolve().as_uri())
        page.wait_for("Page.loadEventFired")
        res = page.call("Runtime.evaluate", returnByValue=True, awaitPromise=True, expression="""
            Promise.all(Array.from(document.images).map(i => i.decode().then(() => true, () => false)))
              .then(ok => JSON.stringify({
                 title: document.title,
                 images: Array.from(document.images).map((i, k) => ({alt: i.alt, complete: i.complete,
                   width: i.naturalWidth, height: i.naturalHeight, decoded: ok[k],
                   inline: i.src.startsWith('data:image/png;base64,')})),
                 tables: document.querySelectorAll('table').length,
                 height: document.documentElement.scrollHeight}))""")
        info = json.loads(res["result"]["value"])
        metrics = page.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        page.call("Emulation.setDeviceMetricsOverride", width=1200, height=int(min(size["height"], 16000)),
                  deviceScaleFactor=1, mobile=False)
        shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
        errors = page.errors()
        page.ws.close()
    finally:
        browser.close()
    assert errors == [], errors
    assert info["title"] == f"Outcomes of cohort {COHORT_ID}"
    images = info["images"]
    assert len(images) >= 5  # attrition, OS, PFS, OS by ECOG, PFS by ECOG
    for img in images:
        assert img["inline"] and img["complete"] and img["decoded"] and img["width"] > 100, img
    assert info["tables"] >= 8
    assert (tmp_path / "report.png").stat().st_size > 10_000
