"""Headless Chromium for the tests that look at a rendered page (installed best-effort by
`.ci/run`; a test without it skips, saying so)."""

from __future__ import annotations

import shutil
from pathlib import Path

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
