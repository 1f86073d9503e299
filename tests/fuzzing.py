"""Hypothesis settings shared by the fuzz tests: derandomized in the suite (the same cases
every run), seed-free and longer with ``CALLWATCH_FUZZ_PROFILE=fuzz-bench``."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings


def fuzz_settings(
    ci_examples: int, bench_examples: int, every_health_check: bool = False
) -> settings:
    """Settings for one fuzz module (``every_health_check``: silence them all, for
    schemathesis' generated requests)."""
    bench = os.environ.get("CALLWATCH_FUZZ_PROFILE") == "fuzz-bench"
    return settings(
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck)
        if every_health_check
        else [HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=not bench,
        max_examples=bench_examples if bench else ci_examples,
    )
