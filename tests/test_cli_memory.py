"""`joyvl memory`: search, forget, retention, sessions (click's CliRunner)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from joyvl_agent import Store, VirtualClock
from joyvl_agent._cli_memory import memory
from joyvl_agent.cli import cli

from .test_recall import record_demo

if "memory" not in cli.commands:  # until cli.py registers it
    cli.add_command(memory)

pytestmark = pytest.mark.anyio


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
async def demo_db(db_path):
    with Store(db_path) as store:
        await record_demo(store, "cam-1")
        await record_demo(store, "cam-2", extra="quickly")
    return str(db_path)


def run(runner: CliRunner, db: str, *args: str, **kw):
    return runner.invoke(cli, ["--db", db, "memory", *args], **kw)


async def test_search_human_output_shows_each_hits_time(runner, demo_db):
    result = run(runner, demo_db, "search", "banana", "--session", "cam-1")
    assert result.exit_code == 0, result.output
    assert result.output == (
        "  12.0s–30.0s  summary    A red card with the word BANANA was shown; a person waved.\n")
    result = run(runner, demo_db, "search", "cup", "--session", "cam-1", "--kind", "speech")
    lines = result.output.splitlines()
    assert len(lines) == 2 and all("speech" in ln for ln in lines)
    assert any(ln.startswith("  10.0s  ") for ln in lines)
    # hits from several sessions name their session
    result = run(runner, demo_db, "search", "parrot")
    assert sorted(ln.split()[0] for ln in result.output.splitlines()) == ["cam-1", "cam-2"]


async def test_search_json_is_one_object_per_hit(runner, demo_db):
    result = run(runner, demo_db, "search", "cup", "--session", "cam-2", "--json",
                 "--since", "at the start", "--limit", "2")
    assert result.exit_code == 0, result.output
    hits = [json.loads(line) for line in result.output.splitlines()]
    assert len(hits) == 2
    assert {h["session_id"] for h in hits} == {"cam-2"}
    assert {"text", "kind", "seq", "t", "start_t", "end_t", "score", "thumbnail_id",
            "thumbnail_t"} <= hits[0].keys()
    # relative phrases are read against the session's latest event (300 s)
    result = run(runner, demo_db, "search", "parrot cup", "--session", "cam-1", "--json",
                 "--since", "last 30 seconds")
    assert [json.loads(x)["t"] for x in result.output.splitlines()] == [290.0]
    result = run(runner, demo_db, "search", "cup", "--session", "cam-1", "--json",
                 "--since", "30", "--until", "41", "--kind", "question")
    assert [json.loads(x)["kind"] for x in result.output.splitlines()] == ["question_asked"]


async def test_search_errors_are_one_clean_line(runner, demo_db, tmp_path):
    missing = tmp_path / "nope.db"
    result = runner.invoke(cli, ["--db", str(missing), "memory", "search", "cup"])
    assert result.exit_code == 1 and "no database at" in result.output
    assert not missing.exists()  # search never creates a database
    for args, expected in [
        (["search", "cup", "--session", "cam-1", "--since", "the day before"], "accepted:"),
        (["search", "cup", "--session", "ghost"], "no session 'ghost'"),
        (["search", "cup", "--kind", "speeches"], "unknown event kind"),
        (["search", "cup", "--since", "5 minutes ago"], "relative to the current session"),
    ]:
        result = run(runner, demo_db, *args)
        assert result.exit_code == 1, args
        assert expected in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    result = run(runner, demo_db, "search", "zzzz")
    assert result.exit_code == 0 and "no matches" in result.output


async def test_memory_has_its_own_db_option(runner, demo_db):
    result = runner.invoke(cli, ["memory", "search", "lamp", "--db", demo_db, "--session",
                                 "cam-2"])
    assert result.exit_code == 0 and "decision" in result.output and "200.0s" in result.output


async def test_sessions_lists_counts_and_spans(runner, demo_db):
    result = run(runner, demo_db, "sessions", "--json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in result.output.splitlines()]
    assert [(r["session_id"], r["events"], r["start_t"], r["end_t"], r["thumbnails"])
            for r in rows] == [("cam-1", 15, 0.0, 300.0, 31), ("cam-2", 15, 0.0, 300.0, 31)]
    human = run(runner, demo_db, "sessions").output
    assert "cam-1" in human and "15 events" in human and "0.0s–300.0s" in human


async def test_forget_asks_then_erases(runner, demo_db):
    result = run(runner, demo_db, "forget", "--session", "cam-1", input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert "cam-1" in run(runner, demo_db, "sessions").output
    result = run(runner, demo_db, "forget", "--session", "cam-1", "--yes")
    assert result.exit_code == 0 and "15 events, 31 thumbnails" in result.output
    listed = run(runner, demo_db, "sessions").output
    assert "cam-1" not in listed and "cam-2" in listed
    assert run(runner, demo_db, "search", "cup", "--session", "cam-1").exit_code == 1
    result = run(runner, demo_db, "forget", "--session", "cam-1", "--yes")
    assert result.exit_code == 1 and "no session 'cam-1'" in result.output


async def test_retention_command(runner, tmp_path):
    demo_db = str(tmp_path / "old.db")
    with Store(demo_db) as store:  # recorded long ago
        for sid in ("cam-1", "cam-2"):
            await record_demo(store, sid, clock=VirtualClock(start_wall=datetime(2000, 1, 1,
                                                                                  tzinfo=UTC)))
    result = run(runner, demo_db, "retention")
    assert result.exit_code == 2 and "nothing to do" in result.output
    result = run(runner, demo_db, "retention", "--max-age", "soon")
    assert result.exit_code == 2 and "7d, 24h, 90m" in result.output
    # a day's limit drops everything
    result = run(runner, demo_db, "retention", "--max-age", "1d", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["events_deleted"] == 30 and report["bytes_after"] < report["bytes_before"]
    # the config's limits are the defaults
    config = tmp_path / "joyvl.toml"
    config.write_text("[memory]\nmax_db_mb = 50\n")
    result = runner.invoke(cli, ["--config", str(config), "--db", demo_db, "memory",
                                 "retention"])
    assert result.exit_code == 0 and "deleted 0 events" in result.output


def test_every_memory_command_has_help(runner):
    assert runner.invoke(cli, ["memory", "--help"]).exit_code == 0
    for name, command in memory.commands.items():
        assert command.help, f"memory {name} has no docstring"
        result = runner.invoke(cli, ["memory", name, "-h"])
        assert result.exit_code == 0 and "--db" in result.output
