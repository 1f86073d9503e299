"""Headless Chromium for the browser tests (the agent panel, the supervisor board).

``.ci/run`` installs Debian's Chromium; without it a browser test module is skipped locally
and fails in CI. Screenshots go to ``tests/artifacts/`` (kept as test artefacts, gitignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import REPO

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
