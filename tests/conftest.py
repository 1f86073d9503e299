"""Shared fixtures. Slow model tests share one loaded Whisper model per session."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "calls"
SHARED = Path(os.environ.get("CALLWATCH_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared(rel: str) -> Path:
    """A file of ../shared/data; skipped where the folder is absent, never in CI."""
    path = SHARED / rel
    if not path.exists():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"shared data missing in CI: {path}")
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session")
def asr():  # type: ignore[no-untyped-def]
    from models.asr import WhisperAsr

    return WhisperAsr()


@pytest.fixture(scope="session")
def base_asr():  # type: ignore[no-untyped-def]
    """The bundled multilingual ``base`` as Mandarin calls use it: int8, one thread, language
    None (identified per clip among English and Mandarin unless a call passes one), and
    AsrConfig's other defaults (beam 5 for zh, greedy otherwise; 10 s window floor; no
    prompt). Mandarin figures: docs/benchmarks.md (issue 10)."""
    from models.asr import AsrConfig, WhisperAsr

    return WhisperAsr(
        AsrConfig(model="base", language=None, detect_languages=("en", "zh"), threads=1)
    )


@pytest.fixture(scope="session")
def packs():  # type: ignore[no-untyped-def]
    from qa_rules.loader import load_packs

    return load_packs()


@pytest.fixture(scope="session", autouse=True)
def _session_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Module-wide fixtures (a server's store) are made before each test's own home: give
    them a throwaway one too, so no test ever writes to ~/.local/share/callwatch."""
    old = os.environ.get("CALLWATCH_HOME")
    os.environ["CALLWATCH_HOME"] = str(tmp_path_factory.mktemp("session-home"))
    yield
    if old is None:
        os.environ.pop("CALLWATCH_HOME", None)
    else:
        os.environ["CALLWATCH_HOME"] = old


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets its own store so nothing leaks between tests or into ~/.local."""
    monkeypatch.setenv("CALLWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CALLWATCH_DB_URL", raising=False)


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """One throwaway PostgreSQL database per test module (tests/pg.py), dropped after it."""
    from tests import pg

    with pg.throwaway_database("cw_test") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store on each backend: a SQLite file, or the module's PostgreSQL database
    emptied for this test (skipped locally, failed in CI, when PostgreSQL is down)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    from tests import pg

    url: str = request.getfixturevalue("pg_database")
    pg.reset(url)
    return url


@pytest.fixture
def open_store(store_url: str) -> Iterator[Callable[..., Any]]:
    """Opens ``Store(store_url)`` (as often as a test needs: several instances), and closes
    them all after the test."""
    from assist.store import Store

    opened: list[Store] = []

    def make(**kw: Any) -> Store:
        opened.append(Store(store_url, **kw))
        return opened[-1]

    yield make
    for s in opened:
        s.close()


@pytest.fixture(scope="session")
def board(asr, packs, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real server for the board's tests, with the demo calls replayed into it
    (see tests/board_server.py)."""
    from tests.board_server import board_server

    with board_server(asr, packs, tmp_path_factory.mktemp("board")) as b:
        yield b
