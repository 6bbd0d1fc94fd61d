"""Load a report in headless Chromium and count its images and the broken ones (shared by the run tests)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

_CHECK = ("<script>window.addEventListener('load',()=>{const imgs=[...document.images];"
          "document.body.setAttribute('data-images',imgs.length);"
          "document.body.setAttribute('data-broken',imgs.filter(i=>!i.complete||i.naturalWidth===0).length);});"
          "</script></body>")


def images_in_chromium(report: Path, tmp_path: Path) -> tuple[int, int]:
    """(images, broken images) of ``report`` as headless Chromium renders it; skips where there is no Chromium."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium); .ci/run installs it")
    probe = tmp_path / "probe.html"
    probe.write_text(report.read_text().replace("</body>", _CHECK))
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
                        probe.as_uri()], capture_output=True, text=True, timeout=120)
    m_img, m_bad = re.search(r'data-images="(\d+)"', r.stdout), re.search(r'data-broken="(\d+)"', r.stdout)
    assert m_img and m_bad, r.stdout[-500:] + r.stderr[-500:]
    return int(m_img.group(1)), int(m_bad.group(1))
