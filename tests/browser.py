"""Headless Chromium for the tests that look at a rendered page (installed best-effort by
`.ci/run`; a test without it skips, saying so)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

SKIP_REASON = "no Chromium on this machine (chromium / chromium-browser on PATH)"
#: a folder to keep the pages' screenshots in (e.g. docs), when set
SCREENSHOT_DIR_ENV = "ML4T_REPORT_SCREENSHOT_DIR"
_PROBE = """<script>
window.addEventListener("load", () => {
  const found = {
    images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
    fetched: performance.getEntriesByType("resource").map(e => e.name)
      .filter(n => !n.startsWith("data:")),
    %s
  };
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});
</script>"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


def headless_argv(chromium: str, profile: Path, window: tuple[int, int]) -> list[str]:
    """Chromium's headless command line, the page and its output options to follow."""
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        f"--window-size={window[0]},{window[1]}",
    ]


def run_chromium(argv: list[str]) -> str:
    """Run a headless Chromium command line; its stdout (a failure is an assertion)."""
    done = subprocess.run(
        argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"chromium exited with {done.returncode}: {done.stderr[-1000:]}"
    return done.stdout


def probe_page(
    chromium: str, page: Path, work: Path, queries: str, window: tuple[int, int]
) -> dict[str, Any]:
    """Load a copy of `page` with a probe script appended, which reports, once the page has
    loaded, its images (complete, width, height), what it fetched (anything but data: URLs)
    and the page's own `queries` (JavaScript object entries, `name: expression,`)."""
    copy = work / "probe.html"
    script = _PROBE % queries
    copy.write_text(
        page.read_text(encoding="utf-8").replace("</body>", script + "</body>"), encoding="utf-8"
    )
    dom = run_chromium([*headless_argv(chromium, work / "profile-dom", window), "--dump-dom",
                        copy.as_uri()])  # fmt: skip
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run (the page never finished loading?)"
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result
