"""Headless Chromium for the browser tests (the agent panel, the supervisor board).

``.ci/run`` installs Debian's Chromium; without it a browser test module is skipped locally
and fails in CI. Screenshots go to ``tests/artifacts/`` (kept as test artefacts, gitignored).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.conftest import REPO

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "artifacts"


def need_chromium() -> None:
    """Call at module level: skip the module without Chromium (fail in CI)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):  # .ci/run installs it: in CI a missing browser is a failure
            raise RuntimeError(f"browser tests need Chromium at {CHROMIUM}")
        pytest.skip(f"browser tests need Chromium at {CHROMIUM}", allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="browser tests need playwright")


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Chromium driven by Playwright, closed on the way out (one per test module)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
