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
    chromium: str, page: Path, work: Path, probe: str, window: tuple[int, int]
) -> dict[str, Any]:
    """Load a copy of `page` with the `probe` script appended (it writes its findings as JSON
    into a `<pre id="probe">` when the page has loaded) and return what it found."""
    copy = work / "probe.html"
    copy.write_text(
        page.read_text(encoding="utf-8").replace("</body>", probe + "</body>"), encoding="utf-8"
    )
    dom = run_chromium([*headless_argv(chromium, work / "profile-dom", window), "--dump-dom",
                        copy.as_uri()])  # fmt: skip
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run (the page never finished loading?)"
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result
