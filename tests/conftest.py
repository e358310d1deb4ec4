"""Shared fixtures: anyio on asyncio, a fresh database, a virtual clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from joyvl_agent import Store, VirtualClock

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "joyvl.db"


@pytest.fixture
def store(db_path: Path):
    with Store(db_path) as s:
        yield s


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """No JOYVL_* variable or ./joyvl.toml of the developer leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("JOYVL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CTranslate2 Whisper folder, built once per test session."""
    from .fakes.tiny_whisper import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper") / "model")
