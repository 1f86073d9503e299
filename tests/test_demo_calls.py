"""The committed demo calls are exactly what the committed script makes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import DEMO, REPO

TOOLS = ("text2wave", "sox")


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS) and not __import__("os").environ.get("CI"),
    reason="festival/sox not installed (CI installs them)",
)
def test_generator_reproduces_the_committed_calls(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "make_demo_calls.py"),
            "--out",
            str(tmp_path),
            "--only",
            "breach_call",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    fresh = json.loads((tmp_path / "breach_call.timeline.json").read_text())
    committed = json.loads((DEMO / "breach_call.timeline.json").read_text())
    assert fresh["turns"] == committed["turns"]
    assert fresh["marks"] == committed["marks"]
    # byte-identical audio: the generator is deterministic (fixed seed, no dither)
    assert (tmp_path / "breach_call.wav").read_bytes() == (DEMO / "breach_call.wav").read_bytes()


def test_demo_calls_have_the_documented_shape() -> None:
    for name in ("clean_call", "breach_call", "cancel_call"):
        info = sf.info(str(DEMO / f"{name}.wav"))
        assert (info.samplerate, info.channels, info.subtype) == (8000, 2, "ULAW")
        assert 60 <= info.duration <= 120
        timeline = json.loads((DEMO / f"{name}.timeline.json").read_text())
        assert {t["speaker"] for t in timeline["turns"]} == {"agent", "customer"}
    marks = json.loads((DEMO / "breach_call.timeline.json").read_text())["marks"]
    assert marks["dead_air_end"] - marks["dead_air_start"] >= 12
