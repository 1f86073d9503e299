"""A two-channel Mandarin call assembled at test time from the shared recordings.

The agent reads customer-service lines (Magic Data), the caller short AISHELL prompts, turn
by turn (``bench.zh_demo.build_call``). Nothing is copied into the repository: the WAV is
written to a temporary folder from ``../shared/data`` (skipped where that is absent, never in
CI). The returned lines tell who said what and when (where a rule must fire).
"""

from __future__ import annotations

from pathlib import Path

from bench.zh_demo import Line, build_call, corpus
from tests.conftest import shared

__all__ = ["SCRIPT", "Line", "build_test_call"]

# (speaker, corpus, utterance id): a short insurance call
SCRIPT: tuple[tuple[str, str, str], ...] = (
    (
        "agent",
        "magicdata_cs_scene",
        "000034",
    ),  # 我们给您和您的家人做一份保险计划，详细给您介绍一下好吗？
    ("customer", "aishell_dev", "BAC009S0150W0005"),  # 调高温度
    ("agent", "magicdata_cs_scene", "000047"),  # 你是想了解车险吗？
    ("customer", "aishell_dev", "BAC009S0150W0010"),  # 孔家花园
    ("agent", "magicdata_cs_scene", "000018"),  # 我安排工作人员根据您的情况给您做一个保险计划。
    ("agent", "magicdata_cs_scene", "000030"),  # 我看下这款保险的赔付，您稍等。
)


def build_test_call(out: Path) -> list[Line]:
    """Write ``SCRIPT`` as a stereo 16 kHz WAV (agent left, caller right) to ``out``."""
    data = shared("asr_zh").parent
    corpora = {name: corpus(data, name) for name in {c for _, c, _ in SCRIPT}}
    turns = []
    for speaker, name, utt in SCRIPT:
        path, text = corpora[name][utt]
        turns.append((speaker, path, utt, text))
    return build_call(turns, out)
